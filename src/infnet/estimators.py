"""scikit-learn estimators of infinitely wide (and infinitely deep) fully-connected networks.

``NTKRegressor`` and ``NTKClassifier`` predict what the network of ``infnet.fc(activation,
depth, w_std=..., b_std=..., parameterization=...)`` outputs after training by gradient descent
on the MSE for a time ``time`` (inf: to convergence, kernel regression) with ``kernel="ntk"``
(all layers trained) or ``"nngp"`` (readout only); ``ridge`` is weight decay (kernel ridge
regression at t = inf). ``NNGPRegressor`` is the Bayesian posterior of the NNGP with noise
variance ``ridge`` and its predictive standard deviation. The conventions are those of
``infnet.predict`` (loss |f(X) - Y|^2 / (2 N), N = number of target entries).

The classifier regresses one-hot targets (0/1, one column per class, labels of any sortable
type mapped as scikit-learn does) and predicts the argmax. ``depth=inf`` gives the classifier
of the infinitely deep normalized bias-free network (``infnet.predict.limit_scores``).

Construction stores the parameters only; ``fit`` computes the training kernel (float64, on the
CPU; ``device`` moves the work) and factors it in place, so memory is the n^2 kernel plus
O(n * block) for predictions, which run over blocks of test rows.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.preprocessing import LabelEncoder
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from .network import fc
from .predict.dynamics import GaussianProcess, GradientDescentMSE
from .predict.infinite import limit_scores

#: test rows per block in predictions (memory block x n_train)
PREDICT_BLOCK = 2048


class _InfiniteNetwork(BaseEstimator):
    """Parameters and kernels shared by the estimators (no work in __init__)."""

    _kernel_kinds = ("ntk", "nngp")

    def __init__(self, activation="relu", depth=3, *, w_std=2**0.5, b_std=0.0,
                 parameterization="ntk", width=None, kernel="ntk", ridge=0.0, time=math.inf,
                 learning_rate=1.0, activation_params=None, device=None):
        self.activation = activation
        self.depth = depth
        self.w_std = w_std
        self.b_std = b_std
        self.parameterization = parameterization
        self.width = width
        self.kernel = kernel
        self.ridge = ridge
        self.time = time
        self.learning_rate = learning_rate
        self.activation_params = activation_params
        self.device = device

    # ---- the network -----------------------------------------------------------------------
    def _build(self):
        from .activations import activation as make

        if self.kernel not in self._kernel_kinds:
            raise ValueError(f"kernel must be one of {self._kernel_kinds}, got {self.kernel!r}")
        act = make(self.activation, **(self.activation_params or {}))
        depth = self.depth
        if isinstance(depth, float) and math.isinf(depth):
            return fc(act, depth=math.inf, b_std=self.b_std)
        if isinstance(depth, (np.integer, float)) and float(depth).is_integer():
            depth = int(depth)
        return fc(act, depth, w_std=float(self.w_std),
                  b_std=None if self.b_std is None else float(self.b_std),
                  parameterization=self.parameterization, width=self.width)

    @property
    def _infinite(self) -> bool:
        return isinstance(self.depth, float) and math.isinf(self.depth)

    def _network(self):
        net = self.__dict__.get("_network_")
        if net is None:  # dropped by pickling (activations may hold local functions)
            net = self._network_ = self._build()
        return net

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_network_", None)
        return state

    def _tensor(self, X) -> torch.Tensor:
        return torch.as_tensor(X, dtype=torch.float64, device=self.device)

    def _train_kernel(self, X) -> torch.Tensor:
        return self._network().kernel(self._tensor(X), get=self.kernel).get(self.kernel)

    def _cross_blocks(self, X):
        """(rows, K(X[rows], X_fit)) over blocks of test rows."""
        net = self._network()
        train = self._tensor(self.X_fit_)
        for i in range(0, len(X), PREDICT_BLOCK):
            rows = slice(i, i + PREDICT_BLOCK)
            k = net.kernel(self._tensor(X[rows]), train, get=self.kernel).get(self.kernel)
            yield rows, k

    # ---- fitting ----------------------------------------------------------------------------
    def _check_X(self, X, reset: bool):
        return validate_data(self, X, reset=reset, dtype=np.float64, ensure_min_samples=1)

    def _fit_targets(self, X, Y: np.ndarray, *, posterior: bool = False):
        """Train on float64 targets Y (n, outputs): the flow (or posterior) with its factor."""
        self._network_ = self._build()
        self.X_fit_ = X
        if self._infinite:
            self.Y_fit_ = torch.as_tensor(Y, dtype=torch.float64, device=self.device)
            return
        k = self._train_kernel(X)
        cls = GaussianProcess if posterior else GradientDescentMSE
        self.model_ = cls(k, Y, learning_rate=self.learning_rate, ridge=self.ridge,
                          overwrite=math.isinf(self._time()))
        self.model_.dual_coef(self._time())  # factor now: fit is where the work happens

    def _time(self) -> float:
        t = float(self.time)
        if not t >= 0:
            raise ValueError(f"time must be >= 0 or inf, got {self.time!r}")
        return t

    def _scores(self, X) -> np.ndarray:
        """(m, outputs) predicted outputs (mean over initializations, f_0 = 0)."""
        check_is_fitted(self, "X_fit_")
        X = self._check_X(X, reset=False)
        if self._infinite:
            return self._limit_scores(X)
        out = np.empty((len(X), self.model_.y_train.shape[1]))
        coef = self.model_.dual_coef(self._time())
        for rows, k in self._cross_blocks(X):
            out[rows] = (k @ coef).cpu().numpy()
        return out

    def _limit_scores(self, X) -> np.ndarray:
        net = self._network()
        rho = net.correlations(self._tensor(X), self._tensor(self.X_fit_))
        return limit_scores(net.limit, rho, self.Y_fit_).cpu().numpy()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.target_tags.multi_output = isinstance(self, RegressorMixin)
        return tags


class NTKRegressor(RegressorMixin, _InfiniteNetwork):
    """The infinitely wide network ``fc(activation, depth, ...)`` trained by gradient descent on
    the MSE for ``time`` (module docstring). ``predict(X, return_std=True)`` adds the standard
    deviation over random initializations (Lee et al. 2019, eq. (16))."""

    def fit(self, X, y):
        X, y = validate_data(self, X, y, dtype=np.float64, multi_output=True, y_numeric=True)
        if self._infinite:
            raise ValueError("the infinitely deep regressor predicts 0 away from the training "
                             "points (its kernel tends to the identity); use a finite depth, or "
                             "NTKClassifier(depth=inf) for the limit classifier")
        self._vector_y = y.ndim == 1
        self._fit_targets(X, y.reshape(len(y), -1))
        return self

    def predict(self, X, return_std: bool = False):
        f = self._scores(X)
        f = f[:, 0] if self._vector_y else f
        if not return_std:
            return f
        return f, self._ensemble_std(X)

    def _ensemble_std(self, X) -> np.ndarray:
        """sqrt of the diagonal of eq. (16) of Lee et al. 2019 (``predict.Ensemble``)."""
        from .predict.ensemble import Ensemble

        ens = Ensemble.from_flow(self._network(), self._tensor(self.X_fit_), self.model_,
                                 self.kernel)
        X = self._check_X(X, reset=False)
        out = np.empty(len(X))
        for i in range(0, len(X), PREDICT_BLOCK):
            _, cov = ens.predict(self._tensor(X[i:i + PREDICT_BLOCK]), self._time(), covariance=True)
            out[i:i + PREDICT_BLOCK] = cov.diagonal().clamp(min=0).sqrt().cpu().numpy()
        return out


class NTKClassifier(ClassifierMixin, _InfiniteNetwork):
    """Regression of one-hot targets with the trained infinitely wide network; the predicted
    class is the argmax (module docstring). ``depth=float("inf")``: the infinite-depth
    classifier (nearest neighbour, majority vote or singular kernel rule by the activation)."""

    def fit(self, X, y):
        X, y = validate_data(self, X, y, dtype=np.float64)
        check_classification_targets(y)
        encoder = LabelEncoder().fit(y)
        self.classes_ = encoder.classes_
        codes = encoder.transform(y)
        Y = np.zeros((len(y), len(self.classes_)))
        Y[np.arange(len(y)), codes] = 1.0
        self._fit_targets(X, Y)
        return self

    def decision_function(self, X) -> np.ndarray:
        """(m, n_classes) outputs; for two classes the (m,) difference f_1 - f_0 (positive:
        ``classes_[1]``)."""
        f = self._scores(X)
        return f[:, 1] - f[:, 0] if f.shape[1] == 2 else f

    def predict(self, X) -> np.ndarray:
        scores = self._scores(X)
        return self.classes_[scores.argmax(axis=1)]


class NNGPRegressor(RegressorMixin, _InfiniteNetwork):
    """The NNGP posterior of ``fc(activation, depth, ...)``: Gaussian process regression with
    the infinitely wide network as prior and observation noise variance ``ridge`` (Lee et al.
    2018, arXiv 1711.00165). ``predict(X, return_std=True)`` / ``return_cov=True`` give the
    posterior of the noise-free function, as ``sklearn.gaussian_process``."""

    _kernel_kinds = ("nngp",)
    kernel = "nngp"  # fixed: not parameters of this estimator
    time = math.inf
    learning_rate = 1.0

    def __init__(self, activation="relu", depth=3, *, w_std=2**0.5, b_std=0.0,
                 parameterization="ntk", width=None, ridge=0.0, activation_params=None,
                 device=None):
        self.activation = activation
        self.depth = depth
        self.w_std = w_std
        self.b_std = b_std
        self.parameterization = parameterization
        self.width = width
        self.ridge = ridge
        self.activation_params = activation_params
        self.device = device

    def fit(self, X, y):
        X, y = validate_data(self, X, y, dtype=np.float64, multi_output=True, y_numeric=True)
        if self._infinite:
            raise ValueError("the NNGP posterior needs a finite depth (the infinitely deep "
                             "kernel is singular on its diagonal)")
        self._vector_y = y.ndim == 1
        self._fit_targets(X, y.reshape(len(y), -1), posterior=True)
        return self

    def predict(self, X, return_std: bool = False, return_cov: bool = False):
        if return_std and return_cov:
            raise ValueError("return_std and return_cov cannot both be True")
        if not (return_std or return_cov):
            f = self._scores(X)
            return f[:, 0] if self._vector_y else f
        check_is_fitted(self, "X_fit_")
        X = self._check_X(X, reset=False)
        net, model = self._network(), self.model_
        coef = model.dual_coef(math.inf)
        means, spreads = [], []
        for rows, cross in self._cross_blocks(X):  # each cross-kernel block computed once
            means.append(cross @ coef)
            x = self._tensor(X[rows])
            if return_cov:
                spreads.append(cross)
            else:
                diag, _ = net.diagonal((x * x).sum(1) / x.shape[1], x.shape[1])  # K(x, x)
                spreads.append(model.variance(cross, diag).sqrt())
        f = torch.cat(means).cpu().numpy()
        f = f[:, 0] if self._vector_y else f
        if return_cov:
            k_test = net.kernel(self._tensor(X), get="nngp").nngp
            return f, model.covariance(torch.cat(spreads), k_test).cpu().numpy()
        return f, torch.cat(spreads).cpu().numpy()
