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

from .activations import activation, list_activations
from .propagation import (
    F64,
    STATUSES,
    _as_act,
    diagonal_slope,
    length_fixed_points,
    propagation,
)

#: a critical point at the edge of the region where q diverges counts only if q* stays below
#: this (times max(1, b^2, q0)) next to it: ReLU with b > 0 has chi_1 -> 1 only as q* -> inf
Q_BOUNDED = 1e6
#: chi_1 next to such an edge must be this close to 1 (else chi_1 jumps there: exp)
EDGE_TOL = 1e-6
_DEFINED = (STATUSES.index("fixed_point"), STATUSES.index("marginal"), STATUSES.index("vanishes"))


def chi_1_grid(act, w_var, b_var, q0=1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(q*, status, chi_1) for broadcasting tensors of weight and bias variances, all at once.
    chi_1 is NaN where q* is not a finite stable fixed point (``status``: an index into
    ``propagation.STATUSES``); where q -> 0 it is the limit q -> 0."""
    act = _as_act(act)
    q, status = length_fixed_points(act, w_var, b_var, q0)
    w2 = torch.broadcast_to(torch.as_tensor(w_var, dtype=F64), q.shape)
    ok = torch.isin(status, torch.tensor(_DEFINED))
    chi = torch.full_like(q, math.nan)
    chi[ok] = w2[ok] * diagonal_slope(act, q[ok])
    return q, status, chi


def critical_weight(act, b_std: float = 0.0, *, w_var_range=(1e-2, 1e2), points: int = 48,
                    bracket=None, q0: float = 1.0) -> float | None:
    """The weight std w_c with chi_1(w_c, b_std) = 1: the critical line at this bias (Poole et al.
    2016; Schoenholz et al. 2017), or None when chi_1 does not cross 1.

    Root finding in w^2: the first crossing of h(w^2) = chi_1 - 1 from below on a geometric
    grid of ``points`` variances over ``w_var_range`` (or the given ``bracket`` of variances),
    refined by brentq (or by bisection of the edge where q starts to diverge); each h solves q*
    from q0 (``propagation.length_fixed_points``), and a diverging length map counts as h > 0.
    Where chi_1 touches 1 quadratically (odd phi at b = 0, w_c^2 = 1 / phi'(0)^2: tanh has
    chi_1 - 1 ~ (w^2 - 1)^2 / 3 above), w_c is determined to ~1e-8 only. A crossing at the edge
    of the diverging region is accepted only if chi_1 -> 1 there with q* bounded: ReLU at b = 0
    (w_c^2 = 2), but not ReLU at b > 0 (chi_1 = w^2/2 < 1 wherever q* = b^2 / (1 - w^2/2) is
    finite) nor exp (chi_1 jumps).
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
    """chi_1 over a grid of (w_std^2, b_std^2): arrays of shape (len(b_var), len(w_var)).
    ``chi_1``: NaN where q* is not finite (``status`` "diverges") or not stable;
    ``critical_w_var``: w_c^2 per b_var, NaN where the row has no critical point in range."""

    activation: str
    w_var: np.ndarray
    b_var: np.ndarray
    chi_1: np.ndarray
    q_star: np.ndarray
    status: np.ndarray
    critical_w_var: np.ndarray
    path: str | None = None


def phase_diagram(act, w_var=None, b_var=None, *, path=None, q0: float = 1.0) -> PhaseDiagram:
    """chi_1 on a grid of weight and bias variances, and the critical line chi_1 = 1 solved per
    b_var by root finding in w^2 (``critical_weight``, bracketed by the grid row), as in the
    phase diagrams of Poole et al. 2016 and Schoenholz et al. 2017. With ``path``: a PNG of log10(chi_1)
    (blue ordered, red chaotic, grey where q diverges) with the critical line, drawn on the Agg
    canvas (no display, no change to pyplot's backend). Defaults: w^2 in [0.1, 4] (40 points),
    b^2 in [0, 0.5] (11 points)."""
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
    """Signal propagation of every catalog activation (or ``names``) at (w_std, b_std): one dict
    per activation with name, q_star, status, chi_1, phase, c_star, xi_q, xi_c and
    critical_w_std (``critical_weight`` at b = 0; None if there is none). A failure is recorded
    in "error" (with the other fields None), never raised."""
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
