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
from sklearn.utils.validation import check_array, check_is_fitted

try:
    from sklearn.utils.validation import validate_data
except ImportError:  # scikit-learn < 1.6
    def validate_data(estimator, X, **kwargs):
        return estimator._validate_data(X, **kwargs)


def _matrix(estimator, X, reset: bool) -> np.ndarray:
    """X as a finite float64 (n, d) array; in transform (reset=False), d must be the d of fit."""
    X = validate_data(estimator, X, reset=reset, dtype=np.float64, allow_nd=True)
    if X.ndim > 2:
        raise ValueError(f"{type(estimator).__name__} takes (n, d) arrays, got shape {X.shape}; "
                         "flatten images first (Flatten)")
    return X


class Flatten(TransformerMixin, BaseEstimator):
    """(n, ...) -> (n, d): each sample (an image (h, w) or (h, w, c)) as one row, in C order."""

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
    """x -> x / max_value: pixel values in [0, 255] (uint8) onto [0, 1] by default."""

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
    """x -> x - mean_, mean_ the training feature mean."""

    def fit(self, X, y=None):
        self.mean_ = _matrix(self, X, reset=True).mean(axis=0)
        return self

    def transform(self, X):
        check_is_fitted(self)
        return _matrix(self, X, reset=False) - self.mean_


class UnitNorm(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """x -> x / |x|_2, row by row (no state but the feature count); a zero row is an error, as it
    has no direction (unlike ``sklearn.preprocessing.Normalizer``, which leaves it at zero)."""

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
    """Regularized ZCA whitening: x -> (x - mean_) W (Lee et al. 2020, "Finite versus infinite
    neural networks: an empirical study", NeurIPS, arXiv 2007.15801, section on ZCA whitening).

    With the training covariance Sigma = X_c^T X_c / n = V diag(lambda) V^T of the centered
    features (d of them), W = V (diag(lambda) + eps tr(Sigma)/d I)^(-1/2) V^T with eps =
    ``regularization``. As in the paper, eps is relative to the mean eigenvalue tr(Sigma)/d, so
    it does not depend on the scale of the data (in the code released with that line of work,
    ``zca_reg`` with ``zca_reg_absolute_scale=False``: reg = zca_reg * trace(cov) / d). The
    whitened training covariance then has eigenvalues lambda / (lambda + eps tr(Sigma)/d): 1 on
    strong directions, shrunk on weak ones; eps = 0 is plain ZCA (the identity covariance), for
    a nonsingular Sigma only. Unlike that code, the features are centered by their training mean
    and the eigenvalues are not altered when n < d.

    Attributes: ``mean_`` (d,), ``whitening_`` W (d, d), ``eigenvalues_`` lambda (ascending),
    ``shift_`` = eps tr(Sigma)/d.
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
    """Flatten -> Scale(max_value) -> ZCAWhitening(zca) if zca is not None, else Center if
    center -> UnitNorm if unit_norm. (ZCA centers by itself.) max_value=None skips Scale, for
    data that are not pixel values. Fit it on the training set, then transform both sets."""
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
