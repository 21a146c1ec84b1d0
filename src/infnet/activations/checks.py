"""The checks of the kernel maps: the moments they are given, where they diverge, what they return.

``_check_moments`` makes (q1, q2, c) float64 tensors of a covariance matrix (rounding clamped,
violations raised). ``Singularity`` is a point where |phi| or |phi'| is singular, and
``check_divergence`` raises ``KernelOverflowError`` where such points make a Gaussian expectation
infinite, before a quadrature would return inf; ``check_finite`` raises it where a computed
kernel is not finite. ``Activation`` (``base``) runs them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..core.checks import CORR_SLACK, all_finite
from ..core.errors import KernelOverflowError
from ..numerics.moments import geometric_mean

Tensor = torch.Tensor


@dataclass(frozen=True)
class Singularity:
    """A point where |phi| ~ |x - at|^order or |phi'| ~ |x - at|^derivative_order with a
    negative order (0: bounded there). E|u - at|^p is finite iff p > -1, which decides the
    Gaussian expectations that diverge (``Activation.check_divergence``)."""

    at: float
    order: float = 0.0
    derivative_order: float = 0.0


def check_divergence(act, q1: Tensor, q2: Tensor, c: Tensor, derivative: bool) -> None:
    """``Activation.check_divergence`` of ``act`` (see there): raise KernelOverflowError where
    a singularity of ``act.singular`` makes an expectation infinite."""
    if not act.singular:
        return
    q1, q2, c = torch.broadcast_tensors(q1, q2, c)
    rho1 = (c.abs() >= geometric_mean(q1, q2)) & (q1 > 0)
    for s in act.singular:
        parts = [("phi", s.order)] + ([("phi'", s.derivative_order)] if derivative else [])
        for which, order in parts:
            if order >= 0:
                continue
            together = rho1 & ((s.at == 0.0) | ((c > 0) & (q1 == q2)))
            bad = (((q1 == 0) | (q2 == 0)) & (s.at == 0.0)) | (together & (2 * order <= -0.999))
            if order <= -0.999:
                bad = torch.ones_like(bad)
            if bool(bad.any()):
                i = bad.reshape(-1).nonzero()[0]
                at = ", ".join(f"{n}={float(t.reshape(-1)[i]):.6g}"
                               for n, t in (("q1", q1), ("q2", q2), ("c", c)))
                raise KernelOverflowError(
                    f"E[{which}(u) {which}(v)] of {act.name!r} diverges at {at}: |{which}(x)| "
                    f"grows like |x - {s.at:g}|^{order:.3g} near x = {s.at:g}, and E|u - "
                    f"{s.at:g}|^p is infinite for p <= -1 (p = {order:.3g} for one input, "
                    f"{2 * order:.3g} where both reach the point together). Use an activation "
                    "that is bounded there, or the NNGP where only phi' is singular.")


def check_finite(act, K: Tensor, Kdot: Tensor, q1: Tensor, q2: Tensor):
    """(K, Kdot) of ``act`` when both are finite, else KernelOverflowError saying where and why
    (``Activation._checked``)."""
    if all_finite(K) and all_finite(Kdot):
        return K, Kdot
    bad = ~(torch.isfinite(K) & torch.isfinite(Kdot))
    if bool(bad.any()):
        on_diag = bool(torch.isinf(Kdot[bad]).all()) and act.jumps
        where = (f"q1={float(q1.broadcast_to(K.shape)[bad][0]):.6g}, "
                 f"q2={float(q2.broadcast_to(K.shape)[bad][0]):.6g}")
        if on_diag:
            raise KernelOverflowError(
                f"Kdot of {act.name!r} is infinite at correlation +-1 ({where}): its "
                "derivative is a Dirac mass, so the NTK diagonal diverges. Use the NNGP, or a "
                "smooth version (erf for sign, sigmoid for step).")
        raise KernelOverflowError(
            f"the kernel of {act.name!r} is not finite at {where}: its Gaussian expectation "
            "diverges or overflows at these variances. Lower w_std/b_std or the input scale.")
    return K, Kdot


def _check_moments(q1, q2, c) -> tuple[Tensor, Tensor, Tensor]:
    """Float tensors with q >= 0 and |c| <= sqrt(q1 q2) (rounding clamped, violations raised)."""
    ref = next((t for t in (c, q1, q2) if torch.is_tensor(t)), None)
    # float64 whatever the inputs: a float32 expectation could not be exact
    dtype = torch.float64
    device = ref.device if ref is not None else None
    q1, q2, c = (torch.as_tensor(t, dtype=dtype, device=device) for t in (q1, q2, c))
    for name, t in (("q1", q1), ("q2", q2), ("c", c)):
        if not all_finite(t):
            raise ValueError(f"{name} contains NaN or inf; check the inputs and the layer variances")
    if bool((q1 < 0).any()) or bool((q2 < 0).any()):
        raise ValueError("variances q1, q2 must be >= 0")
    bound = geometric_mean(q1, q2)
    if bool((c.abs() > bound * (1 + CORR_SLACK) + 1e-300).any()):
        raise ValueError("|c| > sqrt(q1 q2): (q1, q2, c) is not a covariance matrix")
    c = torch.maximum(torch.minimum(c, bound), -bound)
    return q1, q2, c
