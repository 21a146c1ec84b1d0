"""The diagonal pass of a network on its inputs (``Trace``), and the error raised when that
pass amplifies rounding beyond what a kernel can be trusted with."""

from __future__ import annotations

import math

import torch

from .runs import RunTrace

Tensor = torch.Tensor

#: the largest amplification of relative changes of the input variances (through the network's
#: variance maps) accepted: beyond it rounding alone could put the kernel off by ~1e-10
MAX_CONDITION = 1e6
_CONDITION_STEP = 1e-7


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


def check_condition(net, tr: Trace, width: int) -> None:
    """Raise IllConditionedError where the network's variance maps amplify a relative change
    of the input variances (the pass at sq (1 + 1e-7)) beyond ``MAX_CONDITION``."""
    h = _CONDITION_STEP
    q = tr.nngp
    ok = (q > 0) & torch.isfinite(q)
    if not bool(ok.any()):
        return
    try:
        q2 = net.trace(tr.sq * (1 + h), width, check=False, like=tr).nngp
    except (ArithmeticError, ValueError):  # the perturbed variances diverge
        q2 = torch.full_like(q, math.inf)
    cond = ((q2 - q).abs() / (h * q))[ok]
    worst = float(cond.max()) if bool(torch.isfinite(cond).all()) else math.inf
    if worst > MAX_CONDITION:
        raise IllConditionedError(
            f"the kernel of {net!r:.200} is ill-conditioned: its variance maps amplify a "
            f"relative change of the input variances by {worst:.3g} (more than "
            f"{MAX_CONDITION:.0e}), so rounding alone could put it off by ~{worst * 1e-16:.0e}. "
            "This happens near an unstable fixed point of the variance map q -> w^2 "
            "E[phi(sqrt(q) z)^2] + b^2 (or with super-linear growth). Variances within "
            "1e-13 of a fixed point are kept at it: scale the inputs so that w^2 x.x/d + b^2 "
            "sits at the fixed point, choose w_std/b_std with a stable one "
            "(infnet.propagation), or lower the depth.")
