"""Iterating the dual without iterating it layer by layer: the Koenigs function of the
singular class (h(f(rho)) = f'(0) h(rho)), the Boettcher function of the nearest-neighbour
class, and the normalized infinite-depth kernel of each class (``limit_kernel``). Orbits are
iterated until they are small, then local series take over. Theory:
docs/theory/infinite-depth.md."""

from __future__ import annotations

import math

import numpy as np
import torch

from ..core.checks import as_rho
from ..numerics.series import horner
from .dual import DELTA_MAX, SERIES_ORDER
from .limit import Limit, as_limit

Tensor = torch.Tensor

#: iterations allowed to bring an orbit into the local region
MAX_STEPS = 100_000


def step_from_one(lim: Limit, x: Tensor) -> tuple[Tensor, Tensor]:
    """(f^(k)(x), k): one layer (k = 1), except within 1e-12 of the repelling fixed point 1 (or
    -1 of an odd dual), where float64 cannot hold the orbit (f(1 - eps) rounds back to 1 - eps):
    there the k layers that take 1 - |x| above 1e-12 by the linearization
    1 - f(x) = f'(1) (1 - x) at once (relative error O(1 - x) for smooth duals; the input's own
    conditioning there is eps / (1 - x))."""
    near = ((1.0 - x.abs()) < 1e-12) & (x.abs() < 1.0)
    k = torch.ones_like(x, dtype=torch.int64)
    if not (bool(near.any()) and math.isfinite(lim.slope1) and lim.slope1 > 1.0):
        return lim.dual.f(x), k
    fx = torch.empty_like(x)
    fx[~near] = lim.dual.f(x[~near])
    xs = x[near]
    gap = 1.0 - xs.abs()
    steps = torch.ceil(torch.log(1e-12 / gap) / math.log(lim.slope1)).clamp(min=1)
    fx[near] = torch.sign(xs) * (1.0 - gap * lim.slope1**steps)
    k[near] = steps.to(torch.int64)
    return fx, k


def _to_local(lim: Limit, x: Tensor, delta: float) -> tuple[Tensor, Tensor, Tensor]:
    """Iterate f on x until |x| < delta; returns (x_n, n, pinned) with pinned the entries that
    reached a fixed point +-1 (1 always is one; -1 when f(-1) = -1, an odd dual)."""
    x = x.clone()
    n = torch.zeros_like(x, dtype=torch.int64)
    pinned = x == 1.0
    idx = torch.nonzero(~pinned & (x.abs() >= delta)).flatten()
    steps = 0
    while idx.numel():
        old = x[idx]
        fx, k = step_from_one(lim, old)
        x[idx] = fx
        n[idx] += k
        pin = (fx == 1.0) | ((fx == -1.0) & (old == -1.0))
        pinned[idx[pin]] = True
        idx = idx[~pin & (fx.abs() >= delta)]
        steps += 1
        if steps > MAX_STEPS:
            raise ValueError(f"{lim.name}: the orbit of the dual did not reach |rho| < {delta:.1e} "
                             f"in {MAX_STEPS} layers (dual'(0) = {lim.slope0:.12g} too close "
                             "to 1?)")
    return x, n, pinned


