"""Spatial geometry of convolutions and pooling, and their maps on spatial covariances.

A spatial kernel of a tile of pairs is a tensor whose trailing axes are spatial:
- the diagonal layout ``(..., *S)``: the covariance of the two inputs at the same position;
- the full layout ``(..., *S, *S)``: position i of the first input with position j of the
  second (pooling reads these).
A filter of size k, stride s and padding maps output position i to input positions
s i + d - pad_lo, d = 0..k-1 (``Window``). A convolution shifts both positions of a pair by
the same offset d, a pooling each by its own; both factorize by spatial dimension, so a
k x k filter costs k + k shifted sums of the covariance, not k^2 (docs/theory/architectures.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

Tensor = torch.Tensor

PADDINGS = ("SAME", "VALID", "CIRCULAR")


@dataclass(frozen=True)
class Window:
    """One spatial dimension of a filter: ``size`` input positions, filter ``k``, ``stride``,
    ``padding``; ``out`` output positions and ``pad_lo`` zeros (or wrapped positions) before
    the first input position.

    VALID keeps the output positions where the filter fits; SAME and CIRCULAR keep
    ceil(size / stride) of them, padding (k - 1 + ...) positions split as evenly as possible,
    the extra one after (the convention of TensorFlow and neural-tangents). SAME pads with
    zeros, CIRCULAR wraps around.
    """

    size: int
    k: int
    stride: int
    padding: str

    @property
    def out(self) -> int:
        if self.padding == "VALID":
            return (self.size - self.k) // self.stride + 1
        return -(-self.size // self.stride)

    @property
    def pad_total(self) -> int:
        if self.padding == "VALID":
            return 0
        return max((self.out - 1) * self.stride + self.k - self.size, 0)

    @property
    def pad_lo(self) -> int:
        return self.pad_total // 2

    def check(self, what: str) -> None:
        if self.padding == "VALID" and self.k > self.size:
            raise ValueError(f"{what} of size {self.k} does not fit in an input of size "
                             f"{self.size} with padding 'VALID': use padding='SAME' or a smaller "
                             "filter")
        if self.padding == "CIRCULAR" and self.pad_total > self.size:
            raise ValueError(f"{what} of size {self.k} wraps around an input of size "
                             f"{self.size} more than once (padding 'CIRCULAR'): use a filter no "
                             "larger than the input")


def windows(shape: tuple[int, ...], k: tuple[int, ...], strides: tuple[int, ...], padding: str
            ) -> tuple[Window, ...]:
    return tuple(Window(n, kk, s, padding) for n, kk, s in zip(shape, k, strides, strict=True))


def window_sum(t: Tensor, axes: tuple[int, ...], w: Window, band=None) -> Tensor:
    """sum_d t[s i + d - pad_lo] on every axis of ``axes`` with one offset d for all of them
    (a convolution's pair of positions; one axis: a box filter), out-of-range positions zero
    (SAME) or wrapped (CIRCULAR). The axes become ``w.out`` long. ``band`` (a
    ``bands.BandStep``): axes[0] holds only some rows, and keeps those the step gives (both
    axes of a pair for a square band)."""
    shape = list(t.shape)
    for ax in axes:
        shape[ax] = w.out
    banded = () if band is None else axes[:2] if band.source.square else axes[:1]
    whole = axes[len(banded):]
    for ax in banded:
        shape[ax] = len(band.band.rows)
    s = w.stride
    # the offset that covers all
    first = w.pad_lo if band is None and s == 1 and w.out == w.size else None
    if first is not None:
        out = t.clone()
    else:
        out = torch.zeros(shape, dtype=t.dtype, device=t.device)
    for d in range(w.k):
        if d == first:
            continue
        off = d - w.pad_lo
        term, dst, adds = t, [slice(None)] * t.ndim, []
        for ax in banded:
            got = _band_terms(term, ax, band, d)
            if got is None:
                break
            term, rows = got
            if isinstance(rows, slice):
                dst[ax] = rows
            else:
                adds.append((ax, rows))
        else:
            if w.padding == "CIRCULAR":
                idx = (s * torch.arange(w.out, device=t.device) + off) % w.size
                for ax in whole:
                    term = term.index_select(ax, idx)
            elif whole:
                lo = max(0, -(off // s))  # the first i with s i + off >= 0
                hi = min(w.out - 1, (w.size - 1 - off) // s)
                if lo > hi:
                    continue
                src = [slice(None)] * t.ndim
                for ax in whole:
                    src[ax] = slice(s * lo + off, s * hi + off + 1, s)
                    dst[ax] = slice(lo, hi + 1)
                term = term[tuple(src)]
            _add(out[tuple(dst)], term, adds)
    return out


def _add(view: Tensor, term: Tensor, adds: list) -> None:
    """view += term, with the axes of ``adds`` (axis, rows) scattered to those rows."""
    if not adds:
        view += term
        return
    (ax, rows), *rest = adds
    if rest:  # (two scattered axes: the second into a zero slab first)
        slab = view.new_zeros(*(len(rows) if i == view.ndim + ax or i == ax else n
                                for i, n in enumerate(view.shape)))
        _add(slab, term, rest)
        term = slab
    view.index_add_(ax, rows, term)


def _band_terms(t: Tensor, ax: int, step, d: int):
    """(the rows of t on axis ``ax`` that offset d reads, the output rows they add to), or
    None where offset d reads only padding (``bands.BandStep``)."""
    term = step.terms[d]
    if term is None:
        return None
    dst, src = term
    if isinstance(src, slice):
        index = [slice(None)] * t.ndim
        index[ax] = src
        term = t[tuple(index)]
    else:
        term = t.index_select(ax, src.to(t.device))
    return term, dst if isinstance(dst, slice) else dst.to(t.device)


def conv_sum(t: Tensor, wins: tuple[Window, ...], full: bool, scale: float = 1.0,
             shift: float = 0.0, band=None) -> Tensor:
    """scale times the mean over a filter's offsets of t at both positions shifted alike (full
    layout) or at the one position (diagonal layout), plus shift; one spatial dimension at a
    time. ``band``: the first position holds some rows of the first spatial axis
    (``window_sum``)."""
    n = len(wins)
    for i, w in enumerate(wins):
        axes = (i - 2 * n, i - n) if full else (i - n,)
        t = window_sum(t, axes, w, band if i == 0 else None)
    t.mul_(scale / math.prod(w.k for w in wins))
    return t.add_(shift) if shift else t


def pool_sum(t: Tensor, wins: tuple[Window, ...], band=None) -> Tensor:
    """The mean over a pooling window of each position of a pair separately (full layout);
    ``band`` as in ``conv_sum``."""
    n = len(wins)
    for i, w in enumerate(wins):
        for ax in (i - 2 * n, i - n):
            banded = band is not None and (ax == -2 * n or (ax == -n and band.source.square))
            t = window_sum(t, (ax,), w, band if banded else None)
    return t / math.prod(w.k for w in wins) ** 2


def spatial_diagonal(t: Tensor, ndim: int) -> Tensor:
    """The same-position entries (..., *S) of a full-layout tensor (..., *S, *S), a copy (a
    view would keep the whole P x P tensor alive in the records of the self pass)."""
    shape = t.shape[t.ndim - ndim:]
    p = math.prod(shape)
    flat = t.reshape(*t.shape[:t.ndim - 2 * ndim], p, p)
    diag = flat.diagonal(dim1=-2, dim2=-1).clone()
    return diag.reshape(*t.shape[:t.ndim - 2 * ndim], *shape)


def embed_diagonal(t: Tensor, ndim: int) -> Tensor:
    """The full-layout tensor (..., *S, *S) that is t (..., *S) at equal positions, 0 elsewhere."""
    shape = t.shape[t.ndim - ndim:]
    p = math.prod(shape)
    lead = t.shape[:t.ndim - ndim]
    out = torch.zeros(*lead, p, p, dtype=t.dtype, device=t.device)
    out.diagonal(dim1=-2, dim2=-1).copy_(t.reshape(*lead, p))
    return out.reshape(*lead, *shape, *shape)


def rows_view(q: Tensor, ndim: int, full: bool, axis: int) -> Tensor:
    """Per-input variance maps q (m, *S) as the rows (axis 0: (m, 1, *S[, 1...])) or columns
    (axis 1: (1, m, [1..., ]*S)) of a tile of pairs."""
    q = q[:, None] if axis == 0 else q[None, :]
    if not full or ndim == 0:
        return q
    ones = (1,) * ndim
    shape = q.shape[2:]
    return q.reshape(*q.shape[:2], *shape, *ones) if axis == 0 else \
        q.reshape(*q.shape[:2], *ones, *shape)


def self_view(q: Tensor, ndim: int, side: int) -> Tensor:
    """Variance maps q (m, *S) as the first (side 0: (m, *S, 1...)) or second (side 1:
    (m, 1..., *S)) position of each input with itself (full layout)."""
    ones = (1,) * ndim
    shape = q.shape[1:]
    return q.reshape(q.shape[0], *shape, *ones) if side == 0 else \
        q.reshape(q.shape[0], *ones, *shape)


def with_diagonal(t: Tensor, v: Tensor, ndim: int) -> Tensor:
    """t (..., *S, *S) with its same-position entries replaced by v (..., *S)."""
    t = t.contiguous()
    shape = t.shape[t.ndim - ndim:]
    p = math.prod(shape)
    lead = t.shape[:t.ndim - 2 * ndim]
    t.view(*lead, p, p).diagonal(dim1=-2, dim2=-1).copy_(v.reshape(*lead, p))
    return t
