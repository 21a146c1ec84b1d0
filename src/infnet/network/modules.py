"""The ``torch.nn`` modules of finite networks built from layer values (``Layer.finite``):
fixed scalings, gated units, sums and concatenations of branches, and the context that every
layer's module is built in (width, random generator, dtype, device)."""

from __future__ import annotations

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
