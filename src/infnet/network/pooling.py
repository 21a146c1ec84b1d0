"""Pooling and flattening of spatial inputs in the infinite-width limit.

Linear maps of the spatial covariance, the same for the NNGP and the NTK
(docs/theory/architectures.md):

    AvgPool:        Sigma'[I, J] = mean_{i in I, j in J} Sigma[i, j]   (reads pairs of positions)
    GlobalAvgPool:  Sigma' = mean_{i, j} Sigma[i, j]                    (the CNN-GAP kernel)
    Flatten:        Sigma' = mean_i Sigma[i, i]                         (the CNN-VEC kernel)

Flatten and GlobalAvgPool end the spatial part: a Dense readout follows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import nn

from .bands import AXIS, band_diagonal
from .conv import SpatialLayer, as_sizes, check_window, pad_module, spatial_input
from .modules import GlobalMean
from .shifts import PADDINGS, pool_sum, spatial_diagonal, windows


@dataclass(frozen=True)
class AvgPool(SpatialLayer):
    """Average pooling over windows of positions (torch's ``AvgPool2d``, padded positions
    counted as zeros).

    Parameters
    ----------
    window_shape : tuple of int
        (k,) for sequences, (kh, kw) for images.
    strides : tuple of int, optional
        Default: the window (non-overlapping windows).
    padding : {"VALID", "SAME", "CIRCULAR"}
        As in ``Conv``.

    Raises
    ------
    ValueError
        A window or stride that is not positive, or an unknown padding.

    Examples
    --------
    >>> pool = infnet.AvgPool((2, 2))
    >>> pool.strides, pool.out_shape((8, 8))
    ((2, 2), (4, 4))
    """

    window_shape: tuple[int, ...] = (2, 2)
    strides: tuple[int, ...] | None = None
    padding: str = "VALID"
    reads_pairs = True

    def __post_init__(self):
        k = as_sizes(self.window_shape, "window_shape")
        object.__setattr__(self, "window_shape", k)
        s = k if self.strides is None else as_sizes(self.strides, "strides", len(k))
        object.__setattr__(self, "strides", s)
        if self.padding not in PADDINGS:
            raise ValueError(f"padding must be one of {PADDINGS}, got {self.padding!r}")

    @property
    def ndim(self) -> int:
        return len(self.window_shape)

    def out_shape(self, shape):
        wins = check_window(self, shape, self.window_shape, self.strides, self.padding,
                            "pooling window")
        return tuple(w.out for w in wins)

    def first_window(self, shape):
        return windows(shape, self.window_shape, self.strides, self.padding)[0]

    def map_spatial(self, nngp, ntk, width, shape, full, band=None):
        wins = windows(shape, self.window_shape, self.strides, self.padding)
        return pool_sum(nngp, wins, band), pool_sum(ntk, wins, band), width

    def finite(self, n_in, ctx, *, readout=False, next_layer=None):
        c, shape = spatial_input(self, n_in)
        wins = check_window(self, shape, self.window_shape, self.strides, self.padding,
                            "pooling window")
        pool = (nn.AvgPool1d if self.ndim == 1 else nn.AvgPool2d)(self.window_shape, self.strides)
        return nn.Sequential(pad_module(wins), pool), (c, *(w.out for w in wins))


@dataclass(frozen=True)
class GlobalAvgPool(SpatialLayer):
    """The mean over all positions (n, C, *S) -> (n, C): the CNN-GAP kernel, which reads every
    pair of positions.

    Examples
    --------
    >>> net = infnet.serial(infnet.Conv((3, 3)), "relu", infnet.GlobalAvgPool(), infnet.Dense())
    >>> net.kernel(torch.ones(2, 3, 4, 4, dtype=torch.float64)).ntk.shape
    torch.Size([2, 2])
    """

    reads_pairs = True
    ends_spatial = True

    def out_shape(self, shape):
        return ()

    def map_spatial(self, nngp, ntk, width, shape, full, band=None):
        axes = tuple(range(-2 * len(shape), 0))
        if band is not None:  # the band's share of the mean: its counted rows' sum / P^2
            p2 = math.prod(shape) ** 2
            rows = band.counted().to(nngp.device)
            return (nngp.index_select(AXIS, rows).sum(axes) / p2,
                    ntk.index_select(AXIS, rows).sum(axes) / p2, width)
        return nngp.mean(axes), ntk.mean(axes), width

    def finite(self, n_in, ctx, *, readout=False, next_layer=None):
        c, _ = spatial_input(self, n_in)
        return GlobalMean(), c


@dataclass(frozen=True)
class Flatten(SpatialLayer):
    """The features of all positions in one vector (n, C, *S) -> (n, C P): the next Dense reads
    the mean same-position covariance (the CNN-VEC kernel).

    Examples
    --------
    >>> net = infnet.serial(infnet.Conv((3, 3)), "relu", infnet.Flatten(), infnet.Dense())
    >>> net.kernel(torch.ones(2, 3, 4, 4, dtype=torch.float64)).nngp.shape
    torch.Size([2, 2])
    """

    ends_spatial = True

    def out_shape(self, shape):
        return ()

    def map_spatial(self, nngp, ntk, width, shape, full, band=None):
        nd = len(shape)
        out_width = None if width is None else width * math.prod(shape)
        axes = tuple(range(-nd, 0))
        if band is not None:  # (full layout: a band's counted rows' share of the mean)
            p = math.prod(shape)
            return (band_diagonal(nngp, band, nd, band.counted()).sum(axes) / p,
                    band_diagonal(ntk, band, nd, band.counted()).sum(axes) / p, out_width)
        if full:
            nngp, ntk = spatial_diagonal(nngp, nd), spatial_diagonal(ntk, nd)
        return nngp.mean(axes), ntk.mean(axes), out_width

    def finite(self, n_in, ctx, *, readout=False, next_layer=None):
        c, shape = spatial_input(self, n_in)
        return nn.Flatten(), c * math.prod(shape)
