"""The standard datasets by name, from a local folder (downloaded only when asked).

MNIST and Fashion-MNIST (IDX files, ``infnet.data.idx``), CIFAR-10 (python batches,
``infnet.data.cifar``), scikit-learn's digits, a folder holding an IDX pair and the paper's
Dirichlet sets (``infnet.data.dirichlet``), split into train and test by ``load_dataset``.
Checksums, mirrors and downloads are in ``infnet.data.downloads``.

Layout of a data folder (``root``, else the environment variable ``INFNET_DATA``)::

    root/mnist/          train-images-idx3-ubyte.gz  train-labels-idx1-ubyte.gz
                         t10k-images-idx3-ubyte.gz   t10k-labels-idx1-ubyte.gz   (or gunzipped)
    root/fashion-mnist/  the same four names
    root/cifar-10/       cifar-10-batches-py/ (extracted) or cifar-10-python.tar.gz

The files may also lie directly in ``root``. Loaders return (images uint8, labels int64), parsed
and checked in full before anything is returned.

(``read_idx``, ``load_idx_folder``, ``load_cifar10``, ``ENV_ROOT``, ``OFFICIAL_MD5`` and
``MIRRORS`` are importable from here as well as from the modules that define them.)
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .cifar import load_cifar10
from .downloads import ENV_ROOT, MIRRORS, OFFICIAL_MD5, _check_md5, _fetch, _folders, _split
from .idx import _idx_pair, load_idx_folder, read_idx

__all__ = ["DATASETS", "ENV_ROOT", "MIRRORS", "OFFICIAL_MD5", "load_cifar10", "load_dataset",
           "load_fashion_mnist", "load_idx_folder", "load_mnist", "read_idx"]

DATASETS = ("digits", "mnist", "fashion-mnist", "cifar10", "dirichlet2", "dirichlet3")
_SPLIT_SIZES = {"train": 60000, "test": 10000}  # of the official MNIST and Fashion-MNIST files


def load_mnist(root=None, split: str = "train", *, download: bool = False, verify: bool = True):
    """Load MNIST's "train" (60000) or "test" (10000) split from a local folder.

    The files are the four official IDX files (gzipped as published, or gunzipped) in
    ``root/mnist/`` or ``root`` (root defaults to ``$INFNET_DATA``; see the module), parsed and
    checked in full before anything is returned.

    Parameters
    ----------
    root : str or os.PathLike, optional
        The data folder (the files lie in ``root/mnist/`` or directly in ``root``); None: the
        environment variable ``INFNET_DATA``.
    split : {"train", "test"}, default "train"
        The official split: "train" (60000 images) or "test" (10000).
    download : bool, default False
        Fetch missing files from the official mirrors (into ``root/mnist/``), each checked
        against its MD5 before it is kept.
    verify : bool, default True
        Check the official files' MD5 (gzipped files) or size (gunzipped files); pass False
        for files you made yourself.

    Returns
    -------
    images : numpy.ndarray
        (n, 28, 28) uint8.
    labels : numpy.ndarray
        (n,) int64.

    Raises
    ------
    ValueError
        ``split`` is neither "train" nor "test"; a file fails its MD5 or size check (with
        ``verify``), is a broken gzip stream, or is not a valid IDX file of the expected
        type; the images and labels differ in number.
    FileNotFoundError
        No ``root`` and no ``INFNET_DATA``, or the files are not in the folder (and were not
        downloaded); the message says what to place where.

    Examples
    --------
    A folder of files made by hand (the official ones have 60000 and 10000 images):

    >>> def idx(a):  # an IDX file's bytes: magic 00 00 08 (uint8) ndim, big-endian shape, values
    ...     return bytes([0, 0, 8, a.ndim]) + np.array(a.shape, ">u4").tobytes() + a.tobytes()
    >>> import os
    >>> os.makedirs("data/mnist")
    >>> with open("data/mnist/train-images-idx3-ubyte", "wb") as f:
    ...     _ = f.write(idx(np.zeros((6, 28, 28), np.uint8)))
    >>> with open("data/mnist/train-labels-idx1-ubyte", "wb") as f:
    ...     _ = f.write(idx(np.arange(6, dtype=np.uint8)))
    >>> x, y = infnet.data.load_mnist("data", "train", verify=False)
    >>> x.shape, x.dtype.name, y.tolist()
    ((6, 28, 28), 'uint8', [0, 1, 2, 3, 4, 5])

    A folder without the files says what to place where:

    >>> infnet.data.load_mnist("nowhere", "test")
    Traceback (most recent call last):
        ...
    FileNotFoundError: mnist (test) not found: searched .../nowhere/mnist and .../nowhere; place ...
    """
    return _load_idx_dataset("mnist", root, split, download, verify)


def load_fashion_mnist(root=None, split: str = "train", *, download: bool = False, verify: bool = True):
    """Load Fashion-MNIST's "train" or "test" split, as ``load_mnist``.

    Fashion-MNIST (Xiao, Rasul & Vollgraf 2017) has MNIST's format and file names; its files
    lie in ``root/fashion-mnist/`` or ``root``.

    Parameters
    ----------
    root, split, download, verify
        As for ``load_mnist``, with the folder ``fashion-mnist/`` in place of ``mnist/``.

    Returns
    -------
    images, labels : numpy.ndarray
        (n, 28, 28) uint8 and (n,) int64, as for ``load_mnist``.

    Raises
    ------
    ValueError, FileNotFoundError
        As for ``load_mnist``.

    Examples
    --------
    A folder without the files says what to place where:

    >>> infnet.data.load_fashion_mnist("nowhere", "test")
    Traceback (most recent call last):
        ...
    FileNotFoundError: fashion-mnist (test) not found: searched .../nowhere/fashion-mnist and ...
    """
    return _load_idx_dataset("fashion-mnist", root, split, download, verify)

def load_dataset(name, root=None, *, n_train=None, n_test=None, seed: int = 0, download: bool = False,
                 verify: bool = True):
    """Load a data set by name (``DATASETS``) or IDX folder, split into train and test.

    Parameters
    ----------
    name : str or os.PathLike
        "digits": scikit-learn's 1797 8x8 digits (n, 64) float64, split 50/50 stratified with
        ``seed``; "mnist", "fashion-mnist", "cifar10": the official splits (``root`` as in
        ``load_mnist``); a folder holding an IDX pair: split 50/50 stratified with ``seed``;
        "dirichlet2", "dirichlet3": ``dirichlet_sphere`` with n_train + n_test points (500 +
        500 by default), the first n_train for training. Case and "_" / "-" do not matter
        ("cifar-10", "fashion_mnist"); a name wins over a folder of that name ("./mnist").
    root : str or os.PathLike, optional
        The data folder of the official sets, as in ``load_mnist``.
    n_train, n_test : int, optional
        Stratified subsets of that many training and test points (drawn with ``seed``); None:
        all of them (the Dirichlet sets: 500 each).
    seed : int, default 0
        Seed of the 50/50 splits, the subsets and the Dirichlet draws.
    download : bool, default False
        As in ``load_mnist``.
    verify : bool, default True
        As in ``load_mnist``.

    Returns
    -------
    x_train, y_train, x_test, y_test : numpy.ndarray
        The inputs (as the set stores them: uint8 images, float64 digits or points) and the
        integer labels (int64; the Dirichlet sets' +1 / -1 in numpy's default integer) of
        each split.

    Raises
    ------
    ValueError
        An unknown name that is not a folder; n_train or n_test not a positive integer, or
        more than the points available, or too few for a stratified subset; the errors of
        the loaders (``load_mnist``, ``load_cifar10``, ``load_idx_folder``).
    FileNotFoundError
        The files of an official set are not found (``load_mnist``).

    Examples
    --------
    >>> x_train, y_train, x_test, y_test = infnet.data.load_dataset("dirichlet2", n_train=6,
    ...                                                             n_test=4)
    >>> x_train.shape, x_test.shape, sorted(set(y_train.tolist()))
    ((6, 2), (4, 2), [-1, 1])
    >>> x_train, y_train, x_test, y_test = infnet.data.load_dataset("digits", n_train=100)
    >>> x_train.shape, x_test.shape, y_train.dtype.name
    ((100, 64), (899, 64), 'int64')
    >>> infnet.data.load_dataset("imagenet")
    Traceback (most recent call last):
        ...
    ValueError: unknown data set 'imagenet': use one of digits, mnist, fashion-mnist, cifar10, ...
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    key = os.fspath(name).lower().replace("_", "-")
    key = {"cifar-10": "cifar10", "fashionmnist": "fashion-mnist"}.get(key, key)
    loaders = {"mnist": load_mnist, "fashion-mnist": load_fashion_mnist, "cifar10": load_cifar10}
    if key in ("dirichlet2", "dirichlet3"):
        from .dirichlet import dirichlet_sphere

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
