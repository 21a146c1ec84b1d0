"""What the 1-D and 2-D Gaussian quadratures share: Gauss-Legendre pieces, the truncation radius,
and the verdicts of their self-checks (agreement of two node counts, the tail at the truncation,
what to do at the largest node counts), with the errors and the warning they raise.
"""

from __future__ import annotations

import math
import warnings
from functools import lru_cache

import numpy as np
import torch

from ..core.errors import KernelOverflowError, QuadratureError, QuadratureWarning

Tensor = torch.Tensor

#: radius of truncation in the standard normal plane: r exp(-r^2/2) < 1e-30 beyond it
RADIUS = 12.0


@lru_cache(maxsize=32)
def _legendre(n: int) -> tuple[np.ndarray, np.ndarray]:
    x, w = np.polynomial.legendre.leggauss(n)
    return x, w


def legendre_nodes(n: int, dtype=torch.float64, device=None) -> tuple[Tensor, Tensor]:
    """Gauss-Legendre nodes and weights on [-1, 1]."""
    x, w = _legendre(n)
    return (torch.as_tensor(x, dtype=dtype, device=device),
            torch.as_tensor(w, dtype=dtype, device=device))


def pieces(lo: Tensor, hi: Tensor, n: int) -> tuple[Tensor, Tensor]:
    """Nodes and weights of n-point Gauss-Legendre on each interval [lo, hi] (broadcast)."""
    x, w = legendre_nodes(n, lo.dtype, lo.device)
    half = (hi - lo).unsqueeze(-1) / 2
    nodes = lo.unsqueeze(-1) + half * (x + 1)
    return nodes, half * w

#: agreement required between successive node counts (relative to max(1, |value|)), or the
#: rounding of the sum (``_ROUNDING`` x the integral of |integrand|), whichever is larger
SELF_CHECK_TOL = 2e-14

_ROUNDING = 16 * 2.0**-52

MAX_NODES = 240

#: at the largest node counts, agreement to this (relative to max(1, |value|)) is accepted:
#: the rounding of ~1e6 terms of large kernels (q ~ 100) shows at ~1e-13
_CAP_TOL = 1e-11

#: beyond it, a value is returned with a QuadratureWarning that says how far it got when its
#: error is below this (large variances: features of phi at |x| ~ 1 are thin slices of the polar
#: pieces)
_WARN_TOL = 1e-8
#: the agreement of the two rules estimates the error only up to a factor: where neither rule
#: resolves the integrand (snake at a variance of 1e20, oscillating 1e10 times across the
#: Gaussian) they disagree by aliasing, and the finer one was found 1.5x further from the truth
#: than from the coarser one. A warning needs agreement to _WARN_TOL / _SAFETY.
_SAFETY = 10.0

#: the integrand's mass beyond the truncation radius may be at most this much of its absolute
#: integral (estimated from its value on the circle r = RADIUS, decaying like exp(-r^2/2))
_TAIL_TOL = 1e-17


def agree(prev: list[Tensor], cur: list[Tensor], absolute: list[Tensor],
           tol: float = SELF_CHECK_TOL) -> list[Tensor]:
    """Per item: the entries where two evaluations agree to the self-check tolerance."""
    return [(a - b).abs() <= torch.maximum(tol * b.abs().clamp(min=1.0), _ROUNDING * m)
            for a, b, m in zip(prev, cur, absolute, strict=True)]


def verdict_at_cap(prev, cur, absolute, label: str, where) -> None:
    """The verdict at the largest node counts: silent where the rules agree to ``_CAP_TOL``, a
    QuadratureWarning to ``_WARN_TOL / _SAFETY`` (an error below ``_WARN_TOL``), else
    QuadratureError (``where(bad)`` names the first bad entry)."""
    if all(bool(o.all()) for o in agree(prev, cur, absolute, _CAP_TOL)):
        return
    loose = agree(prev, cur, absolute, _WARN_TOL / _SAFETY)
    bad = ~torch.stack(loose).all(0)
    if not bool(bad.any()):
        worst = max(float(((a - b).abs() / b.abs().clamp(min=1.0)).max())
                    for a, b in zip(prev, cur, strict=True))
        bad = ~torch.stack(agree(prev, cur, absolute, _CAP_TOL)).all(0)
        warnings.warn(f"{label} converged only to {worst:.1e} (relative; the error is below "
                      f"{_WARN_TOL:.0e}) at {where(bad)} with "
                      f"{MAX_NODES}+ nodes per piece: machine precision there needs finer "
                      "pieces (large variances, or a kink that is not declared)",
                      QuadratureWarning, stacklevel=4)
        return
    raise QuadratureError(
        f"{label} does not converge to machine precision at {where(bad)}: the integrand is not "
        "smooth between the known kinks, or its features (oscillations, bends near x = 0) are "
        "too fine for variances that large. Declare every point where phi or phi' is not "
        "smooth (kinks=[...]), or lower the variances (w_std, b_std, the input scale); where "
        "phi or phi' is singular, its Gaussian expectation may diverge.")


def describe(q1: Tensor, q2: Tensor, theta: Tensor | None, bad: Tensor) -> str:
    i = int(bad.nonzero()[0]) if bool(bad.any()) else 0
    text = f"q1={float(q1[i]):.6g}, q2={float(q2[i]):.6g}"
    return text if theta is None else text + f", rho={math.cos(float(theta[i])):.12g}"


def tail_verdict(at_r: Tensor, at_2r: Tensor, total: Tensor, label: str, where) -> None:
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


def integrand_values(item, u, v, data):
    return item[0](u) * item[1](v) if isinstance(item, tuple) else item(u, v, *data)
