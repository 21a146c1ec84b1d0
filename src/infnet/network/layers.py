"""Layers as small values that transform kernels (the style of neural-tangents ``stax``).

The layer protocol (``Layer``): a frozen value that maps kernel moments (``apply``, or
``diagonal`` and ``pairs`` for layers with inner records), declares what it needs of its input
(``needs_gaussian``: the input of an elementwise unit must be a Gaussian pre-activation, the
output of a Dense layer) and what it gives (``gaussian_out``), lists the activations inside it,
and builds its finite ``torch.nn`` counterpart (``finite``). A new kind of layer is one class;
``network.branches`` (parallel branches, residual sums) is written against the protocol alone.

A layer maps the moments of its input to those of its output, elementwise over pairs of inputs:
``nngp`` (the covariance c of the pre-activations of the pair), ``ntk`` (the tangent kernel so
far), and the per-input variances q1, q2 (the diagonal of the NNGP) that activations need.
docs/theory/README.md#dense-and-activation-layers:

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
import warnings
from dataclasses import dataclass

import torch
from torch import nn

from ..activations import Activation, activation
from ..activations.gated import Gated
from ..core.checks import check_parameterization, check_stds
from ..empirical import Elementwise
from ..numerics.moments import geometric_mean, sin_of_angle
from .modules import BuildContext, GatedUnit, Scale

Tensor = torch.Tensor


@dataclass(frozen=True)
class Moments:
    """Kernel moments of pairs of inputs (tensors broadcast against each other).

    What a layer maps (``Layer.apply``): the moments of its input to those of its output.

    Parameters
    ----------
    nngp : tensor
        The covariance Sigma of the pre-activations of each pair.
    ntk : tensor
        The tangent kernel Theta so far.
    q1, q2 : tensor
        The variances of the two inputs of each pair at this point of the network (computed
        once per input by the diagonal pass, not per pair).
    width : int or None
        The number of features feeding the next Dense (None: not given).
    theta : tensor or None
        The angle of the pairs, None in the diagonal pass (each input with itself:
        nngp = q1 = q2).

    Examples
    --------
    >>> one = torch.tensor(1.0, dtype=torch.float64)
    >>> m = infnet.network.Moments(one, torch.zeros_like(one), one, one, None)
    >>> m.diagonal  # no angle: the diagonal pass
    True
    >>> out = infnet.Dense(w_std=2.0, b_std=0.5).apply(m)  # Sigma' = 4 Sigma + 0.25
    >>> float(out.nngp), float(out.ntk)
    (4.25, 4.25)
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


class Layer:
    """The layer protocol: a value that maps kernel moments (module docstring).

    Subclasses are frozen dataclasses that define ``apply``; layers holding other layers
    override ``diagonal`` and ``pairs``. A layer declares what it needs of its input
    (``needs_gaussian``) and what it gives (``gaussian_out``), lists its ``activations``, and
    builds its finite ``torch.nn`` counterpart (``finite``).

    Examples
    --------
    >>> Layer = infnet.network.Layer
    >>> isinstance(infnet.Dense(), Layer), isinstance(infnet.network.LayerNorm(), Layer)
    (True, True)
    >>> Layer.needs_gaussian, infnet.Nonlinearity.needs_gaussian
    (False, True)
    >>> infnet.Dense().gaussian_out(False)  # a Dense layer's output is Gaussian
    True
    """

    #: the input must be a Gaussian pre-activation (the output of a Dense layer)
    needs_gaussian = False
    #: a layer of spatial inputs (convolution, pooling, flatten: ``network.conv``)
    spatial = False

    def sublayers(self) -> tuple | None:
        """Layers made of other layers (branches): ((layers, weight), ...) whose outputs are
        combined as sum_i weight_i^2 * kernel_i; None for a plain layer."""
        return None

    def gaussian_out(self, gaussian_in: bool) -> bool:
        """Whether the output is Gaussian (at infinite width) given whether the input is."""
        return gaussian_in

    @property
    def activations(self) -> tuple[Activation, ...]:
        return ()

    def apply(self, m: Moments, q1_out=None, q2_out=None) -> Moments:
        """The moments after the layer; the output variances come from the diagonal pass
        (q1_out, q2_out; None in the diagonal pass itself)."""
        raise NotImplementedError

    def diagonal(self, m: Moments, like=None) -> tuple[Moments, object]:
        """The diagonal pass (each input with itself): the output moments and the record that
        ``pairs`` gets back (here the output variance). ``like``: the record of an earlier pass
        whose decisions to reuse."""
        out = self.apply(m)
        return out, out.nngp

    def pairs(self, m: Moments, rec1, rec2) -> Moments:
        """Pairs of inputs, with the records of the diagonal pass of each (rows, columns)."""
        return self.apply(m, rec1, rec2)

    def finite(self, n_in: int, ctx: BuildContext, *, readout: bool = False,
               next_layer: Layer | None = None) -> tuple[nn.Module, int]:
        """The finite-width module and its output width, for an input of ``n_in`` features."""
        raise TypeError(f"{self!r} has no finite-width module")


