"""The data's covariances, the moments a spatial network's passes start from: each input with
itself (``self_covariance``), the pairs of a tile (``pair_covariance``), and a band of rows of
the first input's positions against every position of the second (``band_covariance``,
``network.bands``). Averaged over the channels.
"""

from __future__ import annotations

import torch

Tensor = torch.Tensor

#: inputs with more channels than this take the sums over channels as a batched product
SUMMED_CHANNELS = 16


def self_covariance(x: Tensor, full: bool) -> Tensor:
    """Each input (m, C, *S) with itself: its covariance of pairs of positions (m, *S, *S)
    (``full``), else its per-position variances (m, *S), averaged over the channels."""
    c = x.shape[1]
    if not full:
        return (_same_positions(x, x, 1) if c <= SUMMED_CHANNELS else (x * x).sum(1)).div_(c)
    flat = x.reshape(x.shape[0], c, -1)
    cov = torch.einsum("mcp,mcr->mpr", flat, flat).div_(c)
    return cov.reshape(x.shape[0], *x.shape[2:], *x.shape[2:])


def pair_covariance(xa: Tensor, xb: Tensor, full: bool) -> Tensor:
    """The tile of pairs (xa[i], xb[j]): (a, b, *S, *S) covariances of pairs of positions
    (``full``), else (a, b, *S) of the same positions, averaged over the channels."""
    c, spatial = xa.shape[1], tuple(xa.shape[2:])
    fa, fb = xa.reshape(xa.shape[0], c, -1), xb.reshape(xb.shape[0], c, -1)
    if full:
        cov = torch.einsum("acp,bcr->abpr", fa, fb).div_(c)
        return cov.reshape(fa.shape[0], fb.shape[0], *spatial, *spatial)
    if c <= SUMMED_CHANNELS:
        return _same_positions(xa[:, None], xb[None, :], 2).div_(c)
    return torch.einsum("acp,bcp->abp", fa, fb).div_(c).reshape(fa.shape[0], fb.shape[0],
                                                                  *spatial)


def _same_positions(a: Tensor, b: Tensor, axis: int) -> Tensor:
    """sum over the channels (axis ``axis``) of a b, broadcasting: for a few channels one
    product and one sum a channel, in channel order, so that an input with itself and two
    copies of it give the same bits (rho exactly 1); einsum's batched product over the
    positions was 7-20x slower for 3 channels."""
    out = a.select(axis, 0) * b.select(axis, 0)
    for ch in range(1, a.shape[axis]):
        out.add_(a.select(axis, ch) * b.select(axis, ch))
    return out


def band_covariance(xa: Tensor, xb: Tensor, rows: Tensor, square: bool = False) -> Tensor:
    """The full-layout covariances (a, b, r, *S[1:], *S) of the rows ``rows`` of the first
    spatial axis of xa's inputs with every position of xb's (``square``: with the same rows
    of xb's, (a, b, r, *S[1:], r, *S[1:]))."""
    c = xa.shape[1]
    part = xa.index_select(2, rows.to(xa.device))
    if square:
        xb = xb.index_select(2, rows.to(xb.device))
    fa, fb = part.reshape(part.shape[0], c, -1), xb.reshape(xb.shape[0], c, -1)
    cov = torch.einsum("acp,bcr->abpr", fa, fb).div_(c)
    return cov.reshape(fa.shape[0], fb.shape[0], *part.shape[2:], *xb.shape[2:])
