"""The kernel maps by quadrature, for activations without a closed form (and for checks).

``numerical_kernel``: (K, Kdot) by polar quadrature split at the kinks
(docs/theory/numerical-duals.md#polar-quadrature); ``diagonal_kernel``: the diagonal u = v by
1-D quadrature; ``output_angle``: the angle of a layer's outputs, recomputed without
cancellation within ``NEAR_ANGLE`` of 0 or pi. Each takes the ``Activation`` (``base``) whose
method of the same name calls it.
"""

from __future__ import annotations

import math

import torch
import torch.autograd.forward_ad as fwAD

from ..numerics import gauss1d, quadrature
from ..numerics.moments import corr_angle
from .checks import _check_moments
from .series import TileSeries, supports_series

Tensor = torch.Tensor

#: output angles within this of 0 or pi are recomputed without cancellation (``pair_map``)
NEAR_ANGLE = 1e-3


def numerical_kernel(act, q1, q2, c, nodes_angle: int | None = None,
                     nodes_radius: int | None = None, theta=None) -> tuple[Tensor, Tensor]:
    """``Activation.numerical_kernel`` of ``act`` (see there): (K, Kdot) by quadrature."""
    q1, q2, c = _check_moments(q1, q2, c)
    act.check_divergence(q1, q2, c, derivative=True)
    if act.jumps:
        raise NotImplementedError(
            f"activation {act.name!r} is discontinuous at {list(act.kinks)}: its derivative "
            "holds a Dirac mass, so Kdot needs a closed form: give kernel=... (a function "
            "(q1, q2, c) -> (K, Kdot)) or use a continuous activation. The NNGP alone "
            "needs no Kdot (act.nngp_map, net.kernel(x, get='nngp')).")
    K, Kdot = quadrature.gaussian_expectation(
        [(act, act), (act.derivative, act.derivative)], q1, q2, c, act.kinks,
        theta=theta, label=f"E[phi(u) phi(v)] or E[phi'(u) phi'(v)] of {act.name!r}",
        **_nodes(nodes_angle, nodes_radius))
    return K, Kdot


#: the truncation bound of the Hermite series on pairs of fully-connected inputs, relative to
#: the kernels' scale: below the rounding of the coefficients (~1e-15), so that the series
#: agrees with the quadrature it replaces to a few 1e-15
PAIR_TOLERANCE = 1e-14


def pair_kernel(act, q1, q2, c, theta) -> tuple[Tensor, Tensor]:
    """(K, Kdot) of pairs of inputs with variances q1, q2 (broadcasting against c: rows and
    columns of a tile) and angle theta, without a closed form: the Hermite series of a smooth
    unit (``series.TileSeries``: coefficients once per input, then sums over the tile),
    the polar quadrature for a kinked one and for the entries the series cannot bound."""
    if supports_series(act):
        out = TileSeries(act, q1, q2, tolerance=PAIR_TOLERANCE).kernel(c)
        if out is not None:
            K, Kdot, uncertain = out
            K, Kdot = (t.expand(c.shape).clone() for t in (K, Kdot))
            if uncertain is not None and bool(uncertain.any()):
                sel = uncertain.expand(c.shape)
                K[sel], Kdot[sel] = numerical_kernel(
                    act, *(t.expand(c.shape)[sel] for t in (q1, q2, c)),
                    theta=theta.expand(c.shape)[sel])
            return K, Kdot
    return numerical_kernel(act, q1, q2, c, theta=theta)


def output_angle(act, K, q1, q2, theta, q1_out, q2_out) -> Tensor:
    """The angle of the outputs of ``act`` from K (``Activation.pair_map``, see there)."""
    q1, q2, theta, q1_out, q2_out, K = torch.broadcast_tensors(q1, q2, theta, q1_out, q2_out, K)
    shape = K.shape  # 0-d inputs work as 1-element ones (the selections below need an axis)
    q1, q2, theta, q1_out, q2_out, K = (t.reshape(-1) for t in (q1, q2, theta, q1_out, q2_out, K))
    out = corr_angle(q1_out, q2_out, K)[1].clone()
    same = (theta == 0) & (q1 == q2)  # one input twice stays one input
    out[same] = 0.0
    zero = (q1_out == 0) | (q2_out == 0)  # a zero output is at angle pi/2 to everything
    out[zero & ~same] = math.pi / 2
    near = ((out < NEAR_ANGLE) | (out > math.pi - NEAR_ANGLE)) & ~same & ~zero
    if bool(near.any()) and not act.jumps:
        sel = near.nonzero(as_tuple=True)
        gap, gap_plus = quadrature.gaussian_expectation(
            [lambda u, v, a, b: (act(u) / a - act(v) / b) ** 2,
             lambda u, v, a, b: (act(u) / a + act(v) / b) ** 2],
            q1[sel], q2[sel], (q1[sel] * q2[sel]).sqrt() * torch.cos(theta[sel]), act.kinks,
            theta=theta[sel], entry_data=(q1_out[sel].sqrt(), q2_out[sel].sqrt()),
            label=f"the output angle of {act.name!r}")
        out[sel] = 2 * torch.atan2((gap / 2).clamp(min=0).sqrt(),
                                   (gap_plus / 2).clamp(min=0).sqrt())
    return out.reshape(shape)


def diagonal_kernel(act, q: Tensor) -> tuple[Tensor, Tensor]:
    """(E[phi(sqrt(q) z)^2], E[phi'(sqrt(q) z)^2]) of ``act`` by 1-D quadrature
    (``Activation.diagonal_kernel`` without a closed form)."""
    q, _, _ = _check_moments(q, q, q)
    act.check_divergence(q, q, q, derivative=True)
    K, Kdot = gauss1d.gaussian_expectation_1d(
        [lambda x: act(x) ** 2, lambda x: act.derivative(x) ** 2], q, act.kinks,
        label=f"E[phi(x)^2] or E[phi'(x)^2] of {act.name!r}")
    return act._checked(K.reshape(q.shape), Kdot.reshape(q.shape), q, q)


def _nodes(nodes_angle, nodes_radius) -> dict:
    return {"nodes_angle": nodes_angle or quadrature.NODES_ANGLE,
            "nodes_radius": nodes_radius or quadrature.NODES_RADIUS}


def tangent(x) -> Tensor | None:
    """The forward-mode tangent of x (None: not a dual tensor)."""
    return fwAD.unpack_dual(x).tangent if torch.is_tensor(x) else None


def dual_derivative(act, x: Tensor) -> Tensor:
    """phi'(x) of ``act`` at a forward-mode dual x (the hyperparameter tangents of ``infnet.gp``
    through a Hermite series), where phi' comes from autograd: phi' and phi'' of its primal by
    reverse mode, joined into the dual phi'(x) + phi''(x) dx (reverse mode alone would drop
    the tangent). The gain is the caller's."""
    primal, dx = fwAD.unpack_dual(x)
    with torch.enable_grad():
        leaf = primal.detach().requires_grad_(True)
        y = act.fn(leaf, **act.params)
        if not y.requires_grad:
            return torch.zeros_like(primal)
        g = torch.autograd.grad(y.sum(), leaf, create_graph=True)[0]
        h = torch.autograd.grad(g.sum(), leaf, allow_unused=True)[0] if g.requires_grad else None
    h = torch.zeros_like(primal) if h is None else h
    return fwAD.make_dual(g.detach(), h * dx)
