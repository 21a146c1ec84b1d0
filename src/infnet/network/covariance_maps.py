"""An activation's map over the covariances of a tile of a spatial network, in slabs that
stay in the processor's cache (``blocked_map``), and over each input with itself, whose
position covariance is symmetric (``symmetric_map``): the closed forms of the layer, or the
Hermite series of an activation without one (``activations.series``), which hands back to the
layer's quadrature the entries it cannot bound.
"""

from __future__ import annotations

import itertools
import math

import torch

from ..activations.series import TileSeries
from .layers import Moments

Tensor = torch.Tensor

#: the entries of one slab of an activation's map (``blocked_map``): 512 KB per tensor
BLOCK_ENTRIES = 1 << 16
#: the same for the Hermite series of activations without a closed form, whose tens of
#: passes an entry gain from fewer, larger slabs (4 MB a tensor: a 4-layer tanh CNN-GAP on
#: 32 x 32 images took 2.0-2.2x the ReLU time, against 2.4-2.9x in slabs of 2^17)
SERIES_BLOCK = 1 << 19


def blocked_map(layer, m: Moments, series: TileSeries | None) -> Moments:
    """``layer.covariance_map`` in slabs of about ``BLOCK_ENTRIES`` entries: the dozen
    elementwise passes of an activation's map then run in the processor's cache (a pair of
    32 x 32 images has 2^20 entries, 8 MB per tensor; 2-3x faster in slabs). A smooth
    activation without a closed form uses its Hermite series (``activations.series``), whose
    per-position coefficients are computed once for the whole tile."""
    shape = m.nngp.shape
    block = BLOCK_ENTRIES if series is None else SERIES_BLOCK
    if m.nngp.numel() <= 2 * block:
        return _slab_map(layer, m, series, None)
    a = next(i for i in range(len(shape)) if math.prod(shape[i + 1:]) <= block)
    step = max(1, block // math.prod(shape[a + 1:]))
    nngp = torch.empty(shape, dtype=m.nngp.dtype, device=m.nngp.device)
    ntk = torch.empty_like(nngp)
    for lead in itertools.product(*(range(n) for n in shape[:a])):
        for start in range(0, shape[a], step):
            index = (*lead, slice(start, start + step))
            sub = Moments(*(_slab(t, index) for t in (m.nngp, m.ntk, m.q1, m.q2)), m.width)
            out = _slab_map(layer, sub, series, index)
            nngp[index] = out.nngp
            ntk[index] = out.ntk
    return Moments(nngp, ntk, m.q1, m.q2, m.width)


def diagonal_map(layer, q: Tensor, t: Tensor, width, series: TileSeries | None) -> Moments:
    """The map of each position with itself (variances q, NTK t): the series at rho = 1, the
    sum of the squared coefficients (within ``TOLERANCE`` of E[phi^2] where every position is
    resolved), else the layer's own diagonal map (1-D quadrature)."""
    if series is not None and series.resolved:
        side = series.sides[0]
        K, Kdot = ((v * v).sum(0).reshape(q.shape) for v in (side.a, side.d))
        return Moments(K, Kdot * t, K, K, width)
    return layer.apply(Moments(q, t, q, q, width))


def symmetric_map(layer, m: Moments, nd: int, q: Tensor, t: Tensor, series: TileSeries
                  ) -> tuple[Moments, Moments]:
    """``_blocked_map`` of each input with itself (full layout) by the Hermite series, and
    the diagonal map at its variances q (NTK t). The covariance of the P positions is
    symmetric, so only the slabs of rows [r0, r1) and columns [r0, P) are computed and the
    lower triangle is the upper one mirrored; the diagonal map is ``diagonal_map``."""
    shape = m.nngp.shape
    n, p = shape[0], math.prod(shape[1:1 + nd])
    c, theta = m.nngp.reshape(n, p, p), m.ntk.reshape(n, p, p)
    q1, q2 = m.q1.reshape(n, p, 1), m.q2.reshape(n, 1, p)
    diag = diagonal_map(layer, q, t, m.width, series)
    nngp, ntk = torch.empty_like(c), torch.empty_like(c)
    for i in range(n):
        r0 = 0
        while r0 < p:  # slabs of about SERIES_BLOCK entries, taller as the rows shorten
            r1 = min(p, r0 + max(1, SERIES_BLOCK // (p - r0)))
            index = (slice(i, i + 1), slice(r0, r1), slice(r0, p))
            sub = Moments(c[index], theta[index], q1[index[:2]], q2[i:i + 1, :, r0:], m.width)
            out = _slab_map(layer, sub, series, index)
            nngp[index], ntk[index] = out.nngp, out.ntk
            r0 = r1
    nngp, ntk = (x.triu() + x.triu(1).transpose(1, 2) for x in (nngp, ntk))
    return Moments(nngp.reshape(shape), ntk.reshape(shape), m.q1, m.q2, m.width), diag


def _slab_map(layer, m: Moments, series, index) -> Moments:
    """One slab (``index`` of the tile): the series where it bounds its truncation, the
    layer's own map (the quadrature) at the entries it cannot."""
    out = None if series is None else series.kernel(m.nngp, index)
    if out is None:
        return layer.covariance_map(m)
    K, Kdot, uncertain = out
    if uncertain is not None and bool(uncertain.any()):
        q1, q2 = (q.expand(K.shape)[uncertain] for q in (m.q1, m.q2))
        exact = layer.covariance_map(Moments(m.nngp.expand(K.shape)[uncertain],
                                             torch.ones_like(q1), q1, q2, m.width))
        K[uncertain], Kdot[uncertain] = exact.nngp, exact.ntk
    return Moments(K, Kdot.mul_(m.ntk), m.q1, m.q2, m.width)


def _slab(t: Tensor, index: tuple) -> Tensor:
    """t[index] on the axes where t is not broadcast (size 1 kept)."""
    if t.ndim == 0:
        return t
    return t[tuple(i if t.shape[k] > 1 else slice(None) for k, i in enumerate(index))]
