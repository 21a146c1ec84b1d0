"""The ``torch.nn`` modules of finite networks built from layer values (``Layer.finite``):
fixed scalings, gated units, sums and concatenations of branches, and the context that every
layer's module is built in (width, random generator, dtype, device)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

Tensor = torch.Tensor


@dataclass
class BuildContext:
    """What a layer needs to build its module: the hidden ``width`` (None: the spec's own),
    the output width of the readout, the generator parameters are drawn from (on the CPU, in
    ``dtype``, then moved to ``device``)."""

    width: int | None
    outputs: int
    generator: torch.Generator
    dtype: torch.dtype
    device: object = None


class Scale(nn.Module):
    """x -> factor * x, a fixed elementwise scaling (no parameters; ``elementwise`` for the
    structured empirical NTK)."""

    elementwise = True

    def __init__(self, factor: float):
        super().__init__()
        self.factor = float(factor)

    def forward(self, x: Tensor) -> Tensor:
        return x * self.factor

    def extra_repr(self) -> str:
        return f"{self.factor:.6g}"


class GatedUnit(nn.Module):
    """A gated activation (GLU family) on the two halves of the last axis: value(a) * gate(b).
    Not elementwise: the empirical NTK of a network with it uses the general methods."""

    def __init__(self, act):
        super().__init__()
        self.act = act

    def forward(self, x: Tensor) -> Tensor:
        return self.act(x)

    def extra_repr(self) -> str:
        return self.act.name


class BranchModule(nn.Module):
    """Branches applied to one input, then summed with weights (``combine="sum"``: a residual
    block) or concatenated along the features (``"concat"``)."""

    def __init__(self, branches: list[nn.Module], weights: tuple[float, ...], combine: str):
        super().__init__()
        self.branches = nn.ModuleList(branches)
        self.weights = tuple(float(w) for w in weights)
        self.combine = combine

    def forward(self, x: Tensor) -> Tensor:
        outs = [b(x) for b in self.branches]
        if self.combine == "concat":
            return torch.cat(outs, dim=-1)
        total = self.weights[0] * outs[0]
        for w, y in zip(self.weights[1:], outs[1:], strict=True):
            total = total + w * y
        return total

    def extra_repr(self) -> str:
        return f"combine={self.combine}, weights={self.weights}"


class Pad(nn.Module):
    """Padding of the spatial axes before a convolution or pooling: ``pads`` as
    ``torch.nn.functional.pad`` takes them (last axis first), zeros or wrapped around."""

    def __init__(self, pads: tuple[int, ...], circular: bool):
        super().__init__()
        self.pads, self.circular = tuple(pads), circular

    def forward(self, x: Tensor) -> Tensor:
        if not any(self.pads):
            return x
        return nn.functional.pad(x, self.pads, mode="circular" if self.circular else "constant")

    def extra_repr(self) -> str:
        return f"{self.pads}, {'circular' if self.circular else 'zeros'}"


class GlobalMean(nn.Module):
    """The mean over the spatial axes: (n, C, *S) -> (n, C)."""

    def forward(self, x: Tensor) -> Tensor:
        return x.flatten(2).mean(-1)


class LocalConv(nn.Module):
    """A locally connected layer: a convolution with its own filter at every output position
    (unshared weights), (n, C, *S) -> (n, C_out, *S_out) on padded inputs, without padding of
    its own. Weights (P_out, C_out, C k) and bias (C_out, *S_out), both standard normal times
    the given scales."""

    def __init__(self, c_in: int, c_out: int, filter_shape: tuple[int, ...],
                 strides: tuple[int, ...], out_shape: tuple[int, ...], bias: bool,
                 generator: torch.Generator, dtype, device):
        super().__init__()
        self.filter_shape, self.strides, self.out_shape = filter_shape, strides, out_shape
        p_out, fan = math.prod(out_shape), c_in * math.prod(filter_shape)
        w = torch.randn(p_out, c_out, fan, generator=generator, dtype=dtype)
        self.weight = nn.Parameter(w.to(device))
        self.bias = None
        if bias:
            b = torch.randn(c_out, *out_shape, generator=generator, dtype=dtype)
            self.bias = nn.Parameter(b.to(device))

    def forward(self, x: Tensor) -> Tensor:
        patches = x
        for axis, (k, s) in enumerate(zip(self.filter_shape, self.strides, strict=True)):
            patches = patches.unfold(2 + axis, k, s)  # (n, C, *S_out, *k)
        n, c = patches.shape[:2]
        nd = len(self.filter_shape)
        # (n, *S_out, C, *k) -> (n, P_out, C k), channel-major like torch's Conv weights
        perm = (0, *range(2, 2 + nd), 1, *range(2 + nd, 2 + 2 * nd))
        patches = patches.permute(perm).reshape(n, math.prod(self.out_shape), -1)
        y = torch.einsum("npf,pof->nop", patches, self.weight)
        y = y.reshape(n, -1, *self.out_shape)
        return y if self.bias is None else y + self.bias

    def extra_repr(self) -> str:
        return f"filter={self.filter_shape}, strides={self.strides}, out={self.out_shape}"
