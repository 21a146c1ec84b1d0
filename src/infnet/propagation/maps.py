"""Signal propagation through deep random networks at infinite width: the length and correlation
maps, their fixed points, the order-to-chaos phase and the depth scales.

Poole, Lahiri, Raghu, Sohl-Dickstein & Ganguli 2016 (arXiv 1606.05340); Schoenholz, Gilmer,
Ganguli & Sohl-Dickstein 2017 (arXiv 1611.01232);
docs/theory/signal-propagation.md#length-and-correlation-maps. A layer
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

This module holds the summary at one (w_std, b_std) (``Propagation``, ``propagation``,
``phase_of``); the length map and its fixed points are in ``length``, the correlation map,
its fixed point and the depth scales in ``correlation`` (their names are re-exported here).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .correlation import (
    Q_LIMIT,
    correlation_fixed_point,
    correlation_map,
    correlation_slope,
    depth_scale,
    diagonal_slope,
)
from .length import (
    CRITICAL_TOL,
    ITERATIONS,
    Q_MAX,
    Q_MIN,
    Q_TINY,
    STATUSES,
    _as_act,
    length_fixed_points,
    length_map,
    variance_slope,
)

__all__ = ["CRITICAL_TOL", "ITERATIONS", "Propagation", "Q_LIMIT", "Q_MAX", "Q_MIN", "Q_TINY",
           "STATUSES", "correlation_fixed_point", "correlation_map", "correlation_slope",
           "depth_scale", "diagonal_slope", "length_fixed_points", "length_map", "phase_of",
           "propagation", "variance_slope"]


# ---- everything at one (w_std, b_std) -------------------------------------------------------------
@dataclass(frozen=True)
class Propagation:
    """Signal propagation at one (w_std, b_std), as returned by ``propagation``.

    Fields that are undefined (q* not a finite stable fixed point, or q -> 0 for the
    correlation quantities) are None; ``message`` says why.

    Parameters
    ----------
    activation : str
        The activation's name.
    w_std : float
        The weight standard deviation.
    b_std : float
        The bias standard deviation.
    q_star : float
        The fixed point q* of the length map (inf when it diverges, 0 when q vanishes).
    status : str
        The status of the length map, one of ``STATUSES``.
    chi_1 : float or None
        chi_1 = w^2 E[phi'(sqrt(q*) z)^2], the slope of the correlation map at c = 1.
    phase : str
        "ordered" | "critical" | "chaotic", or "diverges" / "unstable" when q* is not a finite
        stable fixed point.
    c_star : float or None
        The stable fixed point c* of the correlation map.
    chi_c : float or None
        The slope C'(c*) of the correlation map at c*.
    xi_q : float or None
        The depth scale of the length map, -1 / log Q'(q*).
    xi_c : float or None
        The depth scale of the correlation map, -1 / log chi_c (inf at criticality).
    message : str, default ""
        Why fields are None, if they are.

    Examples
    --------
    >>> p = infnet.propagation.propagation("relu", w_std=2.0)
    >>> p.phase, p.chi_1, p.message
    ('diverges', None, 'the length map has no fixed point: q grows without bound')
    >>> p = infnet.propagation.Propagation("relu", 1.0, 0.0, 0.0, "vanishes", 0.5, "ordered",
    ...                                    None, None, 1.442695, None)
    >>> p.phase, p.c_star
    ('ordered', None)
    """

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
    """The phase of a network from chi_1: "ordered", "critical" or "chaotic".

    "ordered" (chi_1 < 1), "critical" (within ``CRITICAL_TOL`` of 1) or "chaotic" (> 1).

    Parameters
    ----------
    chi_1 : float
        The slope of the correlation map at c = 1.

    Returns
    -------
    str
        The phase.

    Examples
    --------
    >>> [infnet.propagation.phase_of(chi) for chi in (0.5, 1.0, 2.0)]
    ['ordered', 'critical', 'chaotic']
    """
    if abs(chi_1 - 1.0) <= CRITICAL_TOL:
        return "critical"
    return "ordered" if chi_1 < 1.0 else "chaotic"


def propagation(act, w_std: float = 1.0, b_std: float = 0.0, *, q0: float = 1.0) -> Propagation:
    """Signal propagation through a deep network of Dense(w_std, b_std) -> act layers.

    q*, c*, chi_1, chi_c, the phase and the depth scales xi_q, xi_c (Poole et al. 2016;
    Schoenholz et al. 2017; module docstring).

    When q -> 0 ("vanishes": b = 0 and phi(0) = 0 with chi_1 <= 1, e.g. tanh at w^2 < 1) chi_1
    and xi_q are the limits q -> 0 and the correlation map relative to q* is undefined (None).
    When q -> inf ("diverges": ReLU at w^2 > 2, exp) nothing past q* is defined.

    Parameters
    ----------
    act : str or Activation
        The activation phi (a catalog name or an ``infnet.Activation``).
    w_std : float, default 1.0
        The weight standard deviation w.
    b_std : float, default 0.0
        The bias standard deviation b.
    q0 : float, default 1.0
        The input variance the length map is iterated from.

    Returns
    -------
    Propagation
        The quantities, with None where they are undefined.

    Raises
    ------
    ValueError
        If ``w_std``, ``b_std`` or ``q0`` is not finite, or ``q0`` is negative.
    KeyError
        If ``act`` is a name that is not in the catalog.

    Examples
    --------
    >>> p = infnet.propagation.propagation("erf", 1.5, 0.3)
    >>> p.status, p.phase, round(p.q_star, 6), round(p.chi_1, 6), round(p.c_star, 6)
    ('fixed_point', 'chaotic', 1.219169, 1.181753, 0.49707)
    >>> round(p.xi_q, 6), round(p.xi_c, 6)
    (0.936339, 8.609444)
    >>> p = infnet.propagation.propagation("relu", 2**0.5)  # the critical ReLU network
    >>> p.phase, p.xi_c
    ('critical', inf)
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
