"""Readers of the standard dataset files, from a local folder (downloaded only when asked).

Formats and their sources:
- IDX (MNIST, Fashion-MNIST): LeCun, Cortes & Burges, "The MNIST database of handwritten digits",
  http://yann.lecun.com/exdb/mnist/ ("file formats"): a magic number 00 00 TT DD (TT the type:
  08 uint8, 09 int8, 0B int16, 0C int32, 0D float32, 0E float64; DD the number of dimensions),
  one big-endian int32 per dimension, then the values in C order, big-endian. Images are 2051
  (uint8, 3 dims), labels 2049 (uint8, 1 dim). Fashion-MNIST (Xiao, Rasul & Vollgraf 2017,
  github.com/zalandoresearch/fashion-mnist) uses the same format and file names.
- CIFAR-10 "python version": Krizhevsky, "Learning Multiple Layers of Features from Tiny Images"
  (2009), https://www.cs.toronto.edu/~kriz/cifar.html: cifar-10-python.tar.gz holds the folder
  cifar-10-batches-py with data_batch_1..5 and test_batch, each a pickled dict whose b"data" is a
  (10000, 3072) uint8 array (red, green, blue 32x32 planes, row-major) and b"labels" 10000 ints.

Layout of a data folder (``root``, else the environment variable ``INFNET_DATA``)::

    root/mnist/          train-images-idx3-ubyte.gz  train-labels-idx1-ubyte.gz
                         t10k-images-idx3-ubyte.gz   t10k-labels-idx1-ubyte.gz   (or gunzipped)
    root/fashion-mnist/  the same four names
    root/cifar-10/       cifar-10-batches-py/ (extracted) or cifar-10-python.tar.gz

The files may also lie directly in ``root``. Loaders return (images uint8, labels int64), parsed
and checked in full before anything is returned.
"""

from __future__ import annotations

import codecs
import gzip
import hashlib
import http.client
import io
import math
import os
import pickle
import shutil
import struct
import tarfile
import urllib.request
import zlib
from pathlib import Path

import numpy as np

ENV_ROOT = "INFNET_DATA"
DATASETS = ("digits", "mnist", "fashion-mnist", "cifar10", "dirichlet2", "dirichlet3")
DOWNLOAD_TIMEOUT = 10.0  # seconds without data before a mirror is given up
CIFAR_FOLDER, CIFAR_ARCHIVE = "cifar-10-batches-py", "cifar-10-python.tar.gz"

#: MD5 of the official files, as published in torchvision's dataset classes
#: (torchvision/datasets/mnist.py: MNIST.resources, FashionMNIST.resources;
#: torchvision/datasets/cifar.py: CIFAR10.tgz_md5, train_list, test_list).
OFFICIAL_MD5 = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
    "cifar-10": {
        CIFAR_ARCHIVE: "c58f30108f718f92721af3b95e74349a",
        "data_batch_1": "c99cafc152244af753f735de768cd75f",
        "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
        "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
        "data_batch_4": "634d18415352ddfa80567beed471001a",
        "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
        "test_batch": "40351d587109b95175f43aff81a1287e",
    },
}
#: official mirrors (the ones torchvision uses), tried in order
MIRRORS = {
    "mnist": ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
    "fashion-mnist": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    "cifar-10": ("https://www.cs.toronto.edu/~kriz/",),
}
_SPLIT_SIZES = {"train": 60000, "test": 10000}  # of the official MNIST and Fashion-MNIST files
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_IDX_CODES = {v[1:]: k for k, v in _IDX_TYPES.items()}


