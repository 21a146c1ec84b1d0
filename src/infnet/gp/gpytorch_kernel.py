"""A GPyTorch kernel (optional extra ``infnet[gpytorch]``): the NNGP or NTK of a
fully-connected infnet network, its ``w_std`` and ``b_std`` (and optionally one parameter of
the activation) parameters constrained above 1e-6 that an ``ExactGP`` (or BoTorch's
``SingleTaskGP``) trains by its marginal likelihood.

The kernel matrix enters autograd through one function whose backward contracts the incoming
gradient with the exact derivatives of ``gp.gradients`` (sum_ij G_ij dK_ij / dw), so a training
step costs one kernel and its tangents, on the inputs' device, in float64.
"""

from __future__ import annotations

import gpytorch
import torch
from gpytorch.constraints import GreaterThan

from ..network import Kernel, fc
from ..network.spatial import is_spatial
from .gradients import diagonal_gradients, kernel_gradients
from .hyper import (
    activation_parameters,
    check_activation_parameter,
    hyperparameters,
    rows_as_inputs,
    with_hyperparameters,
)

NAMES = ("w_std", "b_std")
#: the parameters' lower bound: a softplus of a very negative raw value rounds to 0, and
#: w_std = b_std = 0 gives every input variance 0, where the kernel has no derivative
FLOOR = 1e-6


class _KernelMatrix(torch.autograd.Function):
    """The kernel matrix, computed beforehand, as a function of the hyperparameters' tensors:
    its backward contracts the incoming gradient with their exact derivatives. (The kernel
    and its derivatives are computed outside: forward-mode autograd, which the derivatives
    of closed forms use, is off inside an autograd Function's forward, and would silently
    give none.)"""

    @staticmethod
    def forward(ctx, values, derivatives, *params):
        ctx.derivatives = derivatives
        return values.clone()

    @staticmethod
    def backward(ctx, g):
        return (None, None, *(None if d is None else (g.to(d.dtype) * d).sum().to(g.dtype)
                              for d in ctx.derivatives))


