"""The correlation map of a layer at the variance q*, its slopes (chi_1, chi_c), its stable fixed
point c* and the depth scale of a fixed point.

Poole et al. 2016 (arXiv 1606.05340); Schoenholz et al. 2017 (arXiv 1611.01232);
docs/theory/signal-propagation.md#length-and-correlation-maps. A layer Dense(w_std, b_std) -> phi
maps the correlation c of two pre-activations of variance q* as

    correlation map  C(c) = (w^2 K(q*, q*, c q*) + b^2) / q*,   K = E[phi(u) phi(v)]
    chi_1 = C'(1) = w^2 E[phi'(sqrt(q*) z)^2]         (dK/dc = Kdot, Price's theorem)

c = 1 is always fixed by C, and c* is the stable fixed point in [0, 1]. Near it the map is linear,
|c_l - c*| ~ exp(-l / xi_c), xi_c = -1 / log chi_c, chi_c = C'(c*) = w^2 E[phi'(u*) phi'(v*)]
(``depth_scale``). The length map and its fixed point q* are in ``length``.
"""

from __future__ import annotations

import math

from scipy.optimize import brentq

from .length import CRITICAL_TOL, Tensor, _as_act, _safe, _t

#: q = 0 is evaluated as the limit q -> 0+, at this q
Q_LIMIT = 1e-100


def diagonal_slope(act, q) -> Tensor:
    """The mean squared derivative E[phi'(sqrt(q) z)^2] at variance q (chi_1 = w^2 times it).

    Inf where infinite (a discontinuous phi). At q = 0: the limit q -> 0+, evaluated at
    q = 1e-100 (at q = 0 itself phi'(0) of a kinked unit is ambiguous).

    Parameters
    ----------
    act : str or Activation
        The activation phi (a catalog name or an ``infnet.Activation``).
    q : float or Tensor
        The pre-activation variance(s) (>= 0).

    Returns
    -------
    Tensor
        E[phi'(sqrt(q) z)^2] in float64.

    Raises
    ------
    KeyError
        If ``act`` is a name that is not in the catalog.

    Examples
    --------
    >>> round(float(infnet.propagation.diagonal_slope("relu", 1.0)), 6)
    0.5
    >>> round(float(infnet.propagation.diagonal_slope("erf", 1.0)), 6)  # 4 / (pi sqrt(1 + 4q))
    0.56941
    >>> round(float(infnet.propagation.diagonal_slope("tanh", 0.0)), 6)  # tanh'(0)^2
    1.0
    """
    act = _as_act(act)
    return _safe(lambda x: act.diagonal_kernel(x)[1], _t(q).clamp(min=Q_LIMIT))


def correlation_map(act, c, q_star, w_std=1.0, b_std=0.0) -> Tensor:
    """The correlation map C(c) = (w^2 E[phi(u) phi(v)] + b^2) / q* (Poole et al. 2016).

    (u, v) ~ N(0, q* [[1, c], [c, 1]]): the correlation of two pre-activations in the next
    layer given their correlation c in this one, both at the variance q*.

    Parameters
    ----------
    act : str or Activation
        The activation phi (a catalog name or an ``infnet.Activation``).
    c : float or Tensor
        The input correlation(s), in [-1, 1].
    q_star : float or Tensor
        The pre-activation variance q* (> 0), usually the fixed point of the length map.
    w_std : float or Tensor, default 1.0
        The weight standard deviation w.
    b_std : float or Tensor, default 0.0
        The bias standard deviation b.

    Returns
    -------
    Tensor
        C(c) in float64.

    Raises
    ------
    KeyError
        If ``act`` is a name that is not in the catalog.

    Examples
    --------
    >>> round(float(infnet.propagation.correlation_map("relu", 0.0, 1.0, w_std=2**0.5)), 6)  # 1 / pi
    0.31831
    >>> round(float(infnet.propagation.correlation_map("erf", 0.5, 1.0)), 6)  # 2/pi asin(1/3)
    0.216347
    """
    act, c, q = _as_act(act), _t(c), _t(q_star)
    return (_t(w_std) ** 2 * act.nngp_map(q, q, c * q) + _t(b_std) ** 2) / q


