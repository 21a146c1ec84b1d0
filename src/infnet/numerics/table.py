"""A network's kernels as one function of the input angle, tabulated once, evaluated per entry.

When every input has the same norm (unit-norm data: the common case, and the infinite-depth
paper's), every layer sees the same variances, so the depth-L NNGP and NTK are functions of the
input correlation alone (docs/theory/numerical-duals.md#angle-table). We sample them exactly (layer by
layer) at
Chebyshev points in theta = arccos(rho), which respects the sqrt(1 - rho) behaviour at rho = 1,
grow the degree until the coefficients decay below the tolerance, and convert the series to a
piecewise cubic on a uniform grid in theta, verified against the series. Evaluating an entry then
costs an arccos, an index and two cubic polynomials, whatever the depth and the activation.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import numpy as np
import scipy.fft
import torch
from numpy.polynomial import chebyshev as C

Tensor = torch.Tensor

#: relative tolerance of the table against the exact layer-by-layer evaluation
TOLERANCE = 2e-14
#: relative tolerance of the piecewise cubic against the Chebyshev series
PIECE_TOLERANCE = 1e-13
#: a coefficient tail that stops decreasing below this (relative) is rounding noise
PLATEAU = 1e-12
_MAX_DEGREE = 1024
_MAX_INTERVALS = 1 << 17


class TableError(RuntimeError):
    """The function is not smooth enough in theta to be tabulated to the tolerance."""


def chebyshev_fit(fn: Callable[[np.ndarray], np.ndarray], tol: float = TOLERANCE,
                  max_degree: int = _MAX_DEGREE) -> np.ndarray:
    """Chebyshev coefficients (degree+1, outputs) of fn on theta in [0, pi], x = 1 - 2 theta/pi.

    fn maps an array of angles to an array (angles, outputs). The degree doubles from 32 until
    the last eight coefficients fall below tol * max|fn| (a plain version of chebfun's chop).
    """
    n = 32
    values = prev_tail = None
    while n <= max_degree:
        x = np.cos(np.pi * np.arange(n + 1) / n)
        if values is None:
            values = np.asarray(fn(np.pi * (1 - x) / 2), dtype=np.float64)
        else:  # the points of degree n/2 are the even ones of degree n: sample only the odd
            odd = np.asarray(fn(np.pi * (1 - x[1::2]) / 2), dtype=np.float64)
            merged = np.empty((n + 1,) + values.shape[1:])
            merged[0::2], merged[1::2] = values, odd
            values = merged
        coef = scipy.fft.dct(values, type=1, axis=0) / n
        coef[0] /= 2
        coef[-1] /= 2
        scale = np.maximum(np.abs(values).max(axis=0), 1e-300)
        tail = np.abs(coef[-8:]).max(axis=0) / scale
        if np.all(tail <= tol):
            return coef
        # a plateau: the series has converged to the rounding noise of the samples (which
        # grows like 1e-16 / theta at the smallest sampled angles), accept it below PLATEAU
        if prev_tail is not None and np.all(tail <= PLATEAU) and np.all(tail > prev_tail / 4):
            return coef
        prev_tail = tail
        n *= 2
    raise TableError(f"the network's kernel did not resolve in theta with {max_degree} "
                     "Chebyshev coefficients")


def _cubic_pieces(coef: np.ndarray, m: int) -> np.ndarray:
    """Monomial coefficients (outputs, 4, m) in u in [0, 1] (the position inside the interval)
    of the cubic interpolating the series at 4 Chebyshev points of each of m equal intervals
    of [0, pi]."""
    u = (np.cos((2 * np.arange(4) + 1) * np.pi / 8) + 1) / 2
    t = (np.arange(m)[:, None] + u[None, :]) * (np.pi / m)  # (m, 4)
    vals = C.chebval(1 - 2 * t / np.pi, coef)  # (outputs, m, 4)
    inv_vander = np.linalg.inv(np.vander(u, 4, increasing=True))  # a = V^-1 f
    return np.einsum("jk,omk->ojm", inv_vander, vals)


def _cubic_error(coef: np.ndarray, pieces: np.ndarray) -> np.ndarray:
    m = pieces.shape[-1]
    u = np.array([0.035, 0.195, 0.39, 0.585, 0.775, 0.94])
    t = (np.arange(m)[:, None] + u[None, :]) * (np.pi / m)
    exact = C.chebval(1 - 2 * t / np.pi, coef)  # (outputs, m, 6)
    approx = sum(pieces[:, j, :, None] * u**j for j in range(4))
    return np.abs(exact - approx).max(axis=(1, 2))


class AngleTable:
    """Piecewise cubic in theta of a vector function of the angle, for fast elementwise use."""

    def __init__(self, fn: Callable[[np.ndarray], np.ndarray], tol: float = TOLERANCE):
        self.coef = chebyshev_fit(fn, tol)
        scale = np.abs(self.coef).sum(axis=0)
        target = PIECE_TOLERANCE * np.maximum(scale, 1e-300)
        m = 128  # small tables stay in the L1 cache: the evaluation is gather-bound
        while True:
            pieces = _cubic_pieces(self.coef, m)
            err = _cubic_error(self.coef, pieces)
            if np.all(err <= target) or m >= _MAX_INTERVALS:
                break
            # the error of cubic pieces falls like m^-4: go to the predicted size at once (with
            # a margin), instead of doubling through every size on the way (the series is
            # evaluated at 10 points per interval per try: the cost of building a big table)
            ratio = float(np.max(err / target))
            m = min(_MAX_INTERVALS, max(2 * m, 1 << math.ceil(math.log2(m * (4 * ratio) ** 0.25))))
        if np.any(err > PIECE_TOLERANCE * np.maximum(scale, 1e-300)):
            warnings.warn(f"the kernel's table reaches only {float((err / scale).max()):.1e} "
                          f"relative accuracy with {m} cubic pieces (sharp features in theta, "
                          "e.g. a deep network in the chaotic phase)", stacklevel=3)
        self.intervals = m
        self.error = err  # of the cubic against the series, per output
        self._pieces = pieces
        self._cache: dict = {}

    @property
    def degree(self) -> int:
        return self.coef.shape[0] - 1

    def chebyshev(self, theta: np.ndarray) -> np.ndarray:
        """The series itself at angles theta: (outputs, ...)."""
        return C.chebval(1 - 2 * np.asarray(theta) / np.pi, self.coef)

    def _coefficients(self, dtype, device) -> list[list[Tensor]]:
        key = (dtype, device)
        if key not in self._cache:
            t = torch.as_tensor(self._pieces, dtype=dtype, device=device)
            self._cache[key] = [[t[o, j].contiguous() for j in range(4)] for o in range(t.shape[0])]
        return self._cache[key]

    def evaluate_theta(self, theta: Tensor, out: list[Tensor] | None = None,
                       skip: tuple[bool, ...] = ()) -> list[Tensor | None]:
        """Values at angles theta in [0, pi]; ``theta`` is overwritten (used as scratch space).
        ``out``: tensors (views allowed) of theta's shape to write the outputs into; ``skip``:
        True for the outputs not wanted (None in their place)."""
        coefs = self._coefficients(theta.dtype, theta.device)
        m = self.intervals
        t = theta.mul_(m / math.pi)  # theta >= 0: truncation is the floor
        idx = t.to(torch.int64).clamp_(max=m - 1)
        s = t.sub_(idx)  # position in the interval, in [0, 1]
        results = []
        for o, cs in enumerate(coefs):
            if o < len(skip) and skip[o]:
                results.append(None)
                continue
            acc = torch.take(cs[3], idx)
            acc = torch.addcmul(torch.take(cs[2], idx), acc, s)
            acc = torch.addcmul(torch.take(cs[1], idx), acc, s)
            dest = None if out is None else out[o]
            results.append(torch.addcmul(torch.take(cs[0], idx), acc, s, out=dest))
        return results
