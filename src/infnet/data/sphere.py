"""Data on the unit sphere: the Dirichlet experiments of the infinite-depth paper, digits, checks.

- ``dirichlet_sphere``: class-conditional Dirichlet data mapped to the sphere, the scheme of
  Radhakrishnan, Belkin & Uhler, "Wide and deep neural networks achieve consistency for
  classification", PNAS 2023 (arXiv 2204.14126), code uhlerlab/inf_depth_ntks, ``dataset.py``
  (``get_dirichlet_data``) and ``main.py`` (settings). ``DirichletData`` describes such a
  distribution and gives its exact class log-densities (for the Bayes classifier).
- ``digits_sphere``: scikit-learn's embedded digits, rows scaled to unit norm.
- ``on_sphere``, ``check_labels``: validation of user arrays for the classifiers.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

#: relative tolerance on |x| = 1 below which a row counts as on the sphere
UNIT_NORM_RTOL = 1e-10

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
    """Two classes on the positive part of S^(d-1): a point of class ``labels[k]`` is
    s / |s| with s ~ Dirichlet(``alphas[k]``) on the simplex; class ``labels[0]`` has
    probability ``prior``. Defaults follow the paper's code: labels +1 / -1, prior 0.4."""

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
    """The paper's Dirichlet setting in dimension d (``PAPER_ALPHAS``), or your own alphas."""
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
    """n points on S^(d-1) from the paper's two-class Dirichlet scheme (``DirichletData.sample``).

    Class +1: s ~ Dirichlet(alphas[0]), a fraction ``prior`` of the points (int(n * prior));
    class -1: s ~ Dirichlet(alphas[1]); x = s / |s|_2; rows shuffled. Default alphas
    (``PAPER_ALPHAS``, from uhlerlab/inf_depth_ntks main.py): d = 2: (1, 2), (2, 1) (the
    paper's figures); d = 3: (.5, .5, 2.5), (2.5, .1, .5); d = 5 and d = 9 as listed there.
    Returns x (n, d) float64 with unit rows and y (n,) int labels in {+1, -1}.
    """
    return dirichlet_setting(d, prior, alphas).sample(n, seed)


def digits_sphere(n: int | None = None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's embedded digits (1797 x 64), each row divided by its L2 norm.

    n: a stratified subset of n points (random_state=seed); None: all of them.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    if n is not None and n < len(y):
        x, _, y, _ = train_test_split(x, y, train_size=n, stratify=y, random_state=seed)
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True), np.asarray(y, dtype=np.int64)


def train_test(x, y, test_size: float = 0.5, seed: int = 0):
    """Stratified split: (x_train, x_test, y_train, y_test), as sklearn's train_test_split."""
    from sklearn.model_selection import train_test_split

    return train_test_split(x, y, test_size=test_size, stratify=y, random_state=seed)


def on_sphere(x, *, name: str = "x", normalize: bool = True) -> np.ndarray:
    """x as a float64 (n, d) array of unit rows, or a ValueError that says what is wrong.

    Rejects empty arrays, NaN/inf and zero rows (no direction). Rows whose norm differs from 1
    by more than ``UNIT_NORM_RTOL`` (or 100 rounding units of a float32/float16 input) are
    divided by their norms with a UserWarning: the classifiers of the infinite-depth theory are
    defined on the sphere, and the direction is what a user with unnormalized data means;
    ``normalize=False`` makes this an error. Rows within the tolerance are divided by their
    norms silently, so that every row has norm 1 to float64 rounding (the kernels of
    ``infnet.fc`` take their fast path only for inputs of one norm).
    """
    if hasattr(x, "detach"):  # torch tensor
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    rtol = UNIT_NORM_RTOL
    if x.dtype.kind == "f":
        rtol = max(rtol, 100 * float(np.finfo(x.dtype).eps))
    try:
        x = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a numeric array of shape (n, d): {err}") from None
    if x.ndim != 2:
        hint = " (one point: x.reshape(1, -1))" if x.ndim == 1 else ""
        raise ValueError(f"{name} must have shape (n, d), got shape {x.shape}{hint}")
    if x.size == 0:
        raise ValueError(f"{name} is empty: shape {x.shape}")
    bad = ~np.isfinite(x).all(axis=1)
    if bad.any():
        raise ValueError(f"{name} row {int(np.argmax(bad))} contains NaN or inf "
                         f"({int(bad.sum())} such rows); remove or impute them first")
    scale = np.abs(x).max(axis=1)  # scaled norms: no overflow for huge entries
    zero = scale == 0
    if zero.any():
        raise ValueError(f"{name} row {int(np.argmax(zero))} is the zero vector, which has no "
                         f"direction on the sphere ({int(zero.sum())} such rows); remove them")
    norms = scale * np.linalg.norm(x / scale[:, None], axis=1)
    off = np.abs(norms - 1.0) > rtol
    if off.any():
        msg = (f"{int(off.sum())} of {len(x)} rows of {name} do not have unit norm (norms "
               f"from {norms.min():.6g} to {norms.max():.6g})")
        if not normalize:
            raise ValueError(msg + "; divide each row by its norm: x / |x|")
        warnings.warn(msg + "; each row was divided by its norm (pass x / |x| to silence "
                      "this)", UserWarning, stacklevel=2)
    return np.ascontiguousarray(x / norms[:, None])


def check_labels(y, n_samples: int | None = None) -> np.ndarray:
    """y as a 1-D array of at least two samples and two classes (length n_samples if given)."""
    from sklearn.utils.multiclass import check_classification_targets

    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y.ravel()
    if y.ndim != 1:
        raise ValueError(f"y must be a 1-D array of labels, got shape {y.shape}")
    if n_samples is not None and len(y) != n_samples:
        raise ValueError(f"X has {n_samples} rows but y has {len(y)} labels: they must match")
    if len(y) < 2:
        raise ValueError(f"need at least 2 training points, got {len(y)}")
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        raise ValueError("y contains NaN or inf labels")
    check_classification_targets(y)
    classes = np.unique(y)
    if len(classes) < 2:
        raise ValueError(f"a single class: every label is {classes[0]!r}; a classifier needs "
                         "at least two classes")
    return y
