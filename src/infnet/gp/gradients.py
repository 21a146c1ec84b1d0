"""Exact derivatives of a network's NNGP and NTK with respect to its hyperparameters.

The chain rule runs forward through the layers (one tangent per hyperparameter, carried beside
each covariance and tangent kernel), with every layer's own derivatives exact:

- Dense: Sigma' = w^2 Sigma + b^2 and Theta' = w^2 Theta + Sigma' (NTK parameterization; the
  standard one adds n_in Sigma instead), differentiated by hand;
- an activation: Sigma' = K(q1, q2, Sigma), Theta' = Kdot(q1, q2, Sigma) Theta, whose
  derivatives along the tangents of (q1, q2, Sigma) are exact elementwise (each entry depends
  on its own moments only; ``unit_tangents``): forward-mode autograd through a closed form or
  the Hermite series of a smooth unit, and reverse-mode partial derivatives of the polar
  quadrature of a kinked one, whose breakpoints (the kinks' rays) are computed from the
  moments and move with them, so that the jumps of phi' at a kink (hardswish) enter as the
  motion of those breakpoints, where a fixed rule would miss them;
- LayerNorm: Sigma' = Sigma / sqrt(q1 q2), Theta' = Theta / sqrt(q1 q2), with d sqrt(q1 q2) /
  sqrt(q1 q2) = (dq1 / q1 + dq2 / q2) / 2 (each input's variance becomes 1, with no tangent);
- branches (residual blocks): each branch walks from the same moments and tangents, and both
  add up with the squared weights (fixed numbers).

An activation's own parameter p (swish's beta) adds its direct part dK/dp, dKdot/dp at fixed
moments, by forward-mode autograd with p a dual number through the closed form or the
quadrature; every activation layer shares p, so the parts of all layers add up along the chain.

Pairs at rho = +-1 exactly (each input with itself, duplicated inputs) sit on the edge of the
moments' domain, where the partial derivatives in Sigma of the angle are infinite. There the
pair stays parallel whatever the hyperparameters, and K = E[phi(sqrt(q1) z) phi(+-sqrt(q2) z)]
is a 1-D expectation of (q1, q2) alone: its derivatives come from autograd through the 1-D
rule (``degenerate_expectation``), plus Kdot times the part of the tangent that leaves the
edge (none for exact duplicates).

The kernels' values are those of ``Network.kernel`` (the exact path); this module adds the
tangents, in tiles of rows.
"""

from __future__ import annotations

import dataclasses

import torch

from ..network import Branches, Dense, Kernel, LayerNorm
from ..network.inputs import angles, as_data
from ..numerics.moments import geometric_mean
from .hyper import check_activation_parameter, hyperparameters
from .unit_tangents import param_partials, tangents

Tensor = torch.Tensor

#: entries of one tile of rows: activations without a closed form (their quadrature keeps a
#: graph of nodes per entry), and with one
ENTRIES = 1 << 14
CLOSED_ENTRIES = 1 << 18


