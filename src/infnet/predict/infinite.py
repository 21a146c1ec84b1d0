"""The classifier an infinitely deep network becomes (Radhakrishnan, Belkin & Uhler, PNAS 2023,
arXiv 2204.14126; docs/theory/infinite-depth.md#the-infinite-depth-classifier), as scores K_inf(x, X) Y
of one-hot targets Y.

Off the diagonal the depth-L kernel of the normalized bias-free network tends to 0 (singular and
nearest-neighbour classes) or to a constant (majority vote) while its diagonal stays 1, so
K(X, X) tends to the identity and min-norm kernel regression to the kernel smoother with the
rescaled limit kernel: the Koenigs function h (singular), the largest |Boettcher function|
(nearest neighbour), or the class counts (majority vote).
"""

from __future__ import annotations

import torch

from ..depth.linearize import bottcher, koenigs

Tensor = torch.Tensor


def limit_scores(lim, rho_test: Tensor, Y: Tensor) -> Tensor:
    """Scores of the infinite-depth classifier, K_inf(x, X) Y for one-hot targets Y.

    See docs/theory/infinite-depth.md#the-infinite-depth-classifier and the module docstring:
    the Koenigs function h of the correlations (singular class), the sign and label of the
    training point with the largest |Boettcher function| (nearest neighbour), or the class
    counts (majority vote). A test point equal to a training point (correlation >= 1) takes
    the label(s) of those training points.

    Parameters
    ----------
    lim : Limit
        The infinite-depth limit of the activation (``infnet.limit(act)``, or the ``.limit`` of
        ``infnet.fc(act, depth=math.inf)``); its ``kind`` picks the rule.
    rho_test : Tensor, shape (m, n)
        Correlations x.x_i / (|x| |x_i|) of the m test points with the n training points.
    Y : Tensor, shape (n, classes)
        One-hot (or any) training targets.

    Returns
    -------
    Tensor, shape (m, classes)
        The scores; the predicted class is their argmax.

    Raises
    ------
    ValueError
        If ``lim`` is of the linear class, which has no infinite-depth classifier of its own.

    Examples
    --------
    >>> lim = infnet.limit("erf")  # the singular class
    >>> lim.kind
    'singular'
    >>> rho = torch.tensor([[0.6, 0.8], [1.0, 0.0]], dtype=torch.float64)
    >>> scores = infnet.predict.limit_scores(lim, rho, torch.eye(2, dtype=torch.float64))
    >>> tuple(scores.shape), scores.argmax(dim=1).tolist()  # the second point equals X[0]
    ((2, 2), [1, 0])
    """
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
