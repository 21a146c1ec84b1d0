"""The forward chain rule through the spatial head of a convolutional network (CNN-GP, CNTK):
the derivatives of its kernels with respect to the shared ``w_std``, ``b_std`` and the
activation's parameters, as ``walk`` does for fully-connected layers.

A pair of inputs carries its spatial covariance Sigma, tangent kernel Theta and their tangents,
in the layout the network's plan picks (every pair of positions where a pooling layer reads
them, else the same positions: ``network.spatial``). With S the mean over a filter's window
(the layer's own map at w = 1 and no bias) and P the pattern of its bias (all entries for a
convolution, the same positions for a locally connected layer):

- Conv, NTK parameterization: Sigma' = w^2 S(Sigma) + b^2 P, Theta' = w^2 S(Theta) + Sigma';
  so dSigma' = w^2 S(dSigma) + 2 w S(Sigma) dw + 2 b P db and dTheta' = w^2 S(dTheta) +
  2 w S(Theta) dw + dSigma'. The standard one, Theta' = w^2 S(Theta) + fan S(Sigma) + [b] P,
  alike;
- pooling, Flatten, GlobalAvgPool: linear maps without parameters, applied to the tangents;
- activations: ``unit_tangents.tangents`` at every entry, the sides' variances and their
  tangents recorded by the pass of each input with itself (the same positions of the same
  input are set exactly to rho = 1 there, and in the pairs of an input with itself);
- branches: the sum of the branches' walks with the squared weights.

After Flatten or GlobalAvgPool the state is that of fully-connected pairs, and ``walk.Walk``
runs the tail.
"""

from __future__ import annotations

import dataclasses
import math

import torch

from ..network import Branches, Conv, Network
from ..network.data_covariance import pair_covariance, self_covariance
from ..network.shifts import rows_view, self_view, spatial_diagonal
from ..network.spatial import SpatialPlan
from .unit_tangents import param_partials, tangents
from .walk import State, Walk, branch_width

Tensor = torch.Tensor


def plan_of(net) -> SpatialPlan:
    """The network's spatial plan (its head checked, its fully-connected tail a Network)."""
    return SpatialPlan(net.layers, lambda rest: Network(*rest, check=False))


