"""Gaussian expectations of elementwise functions to machine precision.

    E[f(u) g(v)],   (u, v) ~ N(0, [[q1, c], [c, q2]])

computed in polar coordinates of a standard normal pair (docs/theory/numerical-duals.md#polar-quadrature):
z = r (cos t, sin t), u = r sqrt(q1) cos t, v = r sqrt(q2) cos(t - t0), t0 = arccos(rho), so that

    E[f(u) g(v)] = (1 / 2 pi) int_0^{2 pi} dt int_0^R r exp(-r^2 / 2) f(u) g(v) dr.

The integrand is smooth inside every polygon cut out of the plane by the kink lines u = a, v = b.
The angle is split at the rays through the origin along kinks at 0 (t = +-pi/2, t0 +- pi/2) and at
the rays through the corners (u, v) = (a, b); along each ray the radius is split where it crosses a
kink a != 0 (r = a / (sqrt(q1) cos t)). Gauss-Legendre on every piece then converges
geometrically, also for kinks and also as rho -> +-1, where the pieces between nearby rays are
integrated exactly rather than resolved.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from .gauss import MAX_NODES, RADIUS, agree, describe, integrand_values, pieces, tail_verdict, verdict_at_cap
from .gauss1d import degenerate_expectation
from .moments import corr_angle

Tensor = torch.Tensor
#: Gauss-Legendre nodes per angular piece and per radial piece
NODES_ANGLE = 32
NODES_RADIUS = 32
#: at most this many graded rays per kink and side (see graded_radii)
_MAX_GRADED = 10
#: fixed radial breaks: most of the Gaussian mass lies below the first
_RADIAL_BREAKS = (4.0,)
#: bound on nodes x points evaluated at once (memory of the quadrature)
_CHUNK_ELEMENTS = 1 << 22


def graded_radii(kink: float, max_scale: float) -> list[float]:
    """R/2, R/4, ..., down to the smallest distance |kink| / max_scale of the kink line."""
    if max_scale <= 0:
        return []
    count = math.ceil(math.log2(max(RADIUS * max_scale / abs(kink), 2.0)))
    return [RADIUS / 2**j for j in range(1, min(count, _MAX_GRADED) + 1)]


def _angles(s1: Tensor, s2: Tensor, cos0: Tensor, sin0: Tensor, t0: Tensor,
            kinks_f: Sequence[float], kinks_g: Sequence[float]) -> Tensor:
    """Sorted breakpoints of the angle in [0, 2 pi), measured from -pi/2; shape (N, P)."""
    half_pi = math.pi / 2
    rays = [torch.full_like(t0, -half_pi), torch.full_like(t0, half_pi), t0 - half_pi, t0 + half_pi]
    with torch.no_grad():
        for a in kinks_f:
            for b in kinks_g:
                if a == 0.0 and b == 0.0:
                    continue
                z1 = a / s1
                # v = s2 (cos0 z1 + sin0 z2) = b; a corner at infinity when sin0 = 0 (skipped)
                z2 = (b / s2 - cos0 * z1) / sin0
                ang = torch.atan2(z2, z1)
                ok = torch.isfinite(ang) & (z1 * z1 + z2 * z2 < RADIUS * RADIUS)
                rays.append(torch.where(ok, ang, torch.full_like(ang, -half_pi)))
        # graded rays near the directions parallel to a kink line u = a (or v = b), where the
        # radial break r = a / (s1 cos t) runs off to infinity: split where it passes
        # R/2, R/4, ... down to the distance of the line from the origin
        for kinks, scale, shift in ((kinks_f, s1, None), (kinks_g, s2, t0)):
            for a in kinks:
                if a == 0.0:
                    continue
                for radius in graded_radii(a, float(scale.max())):
                    cos_t = (a / (scale * radius)).clamp(-1.0, 1.0)
                    base = torch.acos(cos_t)
                    for ang in (base, -base):
                        rays.append(ang if shift is None else ang + shift)
    rel = torch.remainder(torch.stack(rays, dim=-1) + half_pi, 2 * math.pi)
    return torch.sort(rel, dim=-1).values - half_pi


def _radial_breaks(a_t: Tensor, b_t: Tensor, kinks_f: Sequence[float],
                   kinks_g: Sequence[float]) -> Tensor:
    """Sorted radii in [0, R] where the ray crosses a kink away from the origin."""
    br = []
    pairs = [(k, a_t) for k in kinks_f if k != 0.0] + [(k, b_t) for k in kinks_g if k != 0.0]
    for k, coef in pairs:
        r = k / coef
        r = torch.where(torch.isfinite(r) & (r > 0), r, torch.full_like(r, RADIUS))
        br.append(r.clamp(max=RADIUS))
    zero = torch.zeros_like(a_t)
    full = torch.full_like(a_t, RADIUS)
    br.extend(torch.full_like(a_t, b) for b in _RADIAL_BREAKS)
    inner = torch.sort(torch.stack(br, dim=-1), dim=-1).values
    return torch.cat([zero.unsqueeze(-1), inner, full.unsqueeze(-1)], dim=-1)


def gaussian_expectation(
    fns: Sequence[tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]]],
    q1: Tensor, q2: Tensor, c: Tensor,
    kinks_f: Sequence[float] = (), kinks_g: Sequence[float] | None = None,
    nodes_angle: int = NODES_ANGLE, nodes_radius: int = NODES_RADIUS, adaptive: bool = True,
    theta: Tensor | None = None, entry_data: Sequence[Tensor] = (),
    label: str = "the Gaussian expectation",
) -> list[Tensor]:
    """E[f(u) g(v)] for each pair (f, g) in ``fns``, all at once on the same nodes; an item of
    ``fns`` may also be one function ``h(u, v, *entry_data)`` of both (``entry_data``: tensors
    of one value per entry, broadcast against the nodes).

    q1, q2, c: float tensors of one shape (broadcast by the caller); ``theta``: their angle when
    known more accurately than arccos(c / sqrt(q1 q2)); the kinks are the points where f (resp.
    g) or its derivative is not smooth. Returns one tensor per item, of the shape of c.
    Cost: (4 + corners) * nodes_angle * (1 + kinks) * nodes_radius evaluations
    per entry, in chunks of bounded memory. With ``adaptive``, the node counts grow (by 1.4x
    steps) until two successive counts agree to ``SELF_CHECK_TOL`` (or to the rounding of the
    sum) on a sample of the hardest entries (largest variances, correlations nearest +-1), and
    the verified count is used; the sample's Gaussian tail is checked too.

    Raises ``KernelOverflowError`` where the integrand does not decay in the tail (the
    expectation diverges) and ``QuadratureError`` where it cannot be resolved (``label`` names
    the expectation in the message). A zero variance makes that input the constant 0: the
    entry is then a 1-D expectation.
    """
    kinks_f = tuple(float(k) for k in kinks_f)
    kinks_g = kinks_f if kinks_g is None else tuple(float(k) for k in kinks_g)
    shape = c.shape
    if theta is None:
        theta = corr_angle(q1, q2, c)[1]  # exact near rho = +-1
    q1, q2, theta, *data = (t.reshape(-1) for t in torch.broadcast_tensors(q1, q2, theta,
                                                                            *entry_data))
    flat = [torch.empty_like(q1) for _ in fns]
    degenerate = (q1 == 0) | (q2 == 0)
    if bool(degenerate.any()):
        idx = degenerate.nonzero(as_tuple=True)[0]
        for out, val in zip(flat, degenerate_expectation(fns, q1[idx], q2[idx], [d[idx] for d in data],
                                              kinks_f, kinks_g, label), strict=True):
            out[idx] = val
        if bool(degenerate.all()):
            return [o.reshape(shape) for o in flat]
        idx = (~degenerate).nonzero(as_tuple=True)[0]
        q1, q2, theta, data = q1[idx], q2[idx], theta[idx], [d[idx] for d in data]
    else:
        idx = None
    if adaptive:
        nodes_angle, nodes_radius = _choose_nodes(fns, q1, q2, theta, data, kinks_f, kinks_g,
                                                  nodes_angle, nodes_radius, label)
    nonzero = sum(1 for k in kinks_f if k) + sum(1 for k in kinks_g if k)
    n_pieces = (5 + sum(1 for a in kinks_f for b in kinks_g if (a, b) != (0.0, 0.0))
                + 2 * _MAX_GRADED * nonzero)
    n_radial = 1 + len(_RADIAL_BREAKS) + nonzero
    per_entry = n_pieces * nodes_angle * n_radial * nodes_radius
    chunk = max(1, _CHUNK_ELEMENTS // per_entry)
    outs: list[list[Tensor]] = [[] for _ in fns]
    for start in range(0, q1.numel(), chunk):
        sl = slice(start, start + chunk)
        vals, _ = _expectation_chunk(fns, q1[sl], q2[sl], theta[sl], [d[sl] for d in data],
                                     kinks_f, kinks_g, nodes_angle, nodes_radius, absolute=False)
        for o, val in zip(outs, vals, strict=True):
            o.append(val)
    for out, o in zip(flat, outs, strict=True):
        if idx is None:
            out.copy_(torch.cat(o))
        else:
            out[idx] = torch.cat(o)
    return [o.reshape(shape) for o in flat]


def _choose_nodes(fns, q1, q2, theta, data, kinks_f, kinks_g, nodes_angle, nodes_radius, label):
    """Smallest node counts, from the given ones up, that agree with the next larger ones, on a
    sample of the hardest entries, whose Gaussian tails are checked first."""
    n = q1.numel()
    picks = {int(q1.argmax()), int(q2.argmax()), int(theta.argmin()), int(theta.argmax()),
             int((q1 * q2).argmax())}
    picks.update(range(0, n, max(1, n // 2)))
    idx = torch.tensor(sorted(picks), device=q1.device)
    sample = (q1[idx], q2[idx], theta[idx], [d[idx] for d in data])
    prev, absolute = _expectation_chunk(fns, *sample, kinks_f, kinks_g, nodes_angle, nodes_radius)
    _check_tail(fns, sample, kinks_f, kinks_g, nodes_angle, absolute, label)
    while True:
        na, nr = int(nodes_angle * 1.4), int(nodes_radius * 1.4)
        cur, absolute = _expectation_chunk(fns, *sample, kinks_f, kinks_g, na, nr)
        ok = agree(prev, cur, absolute)
        if all(bool(o.all()) for o in ok):
            return nodes_angle, nodes_radius
        if max(na, nr) > MAX_NODES:
            verdict_at_cap(prev, cur, absolute, f"{label} (kinks {list(dict.fromkeys(kinks_f + kinks_g))})",
                    lambda bad: describe(sample[0], sample[1], sample[2], bad))
            return na, nr
        nodes_angle, nodes_radius, prev = na, nr, cur


def _angle_nodes(q1, q2, t0, kinks_f, kinks_g, nodes_angle):
    """Angle nodes t and weights (N, P+1, nt) between the rays, and the coefficients a_t, b_t
    with u = r a_t, v = r b_t."""
    s1, s2 = q1.sqrt(), q2.sqrt()
    cos0, sin0 = torch.cos(t0), torch.sin(t0)
    ang = _angles(s1, s2, cos0, sin0, t0, kinks_f, kinks_g)  # (N, P)
    lo = torch.cat([torch.full_like(t0, -math.pi / 2).unsqueeze(-1), ang], dim=-1)
    hi = torch.cat([ang, torch.full_like(t0, 3 * math.pi / 2).unsqueeze(-1)], dim=-1)
    t, wt = pieces(lo, hi, nodes_angle)  # (N, P+1, nt)
    # cos(t - t0) = cos t cos t0 + sin t sin t0 keeps the v = 0 rays exact
    cos_t, sin_t = torch.cos(t), torch.sin(t)
    a_t = s1[:, None, None] * cos_t
    b_t = s2[:, None, None] * (cos_t * cos0[:, None, None] + sin_t * sin0[:, None, None])
    return wt, a_t, b_t


def _expectation_chunk(fns, q1, q2, t0, data, kinks_f, kinks_g, nodes_angle, nodes_radius,
                       absolute: bool = True):
    """(values, absolute integrals): E[f(u) g(v)] and E[|f(u) g(v)|] per item and entry (the
    latter, for the self-check, only with ``absolute``)."""
    wt, a_t, b_t = _angle_nodes(q1, q2, t0, kinks_f, kinks_g, nodes_angle)
    rb = _radial_breaks(a_t, b_t, kinks_f, kinks_g)  # (N, P+1, nt, B)
    r, wr = pieces(rb[..., :-1], rb[..., 1:], nodes_radius)  # (N, P+1, nt, B-1, nr)
    weight = wr * r * torch.exp(-0.5 * r * r) * wt[..., None, None] / (2 * math.pi)
    u = r * a_t[..., None, None]
    v = r * b_t[..., None, None]
    data = [d.reshape(-1, 1, 1, 1, 1) for d in data]
    res, sizes = [], []
    for item in fns:
        terms = weight * integrand_values(item, u, v, data)
        res.append(terms.sum(dim=(1, 2, 3, 4)))
        if absolute:
            sizes.append(terms.abs().sum(dim=(1, 2, 3, 4)))
    return res, sizes


def _check_tail(fns, sample, kinks_f, kinks_g, nodes_angle, absolute, label) -> None:
    """Raise where the integrand on the circle r = RADIUS (the truncation) is not negligible:
    KernelOverflowError if it does not decay out to 2 RADIUS (the expectation diverges),
    QuadratureError if it decays too slowly to be truncated there."""
    q1, q2, t0, data = sample
    wt, a_t, b_t = _angle_nodes(q1, q2, t0, kinks_f, kinks_g, nodes_angle)
    data = [d.reshape(-1, 1, 1) for d in data]
    for item, total in zip(fns, absolute, strict=True):
        ring = []
        for radius in (RADIUS, 2 * RADIUS):
            val = integrand_values(item, radius * a_t, radius * b_t, data).abs()
            dens = radius * math.exp(-0.5 * radius * radius) / (2 * math.pi)
            ring.append((wt * dens * val).sum(dim=(1, 2)))
        tail_verdict(ring[0], ring[1], total, label,
                      lambda bad: describe(q1, q2, t0, bad))


# ---- one dimension -------------------------------------------------------------------------


