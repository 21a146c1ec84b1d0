"""The linear algebra of kernel regression: Cholesky with escalating jitter, and eigenvectors.

``cholesky(k)`` factors K + ridge I with torch (LAPACK potrf of the linked MKL/OpenBLAS). With
``overwrite=True`` on the CPU it works in the kernel's own memory (n^2 in all): the matrix is
factored in place through its column-major view, and one triangle of K is first written to a
temporary file (``INFNET_TMPDIR`` or the system's), O(n * block) in RAM, so that a failed attempt
can be undone. If K + ridge I is not numerically positive definite, a jitter growing tenfold
from 1e-12 x mean(diag) is added to the diagonal; the jitter used is reported by a
``JitterWarning`` and kept on the result. ``eigen(k)`` is the symmetric eigendecomposition used
for finite training times.

(SciPy's potrf, which leaves the other triangle untouched, was the first choice; its OpenBLAS
crashes, SIGSEGV, on n >= 16000 once torch's MKL threads have run in the same process.)
"""

from __future__ import annotations

import math
import os
import tempfile
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from ..activations.base import all_finite

Tensor = torch.Tensor

#: first jitter, relative to the mean of the diagonal; it grows by JITTER_GROWTH up to JITTER_MAX
JITTER_START = 1e-12
JITTER_GROWTH = 10.0
JITTER_MAX = 1e-3
#: rows restored per step after a failed in-place factorization (memory O(n * block))
_RESTORE_BLOCK = 1024


class JitterWarning(UserWarning):
    """K + ridge I was not numerically positive definite; a jitter was added to its diagonal."""


class NotPositiveDefiniteError(ValueError):
    """K + ridge I stayed indefinite with the largest jitter: not a kernel matrix."""


def check_kernel(k, name: str = "k_train") -> Tensor:
    """k as a square floating tensor without NaN or inf, or a ValueError naming the problem."""
    k = torch.as_tensor(k)
    if not k.is_floating_point():
        k = k.to(torch.float64)
    if k.ndim != 2 or k.shape[0] != k.shape[1] or k.shape[0] == 0:
        raise ValueError(f"{name} must be a square (n, n) kernel matrix with n >= 1, "
                         f"got shape {tuple(k.shape)}")
    if not all_finite(k):
        raise ValueError(f"{name} contains NaN or inf entries: the kernel overflowed or the "
                         "inputs were not finite")
    _check_symmetric(k, name)
    return k


#: tiles of the symmetry check: most are bitwise equal to their mirror (one pass, torch.equal)
_SYMMETRY_TILE = 2048


def _check_symmetric(k: Tensor, name: str) -> None:
    """A kernel matrix is symmetric; a solve reads one triangle only, so an asymmetric one
    would give predictions inconsistent with the matrix given. Rounding (a Gram matrix from
    BLAS) is allowed: max(1e-10, 1000 eps) of the largest diagonal entry."""
    n, b = k.shape[0], _SYMMETRY_TILE
    scale = float(k.diagonal().abs().max())
    tol = max(1e-10, 1000 * torch.finfo(k.dtype).eps) * scale
    for i in range(0, n, b):
        for j in range(i, n, b):
            upper, lower = k[i:i + b, j:j + b], k[j:j + b, i:i + b].T
            if torch.equal(upper, lower):
                continue
            diff = (upper - lower).abs()
            worst = float(diff.max())
            if not worst <= tol:
                r, c = divmod(int(diff.argmax()), diff.shape[1])
                raise ValueError(
                    f"{name} is not symmetric: K[{i + r}, {j + c}] and K[{j + c}, {i + r}] differ "
                    f"by {worst:.3g} ({worst / max(scale, 1e-300):.1e} of its largest diagonal "
                    "entry, more than rounding). A kernel matrix is symmetric; if the difference "
                    "is rounding of your own computation, pass (K + K.T) / 2.")


@dataclass
class Cholesky:
    """K + (ridge + jitter) I = L L^T; ``factor`` is L (its upper triangle zero), possibly a
    column-major view of the kernel's memory."""

    factor: Tensor
    ridge: float
    jitter: float

    @property
    def n(self) -> int:
        return self.factor.shape[0]

    def solve(self, y: Tensor) -> Tensor:
        """(K + (ridge + jitter) I)^(-1) y for y of shape (n,) or (n, m)."""
        y = y.to(self.factor)
        # two triangular solves: cholesky_solve would copy the factor (another n^2)
        z = torch.linalg.solve_triangular(self.factor, y.reshape(self.n, -1), upper=False)
        return torch.linalg.solve_triangular(self.factor.mT, z, upper=True).reshape(y.shape)

    def half_solve(self, b: Tensor) -> Tensor:
        """L^(-1) b: the whitened cross-kernel of a posterior covariance."""
        b = b.to(self.factor)
        return torch.linalg.solve_triangular(self.factor, b.reshape(self.n, -1),
                                             upper=False).reshape(b.shape)

    def logdet(self) -> float:
        """log det(K + (ridge + jitter) I)."""
        return 2.0 * float(self.factor.diagonal().log().sum())


