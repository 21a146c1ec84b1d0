"""The base class shared by the scikit-learn estimators of infinitely wide networks
(``networks``): their parameters, the network ``infnet.fc`` they build, its kernels over blocks
of test rows, fitting the gradient flow (or the GP posterior) and the predicted outputs.

Construction stores the parameters only; ``fit`` computes the training kernel (float64, on the
CPU; ``device`` moves the work) and factors it in place, so memory is the n^2 kernel plus
O(n * block) for predictions, which run over blocks of test rows.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from ..network import architecture, fc
from ..predict.dynamics import GaussianProcess, GradientDescentMSE
from ..predict.infinite import limit_scores

#: test rows per block in predictions (memory block x n_train)
PREDICT_BLOCK = 2048


class _InfiniteNetwork(BaseEstimator):
    """Parameters and kernels shared by the estimators (no work in __init__)."""

    _kernel_kinds = ("ntk", "nngp")

    def __init__(self, activation="relu", depth=3, *, w_std=2**0.5, b_std=0.0,
                 parameterization="ntk", width=None, kernel="ntk", ridge=0.0, time=math.inf,
                 learning_rate=1.0, activation_params=None, device=None, architecture="fc",
                 input_shape=None):
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
        self.architecture = architecture
        self.input_shape = input_shape

    # ---- the network -----------------------------------------------------------------------
    def _build(self):
        from ..activations import activation as make

        if self.kernel not in self._kernel_kinds:
            raise ValueError(f"kernel must be one of {self._kernel_kinds}, got {self.kernel!r}")
        act = make(self.activation, **(self.activation_params or {}))
        depth = self.depth
        if isinstance(depth, float) and math.isinf(depth):
            return fc(act, depth=math.inf, b_std=self.b_std)
        if isinstance(depth, (np.integer, float)) and float(depth).is_integer():
            depth = int(depth)
        if self.architecture != "fc":
            if self.input_shape is None:
                raise ValueError(f"architecture={self.architecture!r} takes images: give "
                                 "input_shape=(C, H, W) (or (C, L)), the shape each row of X "
                                 "is reshaped to")
            if self.parameterization != "ntk":
                raise ValueError("convolutional architectures use parameterization='ntk'")
            return architecture(self.architecture, act, depth, w_std=float(self.w_std),
                                b_std=None if self.b_std is None else float(self.b_std))
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
        x = torch.as_tensor(X, dtype=torch.float64, device=self.device)
        if self.architecture == "fc" or self.input_shape is None:
            return x
        shape = tuple(int(v) for v in self.input_shape)
        if math.prod(shape) != x.shape[1]:
            raise ValueError(f"rows of X have {x.shape[1]} features, but input_shape={shape} "
                             f"holds {math.prod(shape)}")
        return x.reshape(x.shape[0], *shape)

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

    def predict_outputs(self, X) -> np.ndarray:
        """The network's outputs on ``X``: an (m, outputs) array, the mean over
        initializations (f_0 = 0); for a classifier, one column per class of ``classes_``
        (the one-hot regression whose argmax is ``predict``)."""
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
