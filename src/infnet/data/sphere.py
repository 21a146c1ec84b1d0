"""Data on the unit sphere: digits, splits and the checks of user arrays for the classifiers.

- ``digits_sphere``: scikit-learn's embedded digits, rows scaled to unit norm; ``train_test``:
  a stratified split.
- ``on_sphere``, ``check_labels``: validation of user arrays for the classifiers.

The paper's Dirichlet data on the sphere are in ``infnet.data.dirichlet`` (``DirichletData``,
``dirichlet_setting``, ``dirichlet_sphere``, ``PAPER_ALPHAS``), importable from here as well.
"""

from __future__ import annotations

import warnings

import numpy as np

from .dirichlet import PAPER_ALPHAS, DirichletData, dirichlet_setting, dirichlet_sphere

__all__ = ["UNIT_NORM_RTOL", "digits_sphere", "train_test", "on_sphere", "check_labels",
           "PAPER_ALPHAS", "DirichletData", "dirichlet_setting", "dirichlet_sphere"]

#: relative tolerance on |x| = 1 below which a row counts as on the sphere
UNIT_NORM_RTOL = 1e-10


def digits_sphere(n: int | None = None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's embedded digits (1797 x 64), each row divided by its L2 norm.

    Parameters
    ----------
    n : int, optional
        A stratified subset of n points (random_state=seed); None (or n >= 1797): all of them.
    seed : int, default 0
        Seed of the subset.

    Returns
    -------
    x : numpy.ndarray
        (n, 64) float64 with unit rows.
    y : numpy.ndarray
        (n,) int64 digits 0..9.

    Raises
    ------
    ValueError
        n too small for a stratified subset (fewer points than classes), as
        ``sklearn.model_selection.train_test_split`` says.

    Examples
    --------
    >>> x, y = infnet.data.digits_sphere(100)
    >>> x.shape, np.bincount(y).tolist()
    ((100, 64), [10, 10, 10, 10, 10, 10, 10, 10, 10, 10])
    >>> bool(np.allclose(np.linalg.norm(x, axis=1), 1.0))
    True
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    if n is not None and n < len(y):
        x, _, y, _ = train_test_split(x, y, train_size=n, stratify=y, random_state=seed)
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True), np.asarray(y, dtype=np.int64)


def train_test(x, y, test_size: float = 0.5, seed: int = 0):
    """Stratified split: (x_train, x_test, y_train, y_test), as sklearn's train_test_split.

    Parameters
    ----------
    x : array_like
        (n, ...) inputs.
    y : array_like
        (n,) class labels (the strata).
    test_size : float, default 0.5
        The fraction of points in the test set.
    seed : int, default 0
        The ``random_state`` of the split.

    Returns
    -------
    x_train, x_test, y_train, y_test : numpy.ndarray
        The two sets, each with the classes in the proportions of y.

    Raises
    ------
    ValueError
        A class with a single member, or a test set smaller than the number of classes (as
        ``train_test_split`` says).

    Examples
    --------
    >>> x, y = infnet.data.digits_sphere(100)
    >>> x_train, x_test, y_train, y_test = infnet.data.train_test(x, y, test_size=0.3)
    >>> x_train.shape, x_test.shape, np.bincount(y_test).tolist()
    ((70, 64), (30, 64), [3, 3, 3, 3, 3, 3, 3, 3, 3, 3])
    """
    from sklearn.model_selection import train_test_split

    return train_test_split(x, y, test_size=test_size, stratify=y, random_state=seed)