def correlation_slope(act, c, q_star, w_std=1.0) -> Tensor:
    """The slope C'(c) = w^2 E[phi'(u) phi'(v)] of the correlation map.

    By Price's theorem dK/dc = Kdot, with (u, v) ~ N(0, q* [[1, c], [c, 1]]); at c = 1 it is
    chi_1, at the stable fixed point c* it is chi_c.

    Parameters
    ----------
    act : str or Activation
        The activation phi (a catalog name or an ``infnet.Activation``).
    c : float or Tensor
        The correlation(s), in [-1, 1].
    q_star : float or Tensor
        The pre-activation variance q* (> 0).
    w_std : float or Tensor, default 1.0
        The weight standard deviation w.

    Returns
    -------
    Tensor
        C'(c) in float64.

    Raises
    ------
    KeyError
        If ``act`` is a name that is not in the catalog.

    Examples
    --------
    >>> round(float(infnet.propagation.correlation_slope("relu", 1.0, 1.0, w_std=2**0.5)), 6)  # chi_1
    1.0
    >>> round(float(infnet.propagation.correlation_slope("erf", 0.0, 1.0)), 6)  # 4 / (3 pi)
    0.424413
    """
    act, c, q = _as_act(act), _t(c), _t(q_star)
    return _t(w_std) ** 2 * act.kernel(q, q, c * q)[1]


def depth_scale(slope: float) -> float:
    """The depth scale -1 / log|slope| of a fixed point (Schoenholz et al. 2017, section 3).

    The number of layers over which a deviation from a fixed point whose map has this slope
    shrinks by e; inf at |slope| >= 1, 0 at slope 0.

    Parameters
    ----------
    slope : float
        The slope of the map at its fixed point (Q'(q*) or chi_c).

    Returns
    -------
    float
        The depth scale xi.

    Examples
    --------
    >>> round(infnet.propagation.depth_scale(0.5), 6)  # 1 / log 2
    1.442695
    >>> infnet.propagation.depth_scale(1.0), infnet.propagation.depth_scale(0.0)
    (inf, 0.0)
    """
    s = abs(float(slope))
    if s >= 1.0:
        return math.inf
    return 0.0 if s == 0.0 else -1.0 / math.log(s)



# ---- the stable correlation -------------------------------------------------------------------------
def correlation_fixed_point(act, q_star: float, w_std=1.0, b_std=0.0) -> float:
    """The stable fixed point c* in [0, 1] of the correlation map at q*.

    C is a power series in c with nonnegative coefficients (Hermite expansion of phi), so it is
    convex on [0, 1] with C(1) = 1 and C(0) >= 0: if chi_1 = C'(1) <= 1 the only fixed point in
    [0, 1] is c* = 1; if chi_1 > 1 (also chi_1 = inf: sign, step) there is exactly one more,
    c* in [0, 1), and it is stable (C'(c*) < 1). It is found by brentq on C(c) - c, bracketed
    below 1. (For c0 < 0 and an odd phi with b = 0, C is odd and the orbit goes to -c*.)

    Parameters
    ----------
    act : str or Activation
        The activation phi (a catalog name or an ``infnet.Activation``).
    q_star : float
        The fixed point q* of the length map (> 0).
    w_std : float, default 1.0
        The weight standard deviation w.
    b_std : float, default 0.0
        The bias standard deviation b.

    Returns
    -------
    float
        c*: 1.0 in the ordered and critical phases, in [0, 1) in the chaotic phase.

    Raises
    ------
    KeyError
        If ``act`` is a name that is not in the catalog.

    Examples
    --------
    >>> infnet.propagation.correlation_fixed_point("relu", 1.0, 2**0.5)  # critical: c* = 1
    1.0
    >>> q, _ = infnet.propagation.length_fixed_points("erf", 2.0, 0.09)  # chaotic
    >>> round(infnet.propagation.correlation_fixed_point("erf", float(q), 2**0.5, 0.3), 6)
    0.613076
    """
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

