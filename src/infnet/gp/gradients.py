"""Exact derivatives of a network's NNGP and NTK with respect to its hyperparameters.

The chain rule runs forward through the layers (one tangent per hyperparameter, carried beside
each covariance and tangent kernel), with every layer's own derivatives exact:

- Dense: Sigma' = w^2 Sigma + b^2 and Theta' = w^2 Theta + Sigma' (NTK parameterization; the
  standard one adds n_in Sigma instead), differentiated by hand;
- an activation: Sigma' = K(q1, q2, Sigma), Theta' = Kdot(q1, q2, Sigma) Theta, whose partial
  derivatives in q1, q2 and Sigma come from reverse-mode autograd through the activation's own
  map, elementwise (each entry depends on its own moments only). For a closed form that is the
  derivative of the formula; for the polar quadrature it is the quadrature of the derivative,
  to the same precision as the value, because the rule's breakpoints (the kinks' rays) are
  computed from the moments and move with them: the jumps of phi' at a kink (hardswish) enter
  as the motion of those breakpoints, where a fixed rule would miss them.

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
import math
import warnings

import torch
import torch.autograd.forward_ad as fwAD

from ..activations.numerical import pair_kernel
from ..activations.series import supports_series
from ..network import Dense, Kernel
from ..network.inputs import angles, as_data
from ..numerics.gauss1d import degenerate_expectation
from ..numerics.moments import corr_angle, corr_root
from .hyper import check_activation_parameter, hyperparameters

Tensor = torch.Tensor

#: entries of one tile of rows: activations without a closed form (their quadrature keeps a
#: graph of nodes per entry), and with one
ENTRIES = 1 << 14
CLOSED_ENTRIES = 1 << 18
#: entries differentiated at once through the quadrature of a kinked unit (``_partials``)
PARTIAL_ENTRIES = 8


def kernel_gradients(net, x1, x2=None, *, wrt=None) -> tuple[Kernel, dict[str, Kernel]]:
    """The NNGP and NTK of ``net`` between the rows of x1 and x2, and their derivatives with
    respect to the network's hyperparameters.

    Parameters
    ----------
    net : Network
        A chain of Dense layers and activations sharing one ``w_std`` and one ``b_std``
        (``infnet.fc``; ``hyper.hyperparameters``).
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
    activation, are (q, [dq per name]) at its input; else the two sides' records (rows,
    columns), and ``same`` the pairs of one input twice, whose moments are set to the rows'
    variances before each activation (so that they sit exactly at rho = 1).
    Returns (Sigma, Theta, records, [dSigma], [dTheta])."""
    t = torch.zeros_like(c)
    dc = [torch.zeros_like(c) for _ in names]
    dt = [torch.zeros_like(c) for _ in names]
    records, a = [], 0
    for layer in net.layers:
        if isinstance(layer, Dense):
            w, b = layer.w_std, layer.b_std or 0.0
            new = w * w * c + b * b
            dnew = [w * w * g + (2 * w * c if n == "w_std" else 0.0)
                    + (2 * b if n == "b_std" else 0.0) for g, n in zip(dc, names, strict=True)]
            if layer.parameterization == "ntk":
                dt = [w * w * g + (2 * w * t if n == "w_std" else 0.0) + h
                      for g, h, n in zip(dt, dnew, names, strict=True)]
                t = w * w * t + new
            else:
                bias = 0.0 if layer.b_std is None else 1.0
                dt = [width * h + w * w * g + (2 * w * t if n == "w_std" else 0.0)
                      for g, h, n in zip(dt, dc, names, strict=True)]
                t = width * c + bias + w * w * t
            c, dc, width = new, dnew, layer.width
            continue
        act = layer.act
        if sides is None:
            records.append((c, dc))
            (q1, dq1), (q2, dq2) = (c, dc), (c, dc)
        else:
            (q1, dq1), (q2, dq2) = sides[0][a], sides[1][a]
            if same is not None and bool(same.any()):
                # (one input twice: equal variances and tangents on both sides already)
                c = torch.where(same, q1, c)
                dc = [torch.where(same, g1, g) for g1, g in zip(dq1, dc, strict=True)]
        a += 1
        K, D, dk, dd = tangents(act, q1, q2, c, dq1, dq2, dc)
        for k, name in enumerate(names):
            if name in act.params:  # the activation's own parameter: its direct part
                pk, pd = param_partials(act, name, q1, q2, c)
                dk[k], dd[k] = dk[k] + pk, dd[k] + pd
        dt = [g * t + D * h for g, h in zip(dd, dt, strict=True)]
        c, t, dc = K, D * t, dk
    return c, t, records, dc, dt


def tangents(act, q1: Tensor, q2: Tensor, c: Tensor, dq1: list, dq2: list, dc: list):
    """(K, Kdot, [dK], [dKdot]) of ``act`` at the moments, the derivatives along each
    tangent (dq1, dq2, dc), elementwise (module docstring): forward-mode autograd through a
    closed form (one pass a tangent), reverse-mode partial derivatives of the quadrature; at
    rho = +-1 the edge's derivatives."""
    shape = torch.broadcast_shapes(q1.shape, q2.shape, c.shape)
    if act.is_closed_form:
        K, D, dk, dd = _forward(act.kernel, q1, q2, c, dq1, dq2, dc, shape, True)
    elif supports_series(act):  # smooth: forward mode through the Hermite series
        def series(a, b, cov, check=False):
            # (the angle of the dual moments, a dual itself: the entries the series hands to
            # the quadrature take the angle, not c, and would lose c's tangent otherwise)
            return pair_kernel(act, a, b, cov, corr_angle(a, b, cov)[1])
        K, D, dk, dd = _forward(series, q1, q2, c, dq1, dq2, dc, shape, False)
    else:
        K, D, pk, pd = _partials(act, q1, q2, c, shape)
        dk = [pk[0] * g1 + pk[1] * g2 + pk[2] * g for g1, g2, g in zip(dq1, dq2, dc, strict=True)]
        dd = [pd[0] * g1 + pd[1] * g2 + pd[2] * g for g1, g2, g in zip(dq1, dq2, dc, strict=True)]
    q1e, q2e, ce = (v.detach().expand(shape) for v in (q1, q2, c))
    edge = corr_root(q1e, q2e, ce) == 0
    for g in (*dk, *dd):
        edge |= ~torch.isfinite(g)
    if bool(edge.any()):
        pk, pd = _edge(act, q1e[edge], q2e[edge], ce[edge], D[edge])
        for k, (g1, g2, g) in enumerate(zip(dq1, dq2, dc, strict=True)):
            g1, g2, g = (v.expand(shape)[edge] for v in (g1, g2, g))
            dk[k][edge] = pk[0] * g1 + pk[1] * g2 + pk[2] * g
            dd[k][edge] = pd[0] * g1 + pd[1] * g2 + pd[2] * g
    return K, D, dk, dd


