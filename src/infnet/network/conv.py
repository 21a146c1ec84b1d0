"""Convolutional and locally connected layers in the infinite-width limit (CNN-GP, CNTK).

Inputs are images (n, C, H, W) or sequences (n, C, L), torch's layout. At infinite width every
channel carries the same covariance, so a tile of pairs carries one spatial covariance per pair
of inputs, in the diagonal layout (same positions) or the full one (pairs of positions), the
network choosing the full layout only where a later layer reads it (``SpatialLayer.reads_pairs``:
pooling). docs/theory/architectures.md:

    Conv (NTK):      Sigma'[i, j] = w^2 mean_d Sigma[i + d, j + d] + b^2
                     Theta'[i, j] = w^2 mean_d Theta[i + d, j + d] + Sigma'[i, j]
    Conv (standard): Theta'[i, j] = C k mean_d Sigma[i + d, j + d] + [b] + w^2 mean_d Theta[...]
    ConvLocal:       the same on i = j, and 0 for i != j (unshared weights decorrelate positions)

(Novak et al. 2019, arXiv 1810.05148; Arora et al. 2019, arXiv 1904.11955.) The mean over the
offsets d of a k x k filter is a sum over row offsets then one over column offsets (``shifts``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..core.checks import check_parameterization, check_stds
from .bands import band_diagonal, embed_band_diagonal
from .layers import Layer, Moments
from .modules import LocalConv, Pad, Scale
from .shifts import PADDINGS, Window, conv_sum, embed_diagonal, spatial_diagonal, windows

Tensor = torch.Tensor


class SpatialLayer(Layer):
    """A layer of spatial inputs: it maps a tile's spatial covariances (``map_spatial``) and
    the spatial shape (``out_shape``), and declares whether it reads covariances of distinct
    positions (``reads_pairs``) and whether it ends the spatial part (``ends_spatial``:
    Flatten, GlobalAvgPool)."""

    spatial = True
    reads_pairs = False
    ends_spatial = False
    #: the number of spatial dimensions it works on (None: any)
    ndim: int | None = None

    def apply(self, m: Moments, q1_out=None, q2_out=None) -> Moments:
        raise TypeError(f"{self!r} needs spatial inputs: give images (n, C, H, W) or "
                        "sequences (n, C, L) to the network's kernel")

    def out_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The spatial shape after the layer (() once flattened or pooled globally)."""
        return shape

    def map_spatial(self, nngp: Tensor, ntk: Tensor, width: int | None,
                    shape: tuple[int, ...], full: bool, band=None
                    ) -> tuple[Tensor, Tensor, int | None]:
        """(NNGP, NTK, width) after the layer, from tensors whose trailing axes are ``shape``
        (diagonal layout) or ``shape`` twice (``full``). ``band``: the first position holds
        only some rows of the first spatial axis (``network.bands``): the ``BandStep`` of
        ``first_window`` for layers with one, else the ``Band``."""
        raise NotImplementedError

    def first_window(self, shape: tuple[int, ...]) -> Window | None:
        """The layer's window along the first spatial axis (None: no window)."""
        return None


def as_sizes(value, name: str, ndim: int | None = None) -> tuple[int, ...]:
    t = (value,) if isinstance(value, int) and not isinstance(value, bool) else tuple(value)
    if not t or len(t) > 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1
                                      for v in t):
        raise ValueError(f"{name} must be 1 or 2 positive integers (1-D or 2-D), got {value!r}")
    if ndim is not None and len(t) != ndim:
        raise ValueError(f"{name} {t} has {len(t)} dimensions but the filter has {ndim}")
    return t


def check_window(layer, shape: tuple[int, ...], k: tuple[int, ...], strides: tuple[int, ...],
                 padding: str, what: str) -> tuple[Window, ...]:
    if len(shape) != len(k):
        raise ValueError(f"{layer!r} has a {len(k)}-D {what} but its input has "
                         f"{len(shape)} spatial dimensions {shape}: give "
                         f"{'(n, C, L)' if len(k) == 1 else '(n, C, H, W)'} inputs")
    wins = windows(shape, k, strides, padding)
    for w in wins:
        w.check(what)
    return wins


def pad_module(wins: tuple[Window, ...]) -> Pad:
    pads = []
    for w in reversed(wins):  # torch's pad: last axis first
        pads += [w.pad_lo, w.pad_total - w.pad_lo]
    return Pad(tuple(pads), circular=wins[0].padding == "CIRCULAR")


