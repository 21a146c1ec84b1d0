"""Where a function is not smooth: breakpoints found by recursive Chebyshev fits.

Gauss-Legendre converges geometrically only on pieces where the integrand is smooth, so the
quadrature needs every point where phi or phi' is not smooth (a kink of phi is a jump of phi';
a jump of phi is a Dirac mass in phi'). For a user's function they are found here, after the
edge detection of piecewise-smooth chebfuns (Pachon, Platte & Trefethen, IMA J. Numer. Anal.
30, 2010): an interval on which the Chebyshev coefficients of a 32-point interpolant (on the
interval widened by an eighth on each side) do not fall below 1e-12 of the function's local size
is split (off-centre, so that round numbers such as 0 or 0.5 never become split points), down
to a width of ~1e-7. A jump inside the last interval is then located by bisection towards the
larger change, to a few ulps; a kink or a singularity is the simplest number in it.

Each breakpoint is classified: a jump of the function, or a singularity, where |g| grows like
|x - x0|^order with order < 0; the orders of phi and phi' decide which Gaussian expectations
diverge (``Activation`` checks them before integrating).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.fft import dct
from scipy.ndimage import maximum_filter1d

#: breakpoints are sought on [-SPAN, SPAN] (kinks farther out matter only for variances > 7000)
SPAN = 1000.0
_POINTS = 32
_TOL = 1e-12
#: an interval narrower than this (times max(1, |x|)) that is still not smooth holds a breakpoint
_MIN_WIDTH = 1e-7
#: where the split falls inside an interval (not 1/2: round numbers stay interior)
_SPLIT = 0.4871
#: total evaluations allowed (a function that oscillates fast everywhere stops the search; the
#: quadrature's self-check still guards its kernels)
_MAX_EVALS = 2_000_000

#: sizes below this are not resolved (subnormal rounding, e.g. sigmoid(x) x far out)
_FLOOR = 1e-280

Fn = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Breakpoint:
    """A point where g is not smooth: ``jump`` if g is discontinuous there, ``order`` the
    exponent of |g| ~ |x - at|^order where g is unbounded (0 where it is bounded)."""

    at: float
    jump: bool = False
    order: float = 0.0


def _coarse_grid() -> np.ndarray:
    inner = np.arange(-64.0, 64.0 + 1e-9, 1.0 / 16.0)
    outer = np.arange(65.0, SPAN + 1e-9, 1.0)
    return np.concatenate([-outer[::-1], inner, outer]) + 0.00731  # off the round numbers


class _Scale:
    """The local size of |g| (a running maximum over ~1 unit of a coarse grid): coefficients
    below 1e-12 of it are rounding, not structure (e.g. near a zero of g)."""

    def __init__(self, g: Fn):
        self.x = _coarse_grid()
        v = np.abs(g(self.x))
        v = np.where(np.isfinite(v), v, 0.0)  # overflow or NaN: not resolved there
        # rounding in g's own evaluation is ~eps times the size of its intermediates (e.g.
        # 1 - tanh(x)^2 far out): a floor of 1e-3 of |g| near the origin keeps it out
        floor = max(_FLOOR, 1e-3 * float(v[np.abs(self.x) <= 16].max()))
        self.v = np.maximum(maximum_filter1d(v, size=33, mode="nearest"), floor)

    def at(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        i = np.clip(np.searchsorted(self.x, lo), 0, len(self.x) - 1)
        j = np.clip(np.searchsorted(self.x, hi), 0, len(self.x) - 1)
        return np.maximum(self.v[i], self.v[j])


def nan_point(g: Fn) -> float | None:
    """The point of the search grid nearest to 0 where g is NaN, or None."""
    x = _coarse_grid()
    with np.errstate(all="ignore"):
        bad = np.isnan(g(x))
    return float(x[bad][np.argmin(np.abs(x[bad]))]) if bad.any() else None


def _cheb_points() -> np.ndarray:
    k = np.arange(_POINTS)
    return np.cos(np.pi * (k + 0.5) / _POINTS)[::-1]  # first kind: the ends are not sampled


def _smooth(vals: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Rows of samples at Chebyshev points whose coefficients decay below _TOL * scale."""
    finite = np.isfinite(vals).all(axis=1)
    vals = np.where(np.isfinite(vals), vals, 0.0)
    size = np.maximum(np.maximum(np.abs(vals).max(axis=1), scale), _FLOOR)
    coef = dct(vals / size[:, None], type=2, axis=1) / _POINTS  # (scaled: no overflow)
    tail = np.abs(coef[:, 3 * _POINTS // 4:]).max(axis=1)
    return finite & (tail <= _TOL)


def breakpoints(g: Fn, span: float = SPAN) -> tuple[list[Breakpoint], bool]:
    """The breakpoints of g in [-span, span] and whether the search finished (False: stopped at
    the evaluation budget). Raises ValueError naming a point where g is NaN."""
    with np.errstate(all="ignore"):
        return _breakpoints(g, span)


def _breakpoints(g: Fn, span: float) -> tuple[list[Breakpoint], bool]:
    scale = _Scale(g)
    edges = np.concatenate([-span, -(2.0 ** np.arange(9, -1, -1)) * 1.0137, [-0.0113],
                            (2.0 ** np.arange(0, 10)) * 1.0137, [span]], axis=None)
    lo, hi = edges[:-1], edges[1:]
    t = _cheb_points()
    found_lo, found_hi = [], []
    evals, complete = 0, True
    while lo.size:
        # each interval is tested with 1/8 of its width added on both sides, so that a
        # breakpoint next to a split point is well inside one tested interval
        pad = (hi - lo) / 8
        x = (lo - pad)[:, None] + (hi - lo + 2 * pad)[:, None] * (t[None, :] + 1) / 2
        vals = g(x.ravel()).reshape(x.shape)
        evals += x.size
        all_bad = ~np.isfinite(vals).any(axis=1)  # overflow far out: not a breakpoint
        ok = _smooth(vals, scale.at(lo - pad, hi + pad)) | all_bad
        narrow = (hi - lo) <= _MIN_WIDTH * np.maximum(1.0, np.abs(lo))
        hit = ~ok & narrow
        found_lo.append(lo[hit])
        found_hi.append(hi[hit])
        rest = ~ok & ~narrow
        lo, hi = lo[rest], hi[rest]
        if evals > _MAX_EVALS:
            complete = False
            break
        mid = lo + _SPLIT * (hi - lo)
        lo, hi = np.concatenate([lo, mid]), np.concatenate([mid, hi])
    a, b = np.concatenate(found_lo), np.concatenate(found_hi)
    if a.size == 0:
        return [], complete
    a0, b0 = _merge(a, b)
    a1, b1 = _bisect(g, a0, b0)
    ga, gb = g(a1), g(b1)
    size = scale.at(a0 - 1.0, b0 + 1.0)
    jump = np.isfinite(ga) & np.isfinite(gb) & (np.abs(gb - ga) > 1e-7 * size)
    # a jump is located by the bisection to ulps; a kink or a singularity (where the bisection
    # need not converge to it) is the simplest number of its ~1e-7 wide interval
    x0 = [_tidy(0.5 * (p + q)) if j else _simplest(lo_, hi_)
          for p, q, j, lo_, hi_ in zip(a1, b1, jump, a0, b0, strict=True)]
    points = [_classify(g, x, scale) for x in x0]
    return [p for p in points if p is not None], complete


def _merge(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Adjacent or overlapping candidate intervals as one (a breakpoint on a split point)."""
    order = np.argsort(a)
    a, b = a[order], b[order]
    out_a, out_b = [a[0]], [b[0]]
    for lo, hi in zip(a[1:], b[1:], strict=True):
        if lo <= out_b[-1] + 1e-12 * abs(out_b[-1]) + 1e-300:
            out_b[-1] = max(out_b[-1], hi)
        else:
            out_a.append(lo)
            out_b.append(hi)
    return np.array(out_a), np.array(out_b)


def _bisect(g: Fn, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Shrink each [a, b] towards the half with the larger change of g, to a few ulps."""
    for _ in range(64):
        m = 0.5 * (a + b)
        live = (m > a) & (m < b)
        if not live.any():
            break
        ga, gm, gb = (g(v) for v in (a, m, b))
        left = np.abs(gm - ga) >= np.abs(gb - gm)
        left = np.where(np.isfinite(left), left, True)
        a, b = np.where(live & ~left, m, a), np.where(live & left, m, b)
    return a, b


def _classify(g: Fn, x0: float, scale: _Scale) -> Breakpoint | None:
    """The breakpoint at x0; None at the edge of an overflow (g infinite on a whole side)."""
    s = max(1.0, abs(x0))
    size = float(scale.at(np.array([x0 - 1.0]), np.array([x0 + 1.0]))[0])
    d1, d2 = 1e-4 * s, 1e-8 * s
    near = g(np.array([x0 - d2, x0 + d2, x0 - d1, x0 + d1]))
    if not np.isfinite(near[2:]).all():
        return None
    jump = bool(np.isfinite(near[:2]).all() and abs(near[1] - near[0]) > 1e-7 * max(size, 1e-300))
    order = 0.0
    for close, far in ((near[0], near[2]), (near[1], near[3])):
        close, far = abs(close), abs(far)
        if not math.isfinite(far) or far == 0.0:
            continue
        if not math.isfinite(close) or (close > 1.001 * far and close > size):
            ratio = close / far if math.isfinite(close) else 1e300
            order = min(order, math.log(ratio) / math.log(d2 / d1))
    return Breakpoint(x0, jump and order == 0.0, order)


def _simplest(a: float, b: float) -> float:
    """0 if a <= 0 <= b, else the number with the fewest significant digits in [a, b]."""
    if a <= 0.0 <= b:
        return 0.0
    m = 0.5 * (a + b)
    for digits in range(1, 16):
        r = float(f"{m:.{digits}g}")
        if a <= r <= b:
            return r
    return m


def _tidy(x0: float) -> float:
    """x0 as its 12-digit rounding when that is within a few ulps (0.5, not 0.5000000000000002);
    0 within 1e-15 (the quadrature's rays through the origin then take it exactly)."""
    if abs(x0) <= 1e-15:
        return 0.0
    nice = float(f"{x0:.12g}")
    return nice if abs(nice - x0) <= 8 * math.ulp(max(abs(x0), 1e-300)) + 1e-300 else x0
