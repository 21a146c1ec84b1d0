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
    """The Nystrom preconditioner: P^(-1) = (lambda_r + mu) U (Lambda + mu I)^(-1) U^T + (I - U U^T).

    See the module docstring; ``nystrom`` builds it, ``apply`` applies P^(-1), ``rank`` is r.

    Parameters
    ----------
    U : torch.Tensor
        (n, r), the operator's dtype: the approximate top eigenvectors of K.
    eigenvalues : torch.Tensor
        (r,) float64, decreasing: Lambda (lambda_r the last).
    mu : float
        The ridge of K + mu I.
    shift : float
        nu, the shift of the sketch.
    sketch : str
        The test matrix it was built from, "columns" or "gaussian".

    Examples
    --------
    >>> u = torch.eye(4, 2, dtype=torch.float64)
    >>> p = infnet.scale.NystromPreconditioner(u, torch.tensor([3.0, 1.0], dtype=torch.float64),
    ...                                        mu=1.0, shift=0.0, sketch="columns")
    >>> p.rank
    2
    >>> p.apply(torch.ones(4, 1, dtype=torch.float64)).flatten().tolist()
    [0.5, 1.0, 1.0, 1.0]
    """

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
    """Build the randomized Nystrom preconditioner of K + mu I of the given rank.

    See the module docstring (Frangella, Tropp & Udell 2021, Alg. 2.1): eigenvalues below the
    shift nu are rounding and dropped, so the rank kept may be smaller than asked.

    Parameters
    ----------
    op : KernelOperator
        The kernel matrix K.
    rank : int
        r, at most n.
    mu : float, default 0.0
        The ridge of K + mu I.
    sketch : {"columns", "gaussian"}, default "columns"
        The test matrix: r columns of the identity at uniform landmarks (``op.columns``), or
        a Gaussian one (``op.matvec`` with r right-hand sides).
    seed : int, default 0
        Seed of the landmarks or the Gaussian matrix.
    device : torch.device, optional
        The operator's device (None: that of its diagonal).

    Returns
    -------
    NystromPreconditioner
        U, Lambda, mu, the shift nu and the sketch.

    Raises
    ------
    ValueError
        sketch invalid, or an operator's answer of the wrong shape.
    TypeError
        An operator's answer that is not a tensor.
    FloatingPointError
        An operator's answer with NaN or inf.
    infnet.predict.solve.NotPositiveDefiniteError
        The kernel is zero on the sample, or Omega^T K Omega + nu I stays indefinite: the
        operator is not positive semi-definite.

    Examples
    --------
    >>> net = infnet.fc("relu", depth=2, w_std=2**0.5)
    >>> x = torch.randn(20, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    >>> op = infnet.scale.DenseOperator(net.kernel(x / x.norm(dim=1, keepdim=True)).ntk)
    >>> p = infnet.scale.nystrom(op, 5, mu=1e-3)
    >>> p.rank, tuple(p.U.shape), p.sketch
    (5, (20, 5), 'columns')
    >>> bool((p.eigenvalues[:-1] >= p.eigenvalues[1:]).all())
    True
    >>> p.apply(torch.ones(20, 2, dtype=torch.float64)).shape
    torch.Size([20, 2])
    """
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
    """The Nystrom rank used when none is given: min(n, 1000) (module docstring).

    Parameters
    ----------
    n : int
        The size of the kernel matrix.

    Returns
    -------
    int
        min(n, 1000).

    Examples
    --------
    >>> infnet.scale.default_rank(500), infnet.scale.default_rank(60000)
    (500, 1000)
    """
    return min(n, 1000)
