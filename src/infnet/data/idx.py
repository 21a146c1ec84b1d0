"""The IDX format of MNIST and Fashion-MNIST: reading one file, or a folder's images/labels pair.

The format: LeCun, Cortes & Burges, "The MNIST database of handwritten digits",
http://yann.lecun.com/exdb/mnist/ ("file formats"): a magic number 00 00 TT DD (TT the type:
08 uint8, 09 int8, 0B int16, 0C int32, 0D float32, 0E float64; DD the number of dimensions),
one big-endian int32 per dimension, then the values in C order, big-endian. Images are 2051
(uint8, 3 dims), labels 2049 (uint8, 1 dim). Fashion-MNIST (Xiao, Rasul & Vollgraf 2017,
github.com/zalandoresearch/fashion-mnist) uses the same format and file names. Files may be
gzipped (as published) or not; ``_read_bytes`` gunzips any gzip stream, whatever its name.
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

import numpy as np

_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_IDX_CODES = {v[1:]: k for k, v in _IDX_TYPES.items()}


def read_idx(path) -> np.ndarray:
    """Read the array stored in an IDX file (gzipped or not), in native byte order.

    The format (module docstring): a magic number 00 00 TT DD (TT the type: 08 uint8, 09 int8,
    0B int16, 0C int32, 0D float32, 0E float64; DD the number of dimensions), one big-endian
    int32 per dimension, then the values in C order, big-endian.

    Parameters
    ----------
    path : str or os.PathLike
        The IDX file; a gzip stream is gunzipped whatever its name.

    Returns
    -------
    numpy.ndarray
        The array, of the shape and dtype the header gives.

    Raises
    ------
    ValueError
        The header is not an IDX header, the file is not exactly as long as its header says,
        or it is a broken gzip stream; the message names the file.
    OSError
        The file cannot be read (``FileNotFoundError`` if it does not exist).

    Examples
    --------
    >>> def idx(a):  # an IDX file's bytes: magic 00 00 08 (uint8) ndim, big-endian shape, values
    ...     return bytes([0, 0, 8, a.ndim]) + np.array(a.shape, ">u4").tobytes() + a.tobytes()
    >>> with open("images-idx3-ubyte", "wb") as f:
    ...     _ = f.write(idx(np.arange(12, dtype=np.uint8).reshape(3, 2, 2)))
    >>> a = infnet.data.read_idx("images-idx3-ubyte")
    >>> a.shape, a.dtype.name, int(a[2, 1, 1])
    ((3, 2, 2), 'uint8', 11)
    >>> with open("broken-idx3-ubyte", "wb") as f:
    ...     _ = f.write(idx(np.zeros((3, 2, 2), np.uint8))[:-1])
    >>> infnet.data.read_idx("broken-idx3-ubyte")
    Traceback (most recent call last):
        ...
    ValueError: broken-idx3-ubyte is truncated: its header announces 28 bytes (shape (3, 2, 2), ...
    """
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
    """Read (images, labels) from a folder holding one IDX pair of any names.

    Parameters
    ----------
    path : str or os.PathLike
        A folder holding one file matching ``*images*idx3*`` (uint8, 3 dims) and one matching
        ``*labels*idx1*`` (uint8, 1 dim), gzipped or not (e.g. a subset of MNIST).

    Returns
    -------
    images : numpy.ndarray
        (n, h, w) uint8.
    labels : numpy.ndarray
        (n,) int64.

    Raises
    ------
    FileNotFoundError
        ``path`` is not a folder, or does not hold both files.
    ValueError
        It holds several files of a kind, a file is not a valid IDX file of the expected type
        and dimensions, or the images and labels differ in number.

    Examples
    --------
    >>> def idx(a):  # an IDX file's bytes: magic 00 00 08 (uint8) ndim, big-endian shape, values
    ...     return bytes([0, 0, 8, a.ndim]) + np.array(a.shape, ">u4").tobytes() + a.tobytes()
    >>> import os
    >>> os.mkdir("subset")
    >>> with open("subset/my-images-idx3-ubyte", "wb") as f:
    ...     _ = f.write(idx(np.zeros((5, 4, 4), np.uint8)))
    >>> with open("subset/my-labels-idx1-ubyte", "wb") as f:
    ...     _ = f.write(idx(np.array([0, 1, 2, 1, 0], np.uint8)))
    >>> x, y = infnet.data.load_idx_folder("subset")
    >>> x.shape, x.dtype.name, y.tolist(), y.dtype.name
    ((5, 4, 4), 'uint8', [0, 1, 2, 1, 0], 'int64')
    """
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

