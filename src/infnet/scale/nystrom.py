"""Preconditioner (Frangella, Tropp & Udell 2021, "Randomized Nystrom preconditioning",
arXiv 2110.02820, Alg. 2.1 and Eq. 5.3). From a test matrix Omega (n x r, orthonormal) and the
sketch Ysk = K Omega: shift nu = sqrt(n) eps |Ysk|_2, C = chol(Omega^T (Ysk + nu Omega)),
B = (Ysk + nu Omega) C^(-1), B = U Sigma V^T, Lambda = max(Sigma^2 - nu, 0), keeping the
eigenvalues above nu (below it they are rounding); then K ~ U Lambda U^T and

    P^(-1) = (lambda_r + mu) U (Lambda + mu I)^(-1) U^T + (I - U U^T).

The shift and the Cholesky of an r x r matrix (in float64) keep it stable in float32 and for a
singular sample. Two test matrices, ``sketch=``:

- ``"columns"`` (default): Omega = r columns of the identity at landmarks drawn uniformly, so
  Ysk = K[:, landmarks] is one call to ``columns`` (n r kernel entries) and the algorithm above is
  the classical landmark Nystrom approximation (Williams & Seeger 2001) made stable. Frangella et
  al. assume products with A are the cheap access; here they are not: a product recomputes (or
  reads from disk) all n^2 entries, the cost of one CG iteration, while n r entries cost r / n
  of that. On kernels of data with evenly spread leverage (unit-norm inputs, the NTK's flat
  tail) uniform landmarks approximate the top of the spectrum nearly as well as a sketch.
- ``"gaussian"``: the paper's Gaussian test matrix, Ysk = K Omega through ``matvec`` with r
  right-hand sides: one more pass over K and 2 n^2 r flops; better when a few points dominate
  (outliers, very uneven norms).

Rank: the preconditioned condition number is about (lambda_(r+1) + mu) / (lambda_min + mu), so r
should reach the kernel's effective dimension at the scale mu (paper, Thm 5.1); the NTK's
spectrum decays slowly, so more rank keeps paying. The build costs n r kernel entries and an
O(n r^2) SVD, memory n r numbers, small beside a product with K once n is in the thousands
(n = 5000, ReLU NTK: rank 283 -> 48 iterations, rank 1000 -> 32 and 2 s to build; n = 60000
float32: 17 s and 235 MB at rank 980, against minutes per product). Default min(n, 1000).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..predict.solve import NotPositiveDefiniteError
from .operators import KernelOperator, _checked

Tensor = torch.Tensor

#: power iterations for |Ysk|_2 in the Nystrom shift
_POWER_STEPS = 20
#: tenfold increases of the Nystrom shift tried when the r x r Cholesky fails
_SHIFT_RETRIES = 6


@dataclass
class NystromPreconditioner:
    """P^(-1) = (lambda_r + mu) U (Lambda + mu I)^(-1) U^T + (I - U U^T) (module docstring)."""

    U: Tensor        # (n, r), the operator's dtype
    eigenvalues: Tensor  # (r,) float64, decreasing: Lambda
    mu: float
    shift: float     # nu
    sketch: str

    @property
    def rank(self) -> int:
        return self.U.shape[1]

    def apply(self, r: Tensor) -> Tensor:
        """P^(-1) r for r of shape (n, m): r + U [((lambda_r + mu) / (Lambda + mu) - 1) U^T r]."""
        if self.rank == 0:
            return r.clone()
        lam = self.eigenvalues
        scale = ((lam[-1] + self.mu) / (lam + self.mu) - 1.0).to(r)
        coef = (self.U.T @ r.to(self.U)).to(r) * scale[:, None]
        return r + (self.U @ coef.to(self.U)).to(r)


def nystrom(op: KernelOperator, rank: int, *, mu: float = 0.0, sketch: str = "columns",
            seed: int = 0, device=None) -> NystromPreconditioner:
    """The randomized Nystrom preconditioner of K + mu I of the given rank (module docstring);
    ``device``: the operator's (None: that of its diagonal)."""
    if sketch not in ("columns", "gaussian"):
        raise ValueError(f"sketch must be 'columns' or 'gaussian', got {sketch!r}")
    n, dtype = op.n, op.dtype
    rank = min(int(rank), n)
    gen = torch.Generator().manual_seed(int(seed))
    device = op.diagonal().device if device is None else device
    if sketch == "columns":
        idx = torch.randperm(n, generator=gen)[:rank].sort().values.to(device)
        y = _checked(op.columns(idx), (n, rank), "columns", dtype).clone()  # ours to shift
        small = y[idx].to(torch.float64)
        omega = None
    else:
        omega = torch.linalg.qr(torch.randn(n, rank, generator=gen, dtype=dtype).to(device)).Q
        y = _checked(op.matvec(omega), (n, rank), "matvec", dtype)
        small = omega.T.to(torch.float64) @ y.to(torch.float64)
    small = (small + small.T) / 2
    norm = _spectral_norm(y, gen)
    if norm == 0.0:
        raise NotPositiveDefiniteError("the kernel is zero on the sampled columns: not a kernel "
                                       "matrix (did the network output a constant?)")
    shift = math.sqrt(n) * torch.finfo(dtype).eps * norm
    eye = torch.eye(rank, dtype=torch.float64, device=small.device)
    for _ in range(_SHIFT_RETRIES):
        factor, info = torch.linalg.cholesky_ex(small + shift * eye, upper=True)
        if int(info) == 0:
            break
        shift *= 10.0
    else:
        raise NotPositiveDefiniteError(f"Omega^T K Omega + nu I is not positive definite even with "
                                       f"nu = {shift:.3g} ({shift / norm:.1e} of |K Omega|): "
                                       "the operator is not positive semi-definite")
    if omega is None:  # Ysk + nu Omega, in place
        y[idx, torch.arange(rank, device=device)] += shift
    else:
        y.add_(omega, alpha=shift)
        del omega
    b = torch.linalg.solve_triangular(factor.to(dtype), y, upper=True, left=False)
    del y
    u, sigma, _ = torch.linalg.svd(b, full_matrices=False)
    del b
    lam = (sigma.to(torch.float64) ** 2 - shift).clamp(min=0.0)
    # eigenvalues below the shift are rounding (~eps |K|), not resolved: dropped, as a tiny
    # lambda_r would wreck P with mu = 0. Decreasing: the first `keep`.
    keep = int((lam > shift).sum())
    return NystromPreconditioner(u[:, :keep].contiguous(), lam[:keep], float(mu), shift, sketch)


def _spectral_norm(y: Tensor, gen: torch.Generator) -> float:
    """|y|_2 by power iteration on y^T y (a slight underestimate; exact for rank one)."""
    v = torch.randn(y.shape[1], 1, generator=gen, dtype=torch.float64).to(y.device)
    est = 0.0
    for _ in range(_POWER_STEPS):
        w = (y.T @ (y @ v.to(y))).to(torch.float64)
        est = float(w.norm())
        if est == 0.0:
            return 0.0
        v = w / est
    return math.sqrt(est)


def default_rank(n: int) -> int:
    """min(n, 1000): the rank used when none is given (module docstring)."""
    return min(n, 1000)
