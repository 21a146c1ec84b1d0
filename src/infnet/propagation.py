"""Signal propagation through deep random networks at infinite width: the length and correlation
maps, their fixed points, the order-to-chaos phase and the depth scales.

Poole, Lahiri, Raghu, Sohl-Dickstein & Ganguli 2016 (arXiv 1606.05340); Schoenholz, Gilmer,
Ganguli & Sohl-Dickstein 2017 (arXiv 1611.01232); REFERENCES.md section 5. A layer
Dense(w_std, b_std) -> phi maps the variance q of a pre-activation, and the correlation c of two
pre-activations of variance q*, as

    length map       Q(q) = w^2 V(q) + b^2,   V(q) = E[phi(sqrt(q) z)^2]
    correlation map  C(c) = (w^2 K(q*, q*, c q*) + b^2) / q*,   K = E[phi(u) phi(v)]
    chi_1 = C'(1) = w^2 E[phi'(sqrt(q*) z)^2]         (dK/dc = Kdot, Price's theorem)

q* = Q(q*) is the fixed point the iteration reaches from q0; c = 1 is always fixed by C, and c* is
the stable fixed point in [0, 1]. chi_1 < 1: ordered (c* = 1); chi_1 > 1: chaotic (c* < 1);
chi_1 = 1: critical. Near the fixed points the maps are linear, so |q_l - q*| ~ exp(-l / xi_q)
and |c_l - c*| ~ exp(-l / xi_c) (Schoenholz et al. 2017, section 3):

    xi_q = -1 / log Q'(q*),   Q'(q) = w^2 V'(q) = chi_1 + w^2 E[phi phi''] at q*
    xi_c = -1 / log chi_c,    chi_c = C'(c*) = w^2 E[phi'(u*) phi'(v*)],
                              (u*, v*) ~ N(0, q* [[1, c*], [c*, 1]])

(their linearization eps_(l+1) = chi_c eps_l of the correlation map about c*, whence
xi_c^-1 = -log chi_c; at c* = 1, chi_c = chi_1, so xi_c = inf exactly at criticality; the tests
check both scales against the decay measured by iterating the maps). The phase diagram, the
critical line and the catalog table are in ``phase_diagram``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from scipy.optimize import brentq

from .activations import Activation, activation, gauss1d
from .activations.base import KernelOverflowError

Tensor = torch.Tensor
F64 = torch.float64

#: |chi_1 - 1| (and |Q'(q*) - 1|) at most this: critical (marginal)
CRITICAL_TOL = 1e-9
#: the length map is said to diverge when q passes Q_MAX (or its expectation overflows)
Q_MAX = 1e12
#: the downward search for q* stops here; below it, with Q(0) = 0, q -> 0 ("vanishes")
Q_MIN = 1e-20
#: a fixed point below this, with Q(0) = 0, is the fixed point 0 reached slowly
Q_TINY = 1e-8
_SLOPE_Q_MIN = 1e-12
#: plain iterations of Q from q0 before the bracketing root search
ITERATIONS = 16
STATUSES = ("fixed_point", "marginal", "vanishes", "diverges", "unstable")
_FIXED, _MARGINAL, _VANISHES, _DIVERGES, _UNSTABLE, _OPEN = 0, 1, 2, 3, 4, -1
_EPS = 4 * torch.finfo(F64).eps


def _as_act(act) -> Activation:
    return act if isinstance(act, Activation) else activation(act)


def _t(x) -> Tensor:
    return x.to(F64) if torch.is_tensor(x) else torch.as_tensor(x, dtype=F64)


def _safe(fn, q: Tensor) -> Tensor:
    """fn(q), with inf where the expectation diverges or overflows (elementwise fallback)."""
    try:
        out = torch.broadcast_to(fn(q), q.shape)
    except (KernelOverflowError, OverflowError, ValueError):
        if q.numel() <= 1:
            return torch.full_like(q, math.inf)
        return torch.stack([_safe(fn, x) for x in q.reshape(-1)]).reshape(q.shape)
    return torch.where(torch.isfinite(out), out, torch.full_like(out, math.inf))


# ---- the maps -------------------------------------------------------------------------------------
def length_map(act, q, w_std=1.0, b_std=0.0) -> Tensor:
    """Q(q) = w^2 E[phi(sqrt(q) z)^2] + b^2 (Poole et al. 2016, the length map q^l); inf where
    the expectation diverges."""
    act, q = _as_act(act), _t(q)
    return _t(w_std) ** 2 * _safe(act.variance_map, q) + _t(b_std) ** 2


def variance_slope(act, q) -> Tensor:
    """V'(q) = d/dq E[phi(sqrt(q) z)^2] = E[x phi(x) phi'(x)] / q, x = sqrt(q) z (differentiating
    under the expectation; Stein's lemma turns it into E[phi'^2] + E[phi phi''], the form of
    Schoenholz et al. 2017, section 3, which needs phi''). Only phi' enters, so kinks are exact
    (1-D quadrature split at them). Activations that are not elementwise, or discontinuous, get a
    5-point central difference of V (step 1e-3 q; error ~1e-11 relative). Below q = 1e-12 (and
    at q = 0): the limit q -> 0+, evaluated at q = 1e-12."""
    act, q = _as_act(act), _t(q).clamp(min=_SLOPE_Q_MIN)
    if not act.jumps:
        try:
            act.derivative(torch.zeros(2, dtype=F64))
        except (TypeError, NotImplementedError):
            pass  # not elementwise (gated units): finite differences below
        else:
            def moment(qq):
                m = gauss1d.gaussian_expectation_1d(
                    lambda x: x * act(x) * act.derivative(x), qq, act.kinks)
                return m.reshape(qq.shape) / qq
            return _safe(moment, q)
    h = 1e-3 * q
    v = [_safe(act.variance_map, q + k * h) for k in (-2, -1, 1, 2)]
    return (v[0] - 8 * v[1] + 8 * v[2] - v[3]) / (12 * h)


#: q = 0 is evaluated as the limit q -> 0+, at this q
Q_LIMIT = 1e-100


def diagonal_slope(act, q) -> Tensor:
    """E[phi'(sqrt(q) z)^2] (inf where infinite: a discontinuous phi). At q = 0: the limit
    q -> 0+, evaluated at q = 1e-100 (at q = 0 itself phi'(0) of a kinked unit is ambiguous)."""
    act = _as_act(act)
    return _safe(lambda x: act.diagonal_kernel(x)[1], _t(q).clamp(min=Q_LIMIT))


def correlation_map(act, c, q_star, w_std=1.0, b_std=0.0) -> Tensor:
    """C(c) = (w^2 E[phi(u) phi(v)] + b^2) / q*, (u, v) ~ N(0, q* [[1, c], [c, 1]]) (Poole et al.
    2016, the correlation map)."""
    act, c, q = _as_act(act), _t(c), _t(q_star)
    return (_t(w_std) ** 2 * act.nngp_map(q, q, c * q) + _t(b_std) ** 2) / q


def correlation_slope(act, c, q_star, w_std=1.0) -> Tensor:
    """C'(c) = w^2 E[phi'(u) phi'(v)] (Price's theorem: dK/dc = Kdot); at c = 1 it is chi_1."""
    act, c, q = _as_act(act), _t(c), _t(q_star)
    return _t(w_std) ** 2 * act.kernel(q, q, c * q)[1]


def depth_scale(slope: float) -> float:
    """-1 / log|slope|: the number of layers over which a deviation from a fixed point whose map
    has this slope shrinks by e (Schoenholz et al. 2017, section 3); inf at |slope| >= 1."""
    s = abs(float(slope))
    if s >= 1.0:
        return math.inf
    return 0.0 if s == 0.0 else -1.0 / math.log(s)


# ---- the fixed point of the length map ------------------------------------------------------------
def length_fixed_points(act, w_var, b_var, q0=1.0) -> tuple[Tensor, Tensor]:
    """The fixed points q* of Q(q) = w_var V(q) + b_var reached from q0, for broadcasting tensors
    of weight and bias variances: (q_star, status) with status an index into ``STATUSES``.

    Each entry is first iterated ``ITERATIONS`` times (the orbit chooses the basin; stationary in
    floating point: done), then bracketed by doubling (or halving) q in the direction the orbit
    moves, sign(Q(q) - q) (factors of 64 after the first 8), and solved by the Illinois method
    to ~1 ulp. No sign change up to ``Q_MAX`` (or an overflow): "diverges", q* = inf; none down
    to ``Q_MIN`` with Q(0) = 0: "vanishes", q* = 0. Then |Q'(q*)| decides "fixed_point" (< 1),
    "marginal" (= 1 within ``CRITICAL_TOL``: the identity-like ReLU at w^2 = 2, b = 0 keeps q0)
    or "unstable" (> 1)."""
    act = _as_act(act)
    for name, t in (("w_var", w_var), ("b_var", b_var), ("q0", q0)):
        t = _t(t)
        if not bool((torch.isfinite(t) & (t >= 0)).all()):
            raise ValueError(f"{name} must be finite and >= 0")
    w2, b2, q = (t.reshape(-1).clone() for t in torch.broadcast_tensors(_t(w_var), _t(b_var),
                                                                           _t(q0)))
    shape = torch.broadcast_tensors(_t(w_var), _t(b_var), _t(q0))[0].shape
    v0 = float(_safe(act.variance_map, torch.zeros((), dtype=F64)))
    q_at_zero = w2 * v0 + b2
    status = torch.full(q.shape, _OPEN, dtype=torch.long)

    def g(x, idx):
        return w2[idx] * _safe(act.variance_map, x) + b2[idx] - x

    for _ in range(ITERATIONS):
        idx = (status == _OPEN).nonzero(as_tuple=True)[0]
        if idx.numel() == 0:
            break
        qa = q[idx]
        qn = qa + g(qa, idx)
        big = ~(qn <= Q_MAX)
        still = (qn - qa).abs() <= _EPS * qa
        q[idx] = torch.where(big, torch.full_like(qn, math.inf), qn)
        status[idx[big]] = _DIVERGES
        status[idx[still & ~big]] = _FIXED
    idx = (status == _OPEN).nonzero(as_tuple=True)[0]
    if idx.numel():
        q[idx], status[idx] = _bracket_and_solve(g, q[idx], idx, q_at_zero[idx])
    fixed = (status == _FIXED).nonzero(as_tuple=True)[0]
    if fixed.numel():
        slope = (w2[fixed] * variance_slope(act, q[fixed])).abs()
        new = torch.full_like(fixed, _FIXED)
        new[(slope - 1).abs() <= CRITICAL_TOL] = _MARGINAL
        new[slope > 1 + CRITICAL_TOL] = _UNSTABLE
        new[(q[fixed] <= Q_TINY) & (q_at_zero[fixed] == 0) & (slope <= 1 + CRITICAL_TOL)] = _VANISHES
        status[fixed] = new
    q[status == _VANISHES] = 0.0
    return q.reshape(shape), status.reshape(shape)


def _bracket_and_solve(g, q, idx, q_at_zero) -> tuple[Tensor, Tensor]:
    """Search from q in the direction of sign(g(q)) by factors of 2 (64 after 8 steps) for a
    sign change of g, then the Illinois method on the bracket (vectorized over entries)."""
    x = torch.where(q > 0, q, torch.full_like(q, Q_MIN))
    gx = g(x, idx)
    up = gx > 0
    status = torch.full(q.shape, _OPEN, dtype=torch.long)
    lo, hi, glo, ghi = x.clone(), x.clone(), gx.clone(), gx.clone()
    for step in range(math.ceil(math.log2(Q_MAX / Q_MIN))):
        sel = (status == _OPEN).nonzero(as_tuple=True)[0]
        if sel.numel() == 0:
            break
        u = up[sel]
        factor = 2.0 if step < 8 else 64.0  # far from q0: longer strides
        x_new = torch.where(u, factor * x[sel], x[sel] / factor)
        g_new = g(x_new, idx[sel])
        crossed = torch.where(u, g_new <= 0, g_new >= 0)
        # the bracket: [previous point, new point] upwards, [new point, previous point] downwards
        lo[sel] = torch.where(u, x[sel], x_new)
        glo[sel] = torch.where(u, gx[sel], g_new)
        hi[sel] = torch.where(u, x_new, x[sel])
        ghi[sel] = torch.where(u, g_new, gx[sel])
        x[sel], gx[sel] = x_new, g_new
        status[sel[crossed]] = _FIXED
        status[sel[u & ~crossed & ~(x_new <= Q_MAX)]] = _DIVERGES
        down = sel[~u & ~crossed & (x_new < Q_MIN)]
        status[down[q_at_zero[down] == 0]] = _VANISHES
        rest = down[q_at_zero[down] != 0]  # Q(0) > 0: the root lies in [0, x]
        lo[rest], glo[rest], status[rest] = 0.0, q_at_zero[rest], _FIXED
    out = torch.where(status == _DIVERGES, torch.full_like(q, math.inf), x)
    solve = (status == _FIXED).nonzero(as_tuple=True)[0]
    if solve.numel():
        out[solve] = _illinois(lambda t, sel: g(t, idx[solve[sel]]), lo[solve], hi[solve],
                               glo[solve], ghi[solve])
    out[status == _VANISHES] = 0.0
    return out, status


def _illinois(f, a, b, fa, fb, iterations: int = 200) -> Tensor:
    """Roots of f on brackets [a, b] (f(a), f(b) of opposite signs or zero), vectorized: the
    Illinois variant of false position, with bisection when a step leaves the bracket."""
    a, b, fa, fb = a.clone(), b.clone(), fa.clone(), fb.clone()
    side = torch.zeros_like(a)
    best = torch.where(fa.abs() <= fb.abs(), a, b)
    done = (fa == 0) | (fb == 0)
    best = torch.where(fa == 0, a, torch.where(fb == 0, b, best))
    for _ in range(iterations):
        sel = (~done).nonzero(as_tuple=True)[0]
        if sel.numel() == 0:
            break
        A, B, FA, FB = a[sel], b[sel], fa[sel], fb[sel]
        x = (A * FB - B * FA) / (FB - FA)
        bad = ~((x > A) & (x < B))
        x = torch.where(bad, (A + B) / 2, x)
        fx = f(x, sel)
        best[sel] = x
        on_a = torch.sign(fx) == torch.sign(FA)
        s = side[sel]
        a[sel] = torch.where(on_a, x, A)
        fa[sel] = torch.where(on_a, fx, torch.where(s == 1, FA / 2, FA))
        b[sel] = torch.where(on_a, B, x)
        fb[sel] = torch.where(on_a, torch.where(s == -1, FB / 2, FB), fx)
        side[sel] = 1.0 - 2.0 * on_a.to(F64)
        width = b[sel] - a[sel]
        done[sel] = (fx == 0) | (width <= _EPS * torch.maximum(a[sel].abs(), b[sel].abs()))
    return best


# ---- the stable correlation -------------------------------------------------------------------------
def correlation_fixed_point(act, q_star: float, w_std=1.0, b_std=0.0) -> float:
    """The stable fixed point c* in [0, 1] of the correlation map at q*.

    C is a power series in c with nonnegative coefficients (Hermite expansion of phi), so it is
    convex on [0, 1] with C(1) = 1 and C(0) >= 0: if chi_1 = C'(1) <= 1 the only fixed point in
    [0, 1] is c* = 1; if chi_1 > 1 (also chi_1 = inf: sign, step) there is exactly one more,
    c* in [0, 1), and it is stable (C'(c*) < 1). It is found by brentq on C(c) - c, bracketed
    below 1. (For c0 < 0 and an odd phi with b = 0, C is odd and the orbit goes to -c*.)"""
    act = _as_act(act)
    q = float(q_star)
    if float(w_std) ** 2 * float(diagonal_slope(act, q)) <= 1 + CRITICAL_TOL:
        return 1.0

    def g(c: float) -> float:
        return float(correlation_map(act, c, q, w_std, b_std)) - c

    if g(0.0) <= 1e-14:  # C(0) = 0 to the rounding of the quadrature (odd phi, no bias)
        return 0.0
    d = 0.5
    while g(1.0 - d) >= 0.0:
        d /= 8
        if d < 1e-15:
            return 1.0
    return brentq(g, 0.0, 1.0 - d, xtol=1e-16, rtol=1e-15, maxiter=200)


# ---- everything at one (w_std, b_std) -------------------------------------------------------------
@dataclass(frozen=True)
class Propagation:
    """Signal propagation at one (w_std, b_std). ``status``: of the length map (``STATUSES``).
    ``phase``: "ordered" | "critical" | "chaotic", or "diverges" / "unstable" when q* is not a
    finite stable fixed point. Fields that are undefined there are None; ``message`` says why."""

    activation: str
    w_std: float
    b_std: float
    q_star: float
    status: str
    chi_1: float | None
    phase: str
    c_star: float | None
    chi_c: float | None
    xi_q: float | None
    xi_c: float | None
    message: str = ""


def phase_of(chi_1: float) -> str:
    """"ordered" (chi_1 < 1), "critical" (within CRITICAL_TOL of 1) or "chaotic" (> 1)."""
    if abs(chi_1 - 1.0) <= CRITICAL_TOL:
        return "critical"
    return "ordered" if chi_1 < 1.0 else "chaotic"


def propagation(act, w_std: float = 1.0, b_std: float = 0.0, *, q0: float = 1.0) -> Propagation:
    """q*, c*, chi_1, chi_c, the phase and the depth scales xi_q, xi_c of a deep network of
    Dense(w_std, b_std) -> act layers (Poole et al. 2016; Schoenholz et al. 2017; module docs).

    When q -> 0 ("vanishes": b = 0 and phi(0) = 0 with chi_1 <= 1, e.g. tanh at w^2 < 1) chi_1
    and xi_q are the limits q -> 0 and the correlation map relative to q* is undefined (None).
    When q -> inf ("diverges": ReLU at w^2 > 2, exp) nothing past q* is defined.
    """
    act = _as_act(act)
    w_std, b_std = float(w_std), float(b_std)
    q_t, st = length_fixed_points(act, w_std**2, b_std**2, q0)
    q, status = float(q_t), STATUSES[int(st)]
    base = dict(activation=act.name, w_std=w_std, b_std=b_std, q_star=q, status=status)
    if status == "diverges":
        return Propagation(**base, chi_1=None, phase="diverges", c_star=None, chi_c=None,
                           xi_q=None, xi_c=None,
                           message="the length map has no fixed point: q grows without bound")
    if status == "unstable":
        return Propagation(**base, chi_1=None, phase="unstable", c_star=None, chi_c=None,
                           xi_q=None, xi_c=None,
                           message="the fixed point reached has |Q'(q*)| > 1 (q0 sits on it, "
                                   "or the orbit cycles)")
    q_slope = w_std**2 * float(variance_slope(act, q))
    xi_q = math.inf if abs(q_slope - 1) <= CRITICAL_TOL else depth_scale(q_slope)
    chi_1 = w_std**2 * float(diagonal_slope(act, q))
    phase = phase_of(chi_1)
    if status == "vanishes":
        return Propagation(**base, chi_1=chi_1, phase=phase, c_star=None, chi_c=None, xi_q=xi_q,
                           xi_c=None, message="q -> 0: chi_1 and xi_q are the limits q -> 0; "
                                              "the correlation map relative to q* is undefined")
    c_star = correlation_fixed_point(act, q, w_std, b_std)
    chi_c = chi_1 if c_star == 1.0 else float(correlation_slope(act, c_star, q, w_std))
    xi_c = math.inf if phase == "critical" else depth_scale(chi_c)
    return Propagation(**base, chi_1=chi_1, phase=phase, c_star=c_star, chi_c=chi_c, xi_q=xi_q,
                       xi_c=xi_c)
