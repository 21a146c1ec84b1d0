"""Hermite coefficients of f(sqrt(q) z) at many variances q, and the bivariate Gaussian
expectations they give as power series in the correlation (Mehler's formula).

For (u, v) ~ N(0, [[q1, c], [c, q2]]) and rho = c / sqrt(q1 q2),

    E[f(u) g(v)] = sum_k a_k(q1) b_k(q2) rho^k,   a_k(q) = E[f(sqrt(q) z) h_k(z)],

h_k the orthonormal (probabilists') Hermite polynomials. The coefficients depend on one
variance each, so a tile of pairs of positions needs them once per position and then costs a
Horner step per term and entry. The truncation after degree K errs by at most
sqrt(T_f(q1) T_g(q2)) for every |rho| <= 1 (Cauchy-Schwarz), T(q) = E[f(sqrt(q) z)^2] -
sum_{k <= K} a_k(q)^2 the energy of the tail, and by |rho|^(K+1) times that below |rho| = 1
(docs/theory/numerical-duals.md#hermite-series).

The coefficients come from a Gauss-Hermite rule of ``nodes_for(K)`` nodes, which integrates
f(sqrt(q) z) h_k(z) for k <= K as exactly as it resolves f up to degree ~7K: where the tail
energy at K is below 1e-13 of the total (what the series asks), the aliased energy there is
smaller still for the smooth functions this is used for. The many variances of an input
block (one per position) take the rule's sums at a few Chebyshev points of their range in
log q and an interpolant checked against further points (``coefficients``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np
import scipy.special
import torch
import torch.autograd.forward_ad as fwAD

Tensor = torch.Tensor


#: |z| beyond which the weighted f^2 must be negligible (``coefficients``)
FAR = 10.0


def nodes_for(degree: int) -> int:
    """The Gauss-Hermite nodes used for coefficients up to ``degree``."""
    return 4 * degree + 16


def gauss_hermite(m: int) -> tuple[np.ndarray, np.ndarray]:
    """The m-point Gauss rule of the standard normal: nodes and weights (summing to 1), to
    rounding at any m. SciPy's nodes (asymptotic formulas beyond 150 points, whose weights
    are off by up to 3e-14) take one Newton step, and the weights are 1 / (m h_{m-1}(z)^2)
    with h_k the orthonormal Hermite polynomials, by their recurrence rescaled as it grows
    (h_{m-1} overflows float64 at the outer nodes, whose weights are below 1e-300)."""
    z, _ = scipy.special.roots_hermitenorm(m)
    h, h_prev, logs = _orthonormal_pair(z, m)
    z = z - h / (math.sqrt(m) * h_prev)  # h_m' = sqrt(m) h_{m-1}
    _, h_prev, logs = _orthonormal_pair(z, m)
    logw = -2.0 * (np.log(np.abs(h_prev)) + logs)
    w = np.exp(logw - logw.max())
    w = (w + w[::-1]) / 2  # the rule is symmetric
    z = (z - z[::-1]) / 2
    return z, w / w.sum()


def _orthonormal_pair(z: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(h_m(z), h_{m-1}(z)) both divided by exp(logs), and logs."""
    prev, cur, logs = np.zeros_like(z), np.ones_like(z), np.zeros_like(z)
    for k in range(m):
        prev, cur = cur, (z * cur - math.sqrt(k) * prev) / math.sqrt(k + 1)
        size = np.maximum(np.abs(cur), np.abs(prev))
        big = size > 1e100
        if big.any():
            prev[big] /= size[big]
            cur[big] /= size[big]
            logs[big] += np.log(size[big])
    return cur, prev, logs


