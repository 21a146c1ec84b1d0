"""Gaussian expectations of elementwise functions to machine precision.

    E[f(u) g(v)],   (u, v) ~ N(0, [[q1, c], [c, q2]])

computed in polar coordinates of a standard normal pair (REFERENCES.md section 3):
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
import warnings
from collections.abc import Callable, Sequence
from functools import lru_cache

import numpy as np
import torch

from .errors import KernelOverflowError, QuadratureError, QuadratureWarning

Tensor = torch.Tensor

#: radius of truncation in the standard normal plane: r exp(-r^2/2) < 1e-30 beyond it
RADIUS = 12.0
#: Gauss-Legendre nodes per angular piece and per radial piece
NODES_ANGLE = 32
NODES_RADIUS = 32
#: at most this many graded rays per kink and side (see graded_radii)
_MAX_GRADED = 10
#: fixed radial breaks: most of the Gaussian mass lies below the first
_RADIAL_BREAKS = (4.0,)
#: bound on nodes x points evaluated at once (memory of the quadrature)
_CHUNK_ELEMENTS = 1 << 22


def _pow2_scale(q1: Tensor, q2: Tensor) -> Tensor:
    """A power of two near max(q1, q2): dividing by it is exact and keeps products of the
    moments inside float64."""
    return torch.exp2(torch.floor(torch.log2(torch.maximum(q1, q2).clamp(min=1e-300))))


def _in_range(p: Tensor) -> bool:
    """No entry of the product p near underflow or overflow (one pass)."""
    if p.numel() == 0:
        return True
    lo, hi = torch.aminmax(p)
    return 1e-290 < float(lo) and float(hi) < 1e290


def geometric_mean(q1: Tensor, q2: Tensor) -> Tensor:
    """sqrt(q1 q2) without underflow or overflow of the product, and exactly q when q1 = q2 = q
    (the square root of a rounded square is exact)."""
    p = q1 * q2
    if _in_range(p):
        return p.sqrt()
    m = _pow2_scale(q1, q2)
    return ((q1 / m) * (q2 / m)).sqrt() * m


def sin_of_angle(theta: Tensor) -> Tensor:
    """sin(theta) for theta in [0, pi], also exact near pi: there sin(pi - theta), pi - theta
    being exact in floating point (Sterbenz) and the complement that an angle carried near pi
    is made of (sin of the float nearest pi is 1.2e-16, not 0)."""
    return torch.where(theta > math.pi / 2, torch.sin(math.pi - theta), torch.sin(theta))


def corr_angle(q1: Tensor, q2: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    """(sqrt(q1 q2 - c^2), theta): theta = arccos(c / sqrt(q1 q2)) via atan2, exact at rho = +-1
    (q1 q2 - c^2 is exactly 0 when c = q1 = q2). The moments are first divided by a power of
    two near max(q1, q2), exactly, so that the products neither underflow nor overflow."""
    p = q1 * q2
    if _in_range(p):
        s = (p - c * c).clamp(min=0.0).sqrt()
        return s, torch.atan2(s, c)
    m = _pow2_scale(q1, q2)
    q1, q2, c = q1 / m, q2 / m, c / m
    s = (q1 * q2 - c * c).clamp(min=0.0).sqrt()
    return s * m, torch.atan2(s, c)


@lru_cache(maxsize=32)
def _legendre(n: int) -> tuple[np.ndarray, np.ndarray]:
    x, w = np.polynomial.legendre.leggauss(n)
    return x, w


def legendre_nodes(n: int, dtype=torch.float64, device=None) -> tuple[Tensor, Tensor]:
    """Gauss-Legendre nodes and weights on [-1, 1]."""
    x, w = _legendre(n)
    return (torch.as_tensor(x, dtype=dtype, device=device),
            torch.as_tensor(w, dtype=dtype, device=device))


def _pieces(lo: Tensor, hi: Tensor, n: int) -> tuple[Tensor, Tensor]:
    """Nodes and weights of n-point Gauss-Legendre on each interval [lo, hi] (broadcast)."""
    x, w = legendre_nodes(n, lo.dtype, lo.device)
    half = (hi - lo).unsqueeze(-1) / 2
    nodes = lo.unsqueeze(-1) + half * (x + 1)
    return nodes, half * w


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
        for out, val in zip(flat, _degenerate(fns, q1[idx], q2[idx], [d[idx] for d in data],
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
                                     kinks_f, kinks_g, nodes_angle, nodes_radius)
        for o, val in zip(outs, vals, strict=True):
            o.append(val)
    for out, o in zip(flat, outs, strict=True):
        if idx is None:
            out.copy_(torch.cat(o))
        else:
            out[idx] = torch.cat(o)
    return [o.reshape(shape) for o in flat]


#: agreement required between successive node counts (relative to max(1, |value|)), or the
#: rounding of the sum (``_ROUNDING`` x the integral of |integrand|), whichever is larger
SELF_CHECK_TOL = 2e-14
_ROUNDING = 16 * 2.0**-52
_MAX_NODES = 240
#: at the largest node counts, agreement to this (relative to max(1, |value|)) is accepted:
#: the rounding of ~1e6 terms of large kernels (q ~ 100) shows at ~1e-13
_CAP_TOL = 1e-11
#: beyond it, agreement to this is returned with a QuadratureWarning that says how far it got
#: (large variances: features of phi at |x| ~ 1 are thin slices of the polar pieces)
_WARN_TOL = 1e-8
#: the integrand's mass beyond the truncation radius may be at most this much of its absolute
#: integral (estimated from its value on the circle r = RADIUS, decaying like exp(-r^2/2))
_TAIL_TOL = 1e-17


def _agree(prev: list[Tensor], cur: list[Tensor], absolute: list[Tensor],
           tol: float = SELF_CHECK_TOL) -> list[Tensor]:
    """Per item: the entries where two evaluations agree to the self-check tolerance."""
    return [(a - b).abs() <= torch.maximum(tol * b.abs().clamp(min=1.0), _ROUNDING * m)
            for a, b, m in zip(prev, cur, absolute, strict=True)]


def _at_cap(prev, cur, absolute, label: str, where) -> None:
    """The verdict at the largest node counts: silent to ``_CAP_TOL``, a QuadratureWarning to
    ``_WARN_TOL``, else QuadratureError (``where(bad)`` names the first bad entry)."""
    if all(bool(o.all()) for o in _agree(prev, cur, absolute, _CAP_TOL)):
        return
    loose = _agree(prev, cur, absolute, _WARN_TOL)
    bad = ~torch.stack(loose).all(0)
    if not bool(bad.any()):
        worst = max(float(((a - b).abs() / b.abs().clamp(min=1.0)).max())
                    for a, b in zip(prev, cur, strict=True))
        bad = ~torch.stack(_agree(prev, cur, absolute, _CAP_TOL)).all(0)
        warnings.warn(f"{label} converged only to {worst:.1e} (relative) at {where(bad)} with "
                      f"{_MAX_NODES}+ nodes per piece: machine precision there needs finer "
                      "pieces (large variances, or a kink that is not declared)",
                      QuadratureWarning, stacklevel=4)
        return
    raise QuadratureError(
        f"{label} does not converge to machine precision at {where(bad)}: the integrand is not "
        "smooth between the known kinks. Declare every point where phi or phi' is not smooth "
        "(kinks=[...]); where phi or phi' is singular, its Gaussian expectation may diverge.")


def _where(q1: Tensor, q2: Tensor, theta: Tensor | None, bad: Tensor) -> str:
    i = int(bad.nonzero()[0]) if bool(bad.any()) else 0
    text = f"q1={float(q1[i]):.6g}, q2={float(q2[i]):.6g}"
    return text if theta is None else text + f", rho={math.cos(float(theta[i])):.12g}"


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
        ok = _agree(prev, cur, absolute)
        if all(bool(o.all()) for o in ok):
            return nodes_angle, nodes_radius
        if max(na, nr) > _MAX_NODES:
            _at_cap(prev, cur, absolute, f"{label} (kinks {list(dict.fromkeys(kinks_f + kinks_g))})",
                    lambda bad: _where(sample[0], sample[1], sample[2], bad))
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
    t, wt = _pieces(lo, hi, nodes_angle)  # (N, P+1, nt)
    # cos(t - t0) = cos t cos t0 + sin t sin t0 keeps the v = 0 rays exact
    cos_t, sin_t = torch.cos(t), torch.sin(t)
    a_t = s1[:, None, None] * cos_t
    b_t = s2[:, None, None] * (cos_t * cos0[:, None, None] + sin_t * sin0[:, None, None])
    return wt, a_t, b_t


def _values(item, u, v, data):
    return item[0](u) * item[1](v) if isinstance(item, tuple) else item(u, v, *data)


def _expectation_chunk(fns, q1, q2, t0, data, kinks_f, kinks_g, nodes_angle, nodes_radius):
    """(values, absolute integrals): E[f(u) g(v)] and E[|f(u) g(v)|] per item and entry."""
    wt, a_t, b_t = _angle_nodes(q1, q2, t0, kinks_f, kinks_g, nodes_angle)
    rb = _radial_breaks(a_t, b_t, kinks_f, kinks_g)  # (N, P+1, nt, B)
    r, wr = _pieces(rb[..., :-1], rb[..., 1:], nodes_radius)  # (N, P+1, nt, B-1, nr)
    weight = wr * r * torch.exp(-0.5 * r * r) * wt[..., None, None] / (2 * math.pi)
    u = r * a_t[..., None, None]
    v = r * b_t[..., None, None]
    data = [d.reshape(-1, 1, 1, 1, 1) for d in data]
    res, absolute = [], []
    for item in fns:
        terms = weight * _values(item, u, v, data)
        res.append(terms.sum(dim=(1, 2, 3, 4)))
        absolute.append(terms.abs().sum(dim=(1, 2, 3, 4)))
    return res, absolute


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
            val = _values(item, radius * a_t, radius * b_t, data).abs()
            dens = radius * math.exp(-0.5 * radius * radius) / (2 * math.pi)
            ring.append((wt * dens * val).sum(dim=(1, 2)))
        _tail_verdict(ring[0], ring[1], total, label,
                      lambda bad: _where(q1, q2, t0, bad))


def _tail_verdict(at_r: Tensor, at_2r: Tensor, total: Tensor, label: str, where) -> None:
    heavy = ~(at_r / RADIUS <= _TAIL_TOL * total)  # NaN counts as heavy
    if not bool(heavy.any()):
        return
    undefined = heavy & (torch.isnan(at_r) | torch.isnan(at_2r))
    if bool(undefined.any()):
        raise KernelOverflowError(
            f"{label} is undefined at {where(undefined)}: the integrand is NaN far out in the "
            "Gaussian tail (phi or phi' returns NaN, or inf * 0, for large inputs).")
    grows = heavy & ~(at_2r < at_r)
    if bool(grows.any()):
        raise KernelOverflowError(
            f"{label} diverges at {where(grows)}: the integrand does not decay in the Gaussian "
            f"tail ({RADIUS:g} to {2 * RADIUS:g} standard deviations out), so phi (or phi') "
            "grows at least like exp(x^2 / (4 q)) there. Lower the "
            "variances (w_std, b_std, the input scale) or use a bounded activation.")
    raise QuadratureError(
        f"{label} at {where(heavy)}: the integrand decays too slowly in the Gaussian tail to "
        f"be integrated to machine precision within {RADIUS:g} standard deviations (phi grows "
        "nearly like exp(x^2 / (4 q))). Lower the variances (w_std, b_std, the input scale).")


# ---- one dimension -------------------------------------------------------------------------

#: the smallest scale break of the 1-D rule, in units of the input x = sqrt(q) z: breaks at
#: x = +-2^k from it up to the truncation resolve the activation's own features (near 0, and
#: its approach to its asymptotes) whatever the variance
_SCALE_MIN = 0.125
_NODES_1D = 48


def _breaks_1d(scales: Sequence[tuple[Tensor, Sequence[float]]]) -> Tensor:
    """Sorted breakpoints in z in [-R, R], (N, B): fixed ones, kinks / s and the scale breaks
    x = +-2^k / s of each (s, kinks) in ``scales``."""
    s0 = scales[0][0]
    z = [torch.full_like(s0, b) for b in (-RADIUS, -6.0, -3.0, 0.0, 3.0, 6.0, RADIUS)]
    top = max((float(s.max()) for s, _ in scales if s.numel()), default=0.0) * RADIUS
    count = max(0, math.ceil(math.log2(top / _SCALE_MIN))) if top > _SCALE_MIN else 0
    scale_breaks = [_SCALE_MIN * 2.0**k for k in range(count)]
    for s, kinks in scales:
        points = list(kinks) + [sign * b for b in scale_breaks for sign in (1.0, -1.0)]
        for k in points:
            z.append(torch.where(s > 0, float(k) / s.clamp(min=1e-300),
                                 torch.full_like(s, RADIUS)).clamp(-RADIUS, RADIUS))
    return torch.sort(torch.stack(z, dim=-1), dim=-1).values


def _sum_1d(integrands: Callable[[Tensor], list[Tensor]], br: Tensor, nodes: int):
    z, w = _pieces(br[..., :-1], br[..., 1:], nodes)
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
        _tail_verdict(v[:, 1:3].amax(1), torch.maximum(v[:, 0], v[:, 3]), total, label, where)
    while True:
        nodes = int(nodes * 1.5)
        cur, absolute = _sum_1d(integrands, br, nodes)
        ok = _agree(prev, cur, absolute)
        if all(bool(o.all()) for o in ok):
            return cur
        if nodes > _MAX_NODES:
            _at_cap(prev, cur, absolute, label, where)
            return cur
        prev = cur


def gaussian_expectation_1d(fn: Callable[[Tensor], Tensor], q: Tensor,
                            kinks: Sequence[float] = (), label: str = "the Gaussian expectation",
                            ) -> Tensor:
    """E[f(sqrt(q) z)], z ~ N(0, 1), for each q: Gauss-Legendre on |z| <= R split at the kinks
    of f and at x = +-2^k (the scale of f, whatever q), with the node count verified as in
    ``gaussian_expectation`` (same errors)."""
    q = q.reshape(-1)
    s = q.sqrt()
    br = _breaks_1d([(s, kinks)])
    return _adaptive_1d(lambda z: [fn(s[:, None, None] * z)], br, label,
                        lambda bad: _where(q, q, None, bad))[0]


def _degenerate(fns, q1, q2, data, kinks_f, kinks_g, label) -> list[Tensor]:
    """Entries with q1 = 0 or q2 = 0: (u, v) = (sqrt(q1) z, sqrt(q2) z), a 1-D expectation."""
    s1, s2 = q1.sqrt(), q2.sqrt()
    br = _breaks_1d([(s1, kinks_f), (s2, kinks_g)])
    data = [d.reshape(-1, 1, 1) for d in data]

    def integrands(z):
        u, v = s1[:, None, None] * z, s2[:, None, None] * z
        return [_values(item, u, v, data) for item in fns]

    return _adaptive_1d(integrands, br, label, lambda bad: _where(q1, q2, None, bad))