def read_idx(path) -> np.ndarray:
    """The array stored in an IDX file (gzipped or not), in native byte order.

    The header must be valid and the file exactly as long as it says; otherwise a ValueError
    names the file."""
    path = Path(path)
    raw, gz = _read_bytes(path)
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] not in _IDX_TYPES or raw[3] == 0:
        raise ValueError(f"{path} is not an IDX file: magic number {raw[:4].hex(' ') or 'missing'}, "
                         "while an IDX file starts with 00 00, a type code (08, 09, 0b, 0c, 0d, "
                         "0e) and the number of dimensions")
    ndim, dtype = raw[3], np.dtype(_IDX_TYPES[raw[2]])
    header = 4 + 4 * ndim
    dims = struct.unpack(f">{ndim}I", raw[4:header]) if len(raw) >= header else None
    expected = header + (math.prod(dims) * dtype.itemsize if dims else 0)
    if dims is None or len(raw) != expected:
        what = "truncated" if dims is None or len(raw) < expected else "longer than its header says"
        raise ValueError(f"{path} is {what}: its header announces {expected} bytes (shape {dims}, "
                         f"{dtype.name}) but it holds {len(raw)}{' once gunzipped' if gz else ''}; "
                         "fetch the file again")
    return np.frombuffer(raw, dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def load_idx_folder(path) -> tuple[np.ndarray, np.ndarray]:
    """(images, labels) from a folder holding one IDX pair of any names: one file matching
    ``*images*idx3*`` and one ``*labels*idx1*``, gzipped or not (e.g. a subset of MNIST)."""
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder")
    images, labels = sorted(folder.glob("*images*idx3*")), sorted(folder.glob("*labels*idx1*"))
    if not images or not labels:
        raise FileNotFoundError(f"{folder} must hold an IDX pair: one file matching *images*idx3* "
                                "and one matching *labels*idx1* (gzipped or not)")
    if len(images) > 1 or len(labels) > 1:
        raise ValueError(f"{folder} holds several IDX files of a kind: "
                         f"{[p.name for p in images + labels]}; keep one images and one labels file")
    return _idx_pair(images[0], labels[0])


def load_mnist(root=None, split: str = "train", *, download: bool = False, verify: bool = True):
    """(images (n, 28, 28) uint8, labels (n,) int64) of MNIST's "train" (60000) or "test" (10000)
    split, from ``root/mnist/`` or ``root`` (root defaults to ``$INFNET_DATA``; see the module).

    verify: check the official files' MD5 (gzipped files) or size (gunzipped files); pass False
    for files you made yourself. download: fetch missing files from the official mirrors."""
    return _load_idx_dataset("mnist", root, split, download, verify)


def load_fashion_mnist(root=None, split: str = "train", *, download: bool = False, verify: bool = True):
    """Fashion-MNIST, as ``load_mnist``, from ``root/fashion-mnist/`` or ``root``."""
    return _load_idx_dataset("fashion-mnist", root, split, download, verify)


def load_cifar10(root=None, split: str = "train", *, download: bool = False, verify: bool = True):
    """(images (n, 32, 32, 3) uint8 in HWC order, labels (n,) int64) of CIFAR-10's "train"
    (data_batch_1..5, 50000) or "test" (test_batch, 10000) split, from ``root/cifar-10/`` or
    ``root``: the extracted folder cifar-10-batches-py (or its files), else the archive
    cifar-10-python.tar.gz, read without extracting. verify and download as ``load_mnist``.
    The batches are pickles: only numpy arrays, bytes, lists and dicts are unpickled."""
    batches = ("test_batch",) if _split(split) == "test" else tuple(f"data_batch_{i}" for i in range(1, 6))
    folders = _folders(root, "cifar-10", batches)
    for folder in [d for f in folders for d in (f / CIFAR_FOLDER, f)]:
        if all((folder / b).is_file() for b in batches):
            paths = [folder / b for b in batches]
            if verify:
                for p in paths:
                    _check_md5(p, "cifar-10")
            return _join_batches([(_read_bytes(p)[0], str(p)) for p in paths])
    archive = _fetch(folders, "cifar-10", [CIFAR_ARCHIVE], download, f"CIFAR-10 ({split})",
                     f"or the folder {CIFAR_FOLDER}/ extracted from it")[0]
    if verify:
        _check_md5(archive, "cifar-10")
    try:
        with tarfile.open(archive, "r:gz") as tar:
            parts = []
            for b in batches:
                member = tar.extractfile(f"{CIFAR_FOLDER}/{b}")
                parts.append((member.read(), f"{archive}:{CIFAR_FOLDER}/{b}"))
    except KeyError as err:
        raise ValueError(f"{archive} is not the CIFAR-10 python archive: {err}") from None
    except (tarfile.TarError, EOFError, OSError, zlib.error) as err:
        raise ValueError(f"{archive} is not a readable tar.gz archive ({err}); fetch it again") from None
    return _join_batches(parts)


def load_dataset(name, root=None, *, n_train=None, n_test=None, seed: int = 0, download: bool = False,
                 verify: bool = True):
    """(x_train, y_train, x_test, y_test) of a data set by name (``DATASETS``) or IDX folder.

    "digits": scikit-learn's 1797 8x8 digits (n, 64) float64, split 50/50 stratified with
    ``seed``; "mnist", "fashion-mnist", "cifar10": the official splits (``root`` as in
    ``load_mnist``); a folder holding an IDX pair: split 50/50 stratified with ``seed``;
    "dirichlet2", "dirichlet3": ``dirichlet_sphere`` with n_train + n_test points (500 + 500 by
    default), the first n_train for training. n_train / n_test: stratified subsets (``seed``).
    download, verify: as in ``load_mnist``. A name wins over a folder of that name ("./mnist")."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    key = os.fspath(name).lower().replace("_", "-")
    key = {"cifar-10": "cifar10", "fashionmnist": "fashion-mnist"}.get(key, key)
    loaders = {"mnist": load_mnist, "fashion-mnist": load_fashion_mnist, "cifar10": load_cifar10}
    if key in ("dirichlet2", "dirichlet3"):
        from .sphere import dirichlet_sphere

        n1 = 500 if n_train is None else _count(n_train, "n_train")
        n2 = 500 if n_test is None else _count(n_test, "n_test")
        x, y = dirichlet_sphere(n1 + n2, d=int(key[-1]), seed=seed)
        return x[:n1], y[:n1], x[n1:], y[n1:]
    if key in loaders:
        x_tr, y_tr = loaders[key](root, "train", download=download, verify=verify)
        x_te, y_te = loaders[key](root, "test", download=download, verify=verify)
    elif key == "digits" or Path(name).is_dir():
        x, y = load_digits(return_X_y=True) if key == "digits" else load_idx_folder(name)
        x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.5, random_state=seed, stratify=y)
    else:
        raise ValueError(f"unknown data set {name!r}: use one of {', '.join(DATASETS)}, or a folder "
                         "holding an IDX pair (*images*idx3*, *labels*idx1*)")
    x_tr, y_tr = _subset(x_tr, y_tr, n_train, seed, "n_train")
    x_te, y_te = _subset(x_te, y_te, n_test, seed, "n_test")
    return x_tr, np.asarray(y_tr, np.int64), x_te, np.asarray(y_te, np.int64)


# ---- helpers -------------------------------------------------------------------------------------

def _split(split):
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    return split


def _folders(root, sub, files) -> list[Path]:
    """The folders searched: root/sub, then root (root from the argument, else $INFNET_DATA)."""
    if root is None:
        root = os.environ.get(ENV_ROOT)
        if not root:
            raise FileNotFoundError(f"no data folder: pass root=... or set the environment variable "
                                    f"{ENV_ROOT} to a folder holding {sub}/ with {', '.join(files)}")
    base = Path(root).expanduser().absolute()
    return [base / sub, base]


def _fetch(folders, dataset, names, download, label, hint) -> list[Path]:
    """The paths of the named files (an IDX file may also be gunzipped), downloading the missing
    ones into folders[0] when asked; else a FileNotFoundError saying what to place where."""
    def find(name):
        alternatives = (name, name[:-3]) if name.endswith("-ubyte.gz") else (name,)
        return next((f / a for f in folders for a in alternatives if (f / a).is_file()), None)

    errors = []
    for name in names:
        if download and not errors and find(name) is None:  # no network: stop at the first file
            errors = _download(dataset, name, folders[0])
    found = [find(name) for name in names]
    if None in found:
        missing = [n for n, p in zip(names, found, strict=True) if p is None]
        raise FileNotFoundError(
            f"{label} not found: searched {folders[0]} and {folders[1]}; place {', '.join(missing)} "
            f"({hint}) in {folders[0]}, pass root=... or set {ENV_ROOT} to the folder holding "
            f"{folders[0].name}/"
            + (f"; download failed: {'; '.join(errors)}" if download else
               "; download=True fetches them from the official mirrors"))
    return found


def _download(dataset, name, folder) -> list[str]:
    """Fetch name from the mirrors into folder: a temporary file there, checked against its MD5,
    then renamed into place. Returns the errors met ([] on success)."""
    from ..scale.folders import atomic_path

    folder.mkdir(parents=True, exist_ok=True)
    errors = []
    for mirror in MIRRORS[dataset]:
        try:
            with atomic_path(folder / name) as tmp, open(tmp, "wb") as out, \
                    urllib.request.urlopen(mirror + name, timeout=DOWNLOAD_TIMEOUT) as r:
                shutil.copyfileobj(r, out)
                out.flush()
                found, expected = _md5(Path(tmp)), OFFICIAL_MD5[dataset][name]
                if found != expected:  # (the temporary file is removed)
                    raise ValueError(f"MD5 {found} instead of {expected}")
            return []
        except (OSError, ValueError, http.client.HTTPException) as err:  # URLError is an OSError
            errors.append(f"{mirror}{name}: {err}")
    return errors


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_md5(path: Path, dataset: str):
    expected = OFFICIAL_MD5[dataset].get(path.name)
    if expected is not None and (found := _md5(path)) != expected:
        raise ValueError(f"{path} has MD5 {found}, but the official {dataset} file {path.name} has "
                         f"{expected}: it is corrupt or not the official file. Delete it and fetch it "
                         "again (download=True), or pass verify=False if you made it yourself")


def _read_bytes(path: Path) -> tuple[bytes, bool]:
    """The file's bytes, gunzipped if it is a gzip stream (whatever its name)."""
    raw = path.read_bytes()
    if not raw.startswith(b"\x1f\x8b"):
        return raw, False
    try:
        return gzip.decompress(raw), True
    except (EOFError, OSError, zlib.error) as err:
        raise ValueError(f"{path} is a broken gzip file ({err}): truncated or corrupt; fetch it "
                         "again") from None


def _idx_pair(images_path, labels_path) -> tuple[np.ndarray, np.ndarray]:
    x, y = read_idx(images_path), read_idx(labels_path)
    for path, arr, ndim, magic in ((images_path, x, 3, 2051), (labels_path, y, 1, 2049)):
        if arr.dtype != np.uint8 or arr.ndim != ndim:
            found = 256 * _IDX_CODES[arr.dtype.str[1:]] + arr.ndim
            raise ValueError(f"{path}: magic number {found}, expected {magic} (uint8, {ndim} dims); "
                             f"it holds {arr.dtype} of shape {arr.shape}")
    if len(x) != len(y):
        raise ValueError(f"{images_path} holds {len(x)} images but {labels_path} holds {len(y)} "
                         "labels: they must match")
    return x, y.astype(np.int64)


def _load_idx_dataset(dataset, root, split, download, verify):
    prefix = "train" if _split(split) == "train" else "t10k"
    names = [f"{prefix}-images-idx3-ubyte.gz", f"{prefix}-labels-idx1-ubyte.gz"]
    paths = _fetch(_folders(root, dataset, names), dataset, names, download, f"{dataset} ({split})",
                   "as published, or gunzipped")
    if verify:
        for p in paths:
            _check_md5(p, dataset)
    x, y = _idx_pair(*paths)
    gunzipped = [p for p in paths if p.name + ".gz" in OFFICIAL_MD5[dataset]]
    if verify and gunzipped and (x.shape[1:] != (28, 28) or len(x) != _SPLIT_SIZES[split]):
        raise ValueError(f"{gunzipped[0]} has an official {dataset} name but holds {x.shape}, not "
                         f"({_SPLIT_SIZES[split]}, 28, 28); pass verify=False if you made it yourself")
    return x, y


def _safe_globals() -> dict:
    """What a CIFAR-10 batch may name: numpy's array, dtype and scalar unpicklers (under their
    numpy < 2 and numpy >= 2 modules) and the codec of protocol-2 bytes."""
    a = np.zeros(1)
    safe = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
            ("_codecs", "encode"): codecs.encode}
    for module in ("numpy.core", "numpy._core"):
        safe[module + ".multiarray", "_reconstruct"] = a.__reduce__()[0]
        safe[module + ".multiarray", "scalar"] = a[0].__reduce__()[0]
        safe[module + ".numeric", "_frombuffer"] = a.__reduce_ex__(5)[0]
    return safe


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles arrays and builtin containers only: a pickle can run any code it names."""

    _safe = _safe_globals()

    def find_class(self, module, name):
        if (module, name) not in self._safe:
            raise pickle.UnpicklingError(f"it refers to {module}.{name}, which a CIFAR-10 batch "
                                         "never does; not loaded")
        return self._safe[module, name]


def _join_batches(parts) -> tuple[np.ndarray, np.ndarray]:
    """Parse every (bytes, where) CIFAR-10 batch, check it, then concatenate (images HWC)."""
    xs, ys = [], []
    for raw, where in parts:
        try:
            batch = _BatchUnpickler(io.BytesIO(raw), encoding="bytes").load()
        except Exception as err:  # a broken pickle can raise almost anything
            raise ValueError(f"{where} is not a CIFAR-10 batch: {err}") from None
        batch = {k.encode() if isinstance(k, str) else k: v for k, v in dict(batch).items()}
        if b"data" not in batch or b"labels" not in batch:
            raise ValueError(f"{where}: a CIFAR-10 batch is a dict with b'data' and b'labels', "
                             f"found keys {sorted(batch)}")
        x, y = np.asarray(batch[b"data"]), np.asarray(batch[b"labels"])
        if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3072:
            raise ValueError(f"{where}: data must be (n, 3072) uint8, got {x.dtype} {x.shape}")
        if y.ndim != 1 or len(y) != len(x):
            raise ValueError(f"{where} holds {len(x)} images but {y.size} labels: they must match")
        if len(y) and (y.dtype.kind not in "iu" or y.min() < 0 or y.max() > 9):
            raise ValueError(f"{where}: labels must be integers in 0..9")
        xs.append(x.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        ys.append(y.astype(np.int64))
    return np.ascontiguousarray(np.concatenate(xs)), np.concatenate(ys)


def _count(n, what) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"{what} must be a positive integer or None, got {n!r}")
    return int(n)


def _subset(x, y, n, seed, what):
    """A stratified subset of n points (all of them when n is None or len(y))."""
    from sklearn.model_selection import train_test_split

    if n is None or _count(n, what) == len(y):
        return x, y
    if n > len(y):
        raise ValueError(f"{what}={n} but only {len(y)} points are available")
    try:
        x, _, y, _ = train_test_split(x, y, train_size=n, stratify=y, random_state=seed)
    except ValueError as err:
        raise ValueError(f"no stratified subset of {n} of {len(y)} points: {err}") from None
    return x, y
