"""The symmetric eigendecomposition of K + ridge I, for finite training times.

``eigen(k)`` (torch ``eigh``, memory ~3 n^2) returns an ``Eigen``: the eigenvalues clipped at 0
(rounding can make the smallest slightly negative), the eigenvectors, the ridge, and the most
negative eigenvalue before clipping. ``GradientDescentMSE`` (``dynamics``) uses it at t < inf.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .checks import check_kernel, check_ridge
from .solve import NotPositiveDefiniteError

Tensor = torch.Tensor


@dataclass
class Eigen:
    """The symmetric eigendecomposition K + ridge I = V diag(values) V^T, as returned by ``eigen``.

    The values are clipped at 0 (rounding can make the smallest slightly negative; a kernel
    matrix is positive semi-definite).

    Parameters
    ----------
    values : Tensor, shape (n,)
        The eigenvalues in ascending order, clipped at 0.
    vectors : Tensor, shape (n, n)
        The orthonormal eigenvectors V, one per column.
    ridge : float
        The ridge added to the diagonal of K.
    clipped : float
        The most negative eigenvalue before clipping (0 if none).

    Examples
    --------
    >>> vectors = torch.eye(2, dtype=torch.float64)
    >>> e = infnet.predict.Eigen(torch.tensor([1.0, 3.0], dtype=torch.float64), vectors, 0.0, 0.0)
    >>> (e.vectors @ torch.diag(e.values) @ e.vectors.T).diagonal().tolist()
    [1.0, 3.0]
    """

    values: Tensor
    vectors: Tensor
    ridge: float
    clipped: float  # the most negative eigenvalue before clipping (0 if none)


def eigen(k, ridge: float = 0.0, *, name: str = "k_train") -> Eigen:
    """Symmetric eigendecomposition of K + ridge I (torch ``eigh``, memory ~3 n^2).

    Used for finite training times (``GradientDescentMSE``). Eigenvalues slightly negative by
    rounding (down to -1e-6 of the largest) are clipped at 0.

    Parameters
    ----------
    k : array_like, shape (n, n)
        The symmetric kernel matrix K (finite); it is symmetrized as (K + K^T) / 2.
    ridge : float, default 0.0
        Added to the diagonal (>= 0).
    name : str, default "k_train"
        The name of the matrix in error messages.

    Returns
    -------
    Eigen
        The eigenvalues (ascending, clipped at 0), eigenvectors, ridge, and the most negative
        eigenvalue before clipping.

    Raises
    ------
    ValueError
        If ``k`` is not a finite, symmetric, square matrix, or ``ridge`` is negative or not
        finite.
    NotPositiveDefiniteError
        If an eigenvalue is below -1e-6 times the largest: not a kernel matrix.

    Examples
    --------
    >>> k = torch.tensor([[2.0, 1.0], [1.0, 2.0]], dtype=torch.float64)
    >>> e = infnet.predict.eigen(k, ridge=1.0)
    >>> [round(float(v), 6) for v in e.values], tuple(e.vectors.shape), e.clipped
    ([2.0, 4.0], (2, 2), 0.0)
    """
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
