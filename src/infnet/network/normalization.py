"""Normalization layers in the infinite-width limit (``LayerNorm``)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..numerics.moments import geometric_mean
from .layers import Layer, Moments


@dataclass(frozen=True)
class LayerNorm(Layer):
    """Layer normalization over the features, in the infinite-width limit.

    Each input is divided by its root mean square, so Sigma' = Sigma / sqrt(q1 q2), Theta' =
    Theta / sqrt(q1 q2), q' = 1 and the angle is kept (Xiong et al. 2020; neural-tangents'
    LayerNorm). Its input must be a Gaussian pre-activation (zero mean, so centering changes
    nothing in the limit); its finite counterpart is ``nn.LayerNorm`` without affine
    parameters. An input of zero variance (a zero input row without bias) raises ValueError
    when the kernel is computed.

    Parameters
    ----------
    eps : float
        The ``eps`` of the finite ``nn.LayerNorm``.

    Examples
    --------
    >>> net = infnet.serial(infnet.Dense(3.0), infnet.network.LayerNorm(), "relu", infnet.Dense())
    >>> x = torch.tensor([[1.0, 0.0], [0.0, 5.0]], dtype=torch.float64)
    >>> [round(float(v), 6) for v in net.kernel(x).nngp.diagonal()]  # unit variance: 1/2 each
    [0.5, 0.5]
    """

    eps: float = 1e-12
    needs_gaussian = True

    def apply(self, m: Moments, q1_out=None, q2_out=None) -> Moments:
        if bool((m.q1 <= 0).any()) or bool((m.q2 <= 0).any()):
            raise ValueError("LayerNorm of an input with zero variance (a zero input row "
                             "without bias): its normalization is undefined; add a bias "
                             "(b_std > 0) to the Dense layer before it")
        scale = geometric_mean(m.q1, m.q2)
        ones = torch.ones_like(m.q1)
        if m.diagonal:
            return Moments(ones, m.ntk / m.q1, ones, ones, m.width)
        return Moments(m.nngp / scale, m.ntk / scale, q1_out, q2_out, m.width, m.theta)

    def finite(self, n_in, ctx, *, readout=False, next_layer=None):
        return nn.LayerNorm(n_in, eps=self.eps, elementwise_affine=False, dtype=ctx.dtype,
                            device=ctx.device), n_in
