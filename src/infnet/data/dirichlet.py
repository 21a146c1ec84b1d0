"""The Dirichlet experiments of the infinite-depth paper: two classes of data on the sphere.

``dirichlet_sphere`` draws class-conditional Dirichlet data mapped to the sphere, the scheme of
Radhakrishnan, Belkin & Uhler, "Wide and deep neural networks achieve consistency for
classification", PNAS 2023 (arXiv 2204.14126), code uhlerlab/inf_depth_ntks, ``dataset.py``
(``get_dirichlet_data``) and ``main.py`` (settings, ``PAPER_ALPHAS``). ``DirichletData``
describes such a distribution and gives its exact class log-densities (for the Bayes
classifier); ``dirichlet_setting`` is the paper's setting in a dimension, or your own.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: (alpha of the first class, alpha of the second class) by dimension, from main.py of
#: uhlerlab/inf_depth_ntks (d = 2 is the active setting there, the others are commented out)
PAPER_ALPHAS = {
    2: ((1.0, 2.0), (2.0, 1.0)),
    3: ((0.5, 0.5, 2.5), (2.5, 0.1, 0.5)),
    5: ((3.0, 1.0, 2.0, 1.0, 1.0), (1.0, 2.0, 2.0, 2.0, 3.0)),
    9: ((1.0, 2.0, 1.0, 2.0, 1.0, 1.0, 1.0, 1.0, 1.0), (1.0, 1.0, 1.0, 2.0, 3.0, 4.0, 2.0, 2.0, 1.0)),
}


@dataclass(frozen=True)
class DirichletData:
    """Two classes of Dirichlet data on the positive part of the sphere S^(d-1).

    A point of class ``labels[k]`` is s / |s| with s ~ Dirichlet(``alphas[k]``) on the
    simplex; class ``labels[0]`` has probability ``prior``. Defaults follow the paper's code:
    labels +1 / -1, prior 0.4. ``sample`` draws points as the paper's code does, ``log_joint``
    gives the exact class log-densities (for the Bayes classifier), ``dim`` is d.

    Parameters
    ----------
    alphas : pair of sequences of float
        The Dirichlet parameters of the two classes: two vectors of one length d >= 2, finite
        and > 0 (stored as tuples of floats).
    prior : float, default 0.4
        The probability of class ``labels[0]``, in (0, 1).
    labels : pair, default (1, -1)
        The two (distinct) class labels.

    Raises
    ------
    ValueError
        alphas not two vectors of one length d >= 2 of finite positive numbers, prior not in
        (0, 1), or labels not two distinct values.

    Examples
    --------
    >>> data = infnet.data.DirichletData(((1.0, 2.0), (2.0, 1.0)))
    >>> data
    DirichletData(alphas=((1.0, 2.0), (2.0, 1.0)), prior=0.4, labels=(1, -1))
    >>> x, y = data.sample(10, seed=0)
    >>> x.shape, int((y == 1).sum()), bool(np.allclose(np.linalg.norm(x, axis=1), 1.0))
    ((10, 2), 4, True)
    >>> data.log_joint(x).shape
    (10, 2)
    """

    alphas: tuple[tuple[float, ...], tuple[float, ...]]
    prior: float = 0.4
    labels: tuple = (1, -1)

    def __post_init__(self):
        try:
            a = [tuple(float(v) for v in np.ravel(alpha)) for alpha in self.alphas]
        except (TypeError, ValueError) as err:
            raise ValueError(f"alphas must be two vectors of positive numbers: {err}") from None
        if len(a) != 2 or len(a[0]) != len(a[1]) or len(a[0]) < 2:
            raise ValueError("alphas must be two vectors of one length d >= 2 (one per class), "
                             f"got {self.alphas!r}")
        if not all(np.isfinite(v) and v > 0 for v in a[0] + a[1]):
            raise ValueError(f"Dirichlet parameters must be finite and > 0, got {self.alphas!r}")
        if not 0 < float(self.prior) < 1:
            raise ValueError(f"prior must be in (0, 1), got {self.prior!r}")
        if len(self.labels) != 2 or self.labels[0] == self.labels[1]:
            raise ValueError(f"labels must be two distinct values, got {self.labels!r}")
        object.__setattr__(self, "alphas", (a[0], a[1]))
        object.__setattr__(self, "prior", float(self.prior))
        object.__setattr__(self, "labels", tuple(self.labels))

    @property
    def dim(self) -> int:
        return len(self.alphas[0])

    def sample(self, n: int, seed=0) -> tuple[np.ndarray, np.ndarray]:
        """n points and labels, as ``get_dirichlet_data`` + ``shuffle`` of the paper's code:
        exactly int(n * prior) points of class ``labels[0]``, the rest of ``labels[1]``, each
        simplex point divided by its L2 norm, then the rows shuffled. A paper-style split
        takes the first n_train rows for training and the rest for testing.

        (The paper's ``main.py`` also re-draws the whole set when two points coincide to
        rounding, which has probability ~0 for these continuous laws; not done here.)
        """
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        rng = np.random.default_rng(seed)
        n1 = int(n * self.prior)
        s = np.concatenate([rng.dirichlet(self.alphas[0], size=n1),
                            rng.dirichlet(self.alphas[1], size=n - n1)])
        y = np.concatenate([np.full(n1, self.labels[0]), np.full(n - n1, self.labels[1])])
        order = rng.permutation(n)
        x = s / np.linalg.norm(s, axis=1, keepdims=True)
        return x[order], y[order]

    def log_joint(self, x) -> np.ndarray:
        """(n, 2): log P(class k) + log p_k(s) at s = x / sum(x), column k for ``labels[k]``.

        The map s -> s/|s| from the simplex onto the sphere's positive orthant has the same
        Jacobian for both classes, so comparing these columns is the Bayes rule on the sphere.
        Rows outside the open positive orthant (a coordinate <= 0) have density 0 under both
        classes; there both columns are log P(class k), so the Bayes rule falls back on the prior.
        """
        from scipy.stats import dirichlet

        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x must have shape (n, {self.dim}), got {x.shape}")
        out = np.tile(np.log([self.prior, 1.0 - self.prior]), (len(x), 1))
        inside = (x > 0).all(axis=1)
        if inside.any():
            s = x[inside] / x[inside].sum(axis=1, keepdims=True)
            for k in range(2):
                out[inside, k] += dirichlet.logpdf(s.T, self.alphas[k])
        return out


def dirichlet_setting(d: int = 3, prior: float = 0.4, alphas=None) -> DirichletData:
    """The paper's Dirichlet setting in dimension d (``PAPER_ALPHAS``), or your own alphas.

    Parameters
    ----------
    d : int, default 3
        The dimension; without ``alphas``, one of the paper's (2, 3, 5, 9).
    prior : float, default 0.4
        The probability of the first class (+1).
    alphas : pair of sequences of float, optional
        Your own Dirichlet parameters, two vectors of length d; None: ``PAPER_ALPHAS[d]``.

    Returns
    -------
    DirichletData
        The distribution, labels +1 / -1.

    Raises
    ------
    ValueError
        No alphas and d not among the paper's dimensions, alphas of another length than d,
        or invalid parameters (``DirichletData``).

    Examples
    --------
    >>> infnet.data.dirichlet_setting(3)
    DirichletData(alphas=((0.5, 0.5, 2.5), (2.5, 0.1, 0.5)), prior=0.4, labels=(1, -1))
    >>> infnet.data.dirichlet_setting(4, alphas=((1, 1, 1, 2), (2, 1, 1, 1))).dim
    4
    >>> infnet.data.dirichlet_setting(4)
    Traceback (most recent call last):
        ...
    ValueError: the paper's code has Dirichlet parameters for d in [2, 3, 5, 9], not d = 4; ...
    """
    if alphas is None:
        if d not in PAPER_ALPHAS:
            raise ValueError(f"the paper's code has Dirichlet parameters for d in "
                             f"{sorted(PAPER_ALPHAS)}, not d = {d}; pass alphas=(a1, a2)")
        alphas = PAPER_ALPHAS[d]
    data = DirichletData(alphas, prior)
    if data.dim != d:
        raise ValueError(f"alphas have length {data.dim} but d = {d}")
    return data


def dirichlet_sphere(n: int, d: int = 3, prior: float = 0.4, alphas=None,
                     seed=0) -> tuple[np.ndarray, np.ndarray]:
    """Draw n points on S^(d-1) from the paper's two-class Dirichlet scheme.

    As ``DirichletData.sample``: class +1: s ~ Dirichlet(alphas[0]), a fraction ``prior`` of
    the points (int(n * prior)); class -1: s ~ Dirichlet(alphas[1]); x = s / |s|_2; rows
    shuffled.

    Parameters
    ----------
    n : int
        The number of points, >= 1.
    d : int, default 3
        The dimension.
    prior : float, default 0.4
        The fraction of class +1.
    alphas : pair of sequences of float, optional
        The Dirichlet parameters; default ``PAPER_ALPHAS`` (from uhlerlab/inf_depth_ntks
        main.py): d = 2: (1, 2), (2, 1) (the paper's figures); d = 3: (.5, .5, 2.5),
        (2.5, .1, .5); d = 5 and d = 9 as listed there.
    seed : int or numpy.random.Generator, default 0
        Seed of ``numpy.random.default_rng``.

    Returns
    -------
    x : numpy.ndarray
        (n, d) float64 with unit rows.
    y : numpy.ndarray
        (n,) int labels in {+1, -1}.

    Raises
    ------
    ValueError
        n not a positive integer, or a setting that ``dirichlet_setting`` refuses.

    Examples
    --------
    >>> x, y = infnet.data.dirichlet_sphere(1000, d=2, seed=0)
    >>> x.shape, int((y == 1).sum()), int((y == -1).sum())
    ((1000, 2), 400, 600)
    >>> bool(np.allclose(np.linalg.norm(x, axis=1), 1.0)), bool((x > 0).all())
    (True, True)
    """
    return dirichlet_setting(d, prior, alphas).sample(n, seed)
