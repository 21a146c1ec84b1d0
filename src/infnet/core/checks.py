"""Checks of arguments shared by every package: finite tensors, correlations, depths.

Each raises ``ValueError``/``TypeError`` with a message that names the argument and what to
give instead.
"""

from __future__ import annotations

import math
import numbers

import torch

Tensor = torch.Tensor

#: correlations (and covariances relative to sqrt(q1 q2)) beyond 1 by up to this much are
#: rounding and are clamped; beyond it they are refused
CORR_SLACK = 1e-9


def all_finite(t: Tensor) -> bool:
    """Whether every entry is finite, in one pass (min and max; NaN propagates) instead of
    ``isfinite``'s several."""
    if t.numel() == 0:
        return True
    lo, hi = torch.aminmax(t.detach())
    return math.isfinite(float(lo)) and math.isfinite(float(hi))


def as_rho(rho) -> Tensor:
    """Correlations as a float64 tensor in [-1, 1] (rounding beyond +-1 by ``CORR_SLACK``
    clamped; NaN, inf and larger values refused)."""
    rho = torch.as_tensor(rho, dtype=torch.float64) if not torch.is_tensor(rho) else rho
    rho = rho.to(torch.float64)
    if not all_finite(rho):
        raise ValueError("rho contains NaN or inf")
    if bool((rho.abs() > 1 + CORR_SLACK).any()):
        raise ValueError(f"correlations must lie in [-1, 1]; got max |rho| = "
                         f"{float(rho.abs().max()):.6g}")
    return rho.clamp(-1.0, 1.0)


def check_depth(depth, *, minimum: int = 1, infinite: bool = False, name: str = "depth"):
    """A depth as an int >= ``minimum`` (``math.inf`` too where ``infinite``); the one check
    behind every function, estimator and command that takes a depth."""
    if infinite and isinstance(depth, float) and math.isinf(depth) and depth > 0:
        return math.inf
    if isinstance(depth, numbers.Integral) and not isinstance(depth, bool) and depth >= minimum:
        return int(depth)
    what = f"an integer >= {minimum}" + (" or math.inf" if infinite else "")
    raise ValueError(f"{name} must be {what}, got {depth!r}")


def parse_depth(text: str, *, minimum: int = 1, infinite: bool = True):
    """A depth written on the command line: an integer, or "inf" (where ``infinite``)."""
    word = text.strip().lower()
    if infinite and word in ("inf", "infinity"):
        return math.inf
    try:
        return check_depth(int(word), minimum=minimum)
    except ValueError:
        raise ValueError(f"a depth is an integer >= {minimum}{' or inf' if infinite else ''}, "
                         f"got {text!r}") from None


def check_stds(w_std, b_std) -> None:
    """Raise TypeError/ValueError unless w_std and b_std (or None) are finite reals >= 0 whose
    squares, the variances, neither overflow nor underflow float64."""
    for name, value in (("w_std", w_std), ("b_std", b_std)):
        if value is None and name == "b_std":
            continue
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"{name} must be a real number, got {value!r}")
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        square = float(value) * float(value)
        if math.isinf(square) or (value > 0 and square == 0.0):
            raise ValueError(f"{name} = {value!r}: its square, the variance, "
                             f"{'overflows' if square else 'underflows'} float64")


def check_parameterization(parameterization) -> None:
    if parameterization not in ("ntk", "standard"):
        raise ValueError(f"parameterization must be 'ntk' or 'standard', got {parameterization!r}")


def byte_size(n: int) -> str:
    """A number of bytes for a message: "1.50 GiB", "12.00 MiB", "512 bytes"."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n} bytes"
