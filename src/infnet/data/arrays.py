"""Arrays and labels from the user's files (.npy, .npz, .csv, .txt), for the command line.

Every failure is a ``DataFileError`` (a ValueError) that names the file and says what is wrong
with it: missing, a folder, truncated or not the format its name says, object arrays (never
unpickled), non-numeric or ragged text, no rows. Labels mean the same in every format: integer
values (an integer dtype in .npy/.npz, integer literals such as ``3`` in text files, not ``3.0``)
are class labels, anything else is a target array.
"""

from __future__ import annotations

import io
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np

SUFFIXES = (".npy", ".npz", ".csv", ".txt")
_NPY_MAGIC, _ZIP_MAGIC = b"\x93NUMPY", b"PK\x03\x04"


class DataFileError(ValueError):
    """A data or labels file that cannot be read as an array."""


def read_array(spec: str, *, key: str = "x", what: str = "data") -> np.ndarray:
    """Read the array in a .npy, .npz, .csv or .txt file (or scikit-learn's digits).

    Parameters
    ----------
    spec : str
        The file's path, or ``"digits"`` for scikit-learn's embedded digits ((1797, 64)
        float64).
    key : str, default "x"
        The array of a .npz file to read; a .npz holding one array gives that one whatever
        its name.
    what : str, default "data"
        The file's role, as messages name it ("data", "labels").

    Returns
    -------
    numpy.ndarray
        The array as stored (.npy, .npz: numeric, at least one row); text files give float64,
        one row per line (comma-separated for .csv, whitespace otherwise), at least 2-D.

    Raises
    ------
    DataFileError
        The file is missing, a folder, of an unknown suffix, truncated or not the format its
        name says, holds Python objects (never unpickled), non-numeric or ragged text, or no
        rows; a .npz of several arrays lacks ``key``. The message names the file.

    Examples
    --------
    >>> np.save("x.npy", np.arange(6.0).reshape(3, 2))
    >>> infnet.data.read_array("x.npy").shape
    (3, 2)
    >>> np.savetxt("x.csv", [[1.0, 2.0, 3.0]], delimiter=",")
    >>> infnet.data.read_array("x.csv").tolist()
    [[1.0, 2.0, 3.0]]
    >>> infnet.data.read_array("digits").shape
    (1797, 64)
    >>> infnet.data.read_array("missing.npy")
    Traceback (most recent call last):
        ...
    infnet.data.arrays.DataFileError: no data file 'missing.npy' (give a .npy, .npz, .csv or .txt file ...)
    """
    if spec == "digits":
        from sklearn.datasets import load_digits

        return load_digits().data.astype(np.float64)
    path = _existing(spec, what)
    if path.suffix == ".npy":
        return _npy(path)
    if path.suffix == ".npz":
        return _npz(path, key, what)
    return _text(path, np.float64)


def read_labels(spec: str, *, key: str = "y") -> np.ndarray:
    """Read labels or regression targets from a file (as ``read_array``).

    One column of integer values (an integer dtype in .npy/.npz, integer literals such as
    ``3`` in text files, not ``3.0``) is a 1-D int64 array of labels; any other values are
    float64 targets (one column as a 1-D array, in every file type). Booleans count as
    integers; an integer matrix (one-hot already) is returned as float64.

    Parameters
    ----------
    spec : str
        The path of a .npy, .npz, .csv or .txt file.
    key : str, default "y"
        The array of a .npz file to read (its only array if it holds one).

    Returns
    -------
    numpy.ndarray
        (n,) int64 labels, or (n,) or (n, m) float64 targets.

    Raises
    ------
    DataFileError
        The file cannot be read (see ``read_array``), or holds an empty, non-numeric or more
        than 2-D array.

    Examples
    --------
    >>> np.savetxt("labels.txt", [0, 1, 1, 2], fmt="%d")
    >>> y = infnet.data.read_labels("labels.txt")
    >>> y.tolist(), y.dtype.name
    ([0, 1, 1, 2], 'int64')
    >>> np.save("targets.npy", np.array([[0.5], [1.5]]))
    >>> t = infnet.data.read_labels("targets.npy")
    >>> t.tolist(), t.dtype.name
    ([0.5, 1.5], 'float64')
    """
    path = _existing(spec, "labels")
    if path.suffix in (".csv", ".txt"):
        try:
            y = _text(path, np.int64, quiet=True)
        except DataFileError:  # not all integer literals: targets
            y = _text(path, np.float64)
    else:
        y = read_array(spec, key=key, what="labels")
    if y.dtype.kind == "b":
        y = y.astype(np.int64)
    if y.ndim > 2 or y.size == 0 or y.dtype.kind not in "iuf":
        raise DataFileError(f"labels file {path} holds a {y.dtype} array of shape {y.shape}: give "
                            "one integer label, or one row of targets, per training point")
    if y.ndim == 2 and y.shape[1] == 1:  # one column: a text file's one value per line
        y = y.reshape(-1)
    if y.dtype.kind in "iu":
        return y.astype(np.int64 if y.ndim == 1 else np.float64)  # (a matrix: one-hot already)
    return y.astype(np.float64)


