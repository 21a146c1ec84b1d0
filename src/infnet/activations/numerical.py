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

from ..numerics import gauss1d, quadrature
from ..numerics.moments import corr_angle
from .checks import _check_moments

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
