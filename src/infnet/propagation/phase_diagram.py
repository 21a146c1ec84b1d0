"""The order-to-chaos phase diagram of deep random networks over (w_std^2, b_std^2), its critical
line chi_1 = 1, and the signal-propagation table of the activation catalog.

Poole, Lahiri, Raghu, Sohl-Dickstein & Ganguli 2016 (arXiv 1606.05340) and Schoenholz, Gilmer,
Ganguli & Sohl-Dickstein 2017 (arXiv 1611.01232): chi_1 = w^2 E[phi'(sqrt(q*) z)^2] at the
fixed point q* of the length map separates the ordered phase (chi_1 < 1) from the chaotic one
(chi_1 > 1). The maps and fixed points are in ``infnet.propagation``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import brentq

from ..activations import activation, list_activations
from .correlation import diagonal_slope
from .length import F64, STATUSES, _as_act, length_fixed_points
from .maps import propagation

#: a critical point at the edge of the region where q diverges counts only if q* stays below
#: this (times max(1, b^2, q0)) next to it: ReLU with b > 0 has chi_1 -> 1 only as q* -> inf
Q_BOUNDED = 1e6
#: chi_1 next to such an edge must be this close to 1 (else chi_1 jumps there: exp)
EDGE_TOL = 1e-6
_DEFINED = (STATUSES.index("fixed_point"), STATUSES.index("marginal"), STATUSES.index("vanishes"))


def chi_1_grid(act, w_var, b_var, q0=1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """chi_1 at the fixed point q* for many weight and bias variances at once.

    Returns (q*, status, chi_1) for broadcasting tensors of weight and bias variances. chi_1 is
    NaN where q* is not a finite stable fixed point (``status``: an index into
    ``propagation.STATUSES``); where q -> 0 it is the limit q -> 0.

    Parameters
    ----------
    act : str or Activation
        The activation phi (a catalog name or an ``infnet.Activation``).
    w_var : float or Tensor
        The weight variance(s) w^2 (finite, >= 0).
    b_var : float or Tensor
        The bias variance(s) b^2 (finite, >= 0).
    q0 : float or Tensor, default 1.0
        The starting variance(s) of the length map.

    Returns
    -------
    q_star : Tensor
        The fixed points of the length map (``length_fixed_points``).
    status : Tensor
        Their statuses, int64 indices into ``STATUSES``.
    chi_1 : Tensor
        w^2 E[phi'(sqrt(q*) z)^2], NaN where undefined.

    Raises
    ------
    ValueError
        If a variance or ``q0`` is negative or not finite.
    KeyError
        If ``act`` is a name that is not in the catalog.

    Examples
    --------
    >>> w_var = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    >>> q, status, chi = infnet.propagation.chi_1_grid("relu", w_var, 0.0)
    >>> q.tolist(), status.tolist(), chi.tolist()  # ReLU: chi_1 = w^2 / 2 where q* is finite
    ([0.0, 1.0, inf], [2, 1, 3], [0.5, 1.0, nan])
    """
    act = _as_act(act)
    q, status = length_fixed_points(act, w_var, b_var, q0)
    w2 = torch.broadcast_to(torch.as_tensor(w_var, dtype=F64), q.shape)
    ok = torch.isin(status, torch.tensor(_DEFINED))
    chi = torch.full_like(q, math.nan)
    chi[ok] = w2[ok] * diagonal_slope(act, q[ok])
    return q, status, chi


def critical_weight(act, b_std: float = 0.0, *, w_var_range=(1e-2, 1e2), points: int = 48,
                    bracket=None, q0: float = 1.0) -> float | None:
    """The critical weight std w_c with chi_1(w_c, b_std) = 1 (Poole et al. 2016; Schoenholz et al. 2017).

    The critical line at this bias, or None when chi_1 does not cross 1.

    Root finding in w^2: the first crossing of h(w^2) = chi_1 - 1 from below on a geometric
    grid of ``points`` variances over ``w_var_range`` (or the given ``bracket`` of variances),
    refined by brentq (or by bisection of the edge where q starts to diverge); each h solves q*
    from q0 (``propagation.length_fixed_points``), and a diverging length map counts as h > 0.
    Where chi_1 touches 1 quadratically (odd phi at b = 0, w_c^2 = 1 / phi'(0)^2: tanh has
    chi_1 - 1 ~ (w^2 - 1)^2 / 3 above), w_c is determined to ~1e-8 only. A crossing at the edge
    of the diverging region is accepted only if chi_1 -> 1 there with q* bounded: ReLU at b = 0
    (w_c^2 = 2), but not ReLU at b > 0 (chi_1 = w^2/2 < 1 wherever q* = b^2 / (1 - w^2/2) is
    finite) nor exp (chi_1 jumps).

    Parameters
    ----------
    act : str or Activation
        The activation phi (a catalog name or an ``infnet.Activation``).
    b_std : float, default 0.0
        The bias standard deviation b.
    w_var_range : pair of float, default (1e-2, 1e2)
        The range of weight variances searched for the first crossing.
    points : int, default 48
        The number of grid points (geometric) over ``w_var_range``.
    bracket : pair of float, optional
        Weight variances (lo, hi) with chi_1(lo) < 1 <= chi_1(hi), skipping the grid search.
    q0 : float, default 1.0
        The starting variance of the length map.

    Returns
    -------
    float or None
        w_c (a standard deviation, not a variance), or None when chi_1 does not cross 1.

    Raises
    ------
    ValueError
        If a variance or ``q0`` is negative or not finite, or ``bracket`` does not bracket a
        crossing (brentq).
    KeyError
        If ``act`` is a name that is not in the catalog.

    Examples
    --------
    >>> round(infnet.propagation.critical_weight("relu", bracket=(1.0, 4.0)), 6)  # sqrt(2)
    1.414214
    >>> round(infnet.propagation.critical_weight("erf", 0.3, w_var_range=(0.5, 4.0), points=6), 6)
    1.233673
    """
    act = _as_act(act)
    b2 = float(b_std) ** 2

    def h(w2: float) -> float:
        _, status, chi = chi_1_grid(act, w2, b2, q0)
        return float(chi) - 1.0 if int(status) in _DEFINED else 1.0

    if bracket is None:
        grid = np.geomspace(*w_var_range, points)
        _, status, chi = chi_1_grid(act, torch.as_tensor(grid), b2, q0)
        vals = torch.where(torch.isin(status, torch.tensor(_DEFINED)), chi - 1.0,
                           torch.ones_like(chi)).numpy()
        cross = np.nonzero((vals[:-1] < 0) & (vals[1:] >= 0))[0]
        if cross.size == 0:
            return None
        bracket = (grid[cross[0]], grid[cross[0] + 1])
    lo, hi = float(bracket[0]), float(bracket[1])
    if h(hi) == 0.0:
        return math.sqrt(hi)
    _, st_hi, _ = chi_1_grid(act, hi, b2, q0)
    if int(st_hi) not in _DEFINED:  # the crossing may be the edge of the diverging region
        lo, hi = _edge(act, b2, q0, lo, hi)
        if hi is None:
            return None if lo is None else math.sqrt(lo)
    return math.sqrt(brentq(h, lo, hi, xtol=1e-15 * hi, rtol=1e-15, maxiter=200))


def _edge(act, b2, q0, lo, hi):
    """Bisect [lo, hi] (h(lo) < 0, q diverges at hi) for the edge of the diverging region.
    Returns (a, b) with chi_1 crossing 1 continuously inside, to be refined by brentq; or
    (edge, None) when chi_1 -> 1 there with q* bounded; or (None, None) when it does not."""
    for it in range(200):
        mid = math.sqrt(lo * hi) if lo > 0 else (lo + hi) / 2
        q, st, chi = chi_1_grid(act, mid, b2, q0)
        if int(st) in _DEFINED:
            if float(chi) >= 1.0:
                return lo, mid
            lo = mid
        else:
            hi = mid
        done = hi - lo <= 1e-15 * hi
        if it in (12, 24) or done:  # checkpoints: chi_1 jumps at the edge, or q* runs away
            q, st, chi = chi_1_grid(act, lo, b2, q0)
            near = abs(float(chi) - 1) <= (EDGE_TOL if done else 1e-2)
            if not (near and float(q) <= Q_BOUNDED * max(1.0, b2, q0)):
                return None, None
            if done:
                return lo, None
    return None, None


@dataclass(frozen=True)
class PhaseDiagram:
    """The phase diagram: chi_1 over a grid of (w_std^2, b_std^2), as returned by ``phase_diagram``.

    The arrays over the grid have shape (len(b_var), len(w_var)).

    Parameters
    ----------
    activation : str
        The activation's name.
    w_var : ndarray, shape (nw,)
        The weight variances w^2 (the columns).
    b_var : ndarray, shape (nb,)
        The bias variances b^2 (the rows).
    chi_1 : ndarray, shape (nb, nw)
        chi_1, NaN where q* is not finite (``status`` "diverges") or not stable.
    q_star : ndarray, shape (nb, nw)
        The fixed points q* of the length map.
    status : ndarray of str, shape (nb, nw)
        The statuses of the length map (``STATUSES``).
    critical_w_var : ndarray, shape (nb,)
        w_c^2 per b_var, NaN where the row has no critical point in range.
    path : str, optional
        The PNG written, if any.

    Examples
    --------
    >>> d = infnet.propagation.phase_diagram("erf", w_var=[1.0, 2.0], b_var=[0.1])
    >>> d.chi_1.shape, d.status[0].tolist(), d.path
    ((1, 2), ['fixed_point', 'fixed_point'], None)
    >>> [round(float(v), 6) for v in d.chi_1[0]], round(float(d.critical_w_var[0]), 6)
    ([0.797165, 1.118317], 1.552118)
    """

    activation: str
    w_var: np.ndarray
    b_var: np.ndarray
    chi_1: np.ndarray
    q_star: np.ndarray
    status: np.ndarray
    critical_w_var: np.ndarray
    path: str | None = None


def phase_diagram(act, w_var=None, b_var=None, *, path=None, q0: float = 1.0) -> PhaseDiagram:
    """The order-to-chaos phase diagram: chi_1 on a grid of weight and bias variances.

    Also the critical line chi_1 = 1, solved per b_var by root finding in w^2
    (``critical_weight``, bracketed by the grid row), as in the phase diagrams of Poole et al.
    2016 and Schoenholz et al. 2017. With ``path``: a PNG of log10(chi_1) (blue ordered, red
    chaotic, grey where q diverges) with the critical line, drawn on the Agg canvas (no
    display, no change to pyplot's backend).

    Parameters
    ----------
    act : str or Activation
        The activation phi (a catalog name or an ``infnet.Activation``).
    w_var : array_like, optional
        The weight variances w^2; default 40 points in [0.1, 4].
    b_var : array_like, optional
        The bias variances b^2; default 11 points in [0, 0.5].
    path : str or path-like, optional
        Where to write the PNG figure; None (the default) draws nothing.
    q0 : float, default 1.0
        The starting variance of the length map.

    Returns
    -------
    PhaseDiagram
        chi_1, q* and the statuses over the grid, and the critical w^2 per b^2.

    Raises
    ------
    ValueError
        If a variance or ``q0`` is negative or not finite.
    KeyError
        If ``act`` is a name that is not in the catalog.
    ImportError
        With ``path``, if matplotlib is not installed.

    Examples
    --------
    >>> d = infnet.propagation.phase_diagram("erf", w_var=[1.0, 2.0, 3.0], b_var=[0.1, 0.3])
    >>> d.chi_1.shape, d.path  # no path: no figure (path="phase.png" would write one here)
    ((2, 3), None)
    >>> [round(float(v), 6) for v in d.critical_w_var]  # w_c^2 grows with the bias
    [1.552118, 1.963071]
    >>> (d.chi_1 < 1).tolist()  # ordered left of the critical line, chaotic right of it
    [[True, False, False], [True, False, False]]
    """
    act = _as_act(act)
    w_var = np.linspace(0.1, 4.0, 40) if w_var is None else np.asarray(w_var, dtype=float)
    b_var = np.linspace(0.0, 0.5, 11) if b_var is None else np.asarray(b_var, dtype=float)
    q, status, chi = chi_1_grid(act, torch.as_tensor(w_var)[None, :],
                                torch.as_tensor(b_var)[:, None], q0)
    vals = torch.where(torch.isin(status, torch.tensor(_DEFINED)), chi - 1.0,
                       torch.ones_like(chi)).numpy()
    critical = np.full(len(b_var), math.nan)
    for i, b2 in enumerate(b_var):
        cross = np.nonzero((vals[i, :-1] < 0) & (vals[i, 1:] >= 0))[0]
        if cross.size:
            j = cross[0]
            wc = critical_weight(act, math.sqrt(b2), bracket=(w_var[j], w_var[j + 1]), q0=q0)
            critical[i] = math.nan if wc is None else wc**2
    result = PhaseDiagram(act.name, w_var, b_var, chi.numpy(), q.numpy(),
                          np.asarray(STATUSES)[status.numpy()], critical,
                          None if path is None else str(path))
    if path is not None:
        _draw(result, path)
    return result


def _draw(d: PhaseDiagram, path) -> None:
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import TwoSlopeNorm
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.8))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    with np.errstate(divide="ignore", invalid="ignore"):
        log_chi = np.log10(d.chi_1)
    log_chi = np.ma.masked_invalid(log_chi)
    span = max(float(np.abs(log_chi).max()) if log_chi.count() else 1.0, 1e-3)
    cmap = matplotlib.colormaps["RdBu_r"].with_extremes(bad="0.75")
    mesh = ax.pcolormesh(d.w_var, d.b_var, log_chi, shading="nearest", cmap=cmap,
                         norm=TwoSlopeNorm(0.0, -span, span))
    fig.colorbar(mesh, ax=ax, label=r"$\log_{10}\chi_1$")
    ok = np.isfinite(d.critical_w_var)
    if ok.any():
        ax.plot(d.critical_w_var[ok], d.b_var[ok], "k-o", lw=2, ms=3,
                label=r"critical: $\chi_1 = 1$")
        ax.legend(loc="upper left")
    ax.set_xlabel(r"$\sigma_w^2$")
    ax.set_ylabel(r"$\sigma_b^2$")
    ax.set_title(f"{d.activation}: ordered (blue), chaotic (red), q diverges (grey)")
    fig.savefig(path, dpi=100)


def propagation_table(names=None, *, w_std: float = 1.0, b_std: float = 0.0,
                      q0: float = 1.0) -> list[dict]:
    """Signal propagation of every catalog activation (or ``names``) at (w_std, b_std), as a table.

    One dict per activation with name, q_star, status, chi_1, phase, c_star, xi_q, xi_c and
    critical_w_std (``critical_weight`` at b = 0; None if there is none). A failure is recorded
    in "error" (with the other fields None), never raised.

    Parameters
    ----------
    names : iterable of str or Activation, optional
        The activations; default all of ``infnet.list_activations()``.
    w_std : float, default 1.0
        The weight standard deviation.
    b_std : float, default 0.0
        The bias standard deviation.
    q0 : float, default 1.0
        The starting variance of the length map.

    Returns
    -------
    list of dict
        One row per activation; "error" is "" where the row succeeded.

    Examples
    --------
    >>> rows = infnet.propagation.propagation_table(["sign", "no_such_unit"])
    >>> sign = rows[0]
    >>> sign["phase"], sign["chi_1"], sign["c_star"], sign["critical_w_std"]
    ('chaotic', inf, 0.0, None)
    >>> round(sign["xi_c"], 6)  # -1 / log(2 / pi)
    2.214434
    >>> rows[1]["name"], rows[1]["error"].startswith("KeyError")
    ('no_such_unit', True)
    """
    rows = []
    for name in list_activations() if names is None else names:
        row = {"name": name if isinstance(name, str) else getattr(name, "name", repr(name)),
               "error": ""}
        try:
            act = activation(name) if isinstance(name, str) else name
            p = propagation(act, w_std, b_std, q0=q0)
            row.update(q_star=p.q_star, status=p.status, chi_1=p.chi_1, phase=p.phase,
                       c_star=p.c_star, xi_q=p.xi_q, xi_c=p.xi_c)
            row["critical_w_std"] = critical_weight(act, 0.0, q0=q0)
        except Exception as err:  # recorded, so one activation cannot stop the table
            row["error"] = f"{type(err).__name__}: {err}"
        rows.append(row)
    return rows


def format_table(rows: list[dict]) -> str:
    """The rows of ``propagation_table`` as aligned text."""
    def fmt(v):
        if v is None:
            return "-"
        return f"{v:.6g}" if isinstance(v, float) else str(v)

    cols = ["name", "q_star", "chi_1", "phase", "c_star", "xi_c", "critical_w_std", "error"]
    table = [cols] + [[fmt(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(cols))]
    return "\n".join("  ".join(s.ljust(w) for s, w in zip(line, widths, strict=True)).rstrip()
                     for line in table)