def unit_rows(x: np.ndarray, name: str = "data") -> np.ndarray:
    """Scale the rows of x to unit norm.

    Parameters
    ----------
    x : numpy.ndarray
        (n, ...) array; each sample (row, or sub-array) is divided by its L2 norm.
    name : str, default "data"
        What x is, as the error message names it.

    Returns
    -------
    numpy.ndarray
        x with every sample of norm 1.

    Raises
    ------
    DataFileError
        A row is zero: it has no direction, so it cannot be scaled to unit norm.

    Examples
    --------
    >>> infnet.data.unit_rows(np.array([[3.0, 4.0], [0.0, 2.0]])).tolist()
    [[0.6, 0.8], [0.0, 1.0]]
    >>> infnet.data.unit_rows(np.array([[1.0, 0.0], [0.0, 0.0]]))
    Traceback (most recent call last):
        ...
    infnet.data.arrays.DataFileError: row 1 of data is a zero vector: it cannot be scaled to unit norm
    """
    norms = np.linalg.norm(x.reshape(len(x), -1), axis=1)
    if not (norms > 0).all():
        raise DataFileError(f"row {int(np.argmin(norms))} of {name} is a zero vector: it cannot "
                            "be scaled to unit norm")
    return x / norms.reshape((-1,) + (1,) * (x.ndim - 1))


def _existing(spec: str, what: str) -> Path:
    path = Path(spec)
    if not path.exists():
        extra = " or 'digits' for scikit-learn's embedded digits" if what == "data" else ""
        raise DataFileError(f"no {what} file {spec!r} (give a .npy, .npz, .csv or .txt file{extra})")
    if path.is_dir():
        raise DataFileError(f"{what} {spec!r} is a folder: give a .npy, .npz, .csv or .txt file")
    if path.suffix not in SUFFIXES:
        raise DataFileError(f"{what} file {path}: unknown format {path.suffix or '(no suffix)'!r}; "
                            "give a .npy, .npz, .csv or .txt file")
    return path


def _head(path: Path, n: int) -> bytes:
    with open(path, "rb") as f:
        return f.read(n)


def _npy(path: Path) -> np.ndarray:
    if _head(path, 6) != _NPY_MAGIC:
        raise DataFileError(f"{path} is not a .npy file (it does not start with numpy's magic "
                            "bytes): write it with numpy.save")
    try:
        return _numeric(np.load(path, allow_pickle=False), path)
    except DataFileError:
        raise
    except ValueError as err:
        if "allow_pickle" in str(err):
            raise DataFileError(f"{path} holds Python objects (pickled), which infnet does not "
                                "load: save a numeric array") from None
        raise DataFileError(f"{path} is truncated or corrupt ({_first_line(err)}); write it "
                            "again") from None
    except (EOFError, OSError) as err:
        raise DataFileError(f"{path} is truncated or corrupt ({_first_line(err)}); write it "
                            "again") from None