@dataclass(frozen=True)
class Conv(SpatialLayer):
    """A convolution with weight sharing: Sigma' = w^2 mean_d Sigma[i + d, j + d] + b^2.

    Parameters
    ----------
    filter_shape : tuple of int
        (k,) for sequences (n, C, L), (kh, kw) for images (n, C, H, W).
    w_std, b_std : float
        The stds of the weights (times 1/sqrt(C k)) and of the bias (None: no bias), as in
        ``Dense``.
    strides : tuple of int, optional
        One stride per spatial dimension (default 1).
    padding : {"SAME", "VALID", "CIRCULAR"}
        SAME keeps ceil(size / stride) positions, padding zeros; CIRCULAR wraps around;
        VALID keeps the positions where the filter fits.
    parameterization : {"ntk", "standard"}
        As in ``Dense`` ("standard" needs the input channels: ``width`` of the layer before).
    width : int, optional
        The output channels (read by the standard parameterization of the next layer).

    Raises
    ------
    ValueError
        A filter, stride or width that is not positive, an unknown padding or
        parameterization, invalid stds (``Dense``).

    Examples
    --------
    >>> conv = infnet.Conv((3, 3), w_std=2**0.5, padding="SAME")
    >>> net = infnet.serial(conv, "relu", infnet.Flatten(), infnet.Dense())
    >>> images = torch.ones(2, 1, 4, 4, dtype=torch.float64)
    >>> net.kernel(images).nngp.shape
    torch.Size([2, 2])
    """

    filter_shape: tuple[int, ...] = (3, 3)
    w_std: float = 1.0
    b_std: float | None = 0.0
    strides: tuple[int, ...] | None = None
    padding: str = "SAME"
    parameterization: str = "ntk"
    width: int | None = None

    def __post_init__(self):
        k = as_sizes(self.filter_shape, "filter_shape")
        object.__setattr__(self, "filter_shape", k)
        s = (1,) * len(k) if self.strides is None else as_sizes(self.strides, "strides", len(k))
        object.__setattr__(self, "strides", s)
        if self.padding not in PADDINGS:
            raise ValueError(f"padding must be one of {PADDINGS}, got {self.padding!r}")
        check_stds(self.w_std, self.b_std)
        check_parameterization(self.parameterization)
        if self.width is not None and not (isinstance(self.width, int) and self.width >= 1):
            raise ValueError(f"width must be a positive integer or None, got {self.width!r}")

    @property
    def ndim(self) -> int:
        return len(self.filter_shape)

    def gaussian_out(self, gaussian_in: bool) -> bool:
        return True

    def out_shape(self, shape):
        wins = check_window(self, shape, self.filter_shape, self.strides, self.padding, "filter")
        return tuple(w.out for w in wins)

    def _maps(self, nngp, ntk, width, wins, full, band=None):
        w2, b2 = self.w_std**2, (self.b_std or 0.0) ** 2
        if self.parameterization == "ntk":
            out = conv_sum(nngp, wins, full, w2, b2, band)
            return out, conv_sum(ntk, wins, full, w2, band=band).add_(out)
        if width is None:
            raise ValueError("the standard parameterization needs the input channels of every "
                             "Conv: give width=... to the layer before it")
        mean_nngp = conv_sum(nngp, wins, full, band=band)
        fan = width * math.prod(self.filter_shape)
        return w2 * mean_nngp + b2, conv_sum(ntk, wins, full, w2, band=band).add_(
            fan * mean_nngp + (0.0 if self.b_std is None else 1.0))

    def first_window(self, shape):
        return windows(shape, self.filter_shape, self.strides, self.padding)[0]

    def map_spatial(self, nngp, ntk, width, shape, full, band=None):
        wins = windows(shape, self.filter_shape, self.strides, self.padding)
        nngp, ntk = self._maps(nngp, ntk, width, wins, full, band)
        return nngp, ntk, self.width

    def _channels(self, ctx) -> int:
        if self.width is not None and (self.parameterization == "standard" or ctx.width is None):
            return self.width
        if ctx.width is None:
            raise ValueError(f"give the hidden width (channels): {self!r} has none in the spec "
                             "(net.finite(width, in_features=(C, H, W)))")
        return ctx.width

    def finite(self, n_in, ctx, *, readout=False, next_layer=None):
        """Padding, then ``nn.Conv1d``/``nn.Conv2d`` (``ConvLocal``: a ``LocalConv``), alone
        (standard parameterization) or between fixed scalings (NTK: the standard normal
        variables are trained)."""
        c_in, shape = spatial_input(self, n_in)
        wins = check_window(self, shape, self.filter_shape, self.strides, self.padding, "filter")
        c_out = self._channels(ctx)
        fan = c_in * math.prod(self.filter_shape)
        has_bias = self.b_std is not None and (self.parameterization == "standard" or self.b_std > 0)
        ntk = self.parameterization == "ntk"
        core = self._core(c_in, c_out, wins, has_bias, ctx)
        with torch.no_grad():  # drawn standard normal; the standard parameterization scales
            if not ntk:
                core.weight.mul_(self.w_std / math.sqrt(fan))
                if has_bias:
                    core.bias.mul_(self.b_std or 0.0)
        mods = [pad_module(wins)]
        gain = self.w_std / math.sqrt(fan)
        if not ntk:
            mods.append(core)
        elif not has_bias:
            mods += [Scale(gain), core]
        else:
            mods += [Scale(gain / self.b_std), core, Scale(self.b_std)]
        return nn.Sequential(*mods), (c_out, *(w.out for w in wins))

    def _core(self, c_in: int, c_out: int, wins, has_bias: bool, ctx) -> nn.Module:
        """The convolution with standard normal parameters, drawn on the CPU from the context's
        generator (one seed, one network on every device)."""
        conv = (nn.Conv1d if self.ndim == 1 else nn.Conv2d)(
            c_in, c_out, self.filter_shape, stride=self.strides, bias=has_bias,
            dtype=ctx.dtype, device=ctx.device)
        with torch.no_grad():
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=ctx.generator,
                                          dtype=ctx.dtype))
            if conv.bias is not None:
                conv.bias.copy_(torch.randn(conv.bias.shape, generator=ctx.generator,
                                            dtype=ctx.dtype))
        return conv


