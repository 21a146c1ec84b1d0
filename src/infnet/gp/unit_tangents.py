"""The derivatives of one activation layer's maps (K, Kdot) at moments (q1, q2, c) along
tangents of the moments, and in the activation's own parameters: the elementwise step of the
forward chain rule of ``gradients`` (whose docstring gives the methods: forward-mode autograd
through closed forms and the Hermite series, reverse-mode partial derivatives of the polar
quadrature of kinked units, and the edge rho = +-1)."""

from __future__ import annotations

import dataclasses
import math
import warnings

import torch
import torch.autograd.forward_ad as fwAD

from ..activations.numerical import pair_kernel
from ..activations.series import supports_series
from ..activations.slopes import two_slopes
from ..numerics.gauss1d import degenerate_expectation
from ..numerics.moments import corr_angle, corr_root

Tensor = torch.Tensor

#: entries differentiated at once through the quadrature of a kinked unit (``_partials``)
PARTIAL_ENTRIES = 8


def tangents(act, q1: Tensor, q2: Tensor, c: Tensor, dq1: list, dq2: list, dc: list):
    """(K, Kdot, [dK], [dKdot]) of ``act`` at the moments, the derivatives along each
    tangent (dq1, dq2, dc), elementwise (module docstring): forward-mode autograd through a
    closed form (one pass a tangent), reverse-mode partial derivatives of the quadrature; at
    rho = +-1 the edge's derivatives."""
    shape = torch.broadcast_shapes(q1.shape, q2.shape, c.shape)
    slopes, edge = two_slopes(act), None
    if slopes is not None:
        K, D, dk, dd, edge = _two_slope_tangents(*slopes, q1, q2, c, dq1, dq2, dc, shape)
    elif act.is_closed_form:
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
    if edge is None:
        edge = corr_root(q1e, q2e, ce) == 0
        for g in (*dk, *dd):
            edge |= ~torch.isfinite(g)
    if bool(edge.any()):
        at = edge.nonzero(as_tuple=True)  # (once: a mask would be searched at every use)
        pk, pd = _edge(act, q1e[at], q2e[at], ce[at], D[at])
        for k, (g1, g2, g) in enumerate(zip(dq1, dq2, dc, strict=True)):
            g1, g2, g = (v.expand(shape)[at] for v in (g1, g2, g))
            dk[k][at] = pk[0] * g1 + pk[1] * g2 + pk[2] * g
            dd[k][at] = pd[0] * g1 + pd[1] * g2 + pd[2] * g
    return K, D, dk, dd


def param_partials(act, name: str, q1: Tensor, q2: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    """(dK/dp, dKdot/dp) of ``act`` at fixed moments, p its parameter ``name``: forward-mode
    autograd with p a dual number, through the closed form, the Hermite series of a smooth unit
    (its coefficients once per row and column) or the quadrature (whose rule does not depend on
    p: the kinks it splits at stay put, ``hyper.check_activation_parameter``), elementwise. A
    formula that reads p as a plain number would drop its tangent: that is an error here, not
    a zero derivative."""
    shape = torch.broadcast_shapes(q1.shape, q2.shape, c.shape)
    series = supports_series(act)
    base = [v.detach() if series else v.detach().expand(shape).contiguous() for v in (q1, q2, c)]
    value = torch.tensor(float(act.params[name]), dtype=torch.float64, device=base[0].device)
    # (forward-mode autograd follows the grad mode: a caller's no_grad, as in an autograd
    # Function's forward, would drop every tangent)
    with torch.enable_grad(), fwAD.dual_level(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        p = fwAD.make_dual(value, torch.ones_like(value))
        dual = dataclasses.replace(act, params={**act.params, name: p})
        values = pair_kernel(dual, *base, corr_angle(*base)[1]) if series else \
            dual.kernel(*base, check=False)
        out = [fwAD.unpack_dual(v).tangent for v in values]
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


def _two_slope_tangents(neg: float, pos: float, q1, q2, c, dq1, dq2, dc, shape):
    """(K, Kdot, [dK], [dKdot]) of neg min(x, 0) + pos max(x, 0) by hand: with r the root
    sqrt(q1 q2 - c^2), theta = atan2(r, c), a = (neg - pos)^2 / (2 pi) and s = dq1 / (2 q1)
    + dq2 / (2 q2), K = a r + Kdot c and Kdot = (neg^2 + pos^2) / 2 - a theta give
    dK = Kdot dc + a r s and dKdot = a (dc - c s) / r; and the edge r = 0 (rho = +-1 or a
    zero variance), where dKdot is infinite and ``_edge`` takes over."""
    q1, q2, c = (v.detach() for v in (q1, q2, c))
    a = (neg - pos) ** 2 / (2 * math.pi)
    root = corr_root(q1, q2, c)
    D = torch.atan2(root, c).mul_(-a).add_((neg * neg + pos * pos) / 2)
    K = D * c + a * root
    ar, inv = a * root, a / root
    dk, dd = [], []
    for g1, g2, g in zip(dq1, dq2, dc, strict=True):
        half = g1 / (2 * q1) + g2 / (2 * q2)
        dk.append((D * g).addcmul_(ar, half).expand(shape).clone())
        dd.append(inv.mul(g - c * half).expand(shape).clone())
    return (K.expand(shape).clone(), D.expand(shape).clone(), dk, dd,
            (root == 0).expand(shape))


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
    1-D rule (``degenerate_expectation``) of phi(x) phi(+-x). The ReLU family by hand: g =
    kappa sqrt(q1 q2), kappa = (neg^2 + pos^2) / 2 (parallel) or -neg pos, and h constant."""
    slopes = two_slopes(act)
    if slopes is not None:
        neg, pos = slopes
        g = ((neg * neg + pos * pos) / 2 if sign > 0 else -neg * pos) * (q1 * q2).sqrt()
        return [g / (2 * q1), g / (2 * q2), torch.zeros_like(q1), torch.zeros_like(q1)]
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
