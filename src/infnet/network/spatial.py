"""Kernels of networks on spatial inputs (images, sequences): the plan and its passes.

A spatial network is a head of spatial layers (``Conv``, ``ConvLocal``, ``AvgPool``),
activations and branches, ended by ``Flatten`` or ``GlobalAvgPool``, then a fully-connected
tail (Dense, activations, ...) computed by the fully-connected machinery. ``SpatialPlan``
checks the head once, picks its layout (the full covariance of pairs of positions where a
layer reads it, else the same-position diagonal), and runs two passes that mirror those of
fully-connected networks:

- the self pass: each input with itself, giving every layer's per-position output variances
  (the records the pairs need; in the full layout each input's whole spatial covariance);
- the pairs pass: a tile of pairs of inputs, with the variances of each side from the records.

Between layers a pair carries its covariances, and activations work from them
(``covariance_maps``: the closed forms in (q1, q2, c), exact where c = q1 = q2, or the Hermite
series of a smooth activation without one, whose per-position coefficients the passes cache by
input block and layer); the angle is computed once the spatial positions are gone, for the
fully-connected tail.
Memory: tiles of pairs sized so that the work of one tile stays within a budget
(``SpatialPlan.tile_bytes``); the (n, n, P, P) array is never held. Where one pair alone
exceeds it, the passes run band by band (``network.banded``: ``_Pass.band`` the rows the first
position holds, ``Stop`` the way out of a band).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..activations.gated import Gated
from ..activations.series import SeriesCache, TileSeries, supports_series
from ..numerics.moments import corr_angle
from .bands import Band, band_diagonal, common, narrowed, rows_of, set_band_diagonal
from .covariance_maps import blocked_map, diagonal_map, symmetric_map
from .data_covariance import pair_covariance, self_covariance
from .layers import Moments, Nonlinearity
from .shifts import rows_view, self_view, spatial_diagonal, with_diagonal

Tensor = torch.Tensor

#: tensors of one tile's size alive at once in the worst layer (moments, angles, temporaries
#: of the activations' maps): the factor of the memory estimate
LIVE_TENSORS = 14
#: the default budget of one tile's work, in bytes
TILE_BYTES = 1 << 30


def _walk(layers):
    for layer in layers:
        yield layer
        for sub, _ in layer.sublayers() or ():
            yield from _walk(sub)


def is_spatial(layers) -> bool:
    return any(layer.spatial for layer in _walk(layers))


def _check_head(layers, where: str) -> None:
    for layer in layers:
        if layer.sublayers() is not None:
            for sub, _ in layer.sublayers():
                _check_head(sub, "a branch")
            continue
        if layer.spatial:
            if layer.ends_spatial and where != "top":
                raise ValueError(f"{layer!r} inside a branch: flatten or pool globally after "
                                 "the branches, in the main chain")
            continue
        if isinstance(layer, Nonlinearity) and not isinstance(layer.act, Gated):
            continue
        raise ValueError(f"{layer!r} on spatial inputs: before Flatten() or GlobalAvgPool() "
                         "a network holds Conv, ConvLocal, AvgPool, activations (not gated) and "
                         "branches of them; a Dense layer reads flat features (for a layer at "
                         "each position use Conv with a 1 x 1 filter)")


@dataclass
class _Pass:
    """What a pass carries: the layout, the spatial shape so far, and the records (appended by
    the self pass, read in the same order by the pairs pass)."""

    full: bool
    records: list
    rows: slice | None = None
    cols: slice | None = None
    other: list | None = None
    at: int = 0
    cache: SeriesCache | None = None
    #: the series cache's names of the inputs: (input set, first input) of this pass's rows
    #: and columns (the self pass: its one block)
    tags: tuple = ((0, 0), (0, 0))
    #: a banded pass (``network.bands``): the rows the first position holds now, and whether
    #: the pair is an input with itself (its same-position entries then take the activations'
    #: diagonal maps, as in the self pass)
    band: Band | None = None
    self_band: bool = False
    #: a square band of an input with itself: the variances come from its own same-position
    #: entries, each handed to ``own(index of the record, variances, band, nd)``
    own: object = None

    @property
    def pairs(self) -> bool:
        return self.other is not None

    def record(self, q: Tensor, nd: int) -> None:
        self.records.append((q, nd))

    def next_views(self, tile: Tensor | None = None, nd: int = 0) -> tuple[Tensor, Tensor]:
        """The variances of both sides at the next record, as views of a tile (a square band:
        read off the tile itself)."""
        if self.own is not None:
            q = band_diagonal(tile, self.band, nd)  # (a, b, r, *S[1:])
            self.own(self.at, q, self.band, nd)
            self.at += 1
            ones, rows = (1,) * nd, q.shape[2:]
            return q.reshape(*q.shape[:2], *rows, *ones), q.reshape(*q.shape[:2], *ones, *rows)
        (qa, nd), (qb, _) = self.records[self.at], self.other[self.at]
        self.at += 1
        full = self.full and nd > 0
        first = rows_view(qa[self.rows], nd, full, 0)
        if self.band is not None and full:
            first = rows_of(first, self.band)
        return first, rows_view(qb[self.cols], nd, full, 1)

    def series(self, act, q1: Tensor, q2: Tensor) -> TileSeries:
        """The Hermite series of an activation whose input variances q1, q2 are the views of
        the last record: its sides cached by input block and layer (the self pass's block is
        both sides, and a later tile's row or column)."""
        if not self.pairs:
            at = len(self.records) - 1
            (tag, start), _ = self.tags
            key = (tag, at, start, start + q1.shape[0])
            cache = self.cache if self.cache is not None else SeriesCache(1 << 62)
            return TileSeries(act, q1, q2, cache, (key, key))
        if self.cache is None or self.band is not None:
            return TileSeries(act, q1, q2)
        at = self.at - 1
        (ta, ra), (tb, rb) = self.tags
        i, j = ra + self.rows.start, rb + self.cols.start
        keys = ((ta, at, i, i + q1.shape[0]), (tb, at, j, j + q2.shape[1]))
        return TileSeries(act, q1, q2, self.cache, keys)


class Stop(Exception):  # noqa: N818  (not an error: a banded pass's way out)
    """A banded pass ends (``network.banded``) at the layer that ends the spatial part:
    ``moments`` its input, ``end`` the layer and its input shape; or earlier, where the band
    kept no row (``empty``: it adds nothing)."""

    def __init__(self, moments: Moments | None, end: tuple | None = None):
        super().__init__("a banded pass stopped")
        self.moments, self.end = moments, end

    @property
    def empty(self) -> bool:
        return self.moments is None


class SpatialPlan:
    """The head of a spatial network checked once (module docstring): ``head`` the layers up
    to Flatten/GlobalAvgPool, ``tail`` the fully-connected rest (a Network), ``full`` the
    layout, ``ndim`` the number of spatial dimensions."""

    def __init__(self, layers: tuple, tail_network):
        for layer in layers:  # (a Flatten in a branch: before asking for one in the chain)
            for sub, _ in layer.sublayers() or ():
                _check_head(sub, "a branch")
        ends = [i for i, layer in enumerate(layers) if layer.spatial and layer.ends_spatial]
        if not ends:
            raise ValueError("a network of spatial layers ends its spatial part with Flatten() "
                             "or GlobalAvgPool() before the Dense readout")
        e = ends[0]
        self.head, tail = layers[:e + 1], layers[e + 1:]
        if is_spatial(tail):
            bad = next(layer for layer in _walk(tail) if layer.spatial)
            raise ValueError(f"{bad!r} after {layers[e]!r}: the spatial positions are gone "
                             "once flattened or pooled globally; put spatial layers before it")
        _check_head(self.head, "top")
        self.tail = tail_network(tail)
        self.full = any(getattr(layer, "reads_pairs", False) for layer in _walk(self.head))
        #: whether an activation of the head uses its Hermite series (and a cache of them)
        self.series = any(isinstance(layer, Nonlinearity) and supports_series(layer.act)
                          for layer in _walk(self.head))
        dims = {layer.ndim for layer in _walk(self.head) if layer.spatial and layer.ndim}
        if len(dims) > 1:
            raise ValueError("the network mixes 1-D and 2-D spatial layers")
        self.ndim = dims.pop() if dims else None

    # ---- shapes and memory -------------------------------------------------------------------
    def shapes(self, shape: tuple[int, ...]) -> list[tuple[int, ...]]:
        """The spatial shapes at the input of every layer of the head and after it (checked)."""
        out = [shape]
        _shapes(self.head, out)
        return out

    def pair_entries(self, shape: tuple[int, ...]) -> int:
        """The largest number of entries of one pair's spatial covariance in the head."""
        sizes = [math.prod(s) for s in self.shapes(shape)]
        return max(p * p if self.full else p for p in sizes)

    def tile_bytes(self, shape: tuple[int, ...]) -> int:
        """The work memory of one pair of inputs (``LIVE_TENSORS`` float64 covariances)."""
        return 8 * LIVE_TENSORS * self.pair_entries(shape)

    # ---- the passes ------------------------------------------------------------------------------
    def self_pass(self, x: Tensor, cache: SeriesCache | None = None, tag: tuple = (0, 0)
                  ) -> tuple[Moments, list]:
        """Each input (m, C, *S) with itself: the flat moments after the head (diagonal mode)
        and the records of the head's layers. ``cache`` keeps the Hermite coefficients for
        the pairs pass, under ``tag`` (input set, index of x[0] in it)."""
        nd = x.ndim - 2
        c = x.shape[1]
        if self.full:
            cov = self_covariance(x, True)
            q = spatial_diagonal(cov, nd)
            q1, q2 = self_view(q, nd, 0), self_view(q, nd, 1)
            m = Moments(cov, torch.zeros_like(cov), q1, q2, c, cov.new_full((), math.nan))
        else:
            q = self_covariance(x, False)
            m = Moments(q, torch.zeros_like(q), q, q, c)
        state = _Pass(self.full, [], cache=cache, tags=(tag, tag))
        m, _ = _forward(self.head, m, tuple(x.shape[2:]), state)
        return m, state.records

    def pairs_pass(self, xa: Tensor, xb: Tensor, rec_a: list, rec_b: list, rows: slice,
                   cols: slice, cache: SeriesCache | None = None, tags: tuple = (0, 0)
                   ) -> Moments:
        """The tile of pairs (xa[i], xb[j]): the flat moments after the head, (a, b) each;
        ``cache`` keeps the Hermite coefficients of input blocks between tiles, named by
        ``tags`` (the input sets of the rows and columns)."""
        c = xa.shape[1]
        spatial = tuple(xa.shape[2:])
        cov = pair_covariance(xa, xb, self.full)
        # the data's variances and angles are never read: the first layer that reads moments
        # after the data is linear (activations need a Gaussian input), and its output's
        # variances come from the records
        unread = cov.new_full((), math.nan)
        m = Moments(cov, torch.zeros_like(cov), unread, unread, c, unread)
        state = _Pass(self.full, rec_a, rows, cols, rec_b, cache=cache,
                      tags=((tags[0], 0), (tags[1], 0)))
        m, _ = _forward(self.head, m, spatial, state)
        return m


def _shapes(layers, out: list) -> None:
    for layer in layers:
        parts = layer.sublayers()
        if parts is None:
            out.append(layer.out_shape(out[-1]) if layer.spatial else out[-1])
            continue
        ends, start = [], out[-1]
        for sub, _ in parts:
            branch = [start]
            _shapes(sub, branch)
            out.extend(branch[1:])
            ends.append(branch[-1])
        if len(set(ends)) > 1:
            raise ValueError(f"the branches of {layer!r} end in spatial shapes {ends}: a sum "
                             "or concatenation needs one shape (use padding='SAME' and equal "
                             "strides in every branch)")
        out.append(ends[0])


def _finish(nngp: Tensor, ntk: Tensor, width, nd: int, state: _Pass) -> Moments:
    """Moments after a linear layer (spatial, or a sum of branches) with ``nd`` spatial
    dimensions left: the record of the output variances, and the angle recomputed."""
    full = state.full and nd > 0
    if state.pairs:
        q1, q2 = state.next_views(nngp, nd)
    elif not full:  # each input with itself, same positions: the moments are the variances
        state.record(nngp, nd)
        return Moments(nngp, ntk, nngp, nngp, width)
    else:
        q = spatial_diagonal(nngp, nd)
        state.record(q, nd)
        q1, q2 = self_view(q, nd, 0), self_view(q, nd, 1)
    # activations of the spatial part work from covariances (``Nonlinearity.covariance_map``)
    # and carry no angle (NaN: a layer that read one would be caught); the flat tail needs it
    theta = corr_angle(q1, q2, nngp)[1] if nd == 0 else nngp.new_full((), math.nan)
    return Moments(nngp, ntk, q1, q2, width, theta)


def _forward(layers, m: Moments, shape: tuple[int, ...], state: _Pass
             ) -> tuple[Moments, tuple[int, ...]]:
    for layer in layers:
        parts = layer.sublayers()
        if parts is not None:
            outs, bands, start = [], [], state.band
            for sub, _ in parts:
                state.band = start
                out, end = _forward(sub, m, shape, state)
                outs.append(out)
                bands.append(state.band)
            if start is not None:  # (banded: the rows every branch has)
                state.band = common(bands)
                if not len(state.band.rows):
                    raise Stop(None)
                outs = [Moments(*(narrowed(t, b, state.band.rows, len(end))
                                  for t in (o.nngp, o.ntk)),
                                None, None, o.width) for o, b in zip(outs, bands, strict=True)]
            nngp = sum(w * w * o.nngp for (_, w), o in zip(parts, outs, strict=True))
            ntk = sum(w * w * o.ntk for (_, w), o in zip(parts, outs, strict=True))
            widths = [o.width for o in outs]
            width = None if None in widths else (
                sum(widths) if layer.combine == "concat" else widths[0])
            shape = end
            m = _finish(nngp, ntk, width, len(shape), state)
        elif layer.spatial and state.band is not None:
            if layer.ends_spatial:
                raise Stop(m, (layer, shape))
            step = state.band.through(layer.first_window(shape))
            if not len(step.band.rows):
                raise Stop(None)
            nngp, ntk, width = layer.map_spatial(m.nngp, m.ntk, m.width, shape, state.full,
                                                 band=step)
            state.band = step.band
            shape = layer.out_shape(shape)
            m = _finish(nngp, ntk, width, len(shape), state)
        elif layer.spatial:
            nngp, ntk, width = layer.map_spatial(m.nngp, m.ntk, m.width, shape, state.full)
            shape = layer.out_shape(shape)
            m = _finish(nngp, ntk, width, len(shape), state)
        else:
            m = _elementwise(layer, m, len(shape), state)
    return m, shape


def _elementwise(layer, m: Moments, nd: int, state: _Pass) -> Moments:
    """An activation on a tile, at the pairs' covariances (the next layer is linear and
    recomputes the angles); in the self pass its output variances, from its own diagonal map,
    are recorded and written on the same-position entries (full layout) so that they stay
    exactly the variances."""
    if state.pairs:
        own = state.own is not None  # (a square band: the variances after the map)
        q1, q2 = (None, None) if own else state.next_views()
        series = _series(layer, m, state)
        out = blocked_map(layer, m, series)
        if state.self_band and nd > 0:
            out = _band_self_diagonal(layer, m, out, state.band, nd, series)
        if own:
            q1, q2 = state.next_views(out.nngp, nd)
        return Moments(out.nngp, out.ntk, q1, q2, out.width)
    full = state.full and nd > 0
    if not full:  # (the Hermite series' sums of squares, else 1-D expectations)
        series = _series(layer, m, state, nd)
        out = (layer.apply(m) if series is None
               else diagonal_map(layer, m.q1, m.ntk, m.width, series))
        state.record(out.nngp, nd)
        return out
    q, t = spatial_diagonal(m.nngp, nd), spatial_diagonal(m.ntk, nd)
    series = _series(layer, m, state, nd)
    if series is not None:
        out, diag = symmetric_map(layer, m, nd, q, t, series)
    else:  # (closed forms: a dozen passes an entry; slicing the triangle costs more)
        diag = layer.apply(Moments(q, t, q, q, m.width))
        out = blocked_map(layer, m, None)
    qo = diag.nngp
    state.record(qo, nd)
    return Moments(with_diagonal(out.nngp, qo, nd), with_diagonal(out.ntk, diag.ntk, nd),
                   out.q1, out.q2, out.width, out.theta)


def _band_self_diagonal(layer, m: Moments, out: Moments, band: Band, nd: int,
                        series: TileSeries | None) -> Moments:
    """A band of an input with itself after an activation: its same-position entries set to
    the activation's diagonal map at the variances there (as ``_elementwise`` does in the self
    pass), so that they are exactly the variances the records hold."""
    q, t = band_diagonal(m.nngp, band, nd), band_diagonal(m.ntk, band, nd)
    diag = diagonal_map(layer, q, t, m.width, series)
    return Moments(set_band_diagonal(out.nngp, diag.nngp, band, nd),
                   set_band_diagonal(out.ntk, diag.ntk, band, nd), out.q1, out.q2, out.width)


def _series(layer, m: Moments, state: _Pass, nd: int = 0) -> TileSeries | None:
    """The Hermite series of an activation without a closed form at the tile's variances
    (the self pass: the P x 1 and 1 x P views of each input's in the full layout, its
    variances themselves in the diagonal one), None for other layers."""
    if not (isinstance(layer, Nonlinearity) and supports_series(layer.act)):
        return None
    if state.pairs:
        return state.series(layer.act, m.q1, m.q2)
    if not (state.full and nd > 0):  # (variances only: both sides are the same positions)
        return state.series(layer.act, m.q1, m.q1)
    n, p = m.nngp.shape[0], math.prod(m.nngp.shape[1:1 + nd])
    return state.series(layer.act, m.q1.reshape(n, p, 1), m.q2.reshape(n, 1, p))
