"""Predictions of deep and infinitely deep normalized networks on data on the sphere.

The setting of Radhakrishnan, Belkin & Uhler (arXiv 2204.14126, PNAS 2023;
docs/theory/infinite-depth.md#setting): inputs on the unit sphere, no biases, the activation normalized
(dual f, f(1) = 1).
The depth-L NNGP and NTK are functions of the input correlation (``infnet.deep_kernels``)
and the predictor is min-norm interpolation, argmax of K(x, X) K(X, X)^-1 Y (one-hot Y).

Deep kernels leave float64: off the diagonal the singular class decays like c0^L and the
nearest-neighbour class like B^(k^L), while the NTK diagonal grows like f'(1)^L. The predictor
does not change when the kernel is multiplied by a constant, and once the off-diagonal of
K(X, X) is below 1e-16 of its diagonal the inverse is the identity to double precision, so:
- NNGP, singular class: the kernel is divided by c0^L (exactly f^(L)(rho) / c0^L, which is the
  Koenigs function h(rho) to relative 1e-250 once c0^L < 1e-250);
- NNGP, nearest-neighbour class: once the kernel underflows, the kernel smoother in log space,
  log f^(L)(rho) ~ k^L log|B(rho)| (Boettcher function B);
- NTK: computed as is; a depth where it leaves float64 is reported as such (not guessed).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ...activations import KernelOverflowError
from ...depth.deep import deep_dual, deep_kernels
from ...depth.linearize import bottcher
from ...predict.infinite import limit_scores
from ...predict.solve import solve_psd

Tensor = torch.Tensor

#: off-diagonal / diagonal below this: K(X, X)^-1 is the identity to double precision
SMOOTHER_RATIO = 1e-17
#: below this, c0^L is replaced by the limit (f^(L) / c0^L = h to this relative accuracy)
SCALE_FLOOR = 1e-250


def one_hot(y: np.ndarray, classes: np.ndarray) -> Tensor:
    return torch.as_tensor((y[:, None] == classes[None, :]).astype(np.float64))


def interpolation_scores(k_train: Tensor, k_test: Tensor, Y: Tensor,
                         diag: float) -> tuple[Tensor, str]:
    """(K(x, X) K(X, X)^-1 Y, note): the min-norm interpolant by Cholesky, or where K(X, X) is
    singular to double precision (smooth kernels on low-dimensional data) the min-norm least
    squares solution (SVD, cut at eps * largest singular value), said in the note. ``diag`` is
    the common diagonal of K(X, X) (inf: the kernel smoother K(x, X) Y)."""
    off = k_train - torch.diag_embed(k_train.diagonal())
    biggest = float(off.abs().max()) if off.numel() else 0.0
    if not math.isfinite(diag) or biggest <= SMOOTHER_RATIO * diag:
        return k_test @ Y, "K(X, X) = identity to double precision: kernel smoother"
    alpha, note = solve_psd((k_train + k_train.T) / 2, Y, fallback="lstsq", name="K(X, X)")
    return k_test @ alpha, note


class DepthSweep:
    """The depth-L NNGP and NTK of one activation on fixed correlations (training pairs, test
    against training, and rho = 1 for the diagonal), each depth continued from the last one
    asked for: the recursion carries only (S, K), so a sweep over depths costs its deepest."""

    def __init__(self, lim, rho_train: Tensor, rho_test: Tensor):
        self.lim = lim
        one = torch.ones((), dtype=rho_train.dtype)
        self._start = [rho_train, rho_test, one]
        self._state = [(r, r.clone()) for r in self._start]
        self.depth = 0

    def at(self, depth: int) -> list[tuple[Tensor, Tensor]]:
        """[(NNGP, NTK) on training pairs, on test pairs, at rho = 1] at this depth."""
        if depth < self.depth:
            self._state, self.depth = [(r, r.clone()) for r in self._start], 0
        m = depth - self.depth
        if m:
            self._state = [self._continue(s, k, m) for s, k in self._state]
            self.depth = depth
        return self._state

    def _continue(self, s: Tensor, k: Tensor | None, m: int) -> tuple[Tensor, Tensor | None]:
        """m more layers; the NTK becomes None once it leaves float64 (it grows like f'(1)^L),
        and the NNGP goes on alone."""
        if k is not None:
            try:
                return deep_kernels(self.lim, s, m, ntk=k)
            except KernelOverflowError:
                pass
        return deep_dual(self.lim, s, m), None


def depth_scores(sweep: DepthSweep, rho_test: Tensor, Y: Tensor, depth: int,
                 kernel: str) -> tuple[Tensor | None, str]:
    """(scores, note) of the depth-L network's interpolant with its NNGP or NTK; scores None
    (with the reason in ``note``) where the kernel is beyond float64."""
    lim = sweep.lim
    (s_tr, k_tr), (s_te, k_te), (_, k_one) = sweep.at(depth)
    if kernel == "ntk":
        if k_one is None or k_tr is None or k_te is None:
            return None, "NTK beyond float64 (its diagonal grows like f'(1)^L)"
        diag = float(k_one)
        finite = all(bool(torch.isfinite(t).all()) for t in (k_tr, k_te)) and math.isfinite(diag)
        if not finite:
            return None, "NTK beyond float64 (its diagonal grows like f'(1)^L)"
        if _underflowed(k_te, rho_test):
            return None, "NTK off the diagonal below float64 (use the NNGP or depth inf)"
        return interpolation_scores(k_tr, k_te, Y, diag)
    if lim.kind == "singular":
        log_scale = depth * math.log(lim.slope0)
        if log_scale > math.log(SCALE_FLOOR):
            scale = math.exp(log_scale)
            scores, note = interpolation_scores(s_tr / scale, s_te / scale, Y, 1.0 / scale)
            return scores, "; ".join(filter(None, ["kernel / c0^L", note]))
        return limit_scores(lim, rho_test, Y), "f^(L)/c0^L = Koenigs h (c0^L < 1e-250)"
    if lim.kind == "nearest_neighbor" and _underflowed(s_te, rho_test):
        b = bottcher(lim, rho_test)
        log_power = depth * math.log(lim.order)
        if log_power > 690:  # k^L beyond float64: the smoother is the nearest neighbour in |B|
            return limit_scores(lim, rho_test, Y), "nearest neighbour (k^L beyond float64)"
        return _log_smoother(b.abs().log() * math.exp(log_power), torch.sign(b), Y), \
            "log-space kernel smoother (f^(L) below float64)"
    return interpolation_scores(s_tr, s_te, Y, 1.0)


def _log_smoother(logk: Tensor, sign: Tensor, Y: Tensor) -> Tensor:
    """sum_i sign_i exp(logk_i) Y_i per class, scaled by a common positive factor (exp of the
    row's largest log) so that it stays in float64: the kernel smoother in log space."""
    neg = torch.tensor(-math.inf, dtype=logk.dtype)
    parts = []
    for c in range(Y.shape[1]):
        member = Y[:, c] > 0
        pos = torch.where((sign > 0) & member, logk, neg)
        negs = torch.where((sign < 0) & member, logk, neg)
        parts.append((torch.logsumexp(pos, dim=1), torch.logsumexp(negs, dim=1)))
    top = torch.stack([torch.maximum(p, n) for p, n in parts], dim=1).amax(dim=1)
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    return torch.stack([(p - top).exp() - (n - top).exp() for p, n in parts], dim=1)


def _underflowed(k: Tensor, rho: Tensor) -> bool:
    """Some row of the kernel is 0 wherever rho is not: it left float64 from below."""
    return bool(((k == 0) | ~torch.isfinite(k)).all(dim=1).any()) and bool((rho != 0).any())