@functools.lru_cache(maxsize=16)
def _rule(degree: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nodes z_m, weights w_m (summing to 1) of the standard normal, and the matrix
    (degree + 1, M) of w_m h_k(z_m)."""
    m = nodes_for(degree)
    z, w = gauss_hermite(m)
    root = np.sqrt(w)
    g = np.empty((degree + 1, m))  # sqrt(w_m) h_k(z_m): bounded (an orthogonal matrix's rows)
    g[0] = root
    if degree:
        g[1] = z * root
    for k in range(1, degree):
        g[k + 1] = (z * g[k] - math.sqrt(k) * g[k - 1]) / math.sqrt(k + 1)
    return z, w, g * root


@functools.lru_cache(maxsize=16)
def _rule_tensors(degree: int, dtype, device) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``_rule`` as tensors on a device (once: 8 MB at degree 512): nodes, weights, and the
    basis at the positive half of the nodes split by parity, (M / 2, degree / 2 + 1) for the
    even degrees and for the odd ones (``coefficients``)."""
    z, w, g = _rule(degree)
    half = z.shape[0] // 2  # (an even number of nodes: none at 0)
    pos = g[:, half:]
    return tuple(torch.as_tensor(np.ascontiguousarray(a), dtype=dtype, device=device)
                 for a in (z, w, pos[0::2].T, pos[1::2].T))


def coefficients(f: Callable[[Tensor], Tensor], q: Tensor, degree: int
                 ) -> tuple[Tensor, Tensor]:
    """Hermite coefficients of f(sqrt(q) z) for the variances q (N,): (a (N, degree + 1),
    tail (N, degree + 1)), tail[:, k] = E[f^2] - sum_{j <= k} a_j^2 (>= 0) as a fraction of
    E[f(sqrt(q) z)^2] (0 where that is 0; inf where f^2 has not decayed at |z| = ``FAR``, or
    overflows: the rule cannot vouch for its sums).

    Many variances (the positions of an image) are served by interpolation in log q from the
    direct sums at Chebyshev points of their range (``_interpolated``), where that agrees with
    the direct sums at the points it did not use; the others by the direct sums
    (``direct_coefficients``)."""
    positive = q > 0
    count = int(positive.sum())
    if count < INTERPOLATE_FROM or count * degree < INTERPOLATE_WORK:
        return direct_coefficients(f, q, degree)
    a = torch.empty(q.shape[0], degree + 1, dtype=q.dtype, device=q.device)
    tail = torch.empty_like(a)
    a[positive], tail[positive] = _by_pieces(f, q[positive], degree, SPLITS)
    if not bool(positive.all()):
        a[~positive], tail[~positive] = direct_coefficients(f, q[~positive], degree)
    return a, tail


def _by_pieces(f: Callable[[Tensor], Tensor], q: Tensor, degree: int, splits: int
               ) -> tuple[Tensor, Tensor]:
    """``coefficients`` at positive variances: interpolated over their range, or over each
    half of it in log q where that fails (at most ``splits`` times), else direct."""
    if q.shape[0] < INTERPOLATE_FROM:
        return direct_coefficients(f, q, degree)
    found = _interpolated(f, q, degree)
    if found is not None:
        return found
    t = q.log()
    low = t <= (t.min() + t.max()) / 2
    if splits == 0 or bool(low.all()):
        return direct_coefficients(f, q, degree)
    a = torch.empty(q.shape[0], degree + 1, dtype=q.dtype, device=q.device)
    tail = torch.empty_like(a)
    for part in (low, ~low):
        a[part], tail[part] = _by_pieces(f, q[part], degree, splits - 1)
    return a, tail


#: the fewest variances, and the least product of their number and the degree, interpolated
#: (below either, the direct sums cost less than the interpolant's checks: 2 ms for 1024
#: variances at degree 64)
INTERPOLATE_FROM = 96
INTERPOLATE_WORK = 1 << 17
#: the Chebyshev points tried in turn; each set holds the one before it
CHEBYSHEV_POINTS = (9, 17, 33, 65)
#: the halvings of the range of log q tried where one interpolant does not pass
SPLITS = 3
#: accepted error of an interpolated coefficient (relative to sqrt(E[f^2])) and tail fraction
INTERPOLATION_ERROR = 1e-14


def _interpolated(f: Callable[[Tensor], Tensor], q: Tensor, degree: int
                  ) -> tuple[Tensor, Tensor] | None:
    """``coefficients`` at the positive variances q by barycentric interpolation in log q
    from the direct sums at m Chebyshev points of the second kind of [min, max]: for m in
    ``CHEBYSHEV_POINTS``, the interpolant of the previous set is compared, at the m // 2
    points it did not use, with the direct sums there, and the first m whose predecessor
    was within ``INTERPOLATION_ERROR`` (coefficients relative to sqrt(E[f^2]), tails as
    fractions) interpolates. f(e^t z) is analytic in t in a strip (for tanh and swish of
    half-width pi / 2), so the error falls geometrically with m. None where no set passes,
    where a point's tails are not finite, or where the direct sums at every variance would
    cost less."""
    t = q.log()
    lo, hi = float(t.min()), float(t.max())
    if not hi - lo > 1e-12:
        return None
    known = None  # (points, coefficients, tails) of the previous set
    for m in CHEBYSHEV_POINTS:
        if 2 * m >= q.shape[0]:
            return None
        points = lo + (hi - lo) * (1 - torch.cos(
            torch.arange(m, dtype=q.dtype, device=q.device) * (math.pi / (m - 1)))) / 2
        fresh = points if known is None else points[1::2]  # what the previous set lacks
        a, tail, energy = direct_coefficients(f, fresh.exp(), degree, with_energy=True)
        if not (bool(torch.isfinite(tail).all()) and bool(torch.isfinite(energy).all())):
            return None
        if known is not None:
            guess = _barycentric(known[0], fresh)
            miss = guess @ known[1] - a
            scale = energy.sqrt().clamp(min=torch.finfo(q.dtype).tiny)[:, None]
            error = max(float((miss.abs() / scale).max()),
                        float((guess @ known[2] - tail).abs().max()),
                        _tangent_error(miss, a))
            a, tail = _interleave(known[1], a), _interleave(known[2], tail)
            if error <= INTERPOLATION_ERROR:
                weights = _barycentric(points, t)
                return weights @ a, (weights @ tail).clamp_(min=0)
        known = (points, a, tail)
    return None


def _tangent_error(miss: Tensor, a: Tensor) -> float:
    """Where f carries a forward-mode tangent (the derivative in an activation's parameter,
    ``gp.unit_tangents``): the interpolant's error in it relative to its largest value at
    each point; else 0."""
    tangent = fwAD.unpack_dual(miss).tangent
    if tangent is None:
        return 0.0
    scale = fwAD.unpack_dual(a).tangent.abs().amax(dim=1, keepdim=True)
    return float((tangent.abs() / scale.clamp(min=torch.finfo(a.dtype).tiny)).max())


def _interleave(even: Tensor, odd: Tensor) -> Tensor:
    """Rows even[0], odd[0], even[1], ..., even[-1]."""
    out = torch.empty(even.shape[0] + odd.shape[0], *even.shape[1:], dtype=even.dtype,
                      device=even.device)
    out[0::2], out[1::2] = even, odd
    return out


def _barycentric(nodes: Tensor, x: Tensor) -> Tensor:
    """The (len(x), m) matrix of barycentric interpolation at x from the m Chebyshev points
    of the second kind ``nodes`` (weights (-1)^j, halved at the ends)."""
    m = nodes.shape[0]
    w = torch.ones(m, dtype=nodes.dtype, device=nodes.device)
    w[1::2] = -1
    w[0] *= 0.5
    w[-1] *= 0.5
    diff = x[:, None] - nodes[None, :]
    terms = w / diff
    terms /= terms.sum(dim=1, keepdim=True)
    hit = (diff == 0).any(dim=1)  # (x at a point: that point's value)
    if bool(hit.any()):
        terms[hit] = (diff[hit] == 0).to(terms.dtype)
    return terms


def direct_coefficients(f: Callable[[Tensor], Tensor], q: Tensor, degree: int,
                        with_energy: bool = False):
    """``coefficients`` by the rule's sums at every variance (and E[f^2], with_energy).

    The rule is symmetric and h_k(-z) = (-1)^k h_k(z): the even degrees are sums of the even
    part f(z) + f(-z) over the positive nodes, the odd ones of the odd part, which halves the
    products of the full sums."""
    z, w, even_basis, odd_basis = _rule_tensors(degree, q.dtype, q.device)
    values = f(q.clamp(min=0).sqrt()[:, None] * z[None, :])  # (N, M)
    half = z.shape[0] // 2
    upper, lower = values[:, half:], values[:, :half].flip(1)
    a = torch.empty(values.shape[0], degree + 1, dtype=values.dtype, device=values.device)
    a[:, 0::2] = (upper + lower) @ even_basis
    a[:, 1::2] = (upper - lower) @ odd_basis
    energy = (values * values) @ w
    # f^2 must have decayed where the Gaussian weight is below 1e-21 (|z| > 10): otherwise
    # the expectation may diverge, and the rule's finite sum means nothing
    far = (values[:, z.abs() > FAR] ** 2) @ w[z.abs() > FAR]
    tail = (energy[:, None] - torch.cumsum(a * a, dim=1)).clamp_(min=0)
    safe = torch.where(energy > 0, energy, torch.ones_like(energy))
    tail = torch.where(energy[:, None] > 0, tail / safe[:, None], torch.zeros_like(tail))
    bad = ~(far <= 1e-15 * energy) | ~torch.isfinite(energy)
    tail = tail.masked_fill_(bad[:, None], math.inf)
    return (a, tail, energy) if with_energy else (a, tail)


def horner(a: Tensor, b: Tensor, rho: Tensor, degree: int, low: int | None = None,
           split: float = 1.0) -> Tensor:
    """sum_{k <= degree} a[k] b[k] rho^k, a and b (K + 1, ...) broadcasting against rho.

    Where a varies along leading axes of rho and b along trailing ones (a tile of pairs of
    positions), the sum runs on the (rows, columns) matrix: broadcasting a column against a
    row is several times faster than along scattered axes. There, with ``low``, all entries
    get the terms up to ``low`` and only those with |rho| > ``split`` the terms beyond (as
    vectors of those entries): most pairs of positions are far less correlated than the
    most correlated few, which alone need the high degree."""
    shape = rho.shape
    a, b, rho = _as_matrix(a[:degree + 1], b[:degree + 1], rho)
    matrix = rho.ndim == 2 and a.ndim == 3 and b.ndim == 3 and a.shape[2] == b.shape[1] == 1
    if low is None or low >= degree or not matrix:
        low = degree  # (the split needs a column of rows against a row of columns)
    acc = a[low] * b[low]
    acc = acc.expand(rho.shape).clone() if acc.shape != rho.shape else acc
    for k in range(low - 1, -1, -1):
        acc.mul_(rho).addcmul_(a[k], b[k])
    if low < degree:
        i, j = (rho.abs() > split).nonzero(as_tuple=True)
        if i.numel():
            x = rho[i, j]
            rows, cols = a[low + 1:, i, 0], b[low + 1:, 0, j]
            extra = rows[-1] * cols[-1]
            for k in range(degree - low - 2, -1, -1):
                extra.mul_(x).addcmul_(rows[k], cols[k])
            acc[i, j] += extra * x.pow(low + 1)
    return acc.reshape(shape)


def _as_matrix(a: Tensor, b: Tensor, rho: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(a (K+1, R, 1), b (K+1, 1, C), rho (R, C)) where the axes along which a varies all
    precede those along which b varies; the arguments unchanged otherwise."""
    dims = rho.shape
    if a.ndim != rho.ndim + 1 or b.ndim != rho.ndim + 1:
        return a, b, rho
    rows = [i for i, n in enumerate(dims) if n > 1 and a.shape[i + 1] > 1]
    cols = [i for i, n in enumerate(dims) if n > 1 and b.shape[i + 1] > 1]
    if any(i in cols for i in rows) or (rows and cols and max(rows) > min(cols)) \
            or any(n > 1 and i not in rows + cols for i, n in enumerate(dims)):
        return a, b, rho
    r = math.prod(dims[i] for i in rows)
    c = math.prod(dims[i] for i in cols)
    return (a.reshape(a.shape[0], r, 1), b.reshape(b.shape[0], 1, c),
            rho.reshape(r, c))