@dataclass(frozen=True)
class ConvLocal(Conv):
    """A locally connected layer (LCN): a convolution with its own filter and bias at every
    output position. Distinct positions decorrelate (Sigma'[i, j] = 0 for i != j); without
    pooling its kernel equals the convolution's (Novak et al. 2019).

    Parameters
    ----------
    filter_shape, w_std, b_std, strides, padding, parameterization, width
        As in ``Conv``; the bias too is one per output position.

    Examples
    --------
    >>> x = torch.randn(3, 2, 5, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    >>> lcn = infnet.serial(infnet.network.ConvLocal((3, 3)), "relu", infnet.Flatten(), infnet.Dense())
    >>> cnn = infnet.serial(infnet.Conv((3, 3)), "relu", infnet.Flatten(), infnet.Dense())
    >>> bool(torch.allclose(lcn.kernel(x).ntk, cnn.kernel(x).ntk, rtol=1e-13, atol=0))
    True
    """

    def map_spatial(self, nngp, ntk, width, shape, full, band=None):
        wins = windows(shape, self.filter_shape, self.strides, self.padding)
        if not full:
            return (*self._maps(nngp, ntk, width, wins, False, band), self.width)
        nd = len(shape)
        if band is not None:  # the same positions of the band's rows, and back
            out = tuple(w.out for w in wins)
            nngp, ntk = self._maps(band_diagonal(nngp, band.source, nd),
                                   band_diagonal(ntk, band.source, nd), width, wins, False, band)
            return (embed_band_diagonal(nngp, band.band, out),
                    embed_band_diagonal(ntk, band.band, out), self.width)
        nngp, ntk = self._maps(spatial_diagonal(nngp, nd), spatial_diagonal(ntk, nd), width,
                               wins, False)
        return embed_diagonal(nngp, nd), embed_diagonal(ntk, nd), self.width

    def _core(self, c_in, c_out, wins, has_bias, ctx):
        return LocalConv(c_in, c_out, self.filter_shape, self.strides,
                         tuple(w.out for w in wins), has_bias, ctx.generator, ctx.dtype,
                         ctx.device)


def spatial_input(layer, n_in) -> tuple[int, tuple[int, ...]]:
    if isinstance(n_in, int):
        raise ValueError(f"{layer!r} needs spatial inputs, but its input has {n_in} flat "
                         "features (after Flatten or GlobalAvgPool, or in_features=int): give "
                         "in_features=(C, H, W) and put spatial layers before Flatten")
    return n_in[0], tuple(n_in[1:])