def param_partials(act, name: str, q1: Tensor, q2: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    """(dK/dp, dKdot/dp) of ``act`` at fixed moments, p its parameter ``name``: forward-mode
    autograd with p a dual number, through the closed form or the quadrature (whose rule does
    not depend on p: the kinks it splits at stay put, ``hyper.check_activation_parameter``),
    elementwise. A formula that reads p as a plain number would drop its tangent: that is an
    error here, not a zero derivative."""
    shape = torch.broadcast_shapes(q1.shape, q2.shape, c.shape)
    base = [v.detach().expand(shape).contiguous() for v in (q1, q2, c)]
    value = torch.tensor(float(act.params[name]), dtype=torch.float64, device=base[0].device)
    # (forward-mode autograd follows the grad mode: a caller's no_grad, as in an autograd
    # Function's forward, would drop every tangent)
    with torch.enable_grad(), fwAD.dual_level(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        p = fwAD.make_dual(value, torch.ones_like(value))
        dual = dataclasses.replace(act, params={**act.params, name: p})
        out = [fwAD.unpack_dual(v).tangent for v in dual.kernel(*base, check=False)]
    if any(t is None for t in out):
        raise NotImplementedError(f"the formula of {act.name!r} reads {name} as a number, so no "
                                  f"derivative in it can be taken; keep {name} fixed")
    return tuple(t.expand(shape).clone() for t in out)


def _forward(kernel, q1, q2, c, dq1, dq2, dc, shape, expand: bool):
    """Forward-mode autograd of ``kernel(q1, q2, c, check=False) -> (K, Kdot)`` along each
    tangent (in-place operations, which the closed forms use for speed, carry their tangents
    along). ``expand``: the moments as full tiles (else as they broadcast: a Hermite series
    computes its coefficients once per row and column)."""
    def prepared(v):
        v = v.detach()
        return v.expand(shape).contiguous() if expand else v
    base = [prepared(v) for v in (q1, q2, c)]
    if not dc:
        K, D = kernel(*base, check=False)
        return K, D, [], []
    dk, dd = [], []
    with torch.enable_grad(), fwAD.dual_level(), warnings.catch_warnings():  # (see above)
        warnings.simplefilter("ignore", UserWarning)  # (scalar reads of checked tensors)
        # (torch's first dual tensor loads its decompositions through torch.jit.script,
        # which warns that it is deprecated: torch's own business)
        warnings.simplefilter("ignore", DeprecationWarning)
        for g1, g2, g in zip(dq1, dq2, dc, strict=True):
            duals = [fwAD.make_dual(v, t.detach().expand(v.shape).contiguous())
                     for v, t in zip(base, (g1, g2, g), strict=True)]
            # (moments from the network's own passes: checked there, and the results after)
            out = [fwAD.unpack_dual(v) for v in kernel(*duals, check=False)]
            (K, tk), (D, td) = out
            dk.append(torch.zeros(shape, dtype=K.dtype) if tk is None
                      else tk.expand(shape).clone())
            dd.append(torch.zeros(shape, dtype=K.dtype) if td is None
                      else td.expand(shape).clone())
    return K.expand(shape).clone(), D.expand(shape).clone(), dk, dd


def _partials(act, q1: Tensor, q2: Tensor, c: Tensor, shape):
    """(K, Kdot, [dK/dq1, dK/dq2, dK/dc], [dKdot/dq1, dKdot/dq2, dKdot/dc]) by reverse-mode
    autograd through the quadrature, elementwise, ``PARTIAL_ENTRIES`` entries at a time (the
    graph holds every node of the rule: tens of MB an entry)."""
    flat = [v.detach().expand(shape).reshape(-1) for v in (q1, q2, c)]
    out = [torch.empty(flat[0].shape, dtype=torch.float64, device=flat[0].device)
           for _ in range(8)]
    for start in range(0, flat[0].numel(), PARTIAL_ENTRIES):
        sel = slice(start, start + PARTIAL_ENTRIES)
        leaves = [v[sel].clone().requires_grad_(True) for v in flat]
        # (tensors that autograd saved are copied before an in-place operation overwrites them)
        with torch.enable_grad(), warnings.catch_warnings(), \
                torch.autograd.graph.allow_mutation_on_saved_tensors():
            warnings.simplefilter("ignore", UserWarning)  # (scalar reads of checked tensors)
            K, D = act.kernel(*leaves)
            parts = [torch.autograd.grad(v.sum(), leaves, retain_graph=True, allow_unused=True)
                     if v.requires_grad else (None,) * 3 for v in (K, D)]
        for slot, v in zip(out, (K, D, *parts[0], *parts[1]), strict=True):
            slot[sel] = 0.0 if v is None else v.detach()
    K, D, *rest = (t.reshape(shape) for t in out)
    return K, D, rest[:3], rest[3:]


def _edge(act, q1: Tensor, q2: Tensor, c: Tensor, D: Tensor):
    """Entries at rho = +-1 (sign of c; c = 0 only with a zero variance): the derivatives of
    g = E[phi(sqrt(q1) z) phi(+-sqrt(q2) z)] and h (the same of phi') in q1 and q2 (``_along``);
    dK = g_q1 dq1 + g_q2 dq2 + Kdot (dc -+ d sqrt(q1 q2)), dKdot = h_q1 dq1 + h_q2 dq2 (a
    parallel pair stays parallel). Returns the partial derivatives ([K's], [Kdot's]) in
    (q1, q2, c) that give these."""
    out = [torch.empty_like(q1) for _ in range(4)]
    for sign in (1.0, -1.0):
        sel = c >= 0 if sign > 0 else c < 0
        if bool(sel.any()):
            for slot, v in zip(out, _along(act, q1[sel], q2[sel], sign), strict=True):
                slot[sel] = v
    root = (q1 * q2).sqrt()
    half1 = torch.where(q1 > 0, 0.5 * root / q1, math.inf)
    half2 = torch.where(q2 > 0, 0.5 * root / q2, math.inf)
    sign = torch.where(c >= 0, 1.0, -1.0).to(q1.dtype)
    return ([out[0] - D * sign * half1, out[1] - D * sign * half2, D],
            [out[2], out[3], torch.zeros_like(D)])


def _along(act, q1: Tensor, q2: Tensor, sign: float) -> list[Tensor]:
    """[g_q1, g_q2, h_q1, h_q2] of parallel (sign 1) or antiparallel (-1) pairs: autograd
    through the activation's angle form at theta = 0 or pi where it has one, else through the
    1-D rule (``degenerate_expectation``) of phi(x) phi(+-x)."""
    a, b = (v.detach().clone().requires_grad_(True) for v in (q1, q2))
    with torch.enable_grad(), torch.autograd.graph.allow_mutation_on_saved_tensors():
        if act.angle_form is not None:
            theta = torch.full_like(a, 0.0 if sign > 0 else math.pi)
            val, dval, _ = act.angle_form(a, b, theta, **act.params)
            val, dval = act.gain**2 * val, act.gain**2 * dval
        else:
            if sign > 0:
                g, dg, kinks_g = act, act.derivative, act.kinks
            else:
                def g(x):
                    return act(-x)

                def dg(x):
                    return act.derivative(-x)
                kinks_g = tuple(-k for k in act.kinks)
            val, dval = degenerate_expectation([(act, g), (act.derivative, dg)], a, b, [],
                                               act.kinks, kinks_g,
                                               f"the parallel pairs of {act.name!r}")
        # (a value that does not depend on the variances, as ReLU's Kdot: derivatives 0)
        gk, gd = (torch.autograd.grad(v.sum(), (a, b), retain_graph=True, allow_unused=True)
                  if v.requires_grad else (None, None) for v in (val, dval))
    return [torch.zeros_like(q1) if v is None else v for v in (*gk, *gd)]


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
