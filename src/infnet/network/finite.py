"""Finite-width networks from a kernel spec, and Monte Carlo estimates of their kernels.

``build(net, width, in_features=d)`` (``Network.finite``) reads the layers of a ``Network`` and
returns the ``torch.nn.Sequential`` whose infinite-width limit is ``net.kernel``: module i is
layer i of the spec, built by the layer (``Layer.finite``). Theory: docs/theory/finite-width.md;
Jacot et al. 2018 (NTK parameterization), Sohl-Dickstein et al. 2020, arXiv 2001.07301
(standard parameterization):

    NTK:       y = (w_std / sqrt(n_in)) W x + b_std b,   W, b ~ N(0, 1) trained
    standard:  y = W x + b,   W ~ N(0, w_std^2 / n_in),  b ~ N(0, b_std^2) trained
               (b_std = 0: a bias initialized at 0, still trained; b_std = None: no bias)

The NTK parameterization is written with plain ``nn.Linear`` modules, so that the structured
derivatives of ``infnet.empirical`` apply: y = beta (W (a x) + b) with fixed elementwise scalings
a = w_std / (sqrt(n_in) b_std) and beta = b_std (without a bias: y = W (a x), a = w_std / sqrt(n_in)).
Gradients with respect to W and b are those of the formula above.

``monte_carlo_kernel`` estimates the NNGP E[f(x) f(x')] and the NTK E[Theta_emp(x, x')] over
random initializations, with standard errors (Lee et al. 2018, arXiv 1711.00165; Jacot et al.
2018; both converge at width^(-1/2) per draw, Lee et al. 2019, arXiv 1902.06720).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .infinite import InfiniteDepth
from .layers import Dense
from .modules import BuildContext

Tensor = torch.Tensor


def build(net, width: int | None = None, *, in_features: int, outputs: int = 1, seed: int | None = None,
          dtype: torch.dtype = torch.float64, device=None) -> nn.Sequential:
    """The finite network of the spec ``net`` (module docstring): an ``nn.Sequential`` with one
    module per layer of ``net``, each built by the layer itself (``Layer.finite``: a Dense is
    ``nn.Linear``, or for the NTK parameterization ``nn.Sequential(Scale, nn.Linear, Scale)``;
    an activation ``infnet.empirical.Elementwise``, or ``GatedUnit`` for the GLU family;
    ``LayerNorm`` ``nn.LayerNorm``; branches a ``BranchModule``).

    ``width``: output width of every Dense but the last, unless that Dense has its own ``width``
    (the standard parameterization's NTK depends on it, so the spec's value wins; under the NTK
    parameterization it is used only when ``width`` is None); ``in_features``: the input
    dimension d (spatial networks: the shape (C, H, W) or (C, L) of one input; the hidden width
    is then the channels); ``outputs``: output width of the last Dense (the kernel is the same
    for each output). A Dense followed by a gated activation gets twice its width (value and
    gate halves). Parameters are drawn on the CPU from ``torch.Generator().manual_seed(seed)``
    (None: a random seed) in ``dtype`` and then moved to ``device``: one seed gives the same
    network on every device, bit for bit on the CPU.
    """
    layers = _check_spec(net)
    if not isinstance(in_features, int) and isinstance(in_features, (tuple, list)):
        in_features = tuple(in_features)  # the shape (C, *S) of one input of a spatial network
        if len(in_features) not in (2, 3) or not all(
                isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in in_features):
            raise ValueError(f"in_features of a spatial network is the shape (C, H, W) or "
                             f"(C, L) of one input, got {in_features!r}")
    for name, value in (("in_features", in_features), ("outputs", outputs)):
        if isinstance(value, tuple):
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if width is not None and (isinstance(width, bool) or not isinstance(width, int) or width < 1):
        raise ValueError(f"width must be a positive integer, got {width!r}")
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise TypeError(f"dtype must be a floating torch.dtype, got {dtype!r}")
    gen = torch.Generator()
    if seed is None:
        gen.seed()
    else:
        gen.manual_seed(seed)
    ctx = BuildContext(width, outputs, gen, dtype, device)
    modules, _ = build_layers(layers, in_features, ctx, readout=True)
    return nn.Sequential(*modules)


def build_layers(layers, n_in: int, ctx: BuildContext, *, readout: bool
                 ) -> tuple[list[nn.Module], int]:
    """The modules of a sequence of layers and the output width; with ``readout`` the last
    Dense outputs ``ctx.outputs``."""
    last = max((i for i, layer in enumerate(layers) if isinstance(layer, Dense)), default=-1) \
        if readout else -1
    modules = []
    for i, layer in enumerate(layers):
        nxt = layers[i + 1] if i + 1 < len(layers) else None
        module, n_in = layer.finite(n_in, ctx, readout=i == last, next_layer=nxt)
        modules.append(module)
    return modules, n_in


def _check_spec(net) -> tuple:
    if isinstance(net, InfiniteDepth) or not hasattr(net, "layers"):
        kind = "an infinitely deep network (depth=inf)" if isinstance(net, InfiniteDepth) \
            else type(net).__name__
        raise TypeError(f"a finite network needs a Network of Dense and activation layers "
                        f"(infnet.fc with a finite depth, infnet.serial); got {kind}, which has no "
                        "finite-width counterpart: use fc(act, depth=L) with a large finite L")
    layers = net.layers
    if not any(isinstance(layer, Dense) for layer in layers):
        raise ValueError("the network has no Dense layer: nothing to build")
    return layers


# ---- Monte Carlo kernels --------------------------------------------------------------------------

@dataclass(frozen=True)
class MonteCarloKernel:
    """Means over ``n_samples`` random networks of width ``width`` and their standard errors
    (sample standard deviation / sqrt(n_samples)); None where not asked for (``get``)."""

    nngp: Tensor | None
    ntk: Tensor | None
    nngp_se: Tensor | None
    ntk_se: Tensor | None
    n_samples: int
    width: int | None


def sample_seeds(seed, n: int) -> list[int]:
    """n independent seeds derived from ``seed`` (an int or a tuple of ints; numpy's SeedSequence)."""
    return [int(s) for s in np.random.SeedSequence(seed).generate_state(n, dtype=np.uint64)]


def monte_carlo_kernel(net, x1, x2=None, *, width: int | None, n_samples: int, seed: int = 0,
                       get: str = "both", outputs: int = 1, method: str = "auto") -> MonteCarloKernel:
    """Monte Carlo NNGP and NTK of ``net`` at finite ``width`` (module docstring).

    NNGP: the mean over initializations of f(x1) f(x2)^T / outputs (the outputs are independent
    draws of one kernel); NTK: the mean of ``infnet.empirical.empirical_ntk(model, x1, x2)``
    (averaged over outputs; ``method`` passed on). Networks use the dtype (floating inputs; else
    float64) and device of x1, seeds from ``sample_seeds(seed, n_samples)``.
    """
    from ..empirical import empirical_ntk

    if get not in ("both", "nngp", "ntk"):
        raise ValueError(f"get must be 'both', 'nngp' or 'ntk', got {get!r}")
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 2:
        raise ValueError(f"n_samples must be an integer >= 2 (for a standard error), got {n_samples!r}")
    x1 = _as_inputs(x1)
    x2 = None if x2 is None else _as_inputs(x2).to(x1)
    if x2 is not None and x2.shape[1:] != x1.shape[1:]:
        raise ValueError(f"x1 and x2 have shapes {tuple(x1.shape)} and {tuple(x2.shape)}: the features "
                         "must match")
    kinds = ("nngp", "ntk") if get == "both" else (get,)
    stats = {k: _Welford() for k in kinds}
    for s in sample_seeds(seed, n_samples):
        shape = x1.shape[1] if x1.ndim == 2 else tuple(x1.shape[1:])
        model = build(net, width, in_features=shape, outputs=outputs, seed=s, dtype=x1.dtype,
                      device=x1.device)
        if "nngp" in stats:
            with torch.no_grad():
                f1 = model(x1)
                f2 = f1 if x2 is None else model(x2)
            stats["nngp"].add(f1 @ f2.T / outputs)
        if "ntk" in stats:
            stats["ntk"].add(empirical_ntk(model, x1, x2, method=method))
    out = {k: stats[k].mean if k in stats else None for k in ("nngp", "ntk")}
    se = {k: stats[k].standard_error() if k in stats else None for k in ("nngp", "ntk")}
    return MonteCarloKernel(out["nngp"], out["ntk"], se["nngp"], se["ntk"], n_samples, width)


def _as_inputs(x) -> Tensor:
    x = torch.as_tensor(x)
    if not x.is_floating_point():
        x = x.to(torch.float64)
    if x.ndim not in (2, 3, 4) or x.numel() == 0:
        raise ValueError(f"inputs must have shape (n, features), or (n, C, H, W) / (n, C, L) "
                         f"for spatial networks; got {tuple(x.shape)}")
    return x


class _Welford:
    """Running mean and sum of squared deviations (Welford 1962), elementwise."""

    def __init__(self):
        self.n, self.mean, self.m2 = 0, None, None

    def add(self, x: Tensor) -> None:
        self.n += 1
        if self.mean is None:
            self.mean, self.m2 = x.clone(), torch.zeros_like(x)
            return
        delta = x - self.mean
        self.mean += delta / self.n
        self.m2 += delta * (x - self.mean)

    def standard_error(self) -> Tensor:
        return (self.m2 / (self.n - 1) / self.n).sqrt()
