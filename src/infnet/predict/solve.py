"""The linear algebra of kernel regression: Cholesky with escalating jitter.

``cholesky(k)`` factors K + ridge I with torch (LAPACK potrf of the linked MKL/OpenBLAS). With
``overwrite=True`` on the CPU it works in the kernel's own memory (n^2 in all): the matrix is
factored in place through its column-major view, and one triangle of K is first written to a
temporary file (``INFNET_TMPDIR`` or the system's), O(n * block) in RAM, so that a failed attempt
can be undone. If K + ridge I is not numerically positive definite, a jitter growing tenfold
from 1e-12 x mean(diag) is added to the diagonal; the jitter used is reported by a
``JitterWarning`` and kept on the result. ``solve_psd`` is the one way infnet solves with a
kernel matrix. The eigendecomposition used for finite training times (``eigen``) is in
``spectral``, the checks of the kernel matrix and the ridge in ``checks``.

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

from ..core.checks import all_finite
from .checks import check_kernel, check_ridge

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



@dataclass
class Cholesky:
    """The Cholesky factorization K + (ridge + jitter) I = L L^T, as returned by ``cholesky``.

    Methods: ``solve(y)`` = (K + (ridge + jitter) I)^(-1) y, ``half_solve(b)`` = L^(-1) b and
    ``logdet()`` = log det(K + (ridge + jitter) I).

    Parameters
    ----------
    factor : Tensor, shape (n, n)
        L, lower triangular (its upper triangle zero), possibly a column-major view of the
        kernel's memory.
    ridge : float
        The ridge added to the diagonal.
    jitter : float
        The extra jitter that made the matrix numerically positive definite (0 if none).

    Examples
    --------
    >>> k = torch.tensor([[4.0, 2.0], [2.0, 5.0]], dtype=torch.float64)
    >>> chol = infnet.predict.Cholesky(torch.linalg.cholesky(k), ridge=0.0, jitter=0.0)
    >>> chol.n, round(chol.logdet(), 6) == round(float(torch.logdet(k)), 6)
    (2, True)
    >>> y = torch.tensor([6.0, 7.0], dtype=torch.float64)
    >>> [round(float(v), 6) for v in chol.solve(y)]
    [1.0, 1.0]
    """

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
    """Factor K + ridge I by Cholesky, escalating a jitter if needed (module docstring).

    If K + ridge I is not numerically positive definite, a jitter growing tenfold from
    1e-12 x mean(diag) up to 1e-3 x mean(diag) is added to the diagonal; the jitter used is
    reported by a ``JitterWarning`` and kept on the result.

    Parameters
    ----------
    k : array_like, shape (n, n)
        The symmetric kernel matrix K (finite; integer input is taken as float64).
    ridge : float, default 0.0
        Added to the diagonal (>= 0).
    overwrite : bool, default False
        Let a contiguous CPU tensor be factored in its own memory (K is destroyed; one triangle
        is backed up in a temporary file, ``INFNET_TMPDIR`` or the system's, so that a failed
        attempt can be undone); otherwise K is kept and the factor is new memory (2 n^2 in all).
    name : str, default "k_train"
        The name of the matrix in error messages and warnings.

    Returns
    -------
    Cholesky
        The factor L, the ridge and the jitter used.

    Raises
    ------
    ValueError
        If ``k`` is not a finite, symmetric, square matrix, or ``ridge`` is negative or not
        finite.
    NotPositiveDefiniteError
        If K + ridge I is zero on its diagonal, or stays indefinite with the largest jitter.
    OSError
        With ``overwrite=True``, if the backup of the matrix cannot be written.

    Warns
    -----
    JitterWarning
        When a jitter had to be added.

    Examples
    --------
    >>> k = torch.tensor([[2.0, 1.0], [1.0, 2.0]], dtype=torch.float64)
    >>> chol = infnet.predict.cholesky(k)
    >>> chol.jitter, round(chol.logdet(), 6)  # log det = log 3
    (0.0, 1.098612)
    >>> [round(float(v), 6) for v in chol.solve(torch.tensor([3.0, 3.0], dtype=torch.float64))]
    [1.0, 1.0]
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     singular = infnet.predict.cholesky(torch.ones(2, 2, dtype=torch.float64))
    >>> singular.jitter > 0, caught[0].category.__name__
    (True, 'JitterWarning')
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


def solve_psd(k, y, ridge: float = 0.0, *, fallback: str = "jitter", name: str = "k_train"
              ) -> tuple[Tensor, str]:
    """(K + ridge I)^-1 y and a note: the one way infnet solves with a kernel matrix.

    ``fallback="jitter"``: ``cholesky`` (an escalating jitter, reported by ``JitterWarning``;
    ``NotPositiveDefiniteError`` beyond it); the note is empty. ``"lstsq"``: the exact Cholesky
    solve where K + ridge I factors, else the min-norm least-squares solution (SVD, singular
    values below eps times the largest cut; the interpolant that kernel classifiers of smooth,
    numerically singular kernels need), said in the note.
    """
    if fallback not in ("jitter", "lstsq"):
        raise ValueError(f"fallback must be 'jitter' or 'lstsq', got {fallback!r}")
    if fallback == "jitter":
        return cholesky(k, ridge, name=name).solve(y), ""
    k = check_kernel(k, name)
    a = k + check_ridge(ridge) * torch.eye(k.shape[0], dtype=k.dtype, device=k.device)
    chol, info = torch.linalg.cholesky_ex(a)
    if int(info) == 0 and all_finite(chol.diagonal()):
        return torch.cholesky_solve(y, chol), ""
    alpha = torch.linalg.lstsq(a.cpu(), y.cpu(), driver="gelsd").solution.to(k.device)
    return alpha, f"{name} + ridge I is singular to double precision: min-norm least squares"


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
