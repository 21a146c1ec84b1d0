"""Spatial kernels band by band, for inputs so large that one pair's covariance of pairs of
positions (full layout: P x P entries a layer) exceeds the memory budget.

The first position of each pair then holds only a band of rows of its first spatial axis
(``network.bands``), the second every position. A band of input rows, widened on both sides
by the head's reach (``reach``: how far a row's covariances depend on input rows), goes
through the layers, each keeping the rows it can map; the rows that reach the layer ending
the spatial part (GlobalAvgPool, Flatten) and no earlier band counted are added to its sums.
Bands of input rows are sized so that the widest layer's band fits ``memory`` (``band_rows``).

The self pass needs every position's variances at a layer before a rectangular band can go
through the next activation (its second position is every position). So it first takes square
bands of the input with itself: both positions hold the band's rows, so the band holds the
same-position entries of all its rows, and its activations read their variances off the band
itself; each record (a layer's output variances) keeps the rows each band adds. Then, with
every record known, one rectangular pass of the input with itself gives its sums after the
spatial part. The pairs pass runs once per band.
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch

from ..core.checks import byte_size
from .bands import Band
from .data_covariance import band_covariance
from .layers import Moments
from .spatial import LIVE_TENSORS, SpatialPlan, Stop, _finish, _forward, _Pass, _walk

Tensor = torch.Tensor


def reach(layers, shape: tuple[int, ...]) -> tuple[int, int]:
    """How far, in input rows before and after, the rows a layer of the head maps depend on:
    a window of size k maps output row i from input rows s i - pad_lo ... s i - pad_lo + k -
    1, so each window adds pad_lo rows before and k - 1 - pad_lo after (times the strides
    before it); branches add their largest. A band of input rows widened by it holds, at
    every layer, every row that the band's own rows (those whose stride multiples fall in it)
    need."""
    before, after, _, _ = _reach(layers, shape, 1)
    return before, after


def _reach(layers, shape, scale):
    before = after = 0
    for layer in layers:
        parts = layer.sublayers()
        if parts is not None:
            outs = [_reach(sub, shape, scale) for sub, _ in parts]
            before += max(o[0] for o in outs)
            after += max(o[1] for o in outs)
            _, _, scale, shape = outs[0]
        elif layer.spatial and not layer.ends_spatial:
            w = layer.first_window(shape)
            before += w.pad_lo * scale
            after += (w.k - 1 - w.pad_lo) * scale
            scale *= w.stride
            shape = layer.out_shape(shape)
    return before, after, scale, shape


def band_bytes(plan: SpatialPlan, shape: tuple[int, ...], rows: int, halo: tuple[int, int]
               ) -> int:
    """The work memory of one pair in bands of ``rows`` input rows widened by ``halo`` (rows
    before, after): at every layer the rows it holds at most, times its other positions,
    times every position of the second input (``LIVE_TENSORS`` float64 tensors)."""
    worst = 0
    for s in plan.shapes(shape):
        if len(s) != len(shape):
            continue
        held = min(s[0], math.ceil((rows + sum(halo)) * s[0] / shape[0]) + 1)
        positions = math.prod(s)
        worst = max(worst, held * (positions // s[0]) * positions)
    return 8 * LIVE_TENSORS * worst


def band_rows(plan: SpatialPlan, shape: tuple[int, ...], memory: int
              ) -> tuple[int, tuple[int, int]]:
    """(rows, halo): the bands of input rows (the most, halving from all of them) whose work
    fits ``memory``, and the rows before and after that widen them (``reach``); MemoryError
    where even one row does not fit."""
    halo = reach(plan.head, shape)
    rows = shape[0]
    while band_bytes(plan, shape, rows, halo) > memory:
        if rows == 1:
            need = band_bytes(plan, shape, 1, halo)
            raise MemoryError(
                f"one pair of inputs of spatial shape {shape} needs {byte_size(need)} of work "
                f"in the full layout (pairs of positions) even in bands of one row (widened by "
                f"the network's reach of {halo[0]} rows before and {halo[1]} after), more than "
                f"memory={memory} "
                f"bytes ({byte_size(memory)}): raise memory=, or use smaller inputs")
        rows = max(1, rows // 2)
    return rows, halo


def _input_bands(plan: SpatialPlan, size: int, rows: int, halo: tuple[int, int]):
    circular = any(getattr(layer, "padding", None) == "CIRCULAR" for layer in _walk(plan.head))
    for start in range(0, size, rows):
        held = torch.arange(start - halo[0], start + rows + halo[1])
        yield (torch.unique(held % size) if circular
               else held[(held >= 0) & (held < size)])


def _run(plan: SpatialPlan, xa: Tensor, xb: Tensor, rec_a: list, rec_b: list, held: Tensor,
         self_band: bool, rows: slice, cols: slice, own=None) -> tuple[Stop, _Pass]:
    """One band (input rows ``held``) of the tile (xa, xb) through the head, to the layer
    ending the spatial part; ``self_band``: an input with itself; ``own``: a square band of
    it, which hands its variances to ``own`` (``_Pass.own``)."""
    square = own is not None
    cov = band_covariance(xa, xb, held, square)
    unread = cov.new_full((), math.nan)  # (never read: the first layer is linear)
    m = Moments(cov, torch.zeros_like(cov), unread, unread, xa.shape[1], unread)
    state = _Pass(True, rec_a, rows, cols, rec_b, band=Band(held, xa.shape[2], square=square),
                  self_band=self_band, own=own)
    try:
        _forward(plan.head, m, tuple(xa.shape[2:]), state)
    except Stop as out:
        out.__traceback__ = None  # (its frames hold the layers' tensors)
        return out, state
    raise RuntimeError("a banded pass ran past the end of the spatial part (an internal error)")


class _Counted:
    """The rows of a layer that bands have already added."""

    def __init__(self):
        self.done = None

    def new(self, band: Band) -> Tensor:
        """The local indices of the band's rows not added before (and marks them added)."""
        if self.done is None:
            self.done = torch.zeros(band.size, dtype=torch.bool)
        fresh = ~self.done[band.rows]
        self.done[band.rows] = True
        return fresh.nonzero().flatten()

    def complete(self) -> bool:
        return self.done is not None and bool(self.done.all())


