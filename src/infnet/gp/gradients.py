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
  add up with the squared weights (fixed numbers);
- convolutions and pooling: the same on the pairs' spatial covariances (``spatial_walk``).

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
tangents, in tiles of rows (``walk``) or of pairs of images (``spatial_walk``).
"""

from __future__ import annotations

import math

import torch

from ..network import Kernel
from ..network.images import as_images
from ..network.inputs import angles, as_data
from ..network.spatial import is_spatial
from .hyper import check_activation_parameter, hyperparameters
from .spatial_walk import pairs_state, plan_of, self_state
from .walk import State, walk

Tensor = torch.Tensor

#: entries of one tile of rows: activations without a closed form (their quadrature keeps a
#: graph of nodes per entry), and with one
ENTRIES = 1 << 14
CLOSED_ENTRIES = 1 << 18
#: entries of the spatial covariances of one tile of pairs of images
SPATIAL_ENTRIES = 1 << 21


def kernel_gradients(net, x1, x2=None, *, wrt=None, get: str = "both"
                     ) -> tuple[Kernel, dict[str, Kernel]]:
    """The NNGP and NTK of ``net`` between the rows of x1 and x2, and their derivatives with
    respect to the network's hyperparameters.

    Parameters
    ----------
    net : Network
        Dense (and Conv) layers and activations sharing one ``w_std`` and one ``b_std``
        (``infnet.fc``, ``network.cnn``; ``hyper.hyperparameters``), with LayerNorm, pooling
        and branches of such layers (residual blocks) between them.
    x1, x2 : tensor or array
        Inputs (n, features), or images (n, C, H, W) / sequences (n, C, L) for a spatial
        network; x2=None: x1 with itself.
    wrt : sequence of str, optional
        The hyperparameters: ``"w_std"``, ``"b_std"`` and the continuous parameters of the
        network's activation (``hyper.activation_parameters``: swish's ``"beta"``, a tempered
        sigmoid's ``"temperature"``). Default: the Dense layers' ``w_std`` and ``b_std`` (those
        the network has).
    get : {"both", "nngp", "ntk"}
        The kernels whose values to return (``Network.kernel``; the NNGP alone of inputs of
        different norms is several times cheaper); the derivatives are of both.

    Returns
    -------
    kernel : Kernel
        ``net.kernel(x1, x2, get=get)``.
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
    if is_spatial(net.layers):
        kernel, out, diag = _spatial(net, x1, x2, names, get)
    else:
        kernel, out, diag = _fully_connected(net, x1, x2, names, get)
    grads = {}
    for k, name in enumerate(names):
        g_nngp, g_ntk = out[name]
        if symmetric:  # exactly symmetric, each input with itself from the diagonal pass
            for g, values in ((g_nngp, diag[0][k]), (g_ntk, diag[1][k])):
                g.copy_((g + g.T) / 2)
                g.diagonal().copy_(values)
        _check(g_nngp, g_ntk, name)
        grads[name] = Kernel(g_nngp, g_ntk)
    return kernel, grads


def _empty(names, n1: int, n2: int, device) -> dict:
    return {name: (torch.empty(n1, n2, dtype=torch.float64, device=device),
                   torch.empty(n1, n2, dtype=torch.float64, device=device)) for name in names}


def _put(out: dict, names, dc: list, dt: list, sel: slice, cols: slice, symmetric: bool):
    for k, name in enumerate(names):
        for g, tile in zip(out[name], (dc[k], dt[k]), strict=True):
            g[sel, cols] = tile
            if symmetric:
                g[cols, sel] = tile.T


def _fully_connected(net, x1, x2, names, get: str = "both"):
    """(kernel, tangents {name: (d NNGP, d NTK)}, diagonal tangents ([dNNGP], [dNTK]))."""
    symmetric = x2 is None
    x1 = as_data(x1, "x1", torch.float64)
    x2 = x1 if symmetric else as_data(x2, "x2", torch.float64, device=x1.device)
    kernel = net.kernel(x1, None if symmetric else x2, get=get)
    d = x1.shape[1]
    sq1 = (x1 * x1).sum(1) / d
    sq2 = sq1 if symmetric else (x2 * x2).sum(1) / d
    diag1 = walk(net, sq1, d, names, None)
    rec1 = diag1[2]
    rec2 = rec1 if symmetric else walk(net, sq2, d, names, None)[2]
    n1, n2 = x1.shape[0], x2.shape[0]
    out = _empty(names, n1, n2, x1.device)
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
        _, _, _, dc, dt = walk(net, c, d, names, (view1, view2), same)
        _put(out, names, dc, dt, sel, cols, symmetric)
    return kernel, out, (diag1[3], diag1[4])