def cholesky(k, ridge: float = 0.0, *, overwrite: bool = False, name: str = "k_train") -> Cholesky:
    """Factor K + ridge I, escalating a jitter if needed (module docstring).

    ``overwrite=True`` lets a CPU tensor be factored in its own memory (K is destroyed);
    otherwise K is kept and the factor is new memory (2 n^2 in all).
    """
    k = check_kernel(k, name)
    ridge = check_ridge(ridge)
    n = k.shape[0]
    scale = float(k.diagonal().abs().mean()) + ridge
    if scale == 0.0:
        raise NotPositiveDefiniteError(f"{name} is zero on its diagonal: not a kernel matrix "
                                       "(did the network output a constant?)")
    jitters = [0.0] + [scale * JITTER_START * JITTER_GROWTH**i
                       for i in range(int(round(math.log10(JITTER_MAX / JITTER_START))) + 1)]
    if overwrite and k.device.type == "cpu" and k.is_contiguous():
        found = _cholesky_in_place(k, ridge, jitters)
    else:
        found = _cholesky_copy(k, ridge, jitters)
    if found is None:
        raise NotPositiveDefiniteError(
            f"{name} + ridge I (n = {n}) is not positive definite even with a jitter of "
            f"{jitters[-1]:.3g} ({JITTER_MAX:g} of its mean diagonal): it is not a kernel matrix "
            "of these inputs; check the kernel, or use a ridge")
    factor, jitter = found
    if jitter > 0:
        warnings.warn(f"{name} + ridge I (n = {n}) was not numerically positive definite; a "
                      f"jitter of {jitter:.3g} ({jitter / scale:.1e} of its mean diagonal) was "
                      "added to the diagonal. A ridge makes the solve stable.",
                      JitterWarning, stacklevel=3)
    return Cholesky(factor, ridge, jitter)


def _attempt(a: Tensor) -> bool:
    """potrf in place on the column-major matrix ``a``: True when it succeeded."""
    info = torch.empty((), dtype=torch.int32, device=a.device)
    torch.linalg.cholesky_ex(a, out=(a, info))
    return int(info) == 0 and all_finite(a.diagonal())


def _cholesky_in_place(k: Tensor, ridge: float, jitters: list[float]):
    """potrf on the column-major view k.mT (the same symmetric matrix: its lower triangle is the
    upper triangle of k); the upper triangle of k is saved first (``_Backup``)."""
    a = k.mT
    diag = k.diagonal().clone()
    with _Backup(k) as backup:
        for i, jitter in enumerate(jitters):
            if i:
                backup.restore(k)
            if ridge + jitter:
                k.diagonal().copy_(diag + (ridge + jitter))
            if _attempt(a):
                return a, jitter
        backup.restore(k)
    return None


class _Backup:
    """The upper triangle of a square CPU tensor, row block by row block, in a temporary file
    (deleted on exit; plain reads and writes, so its pages never count as the process's memory);
    ``restore`` writes it back and mirrors it onto the lower triangle."""

    def __init__(self, k: Tensor):
        self.n = k.shape[0]
        self.blocks = [(i, min(i + _RESTORE_BLOCK, self.n)) for i in range(0, self.n, _RESTORE_BLOCK)]
        self.k = k

    def __enter__(self):
        a = self.k.numpy()
        try:
            self.file = tempfile.TemporaryFile(dir=os.environ.get("INFNET_TMPDIR"))
            for i, j in self.blocks:
                self.file.write(np.ascontiguousarray(a[i:j, i:]).data)
            self.file.flush()
        except OSError as err:
            size = a.itemsize * sum((j - i) * (self.n - i) for i, j in self.blocks)
            raise OSError(f"could not write the backup of the kernel matrix ({size / 2**20:.0f} "
                          f"MiB) to a temporary file: {err}; set INFNET_TMPDIR to a folder with "
                          "space, or use overwrite=False (twice the memory)") from err
        return self

    def restore(self, k: Tensor) -> None:
        a = k.numpy()
        self.file.seek(0)
        for i, j in self.blocks:
            block = np.empty((j - i, self.n - i), dtype=a.dtype)
            if self.file.readinto(block.data) != block.nbytes:
                raise OSError("the temporary backup of the kernel matrix was cut short")
            a[i:j, i:] = block
        for i, j in self.blocks:  # lower triangle from the upper one
            a[j:, i:j] = a[i:j, j:].T
            block = a[i:j, i:j]
            block[...] = np.triu(block) + np.triu(block, 1).T

    def __exit__(self, *exc):
        self.file.close()
        return False


def _cholesky_copy(k: Tensor, ridge: float, jitters: list[float]):
    eye = torch.eye(k.shape[0], dtype=k.dtype, device=k.device)
    for jitter in jitters:
        factor, info = torch.linalg.cholesky_ex(k + (ridge + jitter) * eye)
        if int(info) == 0 and all_finite(factor.diagonal()):
            return factor, jitter
    return None


@dataclass
class Eigen:
    """K + ridge I = V diag(values) V^T, the values clipped at 0 (rounding can make the smallest
    slightly negative; a kernel matrix is positive semi-definite)."""

    values: Tensor
    vectors: Tensor
    ridge: float
    clipped: float  # the most negative eigenvalue before clipping (0 if none)


def eigen(k, ridge: float = 0.0, *, name: str = "k_train") -> Eigen:
    """Symmetric eigendecomposition of K + ridge I (torch ``eigh``, memory ~3 n^2)."""
    k = check_kernel(k, name)
    ridge = check_ridge(ridge)
    sym = (k + k.T) / 2
    if ridge:
        sym.diagonal().add_(ridge)
    values, vectors = torch.linalg.eigh(sym)
    lowest = float(values[0])
    scale = float(values.abs().max())
    if lowest < -1e-6 * scale:
        raise NotPositiveDefiniteError(f"{name} + ridge I has an eigenvalue {lowest:.3g} "
                                       f"(largest {scale:.3g}): not a kernel matrix")
    return Eigen(values.clamp(min=0), vectors, ridge, min(lowest, 0.0))


def check_ridge(ridge) -> float:
    try:
        ridge = float(ridge)
    except (TypeError, ValueError):
        raise ValueError(f"ridge must be a number >= 0, got {ridge!r}") from None
    if not (math.isfinite(ridge) and ridge >= 0):
        raise ValueError(f"ridge must be a finite number >= 0, got {ridge!r}")
    return ridge