def on_sphere(x, *, name: str = "x", normalize: bool = True) -> np.ndarray:
    """Check x and return it as a float64 (n, d) array of unit rows.

    Rejects empty arrays, NaN/inf and zero rows (no direction). Rows whose norm differs from 1
    by more than ``UNIT_NORM_RTOL`` (or 100 rounding units of a float32/float16 input) are
    divided by their norms with a UserWarning: the classifiers of the infinite-depth theory are
    defined on the sphere, and the direction is what a user with unnormalized data means;
    ``normalize=False`` makes this an error. Rows within the tolerance are divided by their
    norms silently, so that every row has norm 1 to float64 rounding (the kernels of
    ``infnet.fc`` take their fast path only for inputs of one norm).

    Parameters
    ----------
    x : array_like or torch.Tensor
        (n, d) numeric array (a tensor is detached and copied to the CPU).
    name : str, default "x"
        What x is, as messages name it.
    normalize : bool, default True
        Divide rows off the unit sphere by their norms (with a warning); False: an error.

    Returns
    -------
    numpy.ndarray
        (n, d) float64, C-contiguous, every row of norm 1.

    Raises
    ------
    ValueError
        x not numeric or not 2-D, empty, a row with NaN or inf, a zero row, or (with
        ``normalize=False``) rows off the unit sphere; the message says what is wrong.

    Warns
    -----
    UserWarning
        Rows off the unit sphere were divided by their norms.

    Examples
    --------
    >>> infnet.data.on_sphere(np.array([[0.6, 0.8], [1.0, 0.0]])).tolist()
    [[0.6, 0.8], [1.0, 0.0]]
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     x = infnet.data.on_sphere(np.array([[3.0, 4.0], [1.0, 0.0]]))
    >>> x.tolist(), str(caught[0].message)
    ([[0.6, 0.8], [1.0, 0.0]], '1 of 2 rows of x do not have unit norm (norms from 1 to 5); ...')
    >>> infnet.data.on_sphere(np.array([[3.0, 4.0]]), normalize=False)
    Traceback (most recent call last):
        ...
    ValueError: 1 of 1 rows of x do not have unit norm (norms from 5 to 5); divide each row ...
    """
    if hasattr(x, "detach"):  # torch tensor
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    rtol = UNIT_NORM_RTOL
    if x.dtype.kind == "f":
        rtol = max(rtol, 100 * float(np.finfo(x.dtype).eps))
    try:
        x = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a numeric array of shape (n, d): {err}") from None
    if x.ndim != 2:
        hint = " (one point: x.reshape(1, -1))" if x.ndim == 1 else ""
        raise ValueError(f"{name} must have shape (n, d), got shape {x.shape}{hint}")
    if x.size == 0:
        raise ValueError(f"{name} is empty: shape {x.shape}")
    bad = ~np.isfinite(x).all(axis=1)
    if bad.any():
        raise ValueError(f"{name} row {int(np.argmax(bad))} contains NaN or inf "
                         f"({int(bad.sum())} such rows); remove or impute them first")
    scale = np.abs(x).max(axis=1)  # scaled norms: no overflow for huge entries
    zero = scale == 0
    if zero.any():
        raise ValueError(f"{name} row {int(np.argmax(zero))} is the zero vector, which has no "
                         f"direction on the sphere ({int(zero.sum())} such rows); remove them")
    unit = x / scale[:, None]  # (exact, for subnormal rows too)
    scaled = np.linalg.norm(unit, axis=1)
    norms = scale * scaled
    off = np.abs(norms - 1.0) > rtol
    if off.any():
        msg = (f"{int(off.sum())} of {len(x)} rows of {name} do not have unit norm (norms "
               f"from {norms.min():.6g} to {norms.max():.6g})")
        if not normalize:
            raise ValueError(msg + "; divide each row by its norm: x / |x|")
        warnings.warn(msg + "; each row was divided by its norm (pass x / |x| to silence "
                      "this)", UserWarning, stacklevel=2)
    # rows of tiny entries are divided in their scaled form (their norm would lose bits),
    # the others by their norms (a row of norm 1 comes back as it is)
    tiny = scale < 1e-290
    out = x / np.where(tiny, 1.0, norms)[:, None]
    out[tiny] = unit[tiny] / scaled[tiny, None]
    return np.ascontiguousarray(out)


def check_labels(y, n_samples: int | None = None) -> np.ndarray:
    """Check class labels: y as a 1-D array of at least two samples and two classes.

    Parameters
    ----------
    y : array_like
        (n,) class labels; an (n, 1) column is flattened.
    n_samples : int, optional
        The number of training points: y must have that length.

    Returns
    -------
    numpy.ndarray
        y as a 1-D array.

    Raises
    ------
    ValueError
        y not 1-D (or one column), of another length than n_samples, fewer than 2 labels,
        NaN or inf labels, targets that are not class labels (continuous values), or a
        single class.

    Examples
    --------
    >>> infnet.data.check_labels([[0], [1], [1]]).tolist()
    [0, 1, 1]
    >>> infnet.data.check_labels([0, 1], n_samples=3)
    Traceback (most recent call last):
        ...
    ValueError: X has 3 rows but y has 2 labels: they must match
    """
    from sklearn.utils.multiclass import check_classification_targets

    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y.ravel()
    if y.ndim != 1:
        raise ValueError(f"y must be a 1-D array of labels, got shape {y.shape}")
    if n_samples is not None and len(y) != n_samples:
        raise ValueError(f"X has {n_samples} rows but y has {len(y)} labels: they must match")
    if len(y) < 2:
        raise ValueError(f"need at least 2 training points, got {len(y)}")
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        raise ValueError("y contains NaN or inf labels")
    check_classification_targets(y)
    classes = np.unique(y)
    if len(classes) < 2:
        raise ValueError(f"a single class: every label is {classes[0]!r}; a classifier needs "
                         "at least two classes")
    return y
