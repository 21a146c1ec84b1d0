"""Runs of identical blocks: deep networks at the cost of a few layers, and exact fixed points.

A fully-connected network is Dense_0 followed by L identical blocks [phi, Dense(w, b)] in the NTK
parameterization (the readout is the last block's Dense). Two facts make such a run cheap at any
depth and keep its kernel exact:

1. Fixed points of the variance map. An input's pre-activation variance moves by
   q -> F(q) = w^2 E[phi(sqrt(q) z)^2] + b^2. Where F(q) = q to rounding (|F(q) - q| <=
   ``SNAP_RTOL`` q, and the change has stopped shrinking), the input sits at a fixed point and
   its variance is kept there exactly for the rest of the run. At an unstable fixed point
   (F'(q) > 1; e.g. the normalized setting of the infinite-depth paper: E[phi(z)^2] = 1, w = 1,
   b = 0 on inputs with x.x/d = 1) plain iteration would amplify the last bit by F'(q)^L; at a
   stable one the iteration goes on until the change stops shrinking, which loses nothing.
2. Once every input's variance is fixed at one common q* (or, for a positively homogeneous phi
   without bias, at once: its correlation map does not depend on the variances), every block
   maps the correlations of the pairs by one normalized dual,
       f(rho) = (w^2 E[phi(u) phi(v)] + b^2) / q*,  (u, v) of variances q*, covariance q* rho,
   and the normalized NTK T = Theta / q* by T' = f'(S) T + f(S): the recursion of
   ``infnet.deep_kernels``, which jumps over layers (stationary points, Koenigs linearizations,
   the marginal class's tables in log theta). The run then costs at most ``EXPLICIT_BLOCKS``
   blocks on each pair, layer by layer with the angle carried exactly, plus one jump.
Runs whose variances never settle (growing or critical variance maps) are computed layer by
layer, as before.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

import torch

from ..activations import Activation
from ..numerics.moments import geometric_mean
from .layers import Dense, Moments, Nonlinearity, check_variance_range, positively_homogeneous

Tensor = torch.Tensor

#: a relative change of the variance below this (once it no longer shrinks) is a fixed point
SNAP_RTOL = 1e-13
#: blocks computed layer by layer on every pair before the jump (near-parallel pairs leave the
#: neighbourhood of rho = 1 by then, where the jump works on correlations, not angles)
EXPLICIT_BLOCKS = 64
_EPS = 2.0**-52


def same_dense(a, b) -> bool:
    """Two Dense layers with one kernel map (NTK parameterization: the width does not enter)."""
    return (isinstance(a, Dense) and isinstance(b, Dense) and a.parameterization == "ntk"
            and b.parameterization == "ntk" and a.w_std == b.w_std
            and (a.b_std or 0.0) == (b.b_std or 0.0))


def find_runs(layers: tuple) -> list:
    """The layers as segments: single layers, and ``Run`` values for every stretch of two or
    more identical [Nonlinearity, Dense] blocks (NTK parameterization)."""
    out, i = [], 0
    while i < len(layers):
        layer = layers[i]
        if isinstance(layer, Nonlinearity) and i + 1 < len(layers) and \
                same_dense(layers[i + 1], layers[i + 1]):
            j = i + 2
            while (j + 1 < len(layers) and isinstance(layers[j], Nonlinearity)
                   and (layers[j].act is layer.act or layers[j].act == layer.act)
                   and same_dense(layers[j + 1], layers[i + 1])):
                j += 2
            count = (j - i) // 2
            if count >= 2:
                out.append(Run(layer.act, layers[j - 1], count))
                i = j
                continue
        out.append(layer)
        i += 1
    return out


@dataclass
class RunTrace:
    """The diagonal pass through a run, per input: ``pre[k]`` the pre-activation variance
    before block k (k = 0..explicit), ``post[k]`` the activation's output variance in block k,
    ``q_out`` and ``ntk`` after the run; ``explicit`` blocks are computed layer by layer on the
    pairs, the rest by one jump of kind ``jump`` ("homogeneous", "fixed", "zero" or None);
    ``freeze_at[i]`` the block at which input i's variance was fixed (-1: never);
    ``settled``: from this block on every variance is fixed, and pairs away from rho = +-1
    (``NEAR_PARALLEL``) may jump already (None: only after the explicit blocks)."""

    pre: list
    post: list
    q_out: Tensor
    ntk: Tensor
    explicit: int
    jump: str | None = None
    q_star: float | None = None
    freeze_at: Tensor | None = None
    settled: int | None = None

    def view(self, index, axis: int) -> RunTrace:
        take = _taker(index, axis)
        return RunTrace([take(q) for q in self.pre], [take(q) for q in self.post],
                        take(self.q_out), take(self.ntk), self.explicit, self.jump, self.q_star,
                        self.freeze_at, self.settled)


def _taker(index, axis: int):
    def take(t: Tensor) -> Tensor:
        if t.ndim == 0:
            return t
        t = t[index]
        return t[:, None] if axis == 0 else t[None, :]
    return take


@dataclass(frozen=True)
class Run:
    """``count`` identical blocks [act, dense] (see the module docstring)."""

    act: Activation
    dense: Dense
    count: int
    _limits: dict = field(default_factory=dict, repr=False, compare=False)

    def __repr__(self) -> str:
        return f"{self.count} x [{self.act!r}, {self.dense!r}]"

    @property
    def w2(self) -> float:
        return self.dense.w_std**2

    @property
    def b2(self) -> float:
        return (self.dense.b_std or 0.0) ** 2

    @cached_property
    def homogeneous(self) -> bool:
        """No bias and a positively homogeneous unit of degree 1 (the ReLU family)."""
        return self.b2 == 0.0 and positively_homogeneous(self.act)

    # ---- the diagonal pass -----------------------------------------------------------------
    def _block_diag(self, q: Tensor, t: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(post, Kdot, q', t'): one block on the diagonal."""
        K, Kdot = self.act.diagonal_kernel(q)
        q_next = self.w2 * K + self.b2
        return K, Kdot, q_next, self.w2 * Kdot * t + q_next

    def _explicit_count(self, start: int, marginal: bool) -> int:
        e = start + min(EXPLICIT_BLOCKS, self.count - start)
        if marginal:  # the marginal class jumps only from MARGINAL_DEPTH layers on
            from ..depth.deep import MARGINAL_DEPTH

            if self.count - e < MARGINAL_DEPTH:
                return self.count
        return e

    def diagonal(self, q: Tensor, t: Tensor, like: RunTrace | None = None) -> RunTrace:
        """The run on each input's variance q and NTK diagonal t (tensors of one shape).
        ``like``: take the freezing decisions of that trace (the conditioning check)."""
        tr = self._diagonal(q, t, like)
        for pre in tr.pre[:-1]:
            check_variance_range(self.act, pre)
        return tr

    def _diagonal(self, q: Tensor, t: Tensor, like: RunTrace | None) -> RunTrace:
        if self.count > EXPLICIT_BLOCKS and self.homogeneous:
            lim = self.limit(None)
            e = self._explicit_count(0, lim.marginal)
            pre, post = [q], []
            for _ in range(e):
                K, _, q, t = self._block_diag(q, t)
                post.append(K)
                pre.append(q)
            if e == self.count:
                return RunTrace(pre, post, q, t, e)
            m = self.count - e
            one = torch.ones((), dtype=q.dtype, device=q.device)
            growth = self.w2 * float(self.act.variance_map(one))  # q' = growth q
            q_out = q * torch.exp(torch.tensor(m * math.log(growth), dtype=q.dtype, device=q.device))
            T = self._jump_diagonal(lim, _safe_ratio(t, q), m)
            return RunTrace(pre, post, q_out, q_out * T, e, "homogeneous")
        return self._diagonal_fixed(q, t, like)

    def _diagonal_fixed(self, q: Tensor, t: Tensor, like: RunTrace | None) -> RunTrace:
        pre, post = [q], []
        frozen = torch.zeros(q.shape, dtype=torch.bool, device=q.device)
        freeze_at = torch.full(q.shape, -1, dtype=torch.int64, device=q.device)
        held = torch.zeros_like(q)  # post of frozen inputs
        prev = torch.full_like(q, math.inf)
        k = 0
        while k < self.count:
            if like is None and bool(frozen.all()):
                break
            if like is not None and k >= like.explicit:
                break
            K, Kdot = self.act.diagonal_kernel(q)
            q_next = self.w2 * K + self.b2
            delta = (q_next - q).abs()
            if like is None:
                new = (~frozen & (delta <= SNAP_RTOL * q)
                       & ((delta <= 8 * _EPS * q) | (delta >= prev)))
            else:
                new = like.freeze_at == k
            freeze_at = torch.where(new, k, freeze_at)
            held = torch.where(new, K, held)
            frozen = frozen | new
            q_next = torch.where(frozen, q, q_next)
            post.append(torch.where(frozen, held, K))
            t = self.w2 * Kdot * t + q_next
            pre.append(q_next)
            prev, q = delta, q_next
            k += 1
        if like is not None:
            return self._finish(pre, post, q, t, freeze_at, like.explicit, like.jump, like.q_star,
                                like.settled)
        if not bool(frozen.all()):  # never settled: layer by layer to the end
            return RunTrace(pre, post, q, t, k, None, None, freeze_at)
        lo, hi = float(q.min()), float(q.max())
        q_star = None
        if hi - lo <= SNAP_RTOL * hi:
            q_star = 0.5 * (lo + hi)
            q = torch.full_like(q, q_star)
            pre[-1] = q
        jump = None if q_star is None else "zero" if q_star == 0.0 else "fixed"
        marginal = jump == "fixed" and self.limit(q_star).marginal
        e = self._explicit_count(k, marginal) if jump else self.count
        # the correlations of the marginal class creep to 1: they stay in angle form throughout
        settled = k if jump == "fixed" and not marginal and e > k else None
        return self._finish(pre, post, q, t, freeze_at, e, jump, q_star, settled)

    def _finish(self, pre, post, q, t, freeze_at, e, jump, q_star, settled=None) -> RunTrace:
        """Blocks len(post)..e-1 at the fixed variances, then the jump over the rest."""
        K, Kdot = self.act.diagonal_kernel(q)
        for _ in range(len(post), e):
            t = self.w2 * Kdot * t + q
            post.append(post[-1] if post else K)
            pre.append(q)
        m = self.count - e
        if m == 0:
            return RunTrace(pre, post, q, t, e, None, q_star, freeze_at)
        if jump == "zero":
            mu = self.w2 * float(Kdot.reshape(-1)[0])
            return RunTrace(pre, post, q, t * mu**m, e, jump, q_star, freeze_at)
        T = self._jump_diagonal(self.limit(q_star), t / q_star, m)
        return RunTrace(pre, post, q, q_star * T, e, jump, q_star, freeze_at, settled)

    def _jump_diagonal(self, lim, T: Tensor, m: int) -> Tensor:
        from ..depth.deep import deep_kernels

        one = torch.ones_like(T)
        return deep_kernels(lim, one, m, ntk=T)[1]

    def limit(self, q_star: float | None):
        """The infinite-depth object of the block's normalized dual: the activation's own for a
        homogeneous unit without bias (q_star None), else the block's at the fixed point."""
        from ..depth.limit import LayerMap, layer_limit, limit

        if q_star not in self._limits:
            self._limits[q_star] = (limit(self.act) if q_star is None else
                                    layer_limit(LayerMap.block(self.act, self.dense.w_std,
                                                               self.dense.b_std or 0.0, q_star)))
        return self._limits[q_star]

    # ---- pairs -------------------------------------------------------------------------------
    def pairs(self, m: Moments, tr1: RunTrace, tr2: RunTrace) -> Moments:
        """The run on pairs whose input moments are m (their variances: tr1.pre[0], tr2.pre[0]).
        Once every variance is fixed (``settled``), pairs away from rho = +-1 jump at once; the
        explicit blocks, in angle form, are for the near-parallel ones."""
        start = tr1.explicit if tr1.settled is None else tr1.settled
        m = self._blocks(m, tr1.post, tr2.post, tr1.pre, tr2.pre, 0, start)
        if start == tr1.explicit:
            return self._jump(m, tr1, tr2, self.count - start)
        far = (m.theta > NEAR_PARALLEL) & (m.theta < math.pi - NEAR_PARALLEL)
        if bool(far.all()):
            return self._jump(m, tr1, tr2, self.count - start)
        if not bool(far.any()):
            m = self._blocks(m, tr1.post, tr2.post, tr1.pre, tr2.pre, start, tr1.explicit)
            return self._jump(m, tr1, tr2, self.count - tr1.explicit)
        shape = far.shape
        out = [torch.empty(shape, dtype=m.nngp.dtype, device=m.nngp.device) for _ in range(3)]
        for mask, ends in ((far, None), (~far, tr1.explicit)):
            sub = _select(m, mask)
            if ends is not None:  # near-parallel: the explicit blocks first, in angle form
                pick = [[_masked(q, mask, shape) for q in qs]
                        for qs in (tr1.post, tr2.post, tr1.pre, tr2.pre)]
                sub = self._blocks(sub, *pick, start, ends)
            sub = self._jump(sub, tr1, tr2, self.count - (ends or start), mask)
            for o, v in zip(out, (sub.nngp, sub.ntk, sub.theta), strict=True):
                o[mask] = v
        return Moments(out[0], out[1], tr1.q_out, tr2.q_out, self.dense.width, out[2])

    def _blocks(self, m: Moments, post1, post2, pre1, pre2, k0: int, k1: int) -> Moments:
        unit = Nonlinearity(self.act)
        for k in range(k0, k1):
            m = unit.apply(m, post1[k], post2[k])
            m = self.dense.apply(m, pre1[k + 1], pre2[k + 1])
        return m

    def _jump(self, m: Moments, tr1: RunTrace, tr2: RunTrace, rest: int, mask=None) -> Moments:
        """``rest`` blocks at once (``mask``: m holds only those entries of the tile)."""
        if rest == 0:
            return m
        if tr1.jump == "zero":
            mu = self.w2 * float(self.act.diagonal_kernel(torch.zeros((), dtype=m.ntk.dtype))[1])
            nngp = torch.zeros_like(m.nngp)
            theta = torch.full_like(m.theta, math.pi / 2)
            return Moments(nngp, m.ntk * mu**rest, tr1.q_out, tr2.q_out, self.dense.width, theta)
        from ..depth.deep import deep_kernels

        if tr1.jump == "homogeneous":
            r_in = geometric_mean(tr1.pre[-1], tr2.pre[-1])
            r_out = geometric_mean(tr1.q_out, tr2.q_out)
            lim = self.limit(None)
        else:
            r_in = r_out = torch.tensor(tr1.q_star, dtype=m.nngp.dtype, device=m.nngp.device)
            lim = self.limit(tr1.q_star)
        S = _safe_ratio(m.nngp, r_in).clamp(-1.0, 1.0)
        T = _safe_ratio(m.ntk, r_in)
        S, T, theta = torch.broadcast_tensors(S, T, m.theta)
        S, T = deep_kernels(lim, S, rest, ntk=T, theta=theta)
        theta = torch.atan2(((1 - S) * (1 + S)).clamp(min=0).sqrt(), S)
        q1, q2 = (tr1.q_out, tr2.q_out) if mask is None else (None, None)
        return Moments(r_out * S, r_out * T, q1, q2, self.dense.width, theta)


#: pairs within this angle of 0 or pi go through the explicit blocks in angle form before the
#: jump; the others jump as soon as every variance is fixed
NEAR_PARALLEL = 0.05


def _select(m: Moments, mask: Tensor) -> Moments:
    """The entries ``mask`` of a tile's moments, as 1-D tensors."""
    shape = mask.shape
    return Moments(*(_masked(t, mask, shape) for t in (m.nngp, m.ntk, m.q1, m.q2)), m.width,
                   _masked(m.theta, mask, shape))


def _masked(t: Tensor, mask: Tensor, shape) -> Tensor:
    return t.expand(shape)[mask] if t.ndim else t


def _safe_ratio(a: Tensor, b: Tensor) -> Tensor:
    """a / b, with 0 where b = 0 (a zero input: its pre-activations are 0 too)."""
    return torch.where(b > 0, a / torch.where(b > 0, b, torch.ones_like(b)), torch.zeros_like(a))