@dataclass(frozen=True)
class Dense(Layer):
    """A fully-connected layer W x + b, W_ij ~ N(0, w_std^2 / n_in), b ~ N(0, b_std^2).

    Its kernel maps: Sigma' = w^2 Sigma + b^2, and Theta' = w^2 Theta + Sigma' (NTK
    parameterization) or Theta' = n_in Sigma + [b] + w^2 Theta (standard).

    Parameters
    ----------
    w_std : float
        The weights' standard deviation (times 1/sqrt(n_in)), finite and >= 0.
    b_std : float or None
        The bias's standard deviation, finite and >= 0. None means no bias (it matters only
        for "standard", where a bias initialized at 0 is still trained).
    parameterization : {"ntk", "standard"}
        "ntk" trains the standard normal variables behind W and b (Jacot et al. 2018);
        "standard" trains W and b themselves (Sohl-Dickstein et al. 2020, arXiv 2001.07301),
        which needs the input width of every Dense.
    width : int, optional
        This layer's output width, read by the next Dense (needed by "standard").

    Raises
    ------
    TypeError
        w_std or b_std is not a real number.
    ValueError
        w_std or b_std is negative or not finite, or its square over- or underflows float64;
        an unknown parameterization; a width that is not a positive integer.

    Examples
    --------
    >>> dense = infnet.Dense(w_std=2.0, b_std=0.5)
    >>> dense.parameterization, dense.width
    ('ntk', None)
    >>> net = infnet.serial(dense, "relu", infnet.Dense(1.0))
    >>> x = torch.tensor([[1.0, 1.0]], dtype=torch.float64)  # x.x/d = 1
    >>> float(net.kernel(x).nngp[0, 0])  # (4 * 1 + 0.25) / 2
    2.125
    """

    w_std: float = 1.0
    b_std: float | None = 0.0
    parameterization: str = "ntk"
    width: int | None = None

    def __post_init__(self):
        check_stds(self.w_std, self.b_std)
        check_parameterization(self.parameterization)
        if self.width is not None and not (isinstance(self.width, int) and self.width >= 1):
            raise ValueError(f"width must be a positive integer or None, got {self.width!r}")

    def gaussian_out(self, gaussian_in: bool) -> bool:
        return True

    def apply(self, m: Moments, q1_out=None, q2_out=None) -> Moments:
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

    def finite(self, n_in, ctx, *, readout=False, next_layer=None):
        """``nn.Linear`` (standard parameterization), or ``Scale, nn.Linear, Scale`` (NTK: the
        standard normal variables are trained); twice the width before a gated unit."""
        if not isinstance(n_in, int):
            raise ValueError(f"a Dense layer on spatial inputs of shape {n_in}: put Flatten() or "
                             "GlobalAvgPool() before it (or use Conv with a 1 x 1 filter)")
        if readout:
            n_out = ctx.outputs
        elif self.width is not None and (self.parameterization == "standard" or ctx.width is None):
            n_out = self.width
        elif ctx.width is None:
            raise ValueError(f"give the hidden width: {self!r} has none in the spec "
                             "(net.finite(width, in_features=...))")
        else:
            n_out = ctx.width
        gated = isinstance(next_layer, Nonlinearity) and isinstance(next_layer.act, Gated)
        return self._module(n_in, 2 * n_out if gated else n_out, ctx), n_out

    def _module(self, n_in: int, n_out: int, ctx: BuildContext) -> nn.Module:
        has_bias = self.b_std is not None and (self.parameterization == "standard" or self.b_std > 0)
        linear = nn.Linear(n_in, n_out, bias=has_bias, dtype=ctx.dtype, device=ctx.device)
        ntk = self.parameterization == "ntk"
        w_scale = 1.0 if ntk else self.w_std / math.sqrt(n_in)
        b_scale = 1.0 if ntk else self.b_std
        with torch.no_grad():
            linear.weight.copy_(w_scale * torch.randn(n_out, n_in, generator=ctx.generator,
                                                      dtype=ctx.dtype))
            if has_bias:
                linear.bias.copy_(b_scale * torch.randn(n_out, generator=ctx.generator,
                                                        dtype=ctx.dtype))
        if not ntk:
            return linear
        gain = self.w_std / math.sqrt(n_in)
        if not has_bias:
            return nn.Sequential(Scale(gain), linear)
        return nn.Sequential(Scale(gain / self.b_std), linear, Scale(self.b_std))


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
class Nonlinearity(Layer):
    """An activation applied elementwise: the kernel maps of the Activation value.

    Sigma' = K(q1, q2, Sigma), Theta' = Kdot(q1, q2, Sigma) Theta (``Activation.kernel``). Its
    input must be a Gaussian pre-activation (the output of a Dense layer). Networks wrap
    Activations and catalog names in it themselves.

    Parameters
    ----------
    act : Activation
        The activation.

    Examples
    --------
    >>> layer = infnet.Nonlinearity(infnet.activation("relu"))
    >>> print(layer)
    Nonlinearity(act=Activation(relu))
    >>> infnet.serial(infnet.Dense(), "relu").layers[1] == layer
    True
    """

    act: Activation
    needs_gaussian = True

    def gaussian_out(self, gaussian_in: bool) -> bool:
        return False

    @property
    def activations(self) -> tuple[Activation, ...]:
        return (self.act,)

    def apply(self, m: Moments, q1_out=None, q2_out=None) -> Moments:
        if m.diagonal:  # each input with itself: 1-D expectations
            check_variance_range(self.act, m.q1)
            K, Kdot = self.act.diagonal_kernel(m.q1)
            return Moments(K, Kdot * m.ntk, K, K, m.width)
        K, Kdot, theta = self.act.pair_map(m.q1, m.q2, m.nngp, m.theta, q1_out, q2_out)
        return Moments(K, Kdot * m.ntk, q1_out, q2_out, m.width, theta)

    def covariance_map(self, m: Moments) -> Moments:
        """The maps at the pairs' covariances (``Activation.kernel``), without the output
        angle and without checks: for spatial networks, whose next layer is linear and whose
        kernel checks its results."""
        K, Kdot = self.act.kernel(m.q1, m.q2, m.nngp, check=False)  # (the caller checks)
        return Moments(K, Kdot * m.ntk, m.q1, m.q2, m.width)

    def finite(self, n_in, ctx, *, readout=False, next_layer=None):
        if isinstance(self.act, Gated):
            return GatedUnit(self.act), n_in  # the Dense before it doubled its width for it
        if self.act.jumps:
            warnings.warn(f"{self.act.name} is discontinuous: autograd gives phi' = 0 almost "
                          "everywhere, so the empirical NTK of the finite network misses the "
                          "Dirac mass of phi' and does not converge to net.kernel's NTK (the "
                          "NNGP does)", stacklevel=4)
        return Elementwise(self.act), n_in