def koenigs(act_or_limit, rho) -> Tensor:
    """The Koenigs function h(rho) = lim_L f^(L)(rho) / c0^L of the dual f (singular class).

    h solves Schroeder's equation h(f(rho)) = c0 h(rho), h(0) = 0, h'(0) = 1 (c0 = f'(0)); it is
    the infinite-depth NNGP kernel, up to the factor c0^L, as a function of the input correlation.
    Near rho = 1, h(rho) ~ P(log(1 - rho)) (1 - rho)^(-beta), P bounded with period log f'(1).
    Evaluated by iterating f until |rho_n| < delta (~1e-2), then the local series
    h(x) = x + b_2 x^2 + ... (coefficients from the Taylor series of f at 0): h(rho) = h(rho_n) /
    c0^n, ~1e-13 relative for closed-form duals (the conditioning of f near rho = 1 aside).
    rho = 1 gives +inf (and -1 gives -inf when f(-1) = -1, an odd dual).

    Parameters
    ----------
    act_or_limit : Activation, str, callable or Limit
        The activation (anything ``infnet.activation`` takes), or its ``Limit``.
    rho : tensor, float or array
        Input correlations in [-1, 1].

    Returns
    -------
    tensor
        h(rho), float64, of rho's shape.

    Raises
    ------
    ValueError
        The class is not singular (the other classes have no Koenigs function), rho is not in
        [-1, 1], the activation has no valid normalized dual, or an orbit does not reach the
        local region (f'(0) too close to 1).

    Examples
    --------
    >>> act = infnet.from_dual([0.0, 1.0, 0.0, 1.0])  # the dual rho/2 + rho^3/2
    >>> rho = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    >>> h = infnet.koenigs(act, rho)
    >>> [round(float(v), 6) for v in h]
    [0.0, 0.713599, inf]

    Schroeder's equation h(f(rho)) = c0 h(rho), with c0 = 1/2:

    >>> round(float(infnet.koenigs(act, act.dual(0.5))), 6)
    0.3568
    """
    lim = as_limit(act_or_limit)
    if lim.kind != "singular":
        raise ValueError(f"{lim.name} is of class {lim.kind!r}: the Koenigs function exists only "
                         "for the singular class (dual(0) = 0 < dual'(0) < 1)")
    sch = lim.schroeder()
    rho = as_rho(rho)
    x, n, pinned = _to_local(lim, rho.reshape(-1), sch.delta)
    h = horner(sch.h, x) * torch.exp(-n.to(x.dtype) * math.log(sch.c0))
    h = torch.where(pinned, torch.sign(x) * math.inf, h)
    return h.reshape(rho.shape)


def bottcher(act_or_limit, rho) -> Tensor:
    """The Boettcher function B of a nearest-neighbour dual f = p_k rho^k + ... (k >= 2).

    B(rho) = lim_L s_L |p_k^(1/(k-1)) f^(L)(rho)|^(1/k^L), s_L = sign f^(L)(rho), so that
    f^(L)(rho) ~ s p_k^(-1/(k-1)) |B(rho)|^(k^L) (B(f(rho)) = +-B(rho)^k, B(1) = 1, B(rho) = rho
    for f = rho^k with k odd). |B| is increasing on [0, 1]: the largest |B(x_i . x)| is the
    training point that wins the infinite-depth kernel sum. Evaluated by iterating f until
    |rho_n| < 1e-2, then the local map in logarithms until the corrections vanish.

    Parameters
    ----------
    act_or_limit : Activation, str, callable or Limit
        The activation (anything ``infnet.activation`` takes), or its ``Limit``.
    rho : tensor, float or array
        Input correlations in [-1, 1].

    Returns
    -------
    tensor
        B(rho), float64, of rho's shape.

    Raises
    ------
    ValueError
        The class is not nearest-neighbour, the lowest power of the dual is above
        ``SERIES_ORDER``, rho is not in [-1, 1], or the activation has no valid normalized dual.

    Examples
    --------
    >>> act = infnet.from_dual([0.0, 0.0, 0.0, 1.0])  # the dual rho^3: B(rho) = rho
    >>> rho = torch.tensor([-0.5, 0.3, 1.0], dtype=torch.float64)
    >>> [round(float(v), 6) for v in infnet.bottcher(act, rho)]
    [-0.5, 0.3, 1.0]
    """
    lim = as_limit(act_or_limit)
    if lim.kind != "nearest_neighbor":
        raise ValueError(f"{lim.name} is of class {lim.kind!r}: the Boettcher function belongs to "
                         "the nearest-neighbour class (dual(0) = dual'(0) = 0)")
    k = lim.order
    if k is None:
        raise ValueError(f"{lim.name}: the lowest power of the dual is above {SERIES_ORDER}; "
                         "its Boettcher function is not available")
    p = lim.dual.taylor()
    p[:k] = 0.0
    rho = as_rho(rho)
    x, n, pinned = _to_local(lim, rho.reshape(-1), DELTA_MAX)
    lead = math.log(p[k]) / (k - 1)
    sign = torch.sign(x)
    live = ~pinned & (x != 0)
    logy = torch.where(live, torch.log(x.abs().clamp(min=1e-320)) + lead, torch.zeros_like(x))
    scale = torch.pow(float(k), -n.to(x.dtype))  # k^-n
    log_b = logy * scale
    ratio = p[k + 1:] / p[k]
    for _ in range(64):  # y_(n+1) = y_n^k (1 + r(x_n)), r = sum_(j>k) (p_j/p_k) x^(j-k)
        xs = torch.where(live, sign * torch.exp(logy - lead), torch.zeros_like(x))
        r = horner(np.concatenate([[0.0], ratio]), xs)
        scale = scale / k
        log_b = log_b + torch.log1p(r) * scale
        sign = sign ** k * torch.sign(1 + r)
        logy = k * logy + torch.log1p(r)
        if bool((r.abs() < 1e-18).all()):
            break
    b = torch.where(live, sign * torch.exp(log_b), torch.zeros_like(x))
    b = torch.where(pinned, x, b)
    return b.reshape(rho.shape)