def _spatial(net, x1, x2, names, get: str = "both"):
    """``_fully_connected`` for a network of spatial layers (``spatial_walk``), in square tiles
    of pairs whose spatial covariances hold about ``SPATIAL_ENTRIES`` entries."""
    plan = plan_of(net)
    symmetric = x2 is None
    x1 = as_images(x1, "x1", plan.ndim)
    x2 = x1 if symmetric else as_images(x2, "x2", plan.ndim, device=x1.device)
    kernel = net.kernel(x1, None if symmetric else x2, get=get)
    pairs = max(1, SPATIAL_ENTRIES // plan.pair_entries(tuple(x1.shape[2:])))
    side = max(1, math.isqrt(pairs))
    s1, heads1, tails1 = _self_chunks(plan, x1, names, pairs)
    heads2, tails2 = (heads1, tails1) if symmetric else _self_chunks(plan, x2, names, pairs)[1:]
    n1, n2 = x1.shape[0], x2.shape[0]
    out = _empty(names, n1, n2, x1.device)

    def part(records, sel):
        return [(q[sel], [g[sel] for g in dq]) for q, dq in records]
    for i in range(0, n1, side):
        rows = slice(i, i + side)
        for j in range(i if symmetric else 0, n2, side):
            cols = slice(j, j + side)
            s = pairs_state(plan, x1[rows], x2[cols], (part(heads1, rows), part(heads2, cols)),
                            (part(tails1, rows), part(tails2, cols)), names)
            _put(out, names, s.dc, s.dt, rows, cols, symmetric)
    return kernel, out, (s1.dc, s1.dt)


def _self_chunks(plan, x, names, chunk: int):
    """``spatial_walk.self_state`` in chunks of ``chunk`` inputs, concatenated."""
    parts = [self_state(plan, x[i:i + chunk], names) for i in range(0, x.shape[0], chunk)]

    def cat(records):
        return [(torch.cat([r[k][0] for r in records]),
                 [torch.cat([r[k][1][j] for r in records]) for j in range(len(names))])
                for k in range(len(records[0]))]
    states = [p[0] for p in parts]
    final = State(torch.cat([s.c for s in states]), torch.cat([s.t for s in states]),
                  [torch.cat([s.dc[j] for s in states]) for j in range(len(names))],
                  [torch.cat([s.dt[j] for s in states]) for j in range(len(names))],
                  states[0].width)
    heads, tails = [p[1] for p in parts], [p[2] for p in parts]
    return final, (cat(heads) if heads[0] else []), (cat(tails) if tails[0] else [])


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


def diagonal_gradients(net, x, *, wrt=None) -> tuple[Kernel, dict[str, Kernel]]:
    """The kernels of each row of x with itself (n,) and their derivatives (``kernel_gradients``
    restricted to the diagonal: the diagonal pass alone, O(n))."""
    names = _names(net, wrt)
    if is_spatial(net.layers):
        plan = plan_of(net)
        x = as_images(x, "x", plan.ndim)
        s = _self_chunks(plan, x, names, max(1, SPATIAL_ENTRIES // plan.pair_entries(
            tuple(x.shape[2:]))))[0]
        nngp, ntk, dc, dt = s.c, s.t, s.dc, s.dt
    else:
        x = as_data(x, "x", torch.float64)
        d = x.shape[1]
        nngp, ntk, _, dc, dt = walk(net, (x * x).sum(1) / d, d, names, None)
    grads = {}
    for k, name in enumerate(names):
        _check(dc[k], dt[k], name)
        grads[name] = Kernel(dc[k], dt[k])
    return Kernel(nngp, ntk), grads