class SpatialWalk:
    """One pass through the head: each input with itself (``sides`` None: records the
    variances, and their tangents, at every activation) or a tile of pairs (``sides``: the
    two sides' records, already restricted to the tile's rows and columns; ``same`` (a, b)
    the pairs of one input twice)."""

    def __init__(self, names: tuple, full: bool, sides=None, same: Tensor | None = None):
        self.names, self.full, self.sides, self.same = names, full, sides, same
        self.records, self.at = [], 0

    def layers(self, layers, s: State, shape: tuple) -> tuple[State, tuple]:
        for layer in layers:
            if isinstance(layer, Branches):
                outs = [self.layers(b.layers, s, shape) for b in layer.branches]
                shape = outs[0][1]
                s = State.weighted_sum([w * w for w in layer.weights], [o for o, _ in outs],
                                       branch_width(layer, [o.width for o, _ in outs]))
            elif isinstance(layer, Conv):
                s = self.conv(layer, s, shape)
                shape = layer.out_shape(shape)
            elif layer.spatial:
                s = self.linear(layer, s, shape)
                shape = layer.out_shape(shape)
            else:
                s = self.activation(layer.act, s, len(shape))
        return s, shape

    def conv(self, layer, s: State, shape: tuple) -> State:
        unit = dataclasses.replace(layer, w_std=1.0, b_std=None, parameterization="ntk")
        bias = dataclasses.replace(layer, w_std=0.0, b_std=1.0, parameterization="ntk")

        def mean(x: Tensor) -> Tensor:
            return unit.map_spatial(x, x, None, shape, self.full)[0]

        w, b = layer.w_std, layer.b_std or 0.0
        zero = torch.zeros_like(s.c)
        pattern = bias.map_spatial(zero, zero, None, shape, self.full)[0]
        sc, st = mean(s.c), mean(s.t)
        new = w * w * sc + b * b * pattern
        dnew = [w * w * mean(g) + (2 * w * sc if n == "w_std" else 0.0)
                + (2 * b * pattern if n == "b_std" else 0.0)
                for g, n in zip(s.dc, self.names, strict=True)]
        dt = [w * w * mean(g) + (2 * w * st if n == "w_std" else 0.0)
              for g, n in zip(s.dt, self.names, strict=True)]
        if layer.parameterization == "ntk":
            t = w * w * st + new
            dt = [g + h for g, h in zip(dt, dnew, strict=True)]
        else:
            if s.width is None:
                raise ValueError("the standard parameterization needs the input channels of "
                                 "every Conv: give width=... to the layer before it")
            fan = s.width * math.prod(layer.filter_shape)
            t = w * w * st + fan * sc + (0.0 if layer.b_std is None else pattern)
            dt = [g + fan * mean(h) for g, h in zip(dt, s.dc, strict=True)]
        return State(new, t, dnew, dt, layer.width)

    def linear(self, layer, s: State, shape: tuple) -> State:
        """A layer without parameters (pooling, Flatten, GlobalAvgPool): its map, linear."""
        c, t, width = layer.map_spatial(s.c, s.t, s.width, shape, self.full)
        pairs = [layer.map_spatial(g, h, s.width, shape, self.full)[:2]
                 for g, h in zip(s.dc, s.dt, strict=True)]
        return State(c, t, [p[0] for p in pairs], [p[1] for p in pairs], width)

    def _moments(self, s: State, nd: int):
        """The sides' variances and tangents as views against the tile, and c, dc with the
        pairs of one position of one input set exactly to rho = 1."""
        full = self.full and nd > 0
        if self.sides is None:
            if full:
                q = spatial_diagonal(s.c, nd)
                dq = [spatial_diagonal(g, nd) for g in s.dc]
                self.records.append((q, dq))
                q1, q2 = self_view(q, nd, 0), self_view(q, nd, 1)
                dq1 = [self_view(g, nd, 0) for g in dq]
                dq2 = [self_view(g, nd, 1) for g in dq]
                same = _eye(q, nd)
            else:
                self.records.append((s.c, s.dc))
                return s.c, s.c, s.c, s.dc, s.dc, s.dc
        else:
            (qa, dqa), (qb, dqb) = self.sides[0][self.at], self.sides[1][self.at]
            self.at += 1
            q1, q2 = rows_view(qa, nd, full, 0), rows_view(qb, nd, full, 1)
            dq1 = [rows_view(g, nd, full, 0) for g in dqa]
            dq2 = [rows_view(g, nd, full, 1) for g in dqb]
            same = self.same.reshape(*self.same.shape, *(1,) * (s.c.ndim - 2))
            if full:
                same = same & _eye(qa[:1], nd)[0]
        c = torch.where(same, q1, s.c)
        dc = [torch.where(same, g1, g) for g1, g in zip(dq1, s.dc, strict=True)]
        return q1, q2, c, dq1, dq2, dc

    def activation(self, act, s: State, nd: int) -> State:
        q1, q2, c, dq1, dq2, dc = self._moments(s, nd)
        K, D, dk, dd = tangents(act, q1, q2, c, dq1, dq2, dc)
        for k, name in enumerate(self.names):
            if name in act.params:
                pk, pd = param_partials(act, name, q1, q2, c)
                dk[k], dd[k] = dk[k] + pk, dd[k] + pd
        dt = [g * s.t + D * h for g, h in zip(dd, s.dt, strict=True)]
        return State(K, D * s.t, dk, dt, s.width)


def _eye(q: Tensor, nd: int) -> Tensor:
    """(1, *S, *S) True at the same positions, for variance maps q (m, *S)."""
    p = math.prod(q.shape[1:])
    eye = torch.eye(p, dtype=torch.bool, device=q.device)
    return eye.reshape(1, *q.shape[1:], *q.shape[1:])


def self_state(plan: SpatialPlan, x: Tensor, names: tuple):
    """Each input with itself through the head and the tail: (the final State, the head's
    records, the tail's records)."""
    channels = x.shape[1]
    c = self_covariance(x, plan.full)
    head = SpatialWalk(names, plan.full)
    s, _ = head.layers(plan.head, State.start(c, channels, len(names)), tuple(x.shape[2:]))
    tail = Walk(names, None, None)
    s = tail.layers(plan.tail.layers, s)
    return s, head.records, tail.records


def pairs_state(plan: SpatialPlan, xa: Tensor, xb: Tensor, heads: tuple, tails: tuple,
                names: tuple) -> State:
    """A tile of pairs (xa[i], xb[j]) through the head and the tail, with the sides' records
    (``self_state``, restricted to the tile's rows and columns)."""
    channels, spatial = xa.shape[1], tuple(xa.shape[2:])
    c = pair_covariance(xa, xb, plan.full)
    same = (xa.reshape(xa.shape[0], 1, -1) == xb.reshape(1, xb.shape[0], -1)).all(-1)
    head = SpatialWalk(names, plan.full, heads, same)
    s, _ = head.layers(plan.head, State.start(c, channels, len(names)), spatial)
    views = ([(q[:, None], [g[:, None] for g in dq]) for q, dq in tails[0]],
             [(q[None, :], [g[None, :] for g in dq]) for q, dq in tails[1]])
    return Walk(names, views, same).layers(plan.tail.layers, s)
