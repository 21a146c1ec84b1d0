"""The forward chain rule through fully-connected layers (``gradients``' docstring): Dense,
activations, LayerNorm and branches, carrying beside each covariance Sigma and tangent kernel
Theta their tangents, one per hyperparameter. ``Walk`` runs a list of layers on a ``State``;
the spatial head of a convolutional network has its own walk (``spatial_walk``), which hands
its state to this one for the fully-connected tail."""

from __future__ import annotations

import dataclasses

import torch

from ..network import Branches, Dense, LayerNorm
from ..numerics.moments import geometric_mean
from .unit_tangents import param_partials, tangents

Tensor = torch.Tensor


def walk(net, c: Tensor, width: int, names: tuple, sides, same: Tensor | None = None):
    """The layers on covariances c of the data (x.x'/d), with the tangents of each name.
    ``sides`` None: the diagonal pass (c holds each input's variance), whose records, one per
    activation and LayerNorm in the order of the walk, are (q, [dq per name]) at its input;
    else the two sides' records (rows, columns), and ``same`` the pairs of one input twice,
    whose moments are set to the rows' variances before each activation (so that they sit
    exactly at rho = 1). Returns (Sigma, Theta, records, [dSigma], [dTheta])."""
    state = State.start(c, width, len(names))
    pass_ = Walk(names, sides, same)
    state = pass_.layers(net.layers, state)
    return state.c, state.t, pass_.records, state.dc, state.dt


@dataclasses.dataclass
class State:
    """The moments of the walk: Sigma (c), Theta (t), their tangents, the width."""

    c: Tensor
    t: Tensor
    dc: list
    dt: list
    width: int | None

    @classmethod
    def start(cls, c: Tensor, width: int | None, count: int) -> State:
        """The data's covariances c, no tangent kernel yet, ``count`` zero tangents."""
        zero = torch.zeros_like(c)
        return cls(c, zero, [zero.clone() for _ in range(count)],
                   [zero.clone() for _ in range(count)], width)

    @staticmethod
    def weighted_sum(weights: list, outs: list, width: int | None) -> State:
        """The sum of branch states ``outs`` with ``weights`` (squared branch weights)."""
        count = len(outs[0].dc)
        return State(sum(w * o.c for w, o in zip(weights, outs, strict=True)),
                     sum(w * o.t for w, o in zip(weights, outs, strict=True)),
                     [sum(w * o.dc[k] for w, o in zip(weights, outs, strict=True))
                      for k in range(count)],
                     [sum(w * o.dt[k] for w, o in zip(weights, outs, strict=True))
                      for k in range(count)], width)


class Walk:
    """One pass of ``_walk``: the records of the sides, read (or written) in layer order."""

    def __init__(self, names: tuple, sides, same: Tensor | None):
        self.names, self.sides, self.same = names, sides, same
        self.records, self.at = [], 0

    def layers(self, layers, s: State) -> State:
        for layer in layers:
            if isinstance(layer, Dense):
                s = self.dense(layer, s)
            elif isinstance(layer, Branches):
                s = self.branches(layer, s)
            elif isinstance(layer, LayerNorm):
                s = self.layer_norm(s)
            else:
                s = self.activation(layer.act, s)
        return s

    def moments(self, s: State):
        """The sides' (q, [dq]) at this layer: recorded (diagonal pass) or read."""
        if self.sides is None:
            self.records.append((s.c, s.dc))
            return (s.c, s.dc), (s.c, s.dc)
        out = self.sides[0][self.at], self.sides[1][self.at]
        self.at += 1
        return out

    def dense(self, layer, s: State) -> State:
        names, c, t = self.names, s.c, s.t
        w, b = layer.w_std, layer.b_std or 0.0
        new = w * w * c + b * b
        dnew = [w * w * g + (2 * w * c if n == "w_std" else 0.0)
                + (2 * b if n == "b_std" else 0.0) for g, n in zip(s.dc, names, strict=True)]
        if layer.parameterization == "ntk":
            dt = [w * w * g + (2 * w * t if n == "w_std" else 0.0) + h
                  for g, h, n in zip(s.dt, dnew, names, strict=True)]
            t = w * w * t + new
        else:
            bias = 0.0 if layer.b_std is None else 1.0
            dt = [s.width * h + w * w * g + (2 * w * t if n == "w_std" else 0.0)
                  for g, h, n in zip(s.dt, s.dc, names, strict=True)]
            t = s.width * c + bias + w * w * t
        return State(new, t, dnew, dt, layer.width)

    def activation(self, act, s: State) -> State:
        (q1, dq1), (q2, dq2) = self.moments(s)
        c, dc = s.c, s.dc
        if self.sides is not None and self.same is not None and bool(self.same.any()):
            # (one input twice: equal variances and tangents on both sides already)
            c = torch.where(self.same, q1, c)
            dc = [torch.where(self.same, g1, g) for g1, g in zip(dq1, dc, strict=True)]
        K, D, dk, dd = tangents(act, q1, q2, c, dq1, dq2, dc)
        for k, name in enumerate(self.names):
            if name in act.params:  # the activation's own parameter: its direct part
                pk, pd = param_partials(act, name, q1, q2, c)
                dk[k], dd[k] = dk[k] + pk, dd[k] + pd
        dt = [g * s.t + D * h for g, h in zip(dd, s.dt, strict=True)]
        return State(K, D * s.t, dk, dt, s.width)

    def layer_norm(self, s: State) -> State:
        """Sigma / sqrt(q1 q2) and Theta / sqrt(q1 q2); each input's variance becomes 1."""
        (q1, dq1), (q2, dq2) = self.moments(s)
        if self.sides is None:  # (each input with itself: exactly 1, and no tangent)
            c = torch.ones_like(s.c)
            dc = [torch.zeros_like(s.c) for _ in self.names]
            scale, rel = q1, [g1 / q1 for g1 in dq1]
        else:
            scale = geometric_mean(q1, q2)
            rel = [0.5 * (g1 / q1 + g2 / q2) for g1, g2 in zip(dq1, dq2, strict=True)]
            c = s.c / scale
            dc = [g / scale - c * r for g, r in zip(s.dc, rel, strict=True)]
        t = s.t / scale
        dt = [g / scale - t * r for g, r in zip(s.dt, rel, strict=True)]
        return State(c, t, dc, dt, s.width)

    def branches(self, block, s: State) -> State:
        """The branches from one input, their moments and tangents summed with the squared
        weights (a concatenation's weights make that the mean)."""
        outs = [self.layers(b.layers, s) for b in block.branches]
        return State.weighted_sum([w * w for w in block.weights], outs,
                                  branch_width(block, [o.width for o in outs]))




def branch_width(block, widths: list) -> int | None:
    """The width after a block of branches (their sum for a concatenation)."""
    if any(v is None for v in widths):
        return None
    return sum(widths) if block.combine == "concat" else widths[0]
