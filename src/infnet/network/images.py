"""The kernel of a spatial network on data: inputs checked, memory said and bounded, tiles of
pairs of inputs through the plan's passes (``network.spatial``), then the fully-connected tail.

Memory: the outputs (n1 n2 per kernel asked for) plus the work of one tile, which the tile
size keeps within ``memory`` bytes (default ``TILE_BYTES``) and near ``TILE_ENTRIES`` entries
(fast: in cache); ``peak_memory`` says the total before anything is computed. A pair of inputs
that alone exceeds the budget goes in bands of rows (full layout, ``network.banded``), or is
refused where even those do not fit (or in the diagonal layout).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..activations.series import DEGREES, SeriesCache
from ..core.checks import all_finite, byte_size
from ..core.heap import large_tensors
from . import banded
from .inputs import Kernel, check_finite
from .layers import Moments
from .spatial import TILE_BYTES, SpatialPlan
from .trace import Trace

Tensor = torch.Tensor

#: the entries of one pair's covariance times the pairs of a tile aimed at: tensors of 2 MB,
#: which stay in the processor's cache through the dozens of elementwise passes of a layer
TILE_ENTRIES = 1 << 18
#: the Hermite coefficients of input blocks kept between tiles (activations without a closed
#: form, ``activations.series``) take at most this, and half of ``memory``
SERIES_CACHE_BYTES = 1 << 29


def as_images(x, name: str, ndim: int | None, device=None) -> Tensor:
    """Inputs (n, C, *S) as float64, checked: rank, emptiness, finiteness."""
    if not torch.is_tensor(x):
        try:
            x = torch.as_tensor(np.asarray(x, dtype=np.float64))
        except (TypeError, ValueError) as err:
            raise TypeError(f"{name} must be a numeric array or tensor: {err}") from err
    if x.is_complex():
        raise TypeError(f"{name} is complex; kernels need real inputs")
    one = "sequence: x.reshape(1, 1, L)" if ndim == 1 else "image: x.reshape(1, 1, H, W)"
    want = "(n, C, H, W)" if ndim == 2 else "(n, C, L)" if ndim == 1 else "(n, C, H, W) or (n, C, L)"
    if (ndim is not None and x.ndim != ndim + 2) or x.ndim not in (3, 4):
        raise ValueError(f"{name} has shape {tuple(x.shape)}, but this network takes inputs "
                         f"{want} (torch's layout: channels first; one grayscale {one})")
    if device is not None and x.device != device:
        raise ValueError(f"{name} is on {x.device} but x1 is on {device}: put both on one device")
    if x.numel() == 0:
        raise ValueError(f"{name} is empty: shape {tuple(x.shape)}")
    x = x.to(torch.float64)
    if not all_finite(x):
        row = int((~torch.isfinite(x)).reshape(x.shape[0], -1).any(1).nonzero()[0])
        raise ValueError(f"{name} contains NaN or inf (first in input {row}); clean the data first")
    return x


def peak_memory(plan: SpatialPlan, shape: tuple[int, ...], n1: int, n2: int | None = None, *,
                get: str = "both", memory: int = TILE_BYTES, dtype=torch.float64) -> int:
    """Bytes of the kernel of n1 x n2 inputs of spatial ``shape``: the outputs plus one tile's
    work (the self pass of a chunk of inputs, or a tile of pairs)."""
    shape = tuple(shape)
    out = (n1 * (n1 if n2 is None else n2) * torch.finfo(dtype).bits // 8
           * (2 if get == "both" else 1))
    per_pair = plan.tile_bytes(shape)
    if per_pair > memory and plan.full:  # in bands of rows
        rows, halo = banded.band_rows(plan, shape, memory)
        return out + banded.band_bytes(plan, shape, rows, halo) + _series_bytes(
            plan, shape, 1, memory)
    pairs = max(1, min(memory // per_pair, TILE_ENTRIES // plan.pair_entries(shape),
                       n1 * (n1 if n2 is None else n2)))
    return out + pairs * per_pair + _series_bytes(plan, shape, pairs, memory)


def _series_bytes(plan: SpatialPlan, shape: tuple[int, ...], pairs: int, memory: int) -> int:
    """The Hermite coefficients of a network with an activation without a closed form: the
    sides of one tile (the self pass's chunk, in the full layout) at the highest degree, and
    the cache between tiles."""
    if not plan.series:
        return 0
    positions = max(math.prod(s) for s in plan.shapes(shape))
    images = max(2 * max(1, math.isqrt(pairs)), pairs if plan.full else 0)
    return (16 * (DEGREES[-1] + 1) * positions * images
            + min(SERIES_CACHE_BYTES, memory // 2))


@large_tensors()  # (tiles free and remake tensors of MBs: core.heap)
def spatial_kernel(plan: SpatialPlan, x1, x2=None, *, block: int = 512,
                   dtype: torch.dtype = torch.float64, get: str = "both",
                   memory: int | None = None) -> Kernel:
    """NNGP and NTK of the spatial network ``plan`` between the inputs x1 and x2 (module
    docstring; the arguments of ``Network.kernel``)."""
    memory = TILE_BYTES if memory is None else memory
    if isinstance(memory, bool) or not isinstance(memory, int) or memory < 1:
        raise ValueError(f"memory must be a positive number of bytes, got {memory!r}")
    symmetric = x2 is None
    x1 = as_images(x1, "x1", plan.ndim)
    x2 = x1 if symmetric else as_images(x2, "x2", plan.ndim, device=x1.device)
    if x1.shape[1:] != x2.shape[1:]:
        raise ValueError(f"x1 has inputs of shape {tuple(x1.shape[1:])} and x2 of "
                         f"{tuple(x2.shape[1:])}: channels and sizes must match (resize or crop "
                         "the inputs to one size)")
    shape = tuple(x1.shape[2:])
    plan.shapes(shape)  # every layer fits (raises otherwise)
    per_pair = plan.tile_bytes(shape)
    band = None
    if per_pair > memory and plan.full:  # one pair does not fit: bands of rows
        band = banded.band_rows(plan, shape, memory)
    elif per_pair > memory:
        raise MemoryError(
            f"one pair of inputs of spatial shape {shape} needs {byte_size(per_pair)} of work in the "
            f"{'full (pairs of positions)' if plan.full else 'diagonal'} layout, more than "
            f"memory={memory} bytes ({byte_size(memory)}): raise memory=, or use smaller inputs")
    # tiles of about TILE_ENTRIES entries (their tensors stay in cache), within the budget
    pairs = 1 if band else min(memory // per_pair, max(1, TILE_ENTRIES // plan.pair_entries(shape)))
    side = max(1, min(block, math.isqrt(pairs)))
    n1, n2 = x1.shape[0], x2.shape[0]
    chunk = max(1, min(n1, pairs))
    cache = SeriesCache(min(SERIES_CACHE_BYTES, memory // 2))
    m1, rec1, tr1 = _self(plan, x1, chunk, cache, 0, band)
    m2, rec2, tr2 = (m1, rec1, tr1) if symmetric else _self(plan, x2, chunk, cache, 1, band)
    nngp, ntk = (torch.empty(n1, n2, dtype=dtype, device=x1.device)
                 if get in (kind, "both") else None for kind in ("nngp", "ntk"))
    for i in range(0, n1, side):
        rows = slice(i, i + side)
        for j in range(i if symmetric else 0, n2, side):
            if symmetric and side == 1 and j == i:
                continue  # an input with itself: the self pass has it
            cols = slice(j, j + side)
            if band:
                m = banded.pairs_pass(plan, x1[rows], x2[cols], rec1, rec2, rows, cols, band)
            else:
                m = plan.pairs_pass(x1[rows], x2[cols], rec1, rec2, rows, cols, cache,
                                    (0, 0 if symmetric else 1))
            m = plan.tail.pairs_pass(m, tr1.view(rows, 0).records, tr2.view(cols, 1).records)
            for out, tile in ((nngp, m.nngp), (ntk, m.ntk)):
                if out is None:
                    continue
                tile = tile.expand(out[rows, cols].shape)
                if symmetric and j == i:  # both triangles computed: exactly symmetric
                    tile = (tile + tile.T) / 2
                out[rows, cols] = tile
                if symmetric and j != i:
                    out[cols, rows] = tile.T
    if symmetric:
        for out, diag in ((nngp, tr1.nngp), (ntk, tr1.ntk)):
            if out is not None:
                out.diagonal().copy_(diag)
    check_finite(nngp, ntk)
    return Kernel(nngp, ntk)


def _self(plan: SpatialPlan, x: Tensor, chunk: int, cache: SeriesCache, tag: int,
          band: tuple[int, int] | None = None) -> tuple[Moments, list, Trace]:
    """The self pass in chunks of inputs: the head's records and the tail's trace. Each chunk's
    records are copied into tensors for all inputs allocated once, after the first chunk, so
    that no small tensor outlives the chunk that made it (interleaved with the chunks' large
    temporaries, such tensors fragment the heap: the resident memory of a 1000-image Myrtle
    kernel grew by 14 MB an image)."""
    n = x.shape[0]
    records, flat = None, None
    for i in range(0, n, chunk):
        m, recs = (banded.self_pass(plan, x[i:i + chunk], *band) if band
                   else plan.self_pass(x[i:i + chunk], cache, (tag, i)))
        if records is None:
            records = [(r.new_empty((n, *r.shape[1:])), nd) for r, nd in recs]
            flat, width = [m.nngp.new_empty(n) for _ in range(2)], m.width
        for (dest, _), (r, _) in zip(records, recs, strict=True):
            dest[i:i + chunk] = r
        flat[0][i:i + chunk] = m.nngp
        flat[1][i:i + chunk] = m.ntk
        del m, recs
    m = Moments(flat[0], flat[1], flat[0], flat[0], width)
    out, tail_records = plan.tail.diagonal_pass(m)
    return m, records, Trace(m.nngp, tail_records, out.nngp, out.ntk)
