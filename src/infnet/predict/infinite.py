"""The classifier an infinitely deep network becomes (Radhakrishnan, Belkin & Uhler, PNAS 2023,
arXiv 2204.14126; REFERENCES.md section 4), as scores K_inf(x, X) Y of one-hot targets Y.

Off the diagonal the depth-L kernel of the normalized bias-free network tends to 0 (singular and
nearest-neighbour classes) or to a constant (majority vote) while its diagonal stays 1, so
K(X, X) tends to the identity and min-norm kernel regression to the kernel smoother with the
rescaled limit kernel: the Koenigs function h (singular), the largest |Boettcher function|
(nearest neighbour), or the class counts (majority vote).
"""

from __future__ import annotations

import torch

from ..limit import bottcher, koenigs

Tensor = torch.Tensor


def limit_scores(lim, rho_test: Tensor, Y: Tensor) -> Tensor:
    """Scores of the infinite-depth classifier (REFERENCES.md section 4)."""
    if lim.kind == "majority_vote":
        return Y.sum(0).expand(rho_test.shape[0], -1).clone()
    exact = rho_test >= 1.0  # a test point equal to a training point: its label(s) win
    if lim.kind == "singular":
        h = koenigs(lim, torch.where(exact, torch.zeros_like(rho_test), rho_test))
        scores = h @ Y
    elif lim.kind == "nearest_neighbor":
        b = bottcher(lim, torch.where(exact, torch.zeros_like(rho_test), rho_test))
        best = b.abs().argmax(dim=1)  # f^(L) ~ sign(B) |B|^(k^L): the largest |B| decides,
        sign = torch.sign(b.gather(1, best[:, None]))  # for it or (odd k, B < 0) against it
        scores = sign * Y[best]
    else:  # linear: the depth-free linear kernel
        raise ValueError("the linear activation has no infinite-depth classifier of its own")
    hit = exact.any(dim=1)
    if bool(hit.any()):
        scores[hit] = exact[hit].to(Y.dtype) @ Y
    return scores
