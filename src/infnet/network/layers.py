"""Layers as small values that transform kernels (the style of neural-tangents ``stax``).

A layer maps the moments of its input to those of its output, elementwise over pairs of inputs:
``nngp`` (the covariance c of the pre-activations of the pair), ``ntk`` (the tangent kernel so
far), and the per-input variances q1, q2 (the diagonal of the NNGP) that activations need.
REFERENCES.md section 1:

    Dense (NTK parameterization):  Sigma' = w^2 Sigma + b^2,  Theta' = w^2 Theta + Sigma'
    Dense (standard):              Sigma' = w^2 Sigma + b^2,  Theta' = n_in Sigma + [b] + w^2 Theta
    Activation phi:                Sigma' = K(q1, q2, Sigma),  Theta' = Kdot(q1, q2, Sigma) Theta

The network input enters as Sigma = x.x'/d, Theta = 0, width d, so the first Dense gives
Sigma_0 = Theta_0 = w^2 x.x'/d + b^2.

Pairs also carry their angle theta = arccos(Sigma / sqrt(q1 q2)), updated by each layer without
cancellation: near rho = +-1 the covariance alone has lost it (q1 q2 - Sigma^2 cancels), and the
NTK of a kinked unit is linear in theta there.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import torch

from ..activations import Activation, activation
from ..activations.moments import geometric_mean, sin_of_angle

Tensor = torch.Tensor


@dataclass(frozen=True)
class Moments:
    """Kernel moments of pairs of inputs (tensors broadcast against each other).

    ``q1``, ``q2`` are the variances of the two inputs of each pair at this point of the network
    (computed once per input by the diagonal pass, not per pair); ``width`` is the number of
    features feeding the next Dense (None: not given); ``theta`` the angle of the pairs, None
    in the diagonal pass (each input with itself: nngp = q1 = q2).
    """

    nngp: Tensor
    ntk: Tensor
    q1: Tensor
    q2: Tensor
    width: int | None
    theta: Tensor | None = None

    @property
    def diagonal(self) -> bool:
        return self.theta is None


@dataclass(frozen=True)
class Dense:
    """A fully-connected layer W x + b, W_ij ~ N(0, w_std^2 / n_in), b ~ N(0, b_std^2).

    ``parameterization="ntk"`` trains the standard normal variables behind W and b (Jacot et al.
    2018); ``"standard"`` trains W and b themselves (Sohl-Dickstein et al. 2020, arXiv 2001.07301),
    which needs the input width of every Dense: ``width`` is this layer's output width, read by
    the next Dense. ``b_std=None`` means no bias (it matters only for "standard", where a bias
    initialized at 0 is still trained).
    """

    w_std: float = 1.0
    b_std: float | None = 0.0
    parameterization: str = "ntk"
    width: int | None = None

    def __post_init__(self):
        for name, value in (("w_std", self.w_std), ("b_std", self.b_std)):
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
        if self.parameterization not in ("ntk", "standard"):
            raise ValueError(f"parameterization must be 'ntk' or 'standard', "
                             f"got {self.parameterization!r}")
        if self.width is not None and not (isinstance(self.width, int) and self.width >= 1):
            raise ValueError(f"width must be a positive integer or None, got {self.width!r}")

    def apply(self, m: Moments, q1_out=None, q2_out=None) -> Moments:
        """The moments after the layer; the output variances come from the caller's diagonal
        pass (q1_out, q2_out; None in the diagonal pass itself)."""
        w2 = self.w_std**2
        b2 = (self.b_std or 0.0) ** 2
        nngp = w2 * m.nngp + b2
        if self.parameterization == "ntk":
            ntk = w2 * m.ntk + nngp
        else:
            if m.width is None:
                raise ValueError("the standard parameterization needs the input width of every "
                                 "Dense layer: give Dense(width=...) to the layer before "
                                 "(fc(..., width=...))")
            ntk = m.width * m.nngp + (0.0 if self.b_std is None else 1.0) + w2 * m.ntk
        if m.diagonal:
            return Moments(nngp, ntk, nngp, nngp, self.width)
        return Moments(nngp, ntk, q1_out, q2_out, self.width, self._angle(m, nngp, w2, b2))

    @staticmethod
    def _angle(m: Moments, nngp: Tensor, w2: float, b2: float) -> Tensor:
        """theta' = atan2(sqrt(det'), Sigma'), det' = q1' q2' - Sigma'^2 without cancellation:
        w^4 q1 q2 sin^2 theta + w^2 b^2 [(sqrt q1 - sqrt q2)^2 + 4 sqrt(q1 q2) sin^2(theta/2)],
        its square root a hypot (det' itself overflows for variances beyond 1e154)."""
        if b2 == 0.0:
            return m.theta
        r = geometric_mean(m.q1, m.q2)
        spread = (m.q1.sqrt() - m.q2.sqrt()) ** 2 + 4 * r * torch.sin(m.theta / 2) ** 2
        root = torch.hypot(w2 * r * sin_of_angle(m.theta), math.sqrt(w2 * b2) * spread.sqrt())
        return torch.atan2(root, nngp)


#: pre-activation variances above this reach activations only if they are positively
#: homogeneous: near-antiparallel pairs keep angles pi - d with d below the float spacing of
#: pi (1e-16), which other units' kernels feel through sqrt(q1 q2) sin(theta) once q > ~1e26
MAX_VARIANCE = 1e24


def positively_homogeneous(act: Activation) -> bool:
    """K(a q1, a q2, a c) = a K(q1, q2, c) and Kdot(a .) = Kdot(.) for a > 0 (the ReLU family),
    checked on probe moments."""
    q1 = torch.tensor([1.0, 0.5, 1.0, 2.0], dtype=torch.float64)
    q2 = torch.tensor([1.0, 2.0, 1.0, 0.7], dtype=torch.float64)
    c = torch.tensor([0.3, -0.4, 1.0, 0.9], dtype=torch.float64) * (q1 * q2).sqrt()
    try:
        K, Kdot = act.kernel(q1, q2, c)
        for a in (4.0, 0.09):
            Ka, Kdota = act.kernel(a * q1, a * q2, a * c)
            if not (torch.allclose(Ka, a * K, rtol=1e-12, atol=0)
                    and torch.allclose(Kdota, Kdot, rtol=1e-12, atol=1e-300)):
                return False
    except (ArithmeticError, ValueError, NotImplementedError, TypeError):
        return False
    return bool((K.abs() > 0).all())


def check_variance_range(act: Activation, q: Tensor) -> None:
    """Raise ValueError where variances above ``MAX_VARIANCE`` reach a unit that is not
    positively homogeneous (its kernel would depend on angles float64 cannot hold)."""
    if q.numel() and float(q.max()) > MAX_VARIANCE and not positively_homogeneous(act):
        raise ValueError(
            f"pre-activation variances reach {float(q.max()):.3g} at {act!r}: above "
            f"{MAX_VARIANCE:.0e} the kernel of a unit that is not positively homogeneous needs "
            "angles of near-antiparallel pairs closer to pi than float64 holds. Rescale the "
            "inputs (e.g. x / |x|) or lower w_std/b_std.")


@dataclass(frozen=True)
class Nonlinearity:
    """An activation applied elementwise: the kernel maps of the Activation value."""

    act: Activation

    def apply(self, m: Moments, q1_out=None, q2_out=None) -> Moments:
        if m.diagonal:  # each input with itself: 1-D expectations
            check_variance_range(self.act, m.q1)
            K, Kdot = self.act.diagonal_kernel(m.q1)
            return Moments(K, Kdot * m.ntk, K, K, m.width)
        K, Kdot, theta = self.act.pair_map(m.q1, m.q2, m.nngp, m.theta, q1_out, q2_out)
        return Moments(K, Kdot * m.ntk, q1_out, q2_out, m.width, theta)


def as_layer(obj):
    """Layers pass through; an Activation (or a catalog name) becomes a Nonlinearity."""
    if isinstance(obj, (Dense, Nonlinearity)):
        return obj
    if isinstance(obj, (Activation, str)):
        return Nonlinearity(activation(obj) if isinstance(obj, str) else obj)
    raise TypeError(f"not a layer: {obj!r} (use Dense(...), an Activation or a catalog name)")
