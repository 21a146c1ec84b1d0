"""Classifiers on the unit sphere with one scikit-learn interface: the limits of infinitely deep
networks and the baselines they are held against.

Radhakrishnan, Belkin & Uhler (PNAS 2023, arXiv 2204.14126; code uhlerlab/inf_depth_ntks,
``models.py``) show that min-norm kernel regression with the NNGP/NTK of an infinitely deep
network (``KernelClassifier``) becomes, by the activation, the 1-nearest-neighbour rule
(``NearestNeighbor``), the majority vote (``MajorityVote``) or a singular kernel rule, which is
Bayes-consistent for the Hilbert kernel |x - z|^(-(d-1)) on S^(d-1) (``HilbertKernel``; Devroye,
Gyorfi & Krzyzak, "The Hilbert kernel regression estimate", J. Multivariate Anal. 1998).
``BayesDirichlet`` is the Bayes classifier of the paper's Dirichlet data (``data.DirichletData``).

Inputs are validated by ``data.on_sphere`` (rows not of unit norm are normalized with a warning);
labels can be any sortable values, with two or more classes.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from scipy.spatial.distance import cdist
from scipy.special import logsumexp
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from ..data import DirichletData, check_labels, on_sphere
from ..predict.solve import solve_psd

#: test rows x training rows handled at once by the distance-based rules
_BLOCK_ENTRIES = 2**22


class _SphereClassifier(ClassifierMixin, BaseEstimator):
    """Shared input handling: unit rows, labels, the fitted feature count."""

    def _fit_inputs(self, X, y):
        X = on_sphere(X, name="X")
        y = check_labels(y, len(X))
        self.classes_, codes = np.unique(y, return_inverse=True)
        self.n_features_in_ = X.shape[1]
        return X, codes

    def _predict_inputs(self, X) -> np.ndarray:
        check_is_fitted(self)
        X = on_sphere(X, name="X")
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, but {type(self).__name__} was fitted "
                             f"with {self.n_features_in_} features")
        return X

    def predict(self, X) -> np.ndarray:
        scores = self._scores(self._predict_inputs(X))
        return self.classes_[scores.argmax(axis=1)]


def _blocks(n_rows: int, n_cols: int):
    step = max(1, _BLOCK_ENTRIES // max(n_cols, 1))
    for i in range(0, n_rows, step):
        yield slice(i, i + step)


class KernelClassifier(_SphereClassifier):
    """Kernel regression on one-hot targets, predicting the argmax.

    f(x) = K(x, X) (K(X, X) + ridge I)^(-1) Y (for two classes the prediction is the sign of
    the regression on +-1 targets; ``decision_function`` gives f_1 - f_0). Inputs reach the
    kernel as float64 (n, d) numpy arrays; it may return a tensor on any device, and the solve
    stays there.
    Inputs are validated by ``data.on_sphere`` (rows not of unit norm are normalized with a
    UserWarning); labels can be any sortable values, with two or more classes.

    Parameters
    ----------
    kernel : callable or Network
        A callable ``kernel(x1, x2) -> (n1, n2)`` array or tensor, or an object with a
        ``.kernel(x1, x2)`` method (an ``infnet`` Network).
    ridge : float, default 0.0
        Added to the diagonal of K(X, X) (>= 0). ``ridge=0`` is the min-norm interpolant of the
        paper: Cholesky, and the pseudo-inverse (with a warning) when K(X, X) is not
        numerically positive definite.
    kind : {"nngp", "ntk"}, default "nngp"
        When the kernel's result has ``.nngp``/``.ntk``, the one to use.

    Raises
    ------
    ValueError
        From ``fit``/``predict``: a negative ``ridge``, an unknown ``kind``, a kernel result of
        the wrong shape or with NaN/inf entries, or invalid inputs or labels.
    TypeError
        If ``kernel`` is neither callable nor has a ``.kernel`` method.

    Warns
    -----
    UserWarning
        When K(X, X) + ridge I is singular to double precision and the min-norm least-squares
        solution is used.

    Examples
    --------
    >>> X = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.6, 0.8]])
    >>> clf = infnet.estimators.KernelClassifier(infnet.fc("relu", 3), ridge=1e-6)
    >>> clf.fit(X, [0, 1, 1, 0]).predict(X).tolist()
    [0, 1, 1, 0]
    >>> linear = infnet.estimators.KernelClassifier(lambda x1, x2: x1 @ x2.T + 1.0)
    >>> linear.fit(X[:3], ["x", "y", "y"]).predict(np.array([[0.8, 0.6]])).tolist()
    ['x']
    """

    def __init__(self, kernel, ridge: float = 0.0, kind: str = "nngp"):
        self.kernel = kernel
        self.ridge = ridge
        self.kind = kind

    def _gram(self, x1: np.ndarray, x2: np.ndarray) -> torch.Tensor:
        if self.kind not in ("nngp", "ntk"):
            raise ValueError(f"kind must be 'nngp' or 'ntk', got {self.kind!r}")
        fn = getattr(self.kernel, "kernel", self.kernel)
        if not callable(fn):
            raise TypeError("kernel must be a callable kernel(x1, x2) or have a .kernel(x1, x2) "
                            f"method, got {type(self.kernel).__name__}")
        k = fn(x1, x2)
        k = getattr(k, self.kind, k)
        k = torch.as_tensor(k, dtype=torch.float64)
        if k.shape != (len(x1), len(x2)):
            raise ValueError(f"the kernel returned shape {tuple(k.shape)}, expected "
                             f"{(len(x1), len(x2))}")
        if not bool(torch.isfinite(k).all()):
            raise ValueError("the kernel returned NaN or inf entries")
        return k

    def fit(self, X, y):
        ridge = float(self.ridge)
        if not ridge >= 0:
            raise ValueError(f"ridge must be >= 0, got {self.ridge!r}")
        X, codes = self._fit_inputs(X, y)
        k = self._gram(X, X)
        k = (k + k.T) / 2
        targets = torch.zeros(len(X), len(self.classes_), dtype=k.dtype, device=k.device)
        targets[torch.arange(len(X)), torch.as_tensor(codes, device=k.device)] = 1.0
        self.dual_coef_, note = solve_psd(k, targets, ridge, fallback="lstsq",
                                          name="the training kernel matrix")
        if note:
            warnings.warn(f"{note}. A small ridge makes the solution stable.", UserWarning,
                          stacklevel=2)
        self.X_fit_ = X
        return self

    def _scores(self, X: np.ndarray) -> np.ndarray:
        check_is_fitted(self)
        k = self._gram(X, self.X_fit_)
        return (k @ self.dual_coef_.to(k.device)).cpu().numpy()

    def decision_function(self, X) -> np.ndarray:
        """(n,) f_1 - f_0 for two classes (positive: ``classes_[1]``), else (n, n_classes)."""
        f = self._scores(self._predict_inputs(X))
        return f[:, 1] - f[:, 0] if f.shape[1] == 2 else f


class NearestNeighbor(_SphereClassifier):
    """The 1-nearest-neighbour classifier on the sphere.

    The neighbour is the training point with the largest inner product x . x_i (on the sphere:
    the smallest distance); ties go to the first such training point in fit order. It is the
    infinite-depth limit of the nearest-neighbour class of activations (module docstring).
    Inputs are validated by ``data.on_sphere`` (rows not of unit norm are normalized with a
    UserWarning); labels can be any sortable values, with two or more classes.

    Raises
    ------
    ValueError
        From ``fit``/``predict``: invalid inputs or labels (NaN, zero rows, a single class), or
        a feature count that differs from the fitted one.

    Examples
    --------
    >>> X = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    >>> nn = infnet.estimators.NearestNeighbor().fit(X, ["x", "y", "z"])
    >>> nn.predict(np.array([[0.8, 0.6], [-0.6, -0.8]])).tolist()
    ['x', 'z']
    """

    def fit(self, X, y):
        X, self.y_codes_ = self._fit_inputs(X, y)
        self.X_fit_ = X
        return self

    def _scores(self, X: np.ndarray) -> np.ndarray:
        out = np.zeros((len(X), len(self.classes_)))
        for rows in _blocks(len(X), len(self.X_fit_)):
            nearest = (X[rows] @ self.X_fit_.T).argmax(axis=1)
            out[np.arange(len(nearest)) + rows.start, self.y_codes_[nearest]] = 1.0
        return out


class MajorityVote(_SphereClassifier):
    """The majority vote: the most frequent training class for every input (ties: the smallest label).

    The infinite-depth limit of the majority-vote class of activations (module docstring).
    Inputs are validated by ``data.on_sphere`` (rows not of unit norm are normalized with a
    UserWarning); labels can be any sortable values, with two or more classes.

    Raises
    ------
    ValueError
        From ``fit``/``predict``: invalid inputs or labels, or a feature count that differs from
        the fitted one.

    Examples
    --------
    >>> X = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.6, 0.8]])
    >>> vote = infnet.estimators.MajorityVote().fit(X, [0, 1, 1, 1])
    >>> vote.class_counts_.tolist(), vote.predict(X[:2]).tolist()
    ([1, 3], [1, 1])
    """

    def fit(self, X, y):
        X, codes = self._fit_inputs(X, y)
        self.class_counts_ = np.bincount(codes, minlength=len(self.classes_))
        return self

    def _scores(self, X: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.class_counts_.astype(float), (len(X), len(self.classes_)))


class HilbertKernel(_SphereClassifier):
    """Hilbert kernel rule: argmax over classes c of sum_{i: y_i = c} |x - x_i|^(-exponent).

    The default exponent is d - 1 on S^(d-1) (Devroye, Gyorfi & Krzyzak 1998; the
    Bayes-consistent infinite-depth limit of Radhakrishnan et al. 2023, as
    ``devroye_classifier`` in their code). Sums are log-sum-exps of -exponent log|x - x_i| (no
    overflow near training points); an input equal to training points takes the vote among
    them.
    Inputs are validated by ``data.on_sphere`` (rows not of unit norm are normalized with a
    UserWarning); labels can be any sortable values, with two or more classes.

    Parameters
    ----------
    exponent : float, optional
        The exponent of |x - x_i| (finite, >= 0); None: d - 1 for inputs in R^d. The fitted
        value is ``exponent_``.

    Raises
    ------
    ValueError
        From ``fit``: an exponent that is negative or not finite, or invalid inputs or labels;
        from ``predict``: invalid inputs or a feature count that differs from the fitted one.

    Examples
    --------
    >>> X = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.6, 0.8]])
    >>> hk = infnet.estimators.HilbertKernel().fit(X, [0, 1, 1, 0])
    >>> hk.exponent_, hk.predict(np.array([[0.8, 0.6], [-0.6, -0.8]])).tolist()
    (1, [0, 1])
    """

    def __init__(self, exponent: float | None = None):
        self.exponent = exponent

    def fit(self, X, y):
        X, self.y_codes_ = self._fit_inputs(X, y)
        exponent = X.shape[1] - 1 if self.exponent is None else float(self.exponent)
        if not (np.isfinite(exponent) and exponent >= 0):
            raise ValueError(f"exponent must be a finite number >= 0, got {self.exponent!r}")
        self.exponent_ = exponent
        self.X_fit_ = X
        return self

    def _scores(self, X: np.ndarray) -> np.ndarray:
        """(n, n_classes): log of each class's kernel sum (-inf: no points of that class); rows
        equal to training points: instead the count of those points in each class."""
        out = np.empty((len(X), len(self.classes_)))
        members = [self.y_codes_ == c for c in range(len(self.classes_))]
        for rows in _blocks(len(X), len(self.X_fit_)):
            dist = cdist(X[rows], self.X_fit_)  # direct differences: exact near 0
            if self.exponent_ == 0:
                logw = np.zeros_like(dist)
                exact = np.zeros(len(dist), dtype=bool)
            else:
                with np.errstate(divide="ignore"):
                    logw = -self.exponent_ * np.log(dist)
                exact = (dist == 0).any(axis=1)
            far = logw[~exact]
            hits = dist[exact] == 0
            block = out[rows]  # a view
            for c, member in enumerate(members):
                block[~exact, c] = logsumexp(far[:, member], axis=1)
                block[exact, c] = hits[:, member].sum(axis=1)
        return out


class BayesDirichlet(_SphereClassifier):
    """The Bayes classifier of ``data.DirichletData(alphas, prior, labels)``.

    With the true class densities (``dirichlet_bayes_classifier`` of the paper's code): argmax_k
    of P(k) Dirichlet(s; alphas[k]) at s = x / sum(x), P(labels[0]) = prior. The defaults are
    the paper's 2-D setting. ``fit`` only checks the data and records the classes.
    Inputs are validated by ``data.on_sphere`` (rows not of unit norm are normalized with a
    UserWarning); labels can be any sortable values, with two or more classes.

    Parameters
    ----------
    prior : float, default 0.4
        P(labels[0]), the prior probability of the first class, in (0, 1).
    alphas : pair of sequences of float, default ((1.0, 2.0), (2.0, 1.0))
        The Dirichlet parameters of the two classes, in ``labels`` order: two vectors of one
        length d >= 2 (the input dimension), finite and > 0.
    labels : pair, default (1, -1)
        The two (distinct) class labels.

    Raises
    ------
    ValueError
        From ``fit``: labels that are not among ``labels``, inputs whose dimension differs
        from the alphas', invalid ``alphas``/``prior``/``labels`` (``DirichletData``) or invalid
        inputs.

    Examples
    --------
    >>> bayes = infnet.estimators.BayesDirichlet()
    >>> X = np.array([[0.6, 0.8], [0.8, 0.6]])
    >>> bayes.fit(X, [1, -1]).predict(np.array([[0.28, 0.96], [0.8, 0.6]])).tolist()
    [1, -1]
    """

    def __init__(self, prior: float = 0.4, alphas=((1.0, 2.0), (2.0, 1.0)), labels=(1, -1)):
        self.prior = prior
        self.alphas = alphas
        self.labels = labels

    def fit(self, X, y):
        data = DirichletData(self.alphas, self.prior, self.labels)
        X, _ = self._fit_inputs(X, y)
        unknown = set(self.classes_.tolist()) - set(data.labels)
        if unknown:
            raise ValueError(f"labels {sorted(unknown)} are not among the classes {data.labels} "
                             "of the Dirichlet model")
        if X.shape[1] != data.dim:
            raise ValueError(f"X has {X.shape[1]} features but the alphas have length {data.dim}")
        self.data_ = data
        self.classes_ = np.array(sorted(data.labels))
        return self

    def _scores(self, X: np.ndarray) -> np.ndarray:
        joint = self.data_.log_joint(X)  # columns in labels order
        order = [self.data_.labels.index(c) for c in self.classes_.tolist()]
        return joint[:, order]
