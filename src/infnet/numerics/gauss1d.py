"""One-dimensional Gaussian expectations E[f(sqrt(q) z)] to machine precision: Gauss-Legendre on
|z| <= RADIUS, split at the kinks of f and at x = +-2^k (the scale of f, whatever q), with the
node count verified by the self-check of ``gauss``. Also the pairs with a zero variance, where
(u, v) = (sqrt(q1) z, sqrt(q2) z) is one-dimensional.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from .gauss import MAX_NODES, RADIUS, agree, describe, integrand_values, pieces, tail_verdict, verdict_at_cap

Tensor = torch.Tensor


#: the smallest scale break of the 1-D rule, in units of the input x = sqrt(q) z: breaks at
#: x = +-2^k from it up to the truncation resolve the activation's own features (near 0, and
#: its approach to its asymptotes) whatever the variance
_SCALE_MIN = 0.125
_NODES_1D = 48


def _breaks_1d(scales: Sequence[tuple[Tensor, Sequence[float]]]) -> Tensor:
    """Sorted breakpoints in z in [-R, R], (N, B): fixed ones, kinks / s and the scale breaks
    x = +-2^k / s of each (s, kinks) in ``scales``."""
    s0 = scales[0][0]
    fixed = torch.tensor([-RADIUS, -6.0, -3.0, 0.0, 3.0, 6.0, RADIUS], dtype=s0.dtype,
                         device=s0.device).expand(s0.shape[0], 7)
    z = [fixed]
    top = max((float(s.detach().max()) for s, _ in scales if s.numel()), default=0.0) * RADIUS
    count = max(0, math.ceil(math.log2(top / _SCALE_MIN))) if top > _SCALE_MIN else 0
    scale_breaks = [_SCALE_MIN * 2.0**k for k in range(count)]
    for s, kinks in scales:
        points = list(kinks) + [sign * b for b in scale_breaks for sign in (1.0, -1.0)]
        if not points:
            continue
        x = torch.tensor(points, dtype=s.dtype, device=s.device)
        live = (s > 0)[:, None]
        z.append(torch.where(live, x / s.clamp(min=1e-300)[:, None], RADIUS).clamp(-RADIUS, RADIUS))
    return torch.sort(torch.cat(z, dim=-1), dim=-1).values


def _sum_1d(integrands: Callable[[Tensor], list[Tensor]], br: Tensor, nodes: int):
    z, w = pieces(br[..., :-1], br[..., 1:], nodes)
    terms_w = w * torch.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    res, absolute = [], []
    for val in integrands(z):
        terms = terms_w * val
        res.append(terms.sum(dim=(1, 2)))
        absolute.append(terms.abs().sum(dim=(1, 2)))
    return res, absolute


def _adaptive_1d(integrands, br: Tensor, label: str, where) -> list[Tensor]:
    """Gauss-Legendre on the pieces between the breaks, nodes grown until two counts agree;
    the tails at |z| = R, 2R checked."""
    nodes = _NODES_1D
    prev, absolute = _sum_1d(integrands, br, nodes)
    edge = torch.tensor([[-2 * RADIUS, -RADIUS, RADIUS, 2 * RADIUS]], dtype=br.dtype,
                        device=br.device).expand(br.shape[0], 4)
    dens = torch.exp(-0.5 * edge * edge) / math.sqrt(2 * math.pi)
    for val, total in zip(integrands(edge[..., None]), absolute, strict=True):
        v = (dens * val.reshape(edge.shape).abs())
        tail_verdict(v[:, 1:3].amax(1), torch.maximum(v[:, 0], v[:, 3]), total, label, where)
    while True:
        nodes = int(nodes * 1.5)
        cur, absolute = _sum_1d(integrands, br, nodes)
        ok = agree(prev, cur, absolute)
        if all(bool(o.all()) for o in ok):
            return cur
        if nodes > MAX_NODES:
            verdict_at_cap(prev, cur, absolute, label, where)
            return cur
        prev = cur


def gaussian_expectation_1d(fn: Callable[[Tensor], Tensor] | Sequence[Callable[[Tensor], Tensor]],
                            q: Tensor, kinks: Sequence[float] = (),
                            label: str = "the Gaussian expectation") -> Tensor | list[Tensor]:
    """E[f(sqrt(q) z)], z ~ N(0, 1), for each q: Gauss-Legendre on |z| <= R split at the kinks
    of f and at x = +-2^k (the scale of f, whatever q), with the node count verified as in
    ``gaussian_expectation`` (same errors). ``fn`` may be a list of functions with the same
    kinks: then a list of expectations, on shared nodes."""
    q = q.reshape(-1)
    s = q.sqrt()
    br = _breaks_1d([(s, kinks)])
    fns = list(fn) if isinstance(fn, (list, tuple)) else [fn]
    out = _adaptive_1d(lambda z: [f(s[:, None, None] * z) for f in fns], br, label,
                       lambda bad: describe(q, q, None, bad))
    return out if isinstance(fn, (list, tuple)) else out[0]


def degenerate_expectation(fns, q1, q2, data, kinks_f, kinks_g, label) -> list[Tensor]:
    """Entries with q1 = 0 or q2 = 0: (u, v) = (sqrt(q1) z, sqrt(q2) z), a 1-D expectation."""
    s1, s2 = q1.sqrt(), q2.sqrt()
    br = _breaks_1d([(s1, kinks_f), (s2, kinks_g)])
    data = [d.reshape(-1, 1, 1) for d in data]

    def integrands(z):
        u, v = s1[:, None, None] * z, s2[:, None, None] * z
        return [integrand_values(item, u, v, data) for item in fns]

    return _adaptive_1d(integrands, br, label, lambda bad: describe(q1, q2, None, bad))
