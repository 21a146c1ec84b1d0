"""The kernel maps of a smooth activation without a closed form as Hermite series, for tiles
of pairs whose variances differ from pair to pair (the positions of spatial networks, the
inputs of different norms of fully-connected ones: ``numerical.pair_kernel``).

K = sum_k a_k(q1) a_k(q2) rho^k and Kdot = sum_k d_k(q1) d_k(q2) rho^k, a_k and d_k the
Hermite coefficients of phi(sqrt(q) z) and phi'(sqrt(q) z) (``numerics.hermite``). A
``Series`` holds them for the variances of one side of a tile, computed once per position at
the smallest degree of ``DEGREES`` after which every position's tail energy is below
``TOLERANCE`` of its total (the function is then resolved, and the Gauss-Hermite rule, which
resolves it to about 7 times that degree, gives the coefficients to rounding). Positions that
even the last degree does not resolve (a steep unit at a large variance) are left to the
quadrature. ``TileSeries.kernel`` evaluates a slab with the fewest terms whose truncation
bound, |rho|^(k+1) t1(k) t2(k) relative to sqrt(E[phi(u)^2] E[phi(v)^2]), is below
``TOLERANCE`` at the slab's largest |rho|: pairs of different inputs, whose |rho| is well
below 1, need a fraction of the terms.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch

from ..numerics import hermite

Tensor = torch.Tensor

#: the truncation bound, relative to sqrt(E[phi(u)^2] E[phi(v)^2]) (resp. phi'), accepted
TOLERANCE = 1e-12
#: entries with |rho| above this get the terms beyond those |rho| = SPLIT needs separately
SPLIT = 0.5
#: the degrees tried for a side's coefficients, until its tails are below ``RESOLVED``
DEGREES = (32, 64, 128, 256, 512)
#: tails after which every correlation, rho = +-1 included, is within ``TOLERANCE``
RESOLVED = TOLERANCE ** 0.5
#: a position whose tail after the last degree is above this is left to the quadrature: the
#: rule's aliasing, about the tail at 7 times the degree, would exceed ``TOLERANCE``
ACCURATE = 1e-5


def supports_series(act) -> bool:
    """Whether the series applies: no closed form (which is faster) and phi smooth (no kink,
    jump or singular point, where the coefficients decay too slowly)."""
    return (act.closed_form is None and not act.kinks and not act.jumps
            and not getattr(act, "singular", ()))


@dataclass(frozen=True)
class Series:
    """The coefficients of one side of a tile: a, d (degree + 1, *shape) of phi and phi', the
    inverse standard deviations (*shape; 0 where q = 0, whose rho is taken as 0), the square
    roots of the largest tail fractions after each degree over the positions resolved to
    ``ACCURATE``, wa and wd (degree + 1,), and those of each position after the degree
    built, pa and pd (*shape; stale once truncated, which only a resolved side is)."""

    a: Tensor
    d: Tensor
    inv_sqrt: Tensor
    wa: Tensor
    wd: Tensor
    pa: Tensor
    pd: Tensor

    @property
    def degree(self) -> int:
        return self.a.shape[0] - 1

    @classmethod
    def build(cls, act, q: Tensor, degree: int | None = None,
              resolved: float = RESOLVED) -> Series:
        """The coefficients at the variances q (any shape), up to ``degree`` or else the
        first of ``DEGREES`` whose tails are below ``resolved`` at every position (module
        docstring)."""
        flat = q.reshape(-1)
        deg = DEGREES[0] if degree is None else degree
        while True:
            coef, tails = [], []
            for f in (act, act.derivative):
                c, t = hermite.coefficients(f, flat, deg)
                coef.append(c)
                tails.append(t.sqrt_())
            tail = torch.maximum(*tails)
            if degree is not None or float(tail[:, -1].max()) <= resolved \
                    or deg == DEGREES[-1]:
                break
            deg = _next_degree(tail.max(dim=0).values, deg, resolved)
        shape = (deg + 1, *q.shape)
        a, d = (c.T.contiguous().reshape(shape) for c in coef)
        good = (tail[:, -1] <= ACCURATE)[:, None]
        wa, wd = (t.where(good, torch.zeros_like(t)).max(dim=0).values for t in tails)
        inv = torch.where(q > 0, q.clamp(min=torch.finfo(q.dtype).tiny).rsqrt(),
                          torch.zeros_like(q))
        return cls(a, d, inv, wa, wd, tails[0][:, -1].reshape(q.shape),
                   tails[1][:, -1].reshape(q.shape))

    def resolution(self, resolved: float = RESOLVED) -> int:
        """The first degree of ``DEGREES`` (up to this one's) whose tails are below
        ``resolved`` at every position."""
        if bool(self.unresolved().any()):
            return self.degree
        for d in DEGREES:
            if d < self.degree and max(float(self.wa[d]), float(self.wd[d])) <= resolved:
                return d
        return self.degree

    def truncated(self, degree: int) -> Series:
        """The coefficients up to ``degree`` (<= this one's)."""
        return dataclasses.replace(self, a=self.a[:degree + 1], d=self.d[:degree + 1],
                                   wa=self.wa[:degree + 1], wd=self.wd[:degree + 1])

    def unresolved(self) -> Tensor:
        """The positions whose tail after the degree built is above ``ACCURATE`` (or NaN: a
        function that overflows at the rule's nodes, which the quadrature then judges)."""
        return ~(self.pa <= ACCURATE) | ~(self.pd <= ACCURATE)

    def viewed(self, shape: tuple) -> Series:
        """The same coefficients for variances reshaped to ``shape`` (same order)."""
        lead = self.degree + 1
        return dataclasses.replace(
            self, a=self.a.reshape(lead, *shape), d=self.d.reshape(lead, *shape),
            inv_sqrt=self.inv_sqrt.reshape(shape), pa=self.pa.reshape(shape),
            pd=self.pd.reshape(shape))

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size()
                   for t in (self.a, self.d, self.inv_sqrt, self.pa, self.pd))

    def take(self, index: tuple) -> Series:
        """The coefficients of a slab ``index`` of the broadcast tile (size-1 axes kept)."""
        return dataclasses.replace(
            self, a=_slab(self.a, index, 1), d=_slab(self.d, index, 1),
            inv_sqrt=_slab(self.inv_sqrt, index, 0), pa=_slab(self.pa, index, 0),
            pd=_slab(self.pd, index, 0))


class SeriesCache:
    """Sides' coefficients kept between the tiles of one kernel (an input block meets every
    other block), the oldest dropped beyond ``limit`` bytes."""

    def __init__(self, limit: int):
        self.limit, self.used, self.store = limit, 0, {}

    def get(self, key, degree: int) -> Series | None:
        s = self.store.get(key)
        return s if s is not None and s.degree >= degree else None

    def put(self, key, s: Series) -> None:
        old = self.store.pop(key, None)
        self.used -= 0 if old is None else old.nbytes
        while self.store and self.used + s.nbytes > self.limit:
            self.used -= self.store.pop(next(iter(self.store))).nbytes
        if s.nbytes <= self.limit:
            self.store[key] = s
            self.used += s.nbytes


class TileSeries:
    """The series of both sides of a tile (variances q1, q2 broadcasting against its
    covariances), at one degree. With a ``cache`` and the sides' ``keys`` (an input block
    and a layer each), a side built for an earlier tile is reused. ``tolerance``: the
    truncation bound accepted (``TOLERANCE``; the sides are resolved to its square root)."""

    def __init__(self, act, q1: Tensor, q2: Tensor, cache: SeriesCache | None = None,
                 keys: tuple | None = None, tolerance: float = TOLERANCE):
        self.act, self.q = act, (q1, q2)
        self.cache, self.keys = cache, keys
        self.tolerance, self.resolved_to = tolerance, math.sqrt(tolerance)
        sides = [self._side(i, None) for i in range(2)]
        # (a cached side may have more terms)
        top = max(s.resolution(self.resolved_to) for s in sides)
        sides = [self._side(i, top) if s.degree < top else s for i, s in enumerate(sides)]
        self.sides = tuple(s.truncated(top) if s.degree > top else s for s in sides)
        self.unresolved = tuple(s.unresolved() for s in self.sides)
        self.resolved = not any(bool(u.any()) for u in self.unresolved)

    def _side(self, i: int, degree: int | None) -> Series:
        """Side i's coefficients: from the cache where it has them (to at least ``degree``),
        else built (at ``degree``, or at the resolution) and cached."""
        q = self.q[i]
        if self.cache is None:
            return Series.build(self.act, q, degree, self.resolved_to)
        # (rows and columns of one block share it)
        key = (*self.keys[i], q.numel(), self.tolerance)
        s = self.cache.get(key, degree or 0)
        if s is None:
            s = Series.build(self.act, q, degree, self.resolved_to)
            self.cache.put(key, s)
        return s if s.a.shape[1:] == q.shape else s.viewed(q.shape)

    def kernel(self, c: Tensor, index: tuple | None = None
               ) -> tuple[Tensor, Tensor, Tensor | None] | None:
        """(K, Kdot, uncertain) at the covariances c of the slab ``index`` of the tile (None:
        all of it): ``uncertain`` None, or a mask of the entries the series cannot bound
        (a position not resolved to ``ACCURATE``; rho near +-1 where the tails after the last
        degree exceed ``RESOLVED``), for the caller to compute otherwise. None where c is not
        a covariance (NaN, |rho| > 1)."""
        s1, s2 = (s if index is None else s.take(index) for s in self.sides)
        rho = c * s1.inv_sqrt * s2.inv_sqrt
        r = float(rho.abs().max()) if rho.numel() else 0.0
        if not r <= 1.0 + 1e-12:  # (NaN too) not a covariance: the checked path says why
            return None
        skip = None if self.resolved else tuple(
            u if index is None else _slab(u, index, 0) for u in self.unresolved)
        ta1, td1, ta2, td2 = s1.wa, s1.wd, s2.wa, s2.wd
        tol = self.tolerance
        ka, kd = _degree(ta1 * ta2, r, tol), _degree(td1 * td2, r, tol)
        uncertain = None
        if skip is not None and bool(skip[0].any() or skip[1].any()):
            uncertain = (skip[0] | skip[1]).expand(rho.shape)
        if ka is None or kd is None:  # rho near +-1 at a position resolved only to ACCURATE
            ka = kd = s1.degree
            power = rho.abs().pow_(ka + 1)
            beyond = ((power * (s1.pa * s2.pa) > tol) | (power * (s1.pd * s2.pd) > tol))
            uncertain = beyond if uncertain is None else uncertain | beyond
        low = SPLIT if r > SPLIT else None
        la, ld = (None, None) if low is None else (_degree(ta1 * ta2, low, tol),
                                                   _degree(td1 * td2, low, tol))
        return (hermite.horner(s1.a, s2.a, rho, ka, la, SPLIT),
                hermite.horner(s1.d, s2.d, rho, kd, ld, SPLIT), uncertain)


def _next_degree(worst: Tensor, degree: int, resolved: float = RESOLVED) -> int:
    """The degree of ``DEGREES`` to try after ``degree``, whose largest tails are ``worst``:
    the one that the decay of the tails, log t ~ a - b sqrt(k) over the second half of the
    degrees (smooth units: a strip of analyticity), predicts to be enough (at least the
    next)."""
    k = torch.arange(degree // 2, degree + 1, dtype=worst.dtype)
    logs = worst[degree // 2:].clamp(min=1e-300).log()
    roots = k.sqrt()
    slope = float(((roots - roots.mean()) * (logs - logs.mean())).sum()
                  / ((roots - roots.mean()) ** 2).sum())
    later = [d for d in DEGREES if d > degree]
    if not slope < 0:
        return later[0]
    need = (math.log(resolved) - float(logs[-1])) / slope + math.sqrt(degree)
    return next((d for d in later if math.sqrt(d) >= 1.1 * need), later[-1])


def _degree(tails: Tensor, r: float, tolerance: float = TOLERANCE) -> int | None:
    """The smallest k with r^(k+1) tails[k] <= tolerance, or None."""
    k = torch.arange(tails.shape[0], dtype=tails.dtype, device=tails.device)
    bound = tails * (r ** (k + 1)) if r > 0 else torch.zeros_like(tails)
    ok = (bound <= tolerance).nonzero()
    return int(ok[0]) if ok.numel() else None


def _slab(t: Tensor, index: tuple, lead: int) -> Tensor:
    """t[index] on the axes (after ``lead`` leading ones) where t is not broadcast."""
    if t.ndim == lead:
        return t
    return t[(slice(None),) * lead + tuple(
        i if t.shape[lead + k] > 1 else slice(None) for k, i in enumerate(index))]
