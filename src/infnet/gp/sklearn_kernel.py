"""A scikit-learn kernel for Gaussian-process users: the NNGP (or NTK) of an infnet network
(fully connected, or any ``architecture``: a convolutional one reads rows as flattened images),
with the weight and bias standard deviations (and optionally one parameter of the activation)
as hyperparameters that ``GaussianProcessRegressor`` learns by maximizing the marginal
likelihood.

scikit-learn optimizes theta = log(hyperparameters) and asks for dK/dtheta = s dK/ds; the
derivatives are exact (``gp.gradients``). The kernel composes with scikit-learn's own
(``NetworkKernel(...) + WhiteKernel()``, ``ConstantKernel() * NetworkKernel(...)``), clones and
pickles like them.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.gaussian_process.kernels import Hyperparameter, Kernel

from ..activations import activation
from ..network import Network, fc
from ..network.spatial import is_spatial
from .gradients import diagonal_gradients, kernel_gradients
from .hyper import check_activation_parameter, hyperparameters, rows_as_inputs, with_hyperparameters


class NetworkKernel(Kernel):
    """The NNGP or NTK of ``infnet.fc(activation, depth, w_std=..., b_std=...)`` as a
    scikit-learn Gaussian-process kernel.

    Parameters
    ----------
    activation : str or Activation
        The activation (a catalog name, or any continuous infnet Activation).
    depth : int
        The number of hidden layers.
    w_std, b_std : float
        The weight and bias standard deviations of every Dense layer (learned: log-space
        hyperparameters ``w_std`` and ``b_std``). ``b_std=0`` fixes the bias at zero.
    w_std_bounds, b_std_bounds : pair of float or "fixed"
        The optimizer's bounds, or "fixed" to keep the value.
    kind : {"nngp", "ntk"}
        The NNGP (the Bayesian network's prior) or the NTK (the prior of the trained network's
        ensemble, He et al. 2020).
    parameterization : {"ntk", "standard"}
        As in ``infnet.Dense``.
    architecture : Network, optional
        Any infnet network whose Dense and Conv layers share one w_std and one b_std (a
        residual or convolutional one: ``infnet.network.cnn``, ``myrtle``), in place of
        ``fc(activation, depth)``; ``activation``, ``depth`` and ``parameterization`` are then
        not read, and ``w_std``, ``b_std`` are written into its layers.
    input_shape : tuple of int, optional
        The shape of one input of ``architecture`` ((C, H, W) for images): each row of X is
        one input flattened in torch's layout.

    ``NetworkParamKernel`` learns one parameter of the activation as well.

    Examples
    --------
    >>> from sklearn.gaussian_process import GaussianProcessRegressor
    >>> from sklearn.gaussian_process.kernels import WhiteKernel
    >>> X = np.random.default_rng(0).normal(size=(30, 2))
    >>> y = np.sin(X[:, 0])
    >>> kernel = infnet.gp.NetworkKernel("erf", depth=2) + WhiteKernel(1e-2, "fixed")
    >>> gpr = GaussianProcessRegressor(kernel).fit(X, y)
    >>> sorted(gpr.kernel_.k1.get_params())[:3]
    ['activation', 'b_std', 'b_std_bounds']
    """

    def __init__(self, activation="relu", depth=1, w_std=1.0, b_std=0.1,
                 w_std_bounds=(1e-2, 1e2), b_std_bounds=(1e-4, 1e2), kind="nngp",
                 parameterization="ntk", architecture=None, input_shape=None):
        self.architecture = architecture
        self.input_shape = input_shape
        self.activation = activation
        self.depth = depth
        self.w_std = w_std
        self.b_std = b_std
        self.w_std_bounds = w_std_bounds
        self.b_std_bounds = b_std_bounds
        self.kind = kind
        self.parameterization = parameterization

    #: the activation parameter learned (``NetworkParamKernel``), none here
    activation_param = None

    # ---- hyperparameters (scikit-learn reads these properties) --------------------------------
    @property
    def hyperparameter_w_std(self) -> Hyperparameter:
        return Hyperparameter("w_std", "numeric", self.w_std_bounds)

    @property
    def hyperparameter_b_std(self) -> Hyperparameter:
        fixed = self.b_std is None or self.b_std == 0
        return Hyperparameter("b_std", "numeric", "fixed" if fixed else self.b_std_bounds)

    def network(self):
        """The infnet network at the current hyperparameters (checked)."""
        if self.kind not in ("nngp", "ntk"):
            raise ValueError(f"kind must be 'nngp' or 'ntk', got {self.kind!r}")
        for name in self._bounded():
            value, bounds = getattr(self, name), getattr(self, f"{name}_bounds")
            if isinstance(bounds, str):
                continue
            lo, hi = bounds
            # (exp(log(bound)) may round past the bound: the optimizer's edge is inside)
            if value and not lo * (1 - 1e-9) <= value <= hi * (1 + 1e-9):
                raise ValueError(f"{name}={value!r} lies outside its bounds {bounds!r}: widen "
                                 f"{name}_bounds or start inside them")
        if self.architecture is None:
            return fc(activation(self.activation), self.depth, w_std=self.w_std,
                      b_std=self.b_std, parameterization=self.parameterization)
        if not isinstance(self.architecture, Network):
            raise TypeError("architecture must be an infnet Network (infnet.serial, "
                            f"infnet.network.cnn, ...), got {type(self.architecture).__name__}")
        own = hyperparameters(self.architecture)
        values = {"w_std": self.w_std}
        if "b_std" in own:
            values["b_std"] = self.b_std
        elif self.b_std:
            raise ValueError("the architecture has no bias: give b_std=0 (fixed), or build it "
                             "with b_std=0.0 to learn one")
        return with_hyperparameters(self.architecture, **values)

    def _bounded(self) -> tuple[str, ...]:
        return ("w_std", "b_std")

    # ---- the kernel ------------------------------------------------------------------------------
    def __call__(self, X, Y=None, eval_gradient=False):
        """K(X, Y) (Y None: K(X, X)), and with ``eval_gradient`` dK/dtheta, (n, n, free
        hyperparameters), theta the log of the hyperparameters."""
        net = self.network()
        x = rows_as_inputs(_as_tensor(X, "X"), self.input_shape, "X")
        if eval_gradient:
            if Y is not None:
                raise ValueError("eval_gradient can only be evaluated when Y is None")
            names = [h.name for h in self.hyperparameters if not h.fixed]
            if not names:
                k = net.kernel(x)
                return _pick(k, self.kind), np.empty((x.shape[0], x.shape[0], 0))
            wrt = [self.activation_param if n == "activation_value" else n for n in names]
            k, grads = kernel_gradients(net, x, wrt=wrt, get=self.kind)
            grad = np.stack([getattr(self, n) * _pick(grads[w], self.kind)
                             for n, w in zip(names, wrt, strict=True)], -1)
            return _pick(k, self.kind), grad
        y = None if Y is None else rows_as_inputs(_as_tensor(Y, "Y"), self.input_shape, "Y")
        return _pick(net.kernel(x, y, get=self.kind), self.kind)

    def diag(self, X):
        """The diagonal K(x, x) of each row, from the network's diagonal pass (O(n))."""
        x = rows_as_inputs(_as_tensor(X, "X"), self.input_shape, "X")
        net = self.network()
        if is_spatial(net.layers):
            out = _pick(diagonal_gradients(net, x, wrt=[])[0], self.kind)
            return out.copy()
        d = x.shape[1]
        nngp, ntk = net.diagonal((x * x).sum(1) / d, d)
        out = nngp if self.kind == "nngp" else ntk
        return out.expand(x.shape[0]).numpy().copy()

    def is_stationary(self):
        return False

    @property
    def requires_vector_input(self):
        return True

    def __repr__(self):
        name = getattr(self.activation, "name", self.activation)
        own = ("" if self.activation_param is None else
               f", {self.activation_param}={float(self.activation_value):.4g}")
        if self.architecture is not None:
            kinds = ", ".join(dict.fromkeys(type(layer).__name__
                                            for layer in self.architecture.layers))
            return (f"{type(self).__name__}(architecture of {len(self.architecture.layers)} "
                    f"layers ({kinds}), w_std={self.w_std:.4g}, b_std={self.b_std:.4g}{own}, "
                    f"kind={self.kind!r})")
        return (f"{type(self).__name__}({name}, depth={self.depth}, w_std={self.w_std:.4g}, "
                f"b_std={self.b_std if self.b_std is None else f'{self.b_std:.4g}'}"
                f"{own}, kind={self.kind!r})")


