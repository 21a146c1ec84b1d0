"""CIFAR-10's "python version": loading its batches from a folder or the tar.gz archive.

Krizhevsky, "Learning Multiple Layers of Features from Tiny Images" (2009),
https://www.cs.toronto.edu/~kriz/cifar.html: cifar-10-python.tar.gz holds the folder
cifar-10-batches-py with data_batch_1..5 and test_batch, each a pickled dict whose b"data" is a
(10000, 3072) uint8 array (red, green, blue 32x32 planes, row-major) and b"labels" 10000 ints.
The batches are unpickled by a restricted unpickler that knows only numpy's arrays and builtin
containers (a pickle can run any code it names).
"""

from __future__ import annotations

import codecs
import io
import pickle
import tarfile
import zlib

import numpy as np

from .downloads import CIFAR_ARCHIVE, CIFAR_FOLDER, _check_md5, _fetch, _folders, _split
from .idx import _read_bytes


def load_cifar10(root=None, split: str = "train", *, download: bool = False, verify: bool = True):
    """Load CIFAR-10's "train" or "test" split from a local folder.

    The "train" split is data_batch_1..5 (50000 images), "test" is test_batch (10000), from
    ``root/cifar-10/`` or ``root``: the extracted folder cifar-10-batches-py (or its files),
    else the archive cifar-10-python.tar.gz, read without extracting. The batches are
    pickles: only numpy arrays, bytes, lists and dicts are unpickled.

    Parameters
    ----------
    root : str or os.PathLike, optional
        The data folder; None: the environment variable ``INFNET_DATA``.
    split : {"train", "test"}, default "train"
        The official split.
    download : bool, default False
        Fetch the archive from the official mirror when neither the batches nor the archive
        are found (as ``load_mnist``).
    verify : bool, default True
        Check the official files' MD5 (as ``load_mnist``); pass False for files you made
        yourself.

    Returns
    -------
    images : numpy.ndarray
        (n, 32, 32, 3) uint8, in HWC order.
    labels : numpy.ndarray
        (n,) int64, in 0..9.

    Raises
    ------
    ValueError
        ``split`` is neither "train" nor "test"; a file fails its MD5 check (with ``verify``);
        the archive is not a readable tar.gz or not the CIFAR-10 python archive; a batch is
        not a CIFAR-10 batch (not a dict with b"data" (n, 3072) uint8 and as many b"labels"
        in 0..9, or a pickle that refers to anything else).
    FileNotFoundError
        No ``root`` and no ``INFNET_DATA``, or neither the batches nor the archive are found
        (and none was downloaded).

    Examples
    --------
    A test batch written by hand (the official one has 10000 images):

    >>> import os, pickle
    >>> os.makedirs("data/cifar-10")
    >>> batch = {b"data": np.zeros((4, 3072), np.uint8), b"labels": [3, 1, 4, 1]}
    >>> with open("data/cifar-10/test_batch", "wb") as f:
    ...     pickle.dump(batch, f)
    >>> x, y = infnet.data.load_cifar10("data", "test", verify=False)
    >>> x.shape, x.dtype.name, y.tolist()
    ((4, 32, 32, 3), 'uint8', [3, 1, 4, 1])
    >>> infnet.data.load_cifar10("nowhere", "test")
    Traceback (most recent call last):
        ...
    FileNotFoundError: CIFAR-10 (test) not found: searched .../nowhere/cifar-10 and .../nowhere; ...
    """
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

