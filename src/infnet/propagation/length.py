"""The length (variance) map of a layer, its slope and its fixed points q*, and the helpers the
other signal-propagation modules share.

Poole, Lahiri, Raghu, Sohl-Dickstein & Ganguli 2016 (arXiv 1606.05340); Schoenholz, Gilmer,
Ganguli & Sohl-Dickstein 2017 (arXiv 1611.01232);
docs/theory/signal-propagation.md#length-and-correlation-maps. A layer Dense(w_std, b_std) -> phi
maps the variance q of a pre-activation as

    length map       Q(q) = w^2 V(q) + b^2,   V(q) = E[phi(sqrt(q) z)^2]

q* = Q(q*) is the fixed point the iteration reaches from q0 (``length_fixed_points``, with a
status in ``STATUSES``). Near it the map is linear, so |q_l - q*| ~ exp(-l / xi_q) with
xi_q = -1 / log Q'(q*), Q'(q) = w^2 V'(q) (``variance_slope``). The correlation map is in
``correlation``, the summary of both in ``maps``.
"""

from __future__ import annotations

import math

import torch

from ..activations import Activation, activation
from ..core.errors import KernelOverflowError
from ..numerics import gauss1d

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
    """The length map Q(q) = w^2 E[phi(sqrt(q) z)^2] + b^2 of a layer (Poole et al. 2016).

    The variance of the next layer's pre-activation given the variance q of this one (the
    length map q^l); inf where the expectation diverges.

    Parameters
    ----------
    act : str or Activation
        The activation phi (a catalog name or an ``infnet.Activation``).
    q : float or Tensor
        The pre-activation variance(s) (>= 0).
    w_std : float or Tensor, default 1.0
        The weight standard deviation w.
    b_std : float or Tensor, default 0.0
        The bias standard deviation b.

    Returns
    -------
    Tensor
        Q(q) in float64, broadcast over ``q``, ``w_std`` and ``b_std``.

    Raises
    ------
    KeyError
        If ``act`` is a name that is not in the catalog.

    Examples
    --------
    >>> q = torch.tensor([1.0, 2.0], dtype=torch.float64)
    >>> [round(float(v), 6) for v in infnet.propagation.length_map("relu", q, w_std=2**0.5)]
    [1.0, 2.0]
    >>> round(float(infnet.propagation.length_map("erf", 1.0, 1.0, 0.1)), 6)  # 2/pi asin(2/3) + 0.01
    0.474559
    """
    act, q = _as_act(act), _t(q)
    return _t(w_std) ** 2 * _safe(act.variance_map, q) + _t(b_std) ** 2


def variance_slope(act, q) -> Tensor:
    """The slope V'(q) = d/dq E[phi(sqrt(q) z)^2] of the variance map.

    V'(q) = E[x phi(x) phi'(x)] / q, x = sqrt(q) z (differentiating under the expectation;
    Stein's lemma turns it into E[phi'^2] + E[phi phi''], the form of Schoenholz et al. 2017,
    section 3, which needs phi''). Only phi' enters, so kinks are exact (1-D quadrature split at
    them). Activations that are not elementwise, or discontinuous, get a 5-point central
    difference of V (step 1e-3 q; error ~1e-11 relative). Below q = 1e-12 (and at q = 0): the
    limit q -> 0+, evaluated at q = 1e-12.

    Parameters
    ----------
    act : str or Activation
        The activation phi (a catalog name or an ``infnet.Activation``).
    q : float or Tensor
        The pre-activation variance(s) (>= 0).

    Returns
    -------
    Tensor
        V'(q) in float64, inf where the expectation diverges.

    Raises
    ------
    KeyError
        If ``act`` is a name that is not in the catalog.

    Examples
    --------
    >>> round(float(infnet.propagation.variance_slope("relu", 1.0)), 6)  # V(q) = q / 2
    0.5
    >>> round(float(infnet.propagation.variance_slope("erf", 1.0)), 6)  # d/dq 2/pi asin(2q/(1+2q))
    0.189803
    """
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



# ---- the fixed point of the length map ------------------------------------------------------------
def length_fixed_points(act, w_var, b_var, q0=1.0) -> tuple[Tensor, Tensor]:
    """The fixed points q* of the length map Q(q) = w_var V(q) + b_var reached from q0.

    Vectorized over broadcasting tensors of weight and bias variances; returns (q_star, status)
    with status an index into ``STATUSES`` ("fixed_point", "marginal", "vanishes", "diverges",
    "unstable").

    Each entry is first iterated ``ITERATIONS`` times (the orbit chooses the basin; stationary in
    floating point: done), then bracketed by doubling (or halving) q in the direction the orbit
    moves, sign(Q(q) - q) (factors of 64 after the first 8), and solved by the Illinois method
    to ~1 ulp. No sign change up to ``Q_MAX`` (or an overflow): "diverges", q* = inf; none down
    to ``Q_MIN`` with Q(0) = 0: "vanishes", q* = 0. Then |Q'(q*)| decides "fixed_point" (< 1),
    "marginal" (= 1 within ``CRITICAL_TOL``: the identity-like ReLU at w^2 = 2, b = 0 keeps q0)
    or "unstable" (> 1).

    Parameters
    ----------
    act : str or Activation
        The activation phi (a catalog name or an ``infnet.Activation``).
    w_var : float or Tensor
        The weight variance(s) w^2 (finite, >= 0).
    b_var : float or Tensor
        The bias variance(s) b^2 (finite, >= 0).
    q0 : float or Tensor, default 1.0
        The starting variance(s) (finite, >= 0).

    Returns
    -------
    q_star : Tensor
        The fixed points (float64, the broadcast shape; inf where the map diverges, 0 where q
        vanishes).
    status : Tensor
        The statuses (int64 indices into ``STATUSES``).

    Raises
    ------
    ValueError
        If ``w_var``, ``b_var`` or ``q0`` has an entry that is negative or not finite.
    KeyError
        If ``act`` is a name that is not in the catalog.

    Examples
    --------
    >>> w_var = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    >>> q, status = infnet.propagation.length_fixed_points("relu", w_var, 0.0)
    >>> q.tolist(), [infnet.propagation.length.STATUSES[int(i)] for i in status]
    ([0.0, 1.0, inf], ['vanishes', 'marginal', 'diverges'])
    >>> q, status = infnet.propagation.length_fixed_points("erf", 2.0, 0.09)
    >>> round(float(q), 6), infnet.propagation.length.STATUSES[int(status)]
    (1.030518, 'fixed_point')
    """
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

