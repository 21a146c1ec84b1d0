"""The diagonal pass of a network on its inputs (``Trace``), and the error raised when that
pass amplifies rounding beyond what a kernel can be trusted with."""

from __future__ import annotations

import torch

from .runs import RunTrace

Tensor = torch.Tensor


class IllConditionedError(ArithmeticError):
    """The network's kernel is ill-conditioned in its inputs.

    Its variance maps amplify the rounding of the input variances beyond ``MAX_CONDITION``
    (e.g. inputs near, but not at, an unstable fixed point of the variance map).
    """


class Trace:
    """The diagonal pass of a network on each input: ``sq`` = x.x/d, one record per segment
    (a layer's output variance, or a ``RunTrace``), the NNGP and NTK diagonals at the output."""

    def __init__(self, sq: Tensor, records: list, nngp: Tensor, ntk: Tensor):
        self.sq, self.records, self.nngp, self.ntk = sq, records, nngp, ntk

    def view(self, index, axis: int) -> Trace:
        """The inputs ``index``, as rows (axis 0) or columns (axis 1) of a tile."""
        def take(t):
            if isinstance(t, RunTrace):
                return t.view(index, axis)
            if isinstance(t, (tuple, list)):  # records of layers with inner layers
                return type(t)(take(r) for r in t)
            if t.ndim == 0:
                return t
            return t[index][:, None] if axis == 0 else t[index][None, :]
        return Trace(take(self.sq), [take(r) for r in self.records], take(self.nngp),
                     take(self.ntk))

    @property
    def explicit_layers(self) -> int:
        """Layers computed one by one on each pair (runs count their explicit blocks twice)."""
        return sum(2 * r.explicit if isinstance(r, RunTrace) else 1 for r in self.records)
