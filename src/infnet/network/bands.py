"""Bands of positions: a tile of pairs whose first position keeps only some rows.

When one pair's covariance of pairs of positions (P x P entries a layer, full layout) does not
fit the memory budget, the kernel is computed band by band: the first position of each pair
keeps only the rows ``Band.rows`` of its first spatial axis (global row indices), the second
keeps every position. Each layer then maps the rows it can: a filter or pooling window along
that axis (``Window``) gives the output rows all of whose input rows are held (padding rows
count as held: zeros, or wrapped rows for CIRCULAR) (``Band.through``); activations keep the
rows. The rows shrink from layer to layer by the filters' reach, so bands of inputs overlap
by the receptive field, and the rows each band adds are counted once (``Band.count``).

The banded axis of a tile (a, b, *S, *S) is axis 2: the first spatial axis of the first
position (of a diagonal-layout tensor (a, b, *S) too).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from .shifts import Window

Tensor = torch.Tensor

#: the banded axis of a tile (a, b, *S[, *S])
AXIS = 2


@dataclass(frozen=True)
class Band:
    """The rows held (``rows``, increasing global indices of the first spatial axis, whose
    full length is ``size``), the local indices of the rows a band adds to the end layer's
    sums (``count``; None: all), and whether the second position holds the same rows
    (``square``: an input with itself, whose same-position entries are then all in the band)
    rather than every row."""

    rows: Tensor
    size: int
    count: Tensor | None = None
    square: bool = False

    def through(self, w: Window) -> BandStep:
        """The rows after the window w (a filter or pooling window along the banded axis):
        those whose input rows are all held, and for each offset of the window the (output,
        input) local indices of the terms that are not padding."""
        out = torch.arange(w.out)
        local = self._local()
        held = local >= 0
        ok = torch.ones(w.out, dtype=torch.bool)
        positions = []
        for d in range(w.k):
            pos = w.stride * out + d - w.pad_lo
            if w.padding == "CIRCULAR":
                pos = pos % w.size
                inside = torch.ones_like(ok)
            else:
                inside = (pos >= 0) & (pos < w.size)
            pos = pos.clamp(0, w.size - 1)
            ok &= ~inside | held[pos]
            positions.append((pos, inside))
        kept = out[ok]
        terms = []
        for pos, inside in positions:
            use = inside[ok]
            if bool(use.any()):
                terms.append((_as_slice(use.nonzero().flatten()), _as_slice(local[pos[ok][use]])))
            else:
                terms.append(None)
        return BandStep(Band(kept, w.out, square=self.square), terms, self)

    def _local(self) -> Tensor:
        """Each global row's local index, -1 where it is not held."""
        local = torch.full((self.size,), -1, dtype=torch.long)
        local[self.rows] = torch.arange(len(self.rows))
        return local

    def gathered(self, rows: Tensor) -> Tensor:
        """The local indices of the global ``rows`` (all held)."""
        idx = self._local()[rows]
        if bool((idx < 0).any()):
            raise RuntimeError("a band lacks rows it was asked for (an internal error)")
        return idx

    def counted(self) -> Tensor:
        return torch.arange(len(self.rows)) if self.count is None else self.count


@dataclass(frozen=True)
class BandStep:
    """A window's map of a band: the output ``band``, per offset of the window None (all
    padding) or the (output, input) local rows of its terms, and the input band
    (``source``)."""

    band: Band
    terms: list
    source: Band


def _as_slice(idx: Tensor) -> Tensor | slice:
    """Indices that are consecutive as a slice (a view of the rows, not a copy)."""
    n = len(idx)
    first = int(idx[0])
    if n == 1 or bool((idx[1:] - idx[:-1] == 1).all()):
        return slice(first, first + n)
    return idx


def rows_of(t: Tensor, band: Band, ax: int = AXIS) -> Tensor:
    """t (a tensor over every row on axis ``ax``, e.g. a variance map) at the band's rows."""
    return t.index_select(ax, band.rows.to(t.device))


def narrowed(t: Tensor, band: Band, rows: Tensor, nd: int) -> Tensor:
    """A banded tensor kept at the global ``rows`` only (a branch's output brought to the rows
    every branch has; square bands on both positions)."""
    if len(rows) == len(band.rows):
        return t
    local = band.gathered(rows).to(t.device)
    t = t.index_select(AXIS, local)
    return t.index_select(AXIS + nd, local) if band.square else t


def common(bands: list[Band]) -> Band:
    """The rows every band holds (the outputs of branches summed)."""
    held = bands[0].rows
    for b in bands[1:]:
        held = held[torch.isin(held, b.rows)]
    return replace(bands[0], rows=held, count=None)


def _second(band: Band, local: Tensor) -> Tensor:
    """The index, on the second position's first axis, of the rows ``local`` of the first:
    their global rows, or (square bands) the same local rows."""
    return local if band.square else band.rows[local]


def band_diagonal(t: Tensor, band: Band, nd: int, count: Tensor | None = None) -> Tensor:
    """The same-position entries (a, b, r, *S[1:]) of a banded full-layout tile (a, b, r,
    *S[1:], *S or r, *S[1:]) at its local rows ``count`` (default all): row i of the first
    position with row rows[i] of the second (square bands: row i)."""
    local = torch.arange(len(band.rows)) if count is None else count
    t = t.index_select(AXIS + nd, _second(band, local).to(t.device))  # (a, b, r0, *S1, r, *S1)
    if count is not None and len(count) < len(band.rows):
        t = t.index_select(AXIS, local.to(t.device))
    r = len(local)
    rest = t.shape[AXIS + 1:AXIS + nd]
    p = r * _prod(rest)
    flat = t.reshape(*t.shape[:AXIS], p, p)
    return flat.diagonal(dim1=-2, dim2=-1).reshape(*t.shape[:AXIS], r, *rest)


def set_band_diagonal(t: Tensor, v: Tensor, band: Band, nd: int) -> Tensor:
    """t (a banded full-layout tile) with its same-position entries set to v (a, b, r,
    *S[1:])."""
    t = t.contiguous()
    r = len(band.rows)
    rest = tuple(t.shape[AXIS + 1:AXIS + nd])
    q = _prod(rest)
    lead = t.shape[:AXIS]
    # entry (i, u) of the first position meets (rows[i], u) of the second (square: (i, u))
    flat = t.view(*lead, r * q, t.shape[AXIS + nd] * q)
    second = _second(band, torch.arange(r)).to(t.device)
    cols = (second[:, None] * q + torch.arange(q, device=t.device)).flatten()
    flat[..., torch.arange(r * q, device=t.device), cols] = v.reshape(*lead, r * q)
    return t


def embed_band_diagonal(v: Tensor, band: Band, shape: tuple[int, ...]) -> Tensor:
    """The banded full-layout tile that is v (a, b, r, *S[1:]) at its same positions, zero
    elsewhere (``shape`` the full spatial shape)."""
    nd = len(shape)
    lead = v.shape[:AXIS]
    second = (len(band.rows), *shape[1:]) if band.square else shape
    out = v.new_zeros(*lead, len(band.rows), *shape[1:], *second)
    return set_band_diagonal(out, v, band, nd)


def _prod(shape) -> int:
    out = 1
    for n in shape:
        out *= n
    return out