def limit_kernel(act_or_limit, rho) -> Tensor:
    """The infinite-depth NNGP kernel as a function of the input correlation, normalized.

    Normalized so that it is finite and keeps what decides the classifier:

    * singular: the Koenigs function h (``koenigs``); the classifier is sign(sum_i y_i h(x_i . x)).
    * majority_vote: the limit correlation, rho* for rho < 1 and 1 at rho = 1 (constant off the
      diagonal; with rho* = 1, e.g. ReLU, all ones: the limit Gram matrix is singular and the
      majority vote comes from how it is approached).
    * nearest_neighbor: the Boettcher function B (``bottcher``); f^(L) ~ s |B|^(k^L), so the
      argmax of |B(x_i . x)| picks the nearest neighbour (monotone in rho on [0, 1]).
    * linear: rho itself.

    Parameters
    ----------
    act_or_limit : Activation, str, callable or Limit
        The activation (anything ``infnet.activation`` takes), or its ``Limit``.
    rho : tensor, float or array
        Input correlations in [-1, 1].

    Returns
    -------
    tensor
        The normalized limit kernel, float64, of rho's shape.

    Raises
    ------
    ValueError
        rho is not in [-1, 1], the activation has no valid normalized dual, or (as in
        ``koenigs`` and ``bottcher``) the class's function cannot be evaluated.

    Examples
    --------
    >>> rho = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    >>> [round(float(v), 6) for v in infnet.limit_kernel("gelu", rho)]  # majority vote, rho* < 1
    [0.760402, 0.760402, 1.0]
    >>> [round(float(v), 6) for v in infnet.limit_kernel("identity", rho)]  # linear
    [0.0, 0.5, 1.0]
    >>> act = infnet.from_dual([0.0, 1.0, 0.0, 1.0])  # singular: the Koenigs function
    >>> [round(float(v), 6) for v in infnet.limit_kernel(act, rho)]
    [0.0, 0.713599, inf]
    """
    lim = as_limit(act_or_limit)
    if lim.kind == "singular":
        return koenigs(lim, rho)
    if lim.kind == "nearest_neighbor":
        return bottcher(lim, rho)
    rho = as_rho(rho)
    if lim.kind == "linear":
        return rho.clone()
    return torch.where(rho == 1.0, torch.ones_like(rho), torch.full_like(rho, lim.fixed_point))
