"""Moments of pairs without cancellation, underflow or overflow: the geometric mean of two
variances, the angle of a pair from its covariance, the sine of an angle near pi.

A pair's covariance c and variances q1, q2 hold its angle only up to cancellation near
rho = +-1 (q1 q2 - c^2) and only inside float64's range (q1 q2 underflows from ~1e-154 on):
these helpers keep both, exactly where exactness is possible (c = q1 = q2 gives angle 0).
"""

from __future__ import annotations

import math

import torch

Tensor = torch.Tensor


def _pow2_scale(q1: Tensor, q2: Tensor) -> Tensor:
    """A power of two near max(q1, q2): dividing by it is exact and keeps products of the
    moments inside float64."""
    return torch.exp2(torch.floor(torch.log2(torch.maximum(q1, q2).clamp(min=1e-300))))


def _in_range(p: Tensor, q1: Tensor | None = None, q2: Tensor | None = None) -> bool:
    """No entry of the product p = q1 q2 near underflow or overflow (a zero factor is fine).
    Read off the factors where they are broadcast and much smaller than p (a tile's rows and
    columns), else one pass over p (and the factors where p has zeros)."""
    if p.numel() == 0:
        return True
    if q1 is not None and q2 is not None and 4 * (q1.numel() + q2.numel()) < p.numel():
        return _factor_in_range(q1) and _factor_in_range(q2)
    lo, hi = torch.aminmax(p.detach())
    if float(lo) == 0.0 and float(hi) < 1e290 and q1 is not None and q2 is not None:
        # a zero product: a zero factor (fine), or an underflow (not): the factors decide
        return _factor_in_range(q1) and _factor_in_range(q2)
    return 1e-290 < float(lo) and float(hi) < 1e290


def _factor_in_range(q: Tensor) -> bool:
    """Nonzero entries of q within [1e-145, 1e145]: their products stay inside float64."""
    if q.numel() == 0:
        return True
    q = q.detach()  # (a scalar read, also of a tensor being differentiated)
    hi = float(q.max())
    lo = float(torch.where(q > 0, q, torch.full_like(q, math.inf)).min())
    return hi < 1e145 and (lo > 1e-145 or lo == math.inf)


def geometric_mean(q1: Tensor, q2: Tensor) -> Tensor:
    """sqrt(q1 q2) without underflow or overflow of the product, and exactly q when q1 = q2 = q
    (the square root of a rounded square is exact)."""
    p = q1 * q2
    if _in_range(p, q1, q2):
        return p.sqrt()
    m = _pow2_scale(q1, q2)
    return ((q1 / m) * (q2 / m)).sqrt() * m


def sin_of_angle(theta: Tensor) -> Tensor:
    """sin(theta) for theta in [0, pi], also exact near pi: there sin(pi - theta), pi - theta
    being exact in floating point (Sterbenz) and the complement that an angle carried near pi
    is made of (sin of the float nearest pi is 1.2e-16, not 0)."""
    return torch.where(theta > math.pi / 2, torch.sin(math.pi - theta), torch.sin(theta))


def corr_root(q1: Tensor, q2: Tensor, c: Tensor) -> Tensor:
    """sqrt(q1 q2 - c^2), the first value of ``corr_angle`` without the angle."""
    p = q1 * q2
    if _in_range(p, q1, q2):
        return (p - c * c).clamp_(min=0.0).sqrt_()
    m = _pow2_scale(q1, q2)
    q1, q2, c = q1 / m, q2 / m, c / m
    return (q1 * q2 - c * c).clamp_(min=0.0).sqrt_() * m


def corr_gap(q1: Tensor, q2: Tensor, c: Tensor) -> Tensor | None:
    """q1 q2 - c^2 (>= 0), the square of ``corr_root`` without its square root, where the
    products stay inside float64; None where they do not (then use ``corr_root``)."""
    p = q1 * q2
    if not _in_range(p, q1, q2):
        return None
    cc = c * c
    return (p.sub_(cc) if p.shape == cc.shape else p - cc).clamp_(min=0.0)


def corr_angle(q1: Tensor, q2: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    """(sqrt(q1 q2 - c^2), theta): theta = arccos(c / sqrt(q1 q2)) via atan2, exact at rho = +-1
    (q1 q2 - c^2 is exactly 0 when c = q1 = q2). The moments are first divided by a power of
    two near max(q1, q2), exactly, so that the products neither underflow nor overflow."""
    p = q1 * q2
    if _in_range(p, q1, q2):
        s = (p - c * c).clamp(min=0.0).sqrt()
        return s, torch.atan2(s, c)
    m = _pow2_scale(q1, q2)
    q1, q2, c = q1 / m, q2 / m, c / m
    s = (q1 * q2 - c * c).clamp(min=0.0).sqrt()
    return s * m, torch.atan2(s, c)
