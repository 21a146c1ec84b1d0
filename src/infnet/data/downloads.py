"""Where the official dataset files are: the data folder, their checksums, their mirrors.

``OFFICIAL_MD5`` (the MD5 of every official MNIST, Fashion-MNIST and CIFAR-10 file) and
``MIRRORS`` (the official download locations); the folders searched (``root/<set>/``, then
``root``; ``root`` from the argument, else the environment variable ``INFNET_DATA``, the layout
``infnet.data.files`` describes); fetching the missing files, each checked against its MD5 in a
temporary file before it is put in place; and the MD5 check of the files found.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import urllib.request
from pathlib import Path

ENV_ROOT = "INFNET_DATA"
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
    from ..core.files import atomic_path

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