def _as_tensor(X, name: str) -> torch.Tensor:
    x = torch.as_tensor(np.array(X, dtype=np.float64))  # (a copy: X may be read-only)
    if x.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_samples, n_features), got shape {tuple(x.shape)}")
    return x


def _pick(k, kind: str) -> np.ndarray:
    return getattr(k, kind).numpy()


class NetworkParamKernel(NetworkKernel):
    """``NetworkKernel`` that also learns one continuous parameter of the activation (swish's
    ``"beta"``, a tempered sigmoid's ``"temperature"``): the log-space hyperparameter
    ``activation_value``, the value of ``activation_param``.

    Parameters
    ----------
    activation, depth, w_std, b_std, w_std_bounds, b_std_bounds, kind, parameterization
    architecture, input_shape
        As in ``NetworkKernel``.
    activation_param : str
        The parameter's name (``infnet.gp.activation_parameters``).
    activation_value : float
        Its initial value (> 0).
    activation_value_bounds : pair of float or "fixed"
        Its bounds.

    Examples
    --------
    >>> k = infnet.gp.NetworkParamKernel("swish", 2, activation_param="beta",
    ...                                  activation_value=1.5)
    >>> [h.name for h in k.hyperparameters]
    ['activation_value', 'b_std', 'w_std']
    """

    def __init__(self, activation="swish", depth=1, w_std=1.0, b_std=0.1,
                 w_std_bounds=(1e-2, 1e2), b_std_bounds=(1e-4, 1e2), kind="nngp",
                 parameterization="ntk", activation_param="beta", activation_value=1.0,
                 activation_value_bounds=(1e-2, 1e2), architecture=None, input_shape=None):
        super().__init__(activation, depth, w_std, b_std, w_std_bounds, b_std_bounds, kind,
                         parameterization, architecture, input_shape)
        self.activation_param = activation_param
        self.activation_value = activation_value
        self.activation_value_bounds = activation_value_bounds

    @property
    def hyperparameter_activation_value(self) -> Hyperparameter:
        return Hyperparameter("activation_value", "numeric", self.activation_value_bounds)

    def _bounded(self) -> tuple[str, ...]:
        return ("w_std", "b_std", "activation_value")

    def network(self):
        name, value = self.activation_param, self.activation_value
        if not (isinstance(value, (int, float)) and value > 0):
            raise ValueError(f"activation_value={value!r}: a log-space hyperparameter must be "
                             f"a number > 0 (learn a positive parameter of the activation, or "
                             f"keep it fixed)")
        net = super().network()
        check_activation_parameter(net, name)
        return with_hyperparameters(net, **{name: value})