def kernel_gradients(net, x1, x2=None, *, wrt=None) -> tuple[Kernel, dict[str, Kernel]]:
    """The NNGP and NTK of ``net`` between the rows of x1 and x2, and their derivatives with
    respect to the network's hyperparameters.

    Parameters
    ----------
    net : Network
        Dense layers and activations sharing one ``w_std`` and one ``b_std`` (``infnet.fc``;
        ``hyper.hyperparameters``), with LayerNorm and branches of such layers (residual
        blocks) between them.
    x1, x2 : tensor or array
        Inputs (n, features); x2=None: x1 with itself.
    wrt : sequence of str, optional
        The hyperparameters: ``"w_std"``, ``"b_std"`` and the continuous parameters of the
        network's activation (``hyper.activation_parameters``: swish's ``"beta"``, a tempered
        sigmoid's ``"temperature"``). Default: the Dense layers' ``w_std`` and ``b_std`` (those
        the network has).

    Returns
    -------
    kernel : Kernel
        ``net.kernel(x1, x2)``.
    gradients : dict
        For each name, a Kernel whose ``nngp`` and ``ntk`` are d NNGP / d name and
        d NTK / d name, (n1, n2) float64.

    Raises
    ------
    TypeError
        A network that is not such a chain, or an unknown name in ``wrt``.
    NotImplementedError
        An activation whose formula reads the parameter as a plain number (no tangent).
    ValueError
        ``b_std`` asked of a network without bias; inputs of zero norm with no bias (a zero
        variance, where the derivatives in q of sqrt(q) are infinite); the inputs' own errors
        (``Network.kernel``).

    Examples
    --------
    >>> net = infnet.fc("relu", 1, w_std=1.5, b_std=0.0)
    >>> x = torch.tensor([[1.0, 0.0], [0.6, 0.8]], dtype=torch.float64)
    >>> k, grads = infnet.gp.kernel_gradients(net, x, wrt=["w_std"])
    >>> # without bias the NNGP is w^4 times a function of the angle: d/dw = 4 K / w
    >>> bool(torch.allclose(grads["w_std"].nngp, 4 * k.nngp / 1.5))
    True
    """
    names = _names(net, wrt)
    symmetric = x2 is None
    x1 = as_data(x1, "x1", torch.float64)
    x2 = x1 if symmetric else as_data(x2, "x2", torch.float64, device=x1.device)
    kernel = net.kernel(x1, None if symmetric else x2)
    d = x1.shape[1]
    sq1 = (x1 * x1).sum(1) / d
    sq2 = sq1 if symmetric else (x2 * x2).sum(1) / d
    diag1 = _walk(net, sq1, d, names, None)
    rec1 = diag1[2]
    rec2 = rec1 if symmetric else _walk(net, sq2, d, names, None)[2]
    n1, n2 = x1.shape[0], x2.shape[0]
    out = {name: (torch.empty(n1, n2, dtype=torch.float64, device=x1.device),
                  torch.empty(n1, n2, dtype=torch.float64, device=x1.device)) for name in names}
    closed = all(a.is_closed_form for a in net.activations)
    rows = max(1, (CLOSED_ENTRIES if closed else ENTRIES) // n2)
    norms1, norms2 = (sq1 * d).sqrt(), (sq2 * d).sqrt()
    for i in range(0, n1, rows):
        sel = slice(i, i + rows)
        cols = slice(i if symmetric else 0, n2)  # (symmetric: the upper part, mirrored)
        view1 = [(q[sel, None], [t[sel, None] for t in dq]) for q, dq in rec1]
        view2 = [(q[None, cols], [t[None, cols] for t in dq]) for q, dq in rec2]
        b = x2[cols]
        gram = x1[sel] @ b.T
        c = gram / d
        # duplicated inputs (angle 0 from the chord, equal norms): kept exactly parallel
        theta = angles(gram, x1[sel], b, norms1[sel], norms2[cols])  # (overwrites gram)
        same = (theta == 0) & (sq1[sel, None] == sq2[None, cols])
        _, _, _, dc, dt = _walk(net, c, d, names, (view1, view2), same)
        for k, name in enumerate(names):
            for g, tile in zip(out[name], (dc[k], dt[k]), strict=True):
                g[sel, cols] = tile
                if symmetric:
                    g[cols, sel] = tile.T
    grads = {}
    for k, name in enumerate(names):
        g_nngp, g_ntk = out[name]
        if symmetric:  # exactly symmetric, each input with itself from the diagonal pass
            for g, diag in ((g_nngp, diag1[3][k]), (g_ntk, diag1[4][k])):
                g.copy_((g + g.T) / 2)
                g.diagonal().copy_(diag)
        _check(g_nngp, g_ntk, name)
        grads[name] = Kernel(g_nngp, g_ntk)
    return kernel, grads


def _names(net, wrt) -> tuple[str, ...]:
    """The hyperparameters to differentiate: ``wrt`` checked, or the Dense layers' ones."""
    hyper = hyperparameters(net)
    names = tuple(hyper) if wrt is None else tuple(wrt)
    if isinstance(wrt, str):
        raise TypeError(f"wrt must be a sequence of names, e.g. [{wrt!r}], got a string")
    for name in names:
        if name not in ("w_std", "b_std"):
            check_activation_parameter(net, name)
        elif name not in hyper:
            raise ValueError(f"the network has no bias, so no {name}: build it with b_std=0.0")
    if len(set(names)) != len(names):
        raise ValueError(f"wrt names a hyperparameter twice: {list(names)}")
    return names


def _check(g_nngp: Tensor, g_ntk: Tensor, name: str) -> None:
    for what, g in (("NNGP", g_nngp), ("NTK", g_ntk)):
        if not bool(torch.isfinite(g).all()):
            raise ValueError(f"the derivative of the {what} with respect to {name} is not finite "
                             "(an input of zero norm without bias, or w_std = b_std = 0, has "
                             "variance 0, where sqrt(q) has no derivative): remove zero rows, "
                             "or keep b_std > 0")


def _walk(net, c: Tensor, width: int, names: tuple, sides, same: Tensor | None = None):
    """The layers on covariances c of the data (x.x'/d), with the tangents of each name.
    ``sides`` None: the diagonal pass (c holds each input's variance), whose records, one per
    activation and LayerNorm in the order of the walk, are (q, [dq per name]) at its input;
    else the two sides' records (rows, columns), and ``same`` the pairs of one input twice,
    whose moments are set to the rows' variances before each activation (so that they sit
    exactly at rho = 1). Returns (Sigma, Theta, records, [dSigma], [dTheta])."""
    zero = torch.zeros_like(c)
    state = _State(c, zero, [zero.clone() for _ in names], [zero.clone() for _ in names], width)
    walk = _Walk(names, sides, same)
    state = walk.layers(net.layers, state)
    return state.c, state.t, walk.records, state.dc, state.dt


@dataclasses.dataclass
class _State:
    """The moments of the walk: Sigma (c), Theta (t), their tangents, the width."""

    c: Tensor
    t: Tensor
    dc: list
    dt: list
    width: int | None


class _Walk:
    """One pass of ``_walk``: the records of the sides, read (or written) in layer order."""

    def __init__(self, names: tuple, sides, same: Tensor | None):
        self.names, self.sides, self.same = names, sides, same
        self.records, self.at = [], 0

    def layers(self, layers, s: _State) -> _State:
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

    def moments(self, s: _State):
        """The sides' (q, [dq]) at this layer: recorded (diagonal pass) or read."""
        if self.sides is None:
            self.records.append((s.c, s.dc))
            return (s.c, s.dc), (s.c, s.dc)
        out = self.sides[0][self.at], self.sides[1][self.at]
        self.at += 1
        return out

    def dense(self, layer, s: _State) -> _State:
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
        return _State(new, t, dnew, dt, layer.width)

    def activation(self, act, s: _State) -> _State:
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
        return _State(K, D * s.t, dk, dt, s.width)

    def layer_norm(self, s: _State) -> _State:
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
        return _State(c, t, dc, dt, s.width)

    def branches(self, block, s: _State) -> _State:
        """The branches from one input, their moments and tangents summed with the squared
        weights (a concatenation's weights make that the mean)."""
        outs = [self.layers(b.layers, s) for b in block.branches]
        w2 = [w * w for w in block.weights]
        widths = [o.width for o in outs]
        width = (None if any(v is None for v in widths)
                 else sum(widths) if block.combine == "concat" else widths[0])
        return _State(sum(w * o.c for w, o in zip(w2, outs, strict=True)),
                      sum(w * o.t for w, o in zip(w2, outs, strict=True)),
                      [sum(w * o.dc[k] for w, o in zip(w2, outs, strict=True))
                       for k in range(len(self.names))],
                      [sum(w * o.dt[k] for w, o in zip(w2, outs, strict=True))
                       for k in range(len(self.names))], width)


def diagonal_gradients(net, x, *, wrt=None) -> tuple[Kernel, dict[str, Kernel]]:
    """The kernels of each row of x with itself (n,) and their derivatives (``kernel_gradients``
    restricted to the diagonal: the diagonal pass alone, O(n))."""
    names = _names(net, wrt)
    x = as_data(x, "x", torch.float64)
    d = x.shape[1]
    nngp, ntk, _, dc, dt = _walk(net, (x * x).sum(1) / d, d, names, None)
    grads = {}
    for k, name in enumerate(names):
        _check(dc[k], dt[k], name)
        grads[name] = Kernel(dc[k], dt[k])
    return Kernel(nngp, ntk), grads
