"""The checks of a kernel matrix and a ridge, before any solve with them.

``check_kernel``: a square floating tensor without NaN or inf, and symmetric up to rounding
(``_check_symmetric``, tile by tile); ``check_ridge``: a finite number >= 0. Both raise a
ValueError naming the problem. Used by ``solve`` (Cholesky), ``spectral`` (eigendecomposition)
and ``dynamics``.
"""

from __future__ import annotations

import math

import torch

from ..core.checks import all_finite

Tensor = torch.Tensor


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



def check_ridge(ridge) -> float:
    try:
        ridge = float(ridge)
    except (TypeError, ValueError):
        raise ValueError(f"ridge must be a number >= 0, got {ridge!r}") from None
    if not (math.isfinite(ridge) and ridge >= 0):
        raise ValueError(f"ridge must be a finite number >= 0, got {ridge!r}")
    return ridge
