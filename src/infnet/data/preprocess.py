"""Standard preprocessing of image data, as scikit-learn transformers.

Each transformer is fit on training data only (``fit`` learns, ``transform`` applies) and
composes in a ``sklearn.pipeline.Pipeline``: ``Flatten`` (n, ...) -> (n, d); ``Scale`` (uint8
-> [0, 1]); ``Center`` (minus the training mean); ``UnitNorm`` (rows onto the unit sphere, where
the kernels of infnet's normalized networks and classifiers live); ``ZCAWhitening``, regularized
as in Lee et al. 2020. All but ``Flatten`` (a reshape, which keeps the dtype) return float64.
``standard_preprocessing`` chains them.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_array, check_is_fitted, validate_data


def _matrix(estimator, X, reset: bool) -> np.ndarray:
    """X as a finite float64 (n, d) array; in transform (reset=False), d must be the d of fit."""
    X = validate_data(estimator, X, reset=reset, dtype=np.float64, allow_nd=True)
    if X.ndim > 2:
        raise ValueError(f"{type(estimator).__name__} takes (n, d) arrays, got shape {X.shape}; "
                         "flatten images first (Flatten)")
    return X


class Flatten(TransformerMixin, BaseEstimator):
    """Flatten each sample (an image (h, w) or (h, w, c)) into one row, in C order.

    (n, ...) -> (n, d), d the product of the sample shape; a reshape, which keeps the dtype.

    Attributes
    ----------
    sample_shape_ : tuple of int
        The shape of one training sample.
    n_features_in_ : int
        d, the number of values of one sample.

    Raises
    ------
    ValueError
        In ``transform``: samples of another shape than in ``fit``.
    sklearn.exceptions.NotFittedError
        ``transform`` before ``fit``.

    Examples
    --------
    >>> images = np.zeros((4, 3, 2), np.uint8)
    >>> x = infnet.data.Flatten().fit_transform(images)
    >>> x.shape, x.dtype.name
    ((4, 6), 'uint8')
    """

    def fit(self, X, y=None):
        self.sample_shape_ = check_array(X, allow_nd=True).shape[1:]
        self.n_features_in_ = int(np.prod(self.sample_shape_))
        return self

    def transform(self, X):
        check_is_fitted(self)
        X = check_array(X, allow_nd=True)  # numeric dtypes are kept
        if X.shape[1:] != self.sample_shape_:
            raise ValueError(f"X has {int(np.prod(X.shape[1:]))} features, but Flatten is expecting "
                             f"{self.n_features_in_} features as input (samples of shape "
                             f"{X.shape[1:]}, fitted on {self.sample_shape_})")
        return X.reshape(len(X), -1)


class Scale(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """Divide by ``max_value``: pixel values in [0, 255] (uint8) onto [0, 1] by default.

    x -> x / max_value, in float64.

    Parameters
    ----------
    max_value : float, default 255.0
        The largest value the data may take; finite and > 0.

    Raises
    ------
    ValueError
        In ``fit``: ``max_value`` not finite and > 0, negative training values, or training
        values above ``max_value``; (n, d) arrays only (``Flatten`` images first); in
        ``transform``: another number of features than in ``fit``.
    sklearn.exceptions.NotFittedError
        ``transform`` before ``fit``.

    Examples
    --------
    >>> x = np.array([[0, 51, 255]], np.uint8)
    >>> infnet.data.Scale().fit_transform(x).tolist()
    [[0.0, 0.2, 1.0]]
    >>> infnet.data.Scale(max_value=10.0).fit(x)
    Traceback (most recent call last):
        ...
    ValueError: Scale maps [0, 10] onto [0, 1], but the training values range from 0 to 255: set max_value
    """

    def __init__(self, max_value: float = 255.0):
        self.max_value = max_value

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.positive_only = True
        return tags

    def fit(self, X, y=None):
        X = _matrix(self, X, reset=True)
        if not (np.isfinite(self.max_value) and self.max_value > 0):
            raise ValueError(f"max_value must be finite and > 0, got {self.max_value!r}")
        if X.min() < 0:
            raise ValueError(f"Negative values in data passed to Scale (down to {X.min():g}): it maps "
                             f"pixel values in [0, {self.max_value:g}] onto [0, 1]")
        if X.max() > self.max_value:
            raise ValueError(f"Scale maps [0, {self.max_value:g}] onto [0, 1], but the training values "
                             f"range from {X.min():g} to {X.max():g}: set max_value")
        return self

    def transform(self, X):
        check_is_fitted(self, "n_features_in_")
        return _matrix(self, X, reset=False) / float(self.max_value)


class Center(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """Subtract the training feature mean: x -> x - mean_, in float64.

    Attributes
    ----------
    mean_ : numpy.ndarray
        (d,), the training feature mean.

    Raises
    ------
    ValueError
        (n, d) arrays only (``Flatten`` images first); in ``transform``: another number of
        features than in ``fit``.
    sklearn.exceptions.NotFittedError
        ``transform`` before ``fit``.

    Examples
    --------
    >>> center = infnet.data.Center().fit(np.array([[1.0, 2.0], [3.0, 6.0]]))
    >>> center.mean_.tolist()
    [2.0, 4.0]
    >>> center.transform(np.array([[2.0, 5.0]])).tolist()
    [[0.0, 1.0]]
    """

    def fit(self, X, y=None):
        self.mean_ = _matrix(self, X, reset=True).mean(axis=0)
        return self

    def transform(self, X):
        check_is_fitted(self)
        return _matrix(self, X, reset=False) - self.mean_


class UnitNorm(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """Scale each row onto the unit sphere: x -> x / |x|_2, in float64.

    No state but the feature count. A zero row is an error, as it has no direction (unlike
    ``sklearn.preprocessing.Normalizer``, which leaves it at zero).

    Raises
    ------
    ValueError
        In ``transform``: a zero row; (n, d) arrays only (``Flatten`` images first); another
        number of features than in ``fit``.
    sklearn.exceptions.NotFittedError
        ``transform`` before ``fit``.

    Examples
    --------
    >>> x = np.array([[3.0, 4.0], [0.0, -2.0]])
    >>> infnet.data.UnitNorm().fit_transform(x).tolist()
    [[0.6, 0.8], [0.0, -1.0]]
    >>> infnet.data.UnitNorm().fit_transform(np.zeros((2, 2)))
    Traceback (most recent call last):
        ...
    ValueError: row 0 is the zero vector (2 such rows), which has no direction: remove it, ...
    """

    def fit(self, X, y=None):
        _matrix(self, X, reset=True)
        return self

    def transform(self, X):
        check_is_fitted(self, "n_features_in_")
        X = _matrix(self, X, reset=False)
        norms = np.linalg.norm(X, axis=1)
        zero = norms == 0
        if zero.any():
            raise ValueError(f"row {int(np.argmax(zero))} is the zero vector ({int(zero.sum())} such "
                             "rows), which has no direction: remove it, or do not center first")
        return X / norms[:, None]


class ZCAWhitening(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """Regularized ZCA whitening: x -> (x - mean_) W.

    As in Lee et al. 2020, "Finite versus infinite neural networks: an empirical study",
    NeurIPS, arXiv 2007.15801, section on ZCA whitening.

    With the training covariance Sigma = X_c^T X_c / n = V diag(lambda) V^T of the centered
    features (d of them), W = V (diag(lambda) + eps tr(Sigma)/d I)^(-1/2) V^T with eps =
    ``regularization``. As in the paper, eps is relative to the mean eigenvalue tr(Sigma)/d, so
    it does not depend on the scale of the data (in the code released with that line of work,
    ``zca_reg`` with ``zca_reg_absolute_scale=False``: reg = zca_reg * trace(cov) / d). The
    whitened training covariance then has eigenvalues lambda / (lambda + eps tr(Sigma)/d): 1 on
    strong directions, shrunk on weak ones; eps = 0 is plain ZCA (the identity covariance), for
    a nonsingular Sigma only. Unlike that code, the features are centered by their training mean
    and the eigenvalues are not altered when n < d.

    Parameters
    ----------
    regularization : float, default 0.1
        eps, relative to the mean eigenvalue tr(Sigma)/d; a finite number >= 0 (0: plain ZCA).

    Attributes
    ----------
    mean_ : numpy.ndarray
        (d,), the training feature mean.
    whitening_ : numpy.ndarray
        W, (d, d).
    eigenvalues_ : numpy.ndarray
        lambda, the eigenvalues of Sigma (ascending).
    shift_ : float
        eps tr(Sigma)/d.

    Raises
    ------
    ValueError
        In ``fit``: ``regularization`` not a finite number >= 0, fewer than 2 samples, every
        feature constant, or a singular covariance with ``regularization`` = 0; (n, d) arrays
        only (``Flatten`` images first); in ``transform``: another number of features.
    sklearn.exceptions.NotFittedError
        ``transform`` before ``fit``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(200, 3)) * [1.0, 2.0, 5.0]
    >>> zca = infnet.data.ZCAWhitening(regularization=0.0).fit(x)
    >>> white = zca.transform(x)
    >>> bool(np.allclose(white.T @ white / len(x), np.eye(3)))
    True
    >>> zca = infnet.data.ZCAWhitening(regularization=0.1).fit(x)
    >>> round(float(zca.shift_), 6) == round(0.1 * float(zca.eigenvalues_.sum()) / 3, 6)
    True
    """

    def __init__(self, regularization: float = 0.1):
        self.regularization = regularization

    def fit(self, X, y=None):
        X = _matrix(self, X, reset=True)
        eps = self.regularization
        if isinstance(eps, bool) or not isinstance(eps, (int, float, np.number)) or not 0 <= eps < np.inf:
            raise ValueError(f"regularization must be a finite number >= 0, got {eps!r}")
        n, d = X.shape
        if n < 2:
            raise ValueError(f"ZCA whitening needs a covariance: n_samples = {n}, need at least 2")
        self.mean_ = X.mean(axis=0)
        centered = X - self.mean_
        lam, vecs = np.linalg.eigh(centered.T @ centered / n)
        lam = np.clip(lam, 0.0, None)
        if lam[-1] == 0:
            raise ValueError("every feature is constant on the training set: nothing to whiten")
        self.shift_ = float(eps) * lam.sum() / d
        if lam[0] + self.shift_ <= d * np.finfo(float).eps * lam[-1]:
            rank = int((lam > d * np.finfo(float).eps * lam[-1]).sum())
            raise ValueError(f"the training covariance is singular (rank {rank} < {d} features, from "
                             f"{n} samples): use regularization > 0")
        self.eigenvalues_ = lam
        self.whitening_ = (vecs / np.sqrt(lam + self.shift_)) @ vecs.T
        return self

    def transform(self, X):
        check_is_fitted(self)
        return (_matrix(self, X, reset=False) - self.mean_) @ self.whitening_


def standard_preprocessing(zca: float | None = None, center: bool = True, unit_norm: bool = True, *,
                           max_value: float | None = 255.0) -> Pipeline:
    """The standard preprocessing pipeline: Flatten, Scale, ZCA or Center, UnitNorm.

    Flatten -> Scale(max_value) -> ZCAWhitening(zca) if zca is not None, else Center if
    center -> UnitNorm if unit_norm. (ZCA centers by itself.) Fit it on the training set, then
    transform both sets.

    Parameters
    ----------
    zca : float, optional
        The ``regularization`` of a ``ZCAWhitening`` step; None: no whitening.
    center : bool, default True
        A ``Center`` step (when there is no ZCA step, which centers by itself).
    unit_norm : bool, default True
        A final ``UnitNorm`` step.
    max_value : float or None, default 255.0
        The ``Scale`` step's ``max_value``; None skips Scale, for data that are not pixel
        values.

    Returns
    -------
    sklearn.pipeline.Pipeline
        The steps, named "flatten", "scale", "zca" or "center", "unit_norm".

    Examples
    --------
    >>> pipe = infnet.data.standard_preprocessing(zca=0.1)
    >>> [name for name, _ in pipe.steps]
    ['flatten', 'scale', 'zca', 'unit_norm']
    >>> images = np.random.default_rng(0).integers(0, 256, size=(10, 4, 4), dtype=np.uint8)
    >>> x = pipe.fit_transform(images)
    >>> x.shape, bool(np.allclose(np.linalg.norm(x, axis=1), 1.0))
    ((10, 16), True)
    >>> [name for name, _ in infnet.data.standard_preprocessing(max_value=None).steps]
    ['flatten', 'center', 'unit_norm']
    """
    steps = [("flatten", Flatten())]
    if max_value is not None:
        steps.append(("scale", Scale(max_value)))
    if zca is not None:
        steps.append(("zca", ZCAWhitening(zca)))
    elif center:
        steps.append(("center", Center()))
    if unit_norm:
        steps.append(("unit_norm", UnitNorm()))
    return Pipeline(steps)