def check_gaussian_inputs(layers, gaussian_in: bool) -> bool:
    """Raise ValueError where a layer that needs a Gaussian input (an activation, LayerNorm)
    gets another (the data, or an activation's output): no network has that kernel, since
    only a Dense layer's output is Gaussian at infinite width. Returns whether the output of
    the sequence is Gaussian."""
    gaussian = gaussian_in
    for i, layer in enumerate(layers):
        if layer.needs_gaussian and not gaussian:
            what = "the input data" if i == 0 else f"layer {i - 1} ({layers[i - 1]!r:.60})"
            raise ValueError(f"layer {i} ({layer!r:.60}) follows {what}, which is not a Gaussian "
                             "pre-activation: the kernel of an activation (or a LayerNorm) "
                             "assumes its input is the output of a Dense layer, as it is at "
                             "infinite width; put a Dense layer before it")
        gaussian = layer.gaussian_out(gaussian)
    return gaussian


def as_layer(obj) -> Layer:
    """Layers pass through; an Activation (or a catalog name) becomes a Nonlinearity."""
    if isinstance(obj, Layer):
        return obj
    if isinstance(obj, (Activation, str)):
        return Nonlinearity(activation(obj) if isinstance(obj, str) else obj)
    raise TypeError(f"not a layer: {obj!r} (use Dense(...), LayerNorm(), an Activation or a "
                    "catalog name)")