class GPyTorchKernel(gpytorch.kernels.Kernel):
    """The NNGP or NTK of ``infnet.fc(activation, depth, w_std, b_std)`` as a GPyTorch kernel.

    Parameters
    ----------
    activation : str or Activation
        The activation (continuous).
    depth : int
        The number of hidden layers.
    w_std, b_std : float
        Initial values of the learned weight and bias standard deviations (> 0).
    kind : {"nngp", "ntk"}
        Which kernel.
    parameterization : {"ntk", "standard"}
        As in ``infnet.Dense``.
    activation_param : str, optional
        One continuous parameter of the activation learned beside them (swish's ``"beta"``):
        a constrained parameter (> 1e-6) of that name, initialized at the activation's value.
    architecture : Network, optional
        Any infnet network with a bias whose Dense and Conv layers share one w_std and one
        b_std (``infnet.network.cnn``, ``myrtle``, residual ones), in place of ``fc(activation,
        depth)``; ``w_std``, ``b_std`` are written into its layers.
    input_shape : tuple of int, optional
        The shape of one input of ``architecture`` ((C, H, W) for images): each row of the
        (n, d) inputs is one input flattened in torch's layout.

    Inputs are (n, d) tensors (no batch dimensions); the kernel is computed in float64 and
    returned in the inputs' dtype. Raises NotImplementedError when asked for gradients with
    respect to the inputs.
    """

    has_lengthscale = False

    def __init__(self, activation="relu", depth: int = 1, w_std: float = 1.0,
                 b_std: float = 0.1, kind: str = "nngp", parameterization: str = "ntk",
                 activation_param: str | None = None, architecture=None, input_shape=None,
                 **kwargs):
        super().__init__(**kwargs)
        if kind not in ("nngp", "ntk"):
            raise ValueError(f"kind must be 'nngp' or 'ntk', got {kind!r}")
        for name, value in (("w_std", w_std), ("b_std", b_std)):
            if not (isinstance(value, (int, float)) and value > FLOOR):
                raise ValueError(f"{name} must be a number > {FLOOR:g} (a constrained "
                                 f"parameter), got {value!r}")
        if architecture is None:
            net = fc(activation, depth, w_std=w_std, b_std=b_std,
                     parameterization=parameterization)
        elif "b_std" not in hyperparameters(architecture):
            raise ValueError("the architecture has no bias, so no b_std to learn: build it with "
                             "b_std=0.0")
        else:
            net = with_hyperparameters(architecture, w_std=w_std, b_std=b_std)
        own = {}
        if activation_param is not None:
            check_activation_parameter(net, activation_param)
            own = {activation_param: activation_parameters(net)[activation_param]}
            if not own[activation_param] > FLOOR:
                raise ValueError(f"{activation_param}={own[activation_param]!r}: a "
                                 f"constrained parameter needs a value > {FLOOR:g}")
        self.spec = {"activation": activation, "depth": depth, "kind": kind,
                     "parameterization": parameterization, "activation_param": activation_param,
                     "architecture": architecture, "input_shape": input_shape}
        for name, value in (("w_std", w_std), ("b_std", b_std), *own.items()):
            self.register_parameter(f"raw_{name}", torch.nn.Parameter(
                torch.zeros((), dtype=torch.float64)))
            self.register_constraint(f"raw_{name}", GreaterThan(FLOOR))
            self._set(name, value)

    def _set(self, name: str, value) -> None:
        raw = getattr(self, f"raw_{name}")
        value = torch.as_tensor(value, dtype=raw.dtype, device=raw.device)
        constraint = getattr(self, f"raw_{name}_constraint")
        self.initialize(**{f"raw_{name}": constraint.inverse_transform(value)})

    @property
    def w_std(self) -> torch.Tensor:
        return self.raw_w_std_constraint.transform(self.raw_w_std)

    @w_std.setter
    def w_std(self, value) -> None:
        self._set("w_std", value)

    @property
    def b_std(self) -> torch.Tensor:
        return self.raw_b_std_constraint.transform(self.raw_b_std)

    @b_std.setter
    def b_std(self, value) -> None:
        self._set("b_std", value)

    def forward(self, x1, x2, diag=False, last_dim_is_batch=False, **params):
        if last_dim_is_batch or x1.ndim != 2 or x2.ndim != 2:
            raise ValueError("GPyTorchKernel takes (n, d) inputs without batch dimensions, got "
                             f"{tuple(x1.shape)} and {tuple(x2.shape)}")
        if x1.requires_grad or x2.requires_grad:
            raise NotImplementedError(
                "gradients with respect to the inputs are not implemented: the kernel "
                "differentiates its hyperparameters (fit them; to optimize an acquisition "
                "function over inputs use a kernel with input gradients)")
        same = x2 is x1 or (x1.shape == x2.shape and torch.equal(x1, x2))
        spec, name = self.spec, self.spec["activation_param"]
        names = (*NAMES, *(() if name is None else (name,)))
        params = (self.w_std, self.b_std, *(() if name is None else (self.activation_value,)))
        values = {n: float(p.detach()) for n, p in zip(names, params, strict=True)}
        if spec["architecture"] is None:
            net = fc(spec["activation"], spec["depth"], w_std=values["w_std"],
                     b_std=values["b_std"], parameterization=spec["parameterization"])
            if name is not None:
                net = with_hyperparameters(net, **{name: values[name]})
        else:
            net = with_hyperparameters(spec["architecture"], **values)
        wanted = [n for n, p in zip(names, params, strict=True)
                  if torch.is_grad_enabled() and p.requires_grad]
        shape = spec["input_shape"]
        a = rows_as_inputs(x1.detach().to(torch.float64), shape, "x1")
        b = None if same else rows_as_inputs(x2.detach().to(torch.float64), shape, "x2")
        kind = spec["kind"]
        if diag and not wanted and is_spatial(net.layers):
            wanted = []  # (a spatial network's diagonal: its own pass, without tangents)
        elif not wanted:  # (evaluation, or fixed hyperparameters: the kernel alone)
            if diag:
                values = net.diagonal((a * a).sum(1) / a.shape[1], a.shape[1])
                k = Kernel(*(v.expand(a.shape[0]) for v in values))
            else:
                k = net.kernel(a, b, get=kind)
            return _KernelMatrix.apply(getattr(k, kind).to(x1.dtype), (None,) * len(params),
                                       *params)
        if diag:
            k, grads = diagonal_gradients(net, a, wrt=wanted)
        else:
            k, grads = kernel_gradients(net, a, b, wrt=wanted, get=kind)
        derivatives = tuple(getattr(grads[n], kind) if n in grads else None for n in names)
        return _KernelMatrix.apply(getattr(k, kind).to(x1.dtype), derivatives, *params)

    @property
    def activation_value(self) -> torch.Tensor:
        """The learned activation parameter (``activation_param``), constrained positive."""
        name = self.spec["activation_param"]
        if name is None:
            raise AttributeError("this kernel learns no activation parameter")
        return getattr(self, f"raw_{name}_constraint").transform(getattr(self, f"raw_{name}"))
