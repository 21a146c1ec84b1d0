"""A GPyTorch kernel (optional extra ``infnet[gpytorch]``): the NNGP or NTK of a
fully-connected infnet network, its ``w_std`` and ``b_std`` positive-constrained parameters
that an ``ExactGP`` (or BoTorch's ``SingleTaskGP``) trains by its marginal likelihood.

The kernel matrix enters autograd through one function whose backward contracts the incoming
gradient with the exact derivatives of ``gp.gradients`` (sum_ij G_ij dK_ij / dw), so a training
step costs one kernel and its tangents, on the inputs' device, in float64.
"""

from __future__ import annotations

import gpytorch
import torch
from gpytorch.constraints import Positive

from ..network import fc
from .gradients import diagonal_gradients, kernel_gradients

NAMES = ("w_std", "b_std")


class _KernelMatrix(torch.autograd.Function):
    """K(x1, x2) of the network at (w_std, b_std), differentiable in both."""

    @staticmethod
    def forward(ctx, w_std, b_std, x1, x2, spec, diag):
        if x1.requires_grad or (x2 is not None and x2.requires_grad):
            raise NotImplementedError(
                "gradients with respect to the inputs are not implemented: the kernel "
                "differentiates w_std and b_std (fit the hyperparameters; to optimize an "
                "acquisition function over inputs use a kernel with input gradients)")
        net = fc(spec["activation"], spec["depth"], w_std=float(w_std.detach()),
                 b_std=float(b_std.detach()), parameterization=spec["parameterization"])
        wanted = [n for n, t in zip(NAMES, (w_std, b_std), strict=True) if t.requires_grad]
        a = x1.detach().to(torch.float64)
        if diag:
            k, grads = diagonal_gradients(net, a, wrt=wanted)
        else:
            b = None if x2 is None else x2.detach().to(torch.float64)
            k, grads = kernel_gradients(net, a, b, wrt=wanted)
        kind = spec["kind"]
        ctx.grads = {n: getattr(g, kind) for n, g in grads.items()}
        return getattr(k, kind).to(x1.dtype)

    @staticmethod
    def backward(ctx, g):
        out = [None] * 6
        for i, name in enumerate(NAMES):
            if name in ctx.grads:
                out[i] = (g.to(torch.float64) * ctx.grads[name]).sum().to(g.dtype)
        return tuple(out)


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

    Inputs are (n, d) tensors (no batch dimensions); the kernel is computed in float64 and
    returned in the inputs' dtype. Raises NotImplementedError when asked for gradients with
    respect to the inputs.
    """

    has_lengthscale = False

    def __init__(self, activation="relu", depth: int = 1, w_std: float = 1.0,
                 b_std: float = 0.1, kind: str = "nngp", parameterization: str = "ntk",
                 **kwargs):
        super().__init__(**kwargs)
        if kind not in ("nngp", "ntk"):
            raise ValueError(f"kind must be 'nngp' or 'ntk', got {kind!r}")
        for name, value in (("w_std", w_std), ("b_std", b_std)):
            if not (isinstance(value, (int, float)) and value > 0):
                raise ValueError(f"{name} must be a number > 0 (a positive-constrained "
                                 f"parameter), got {value!r}")
        fc(activation, depth, w_std=w_std, b_std=b_std, parameterization=parameterization)
        self.spec = {"activation": activation, "depth": depth, "kind": kind,
                     "parameterization": parameterization}
        for name, value in (("w_std", w_std), ("b_std", b_std)):
            self.register_parameter(f"raw_{name}", torch.nn.Parameter(
                torch.zeros((), dtype=torch.float64)))
            self.register_constraint(f"raw_{name}", Positive())
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
        same = x2 is x1 or (x1.shape == x2.shape and torch.equal(x1, x2))
        return _KernelMatrix.apply(self.w_std, self.b_std, x1, None if same else x2,
                                   self.spec, diag)