def _end_sums(plan, x_a, x_b, rec_a, rec_b, rows_cols, bands, self_band):
    """The layer ending the spatial part summed over the bands: (NNGP, NTK, width, the index
    of its record)."""
    counted, total = _Counted(), None
    for held in bands:
        out, state = _run(plan, x_a, x_b, rec_a, rec_b, held, self_band, *rows_cols)
        if out.empty:
            continue
        (layer, shape), band, m = out.end, state.band, None
        fresh = counted.new(band)
        if len(fresh):
            m = out.moments
            part = layer.map_spatial(m.nngp, m.ntk, m.width, shape, True,
                                     band=replace(band, count=fresh))
            total = part if total is None else (total[0] + part[0], total[1] + part[1], part[2])
        at = state.at
        del out, state, m  # (the band's tiles: freed before the next band)
        if counted.complete():
            break
    if not counted.complete():
        raise RuntimeError("the bands missed rows of the last layer (an internal error)")
    return (*total, at)


class _Records:
    """The records of an input's self pass, gathered from square bands: each band hands the
    variances of its rows at every record (``_Pass.own``), and the rows no band gave before
    are kept."""

    def __init__(self):
        self.points = {}

    def add(self, at: int, q: Tensor, band: Band, nd: int) -> None:
        if at not in self.points:
            self.points[at] = (q.new_zeros(1, band.size, *q.shape[3:]), nd, _Counted())
        value, _, counted = self.points[at]
        fresh = counted.new(band)
        value[0, band.rows[fresh].to(q.device)] = q[0, 0, fresh.to(q.device)]

    def records(self) -> list:
        if sorted(self.points) != list(range(len(self.points))) or not all(
                counted.complete() for _, _, counted in self.points.values()):
            raise RuntimeError("the bands missed rows of a layer (an internal error)")
        return [self.points[at][:2] for at in range(len(self.points))]


def self_pass(plan: SpatialPlan, x: Tensor, rows: int, halo: tuple[int, int]
              ) -> tuple[Moments, list]:
    """One input (1, C, *S) with itself, in bands (module docstring): the flat moments after
    the head and the records of its layers, as ``SpatialPlan.self_pass``."""
    one, found = slice(0, 1), _Records()
    for held in _input_bands(plan, x.shape[2], rows, halo):
        out, state = _run(plan, x, x, [], [], held, True, one, one, own=found.add)
        del out, state  # (the band's tiles: freed before the next band)
    records = found.records()
    nngp, ntk, width, _ = _end_sums(plan, x, x, records, records, (one, one),
                                    _input_bands(plan, x.shape[2], rows, halo), True)
    return _finish(nngp.reshape(1), ntk.reshape(1), width, 0, _Pass(True, records)), records


def pairs_pass(plan: SpatialPlan, xa: Tensor, xb: Tensor, rec_a: list, rec_b: list,
               rows: slice, cols: slice, band: tuple) -> Moments:
    """The tile of pairs (xa[i], xb[j]) in bands of ``band`` = (rows, halo): the flat moments
    after the head, as ``SpatialPlan.pairs_pass``."""
    nngp, ntk, width, at = _end_sums(plan, xa, xb, rec_a, rec_b, (rows, cols),
                                     _input_bands(plan, xa.shape[2], *band), False)
    state = _Pass(True, rec_a, rows, cols, rec_b)
    state.at = at
    return _finish(nngp, ntk, width, 0, state)