def read_npz(spec, names) -> dict[str, np.ndarray]:
    """Read the named arrays of a .npz file.

    All of them are read and checked (numeric, at least one row) before anything is returned.

    Parameters
    ----------
    spec : str or os.PathLike
        The path of a .npz file.
    names : iterable of str
        The arrays to read.

    Returns
    -------
    dict of str to numpy.ndarray
        The arrays, by name.

    Raises
    ------
    DataFileError
        The file is missing, a folder, not a .npz (zip) archive, truncated or corrupt, holds
        Python objects, lacks some of ``names``, or one of them is not numeric or has no rows;
        the message names the file and what is missing or broken.

    Examples
    --------
    >>> np.savez("train.npz", x=np.zeros((4, 3)), y=np.arange(4))
    >>> arrays = infnet.data.read_npz("train.npz", ["x", "y"])
    >>> {name: a.shape for name, a in arrays.items()}
    {'x': (4, 3), 'y': (4,)}
    >>> infnet.data.read_npz("train.npz", ["x", "w"])
    Traceback (most recent call last):
        ...
    infnet.data.arrays.DataFileError: train.npz lacks arrays ['w']: it needs x, w
    """
    path = _existing(str(spec), "data")
    return _npz(path, list(names), "data")


def _npz(path: Path, key, what: str):
    """One array (``key`` a name: that one, else the only one) or a dict of them (a list)."""
    if _head(path, 4) != _ZIP_MAGIC:
        raise DataFileError(f"{path} is not a .npz file (not a zip archive): write it with "
                            "numpy.savez")
    try:
        with np.load(path, allow_pickle=False) as z:
            names = list(z.files)
            if isinstance(key, list):
                missing = [k for k in key if k not in names]
                if missing:
                    raise DataFileError(f"{path} lacks arrays {missing}: it needs "
                                        f"{', '.join(key)}")
                return {k: _numeric(z[k], path, k) for k in key}
            if key in names:
                name = key
            elif len(names) == 1:
                name = names[0]
            else:
                raise DataFileError(f"{what} file {path} holds the arrays {names or 'none'}: name "
                                    f"the one to use {key!r} (numpy.savez(file, {key}=...))")
            return _numeric(z[name], path, name)
    except DataFileError:
        raise
    except (ValueError, EOFError, OSError, KeyError, zipfile.BadZipFile, zlib.error) as err:
        if "allow_pickle" in str(err):
            raise DataFileError(f"{path} holds Python objects (pickled), which infnet does not "
                                "load: save numeric arrays") from None
        raise DataFileError(f"{path} is truncated or corrupt ({_first_line(err)}); write it "
                            "again") from None


def _text(path: Path, dtype, quiet: bool = False) -> np.ndarray:
    delimiter = "," if path.suffix == ".csv" else None
    try:
        raw = path.read_bytes()
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DataFileError(f"{path} is not a text file (not UTF-8): give numbers separated by "
                            f"{'commas' if delimiter else 'spaces'}, one row per line") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # ("input contained no data")
            a = np.loadtxt(io.StringIO(text), delimiter=delimiter, ndmin=2, dtype=dtype)
    except ValueError as err:
        if quiet:
            raise DataFileError(str(err)) from None
        why = _first_line(err).split(";")[0].rstrip(".")  # (not numpy's advice on usecols)
        raise DataFileError(f"cannot read {path}: {why}; give numbers separated by "
                            f"{'commas' if delimiter else 'spaces'}, one row per line") from None
    if a.shape[0] == 0:
        raise DataFileError(f"{path} holds no rows of numbers")
    return a


def _numeric(a: np.ndarray, path: Path, name: str | None = None) -> np.ndarray:
    where = f"{path}" + (f" (array {name!r})" if name else "")
    if a.dtype.kind not in "biuf":
        raise DataFileError(f"{where} holds {a.dtype} values, not numbers")
    if a.ndim == 0 or a.shape[0] == 0:
        raise DataFileError(f"{where} holds no rows (shape {a.shape})")
    return a


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__
