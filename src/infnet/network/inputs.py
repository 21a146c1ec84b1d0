"""Inputs of kernels and their result: data checked once, angles between rows without
cancellation, the common norm of equal-norm inputs, and the ``Kernel`` value."""

from __future__ import annotations

import abc
from dataclasses import dataclass

import numpy as np
import torch

from ..core.checks import all_finite

Tensor = torch.Tensor

#: inputs whose squared norms agree to this relative tolerance count as equal-norm
EQUAL_NORM_RTOL = 1e-13
#: below this angle, recompute theta from the distance |x - x'| (arccos of a rounded rho is
#: off by ~1e-8 there, which kinked activations' NTKs feel linearly)
SMALL_ANGLE_RHO = 1 - 1e-6


class KernelModel(abc.ABC):
    """The interface of every network value (``Network``, and ``fc(act, depth=inf)``):
    ``kernel(x1, x2=None, *, block, dtype, get) -> Kernel``, ``finite(width, ...)`` (its
    ``torch.nn`` counterpart, or a TypeError that says why there is none), ``activations``."""

    layers: tuple = ()

    @abc.abstractmethod
    def kernel(self, x1, x2=None, *, block: int = 512, dtype: torch.dtype = torch.float64,
               get: str = "both") -> Kernel:
        """NNGP and NTK between the rows of x1 and x2 (x2=None: x1 with itself)."""

    @abc.abstractmethod
    def finite(self, width: int | None = None, *, in_features: int, outputs: int = 1,
               seed: int | None = None, dtype: torch.dtype = torch.float64, device=None):
        """The finite-width network whose infinite-width limit this is."""

    @property
    @abc.abstractmethod
    def activations(self) -> list:
        """The activations of the network."""


@dataclass(frozen=True)
class Kernel:
    """The NNGP and NTK of a network on pairs of inputs.

    What ``Network.kernel`` returns; ``get("nngp")`` reads a field by name.

    Parameters
    ----------
    nngp, ntk : tensor or None
        (n1, n2) tensors (None: not asked for, ``Network.kernel(get=...)``).

    Examples
    --------
    >>> x = torch.eye(2, dtype=torch.float64)
    >>> k = infnet.fc("relu", depth=1).kernel(x, get="nngp")
    >>> k.nngp.shape, k.ntk is None
    (torch.Size([2, 2]), True)
    >>> round(float(k.get("nngp")[0, 1]), 6)  # 1/(4 pi)
    0.079577
    """

    nngp: Tensor | None
    ntk: Tensor | None

    def get(self, kind: str) -> Tensor:
        """``nngp`` or ``ntk`` by name, with a clear error for anything else or a kernel that
        was not computed."""
        if kind not in ("nngp", "ntk"):
            raise ValueError(f"kernel kind must be 'nngp' or 'ntk', got {kind!r}")
        value = getattr(self, kind)
        if value is None:
            raise ValueError(f"the {kind} was not computed: call kernel(..., get={kind!r})")
        return value


def angles(g: Tensor, a: Tensor, b: Tensor, norm_a, norm_b) -> Tensor:
    """The angles between the rows of a and b, from their Gram matrix g (overwritten) and their
    norms (numbers, or one per row): arccos(g / (|a| |b|)); near rho = 1 (rho = -1) from the
    chord |a/|a| - b/|b|| (|a/|a| + b/|b||), where arccos of a rounded rho is off by ~1e-8.
    A zero row is at angle pi/2 to everything."""
    scalar = not torch.is_tensor(norm_a)
    if scalar:
        rho = g.div_(norm_a * norm_b)
    else:
        norm_a, norm_b = norm_a.clamp(min=1e-300), norm_b.clamp(min=1e-300)
        rho = g.div_(norm_a[:, None]).div_(norm_b[None, :])
    rho.clamp_(-1.0, 1.0)
    lo, hi = torch.aminmax(rho)
    if float(hi) <= SMALL_ANGLE_RHO and float(lo) >= -SMALL_ANGLE_RHO:
        return rho.acos_()
    near = rho.abs() > SMALL_ANGLE_RHO
    r, c = near.nonzero(as_tuple=True)
    opposite = rho[r, c] < 0
    sign = 1.0 - 2.0 * opposite.to(a.dtype)  # a - b near rho = 1, a + b near rho = -1
    if scalar:
        diff = (a[r] - sign[:, None] * b[c]) / norm_a
    else:
        diff = a[r] / norm_a[r, None] - sign[:, None] * b[c] / norm_b[c, None]
    half_chord = ((diff * diff).sum(1) / 4).sqrt().clamp_(max=1.0)
    small = 2 * torch.asin(half_chord)
    theta = rho.acos_()
    theta[r, c] = torch.where(opposite, torch.pi - small, small)
    return theta


def round_digits(value: float, digits: int = 15) -> float:
    """``value`` rounded to ``digits`` significant digits (not decimal places: a variance of
    1e-42 stays 1e-42). Inputs of one norm give variances that differ in the last bits from
    call to call; the diagonal pass and the angle table are built at the rounded value, so
    every call's result is independent of which call built them."""
    return float(f"{value:.{digits - 1}e}")


def common_value(sq: Tensor) -> float | None:
    """The mean of ``sq`` where all its entries agree to ``EQUAL_NORM_RTOL`` (inputs of one
    norm: the fast path), else None."""
    lo, hi = float(sq.min()), float(sq.max())
    if hi <= 0:
        return None
    return float(sq.mean()) if hi - lo <= EQUAL_NORM_RTOL * hi else None


def as_data(x, name: str, dtype: torch.dtype, device=None) -> Tensor:
    if not torch.is_tensor(x):
        try:
            x = torch.as_tensor(np.asarray(x, dtype=np.float64))
        except (TypeError, ValueError) as err:
            raise TypeError(f"{name} must be a numeric array or tensor: {err}") from err
    if device is not None and x.device != device:
        raise ValueError(f"{name} is on {x.device} but x1 is on {device}: put both on one device")
    if x.ndim < 2:
        raise ValueError(f"{name} must have shape (n, features); got shape {tuple(x.shape)} "
                         "(one point: x.reshape(1, -1))")
    if x.ndim > 2:
        x = x.reshape(x.shape[0], -1)
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{name} is empty: shape {tuple(x.shape)}")
    if x.is_complex():
        raise TypeError(f"{name} is complex; kernels need real inputs")
    x = x.to(dtype)
    if not all_finite(x):
        bad = ~torch.isfinite(x)
        row = int(bad.any(dim=1).nonzero()[0])
        raise ValueError(f"{name} contains NaN or inf (first in row {row}); clean or impute the "
                         "data first")
    return x


def check_finite(nngp: Tensor | None, ntk: Tensor | None) -> None:
    for name, k in (("NNGP", nngp), ("NTK", ntk)):
        if k is not None and not all_finite(k):
            raise FloatingPointError(f"the {name} overflowed (non-finite entries): the variances "
                                     "grow too fast with depth; lower w_std/b_std or the depth")
