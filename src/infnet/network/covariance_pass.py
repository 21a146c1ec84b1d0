"""The NNGP alone of pairs of inputs of different norms, carried as covariances.

The pairs pass of ``Network.pairs`` carries each pair's angle from layer to layer, because the
NTK needs it: Kdot of a kinked unit (ReLU: (pi - theta) / 2 pi) has an infinite slope in the
correlation at rho = 1, so a correlation rounded near 1 would cost it half its digits. The
NNGP does not: dK/dc = Kdot is bounded for units without jumps, so a rounding of the covariance
moves K by no more than that rounding, and the recursion Sigma' = w^2 K(q1, q2, Sigma) + b^2
through the closed forms in (q1, q2, c) (those the spatial networks use), or the Hermite
series of a smooth unit, is exact to rounding, near-duplicate inputs included. When only the
NNGP is asked (``get="nngp"``), chains of Dense layers and such units take it: for closed
forms a dozen elementwise passes a layer instead of three dozen (a depth-10 ReLU NNGP of 2000
MNIST digits: 0.2 s against 1.4 s, equal to 1e-15); smooth units skip the output angles of
near-parallel pairs (a depth-6 swish network at w_std 2: 6.2 s against 7.4 s).
"""

from __future__ import annotations

import math

import torch

from ..activations.gated import Gated
from ..activations.numerical import pair_kernel
from ..activations.series import supports_series
from ..activations.slopes import two_slopes
from ..numerics.moments import corr_angle, corr_gap
from .layers import Dense, Nonlinearity
from .runs import Run

Tensor = torch.Tensor


def _lipschitz_unit(act) -> bool:
    """A closed form whose K is Lipschitz in the covariance (no jump: Kdot bounded), or a
    smooth unit that has a Hermite series (``activations.series``)."""
    if isinstance(act, Gated):
        return False
    return (act.is_closed_form and not act.jumps) or supports_series(act)


def _unit_nngp(act, q1: Tensor, q2: Tensor, c: Tensor) -> Tensor:
    """K at the moments: the closed form, or the Hermite series (the quadrature for the
    entries it cannot bound, at the angle of c: K is Lipschitz there too)."""
    if act.is_closed_form:
        return act.kernel(q1, q2, c, check=False)[0]
    return pair_kernel(act, q1, q2, c, corr_angle(q1, q2, c)[1])[0]


def _two_slope_block(slopes, w2: float, b2: float, q1: Tensor, q2: Tensor, c: Tensor) -> Tensor:
    """w2 K + b2 of the unit neg min(x, 0) + pos max(x, 0) at (q1, q2, c), as one
    sequence of in-place passes: with a = w2 (neg - pos)^2 / (2 pi), root = sqrt(q1 q2 -
    c^2) and theta = atan2(root, c), w2 K + b2 = a root - a theta c + w2 (neg^2 + pos^2) c / 2
    + b2 (``activations.slopes``): nine passes over the tile against a dozen through the
    closed form and the Dense layer apart. The square root and atan2 take two thirds of a
    layer's time, so the saving is small (3% of a depth-10 ReLU NNGP of 2000 MNIST digits,
    interleaved runs). None where q1 q2 leaves float64's safe range (then the closed form,
    which rescales)."""
    gap = corr_gap(q1, q2, c)
    if gap is None:
        return None
    neg, pos = slopes
    a = w2 * (neg - pos) ** 2 / (2 * math.pi)
    root = gap.sqrt_()
    theta = torch.atan2(root, c)
    return root.mul_(a).addcmul_(theta, c, value=-a).add_(c, alpha=w2 * (neg * neg + pos * pos) / 2
                                                          ).add_(b2)


def carries_covariances(segments, *traces) -> bool:
    """Whether the NNGP of these segments (``runs.find_runs``) can be carried as covariances
    for inputs with these diagonal passes: Dense layers, units whose K is Lipschitz in the
    covariance (``_lipschitz_unit``), and runs of them computed block by block (no jump to a
    limit)."""
    for i, seg in enumerate(segments):
        if isinstance(seg, Run):
            if not _lipschitz_unit(seg.act) or any(
                    tr.records[i].jump is not None or tr.records[i].explicit != seg.count
                    for tr in traces):
                return False
        elif isinstance(seg, Nonlinearity):
            if not _lipschitz_unit(seg.act):
                return False
        elif not isinstance(seg, Dense):
            return False
    return True


def nngp_by_covariances(segments, c: Tensor, tr1, tr2) -> Tensor:
    """The NNGP of a tile whose data covariances are c (x.x'/d; overwritten), with the
    diagonal passes of its rows and columns (``Trace.view``)."""
    q1, q2 = tr1.sq, tr2.sq
    for seg, r1, r2 in zip(segments, tr1.records, tr2.records, strict=True):
        if isinstance(seg, Dense):
            c = c.mul_(seg.w_std**2).add_((seg.b_std or 0.0) ** 2)
            q1, q2 = r1, r2
        elif isinstance(seg, Nonlinearity):
            c = _unit_nngp(seg.act, q1, q2, c)
            q1, q2 = r1, r2
        else:  # a run of [unit, Dense] blocks, the variances before each from its trace
            slopes = two_slopes(seg.act)
            for k in range(seg.count):
                fused = None if slopes is None else _two_slope_block(
                    slopes, seg.w2, seg.b2, r1.pre[k], r2.pre[k], c)
                if fused is None:
                    fused = _unit_nngp(seg.act, r1.pre[k], r2.pre[k], c).mul_(seg.w2).add_(seg.b2)
                c = fused
            q1, q2 = r1.q_out, r2.q_out
    return c
