"""Heavy tails for classification (the claim of Lee, Yun, Yang & Lee, ICLR 2022: the scale
mixture of NNGPs is more robust out of distribution), on scikit-learn's digits on the sphere.

Per seed: 150 training images of classes 0-4; tested on (i) 300 held-out images of classes 0-4
(in distribution), (ii) the same 300 images with Gaussian noise (standard deviation ``NOISE``
per pixel, on images of unit norm) added and projected back to the sphere (shifted), and
(iii) 300 images of classes 5-9, which no model can get right: the mean predictive entropy
there (nats, at most log 5 = 1.609) is better high. One network as in ``heavy_tails`` (erf,
depth 2, w_std 1.5, b_std 0.5), three variational classifiers (``gp.mixture_classifier``, full
whitened covariance, 1000 Adam steps of 8 draws):

- ``NNGP``: the plain NNGP classifier, s = 1.
- ``inverse-gamma mixture``: the scale mixture, s ~ IG(2, 2) (as ``heavy_tails``' Student-t).
- ``NNGP at the mixture's scale``: the plain classifier of kernel s_med K, s_med the median of
  the mixture's q(s): a Gaussian process as wide as the mixture's typical one, to tell the
  heavy tail from the scale the mixture learns.

Metrics: accuracy, NLL (the mean negative log predictive density of the labels) and expected
calibration error (ECE, 15 equal-width bins of the top probability).
"""

from __future__ import annotations

import contextlib
import math

import numpy as np
import torch
from scipy import stats

from ..gp.mixture_classifier import scale_mixture_classification
from ..network import fc
from .heavy_tails import ACTIVATION, B_STD, DEPTH, W_STD

MODELS = ("NNGP", "inverse-gamma mixture", "NNGP at the mixture's scale")
METRICS = ("accuracy", "nll", "ece", "shifted_accuracy", "shifted_nll", "shifted_ece",
           "unseen_entropy")
NOISE, A, B, STEPS, SAMPLES, BINS = 0.1, 2.0, 2.0, 1000, 2048, 15


def split(seed: int, n_train: int = 150, n_test: int = 300):
    """(x_train, y_train, x_test, y_test, x_shifted, x_unseen): classes 0-4 to train and test,
    the test images with noise, and images of classes 5-9 (module docstring)."""
    from ..data import digits_sphere

    x, labels = digits_sphere()
    rng = np.random.default_rng(seed)
    seen = rng.permutation(np.flatnonzero(labels < 5))
    tr, te = seen[:n_train], seen[n_train:n_train + n_test]
    unseen = rng.choice(np.flatnonzero(labels >= 5), n_test, replace=False)
    shifted = x[te] + NOISE * rng.normal(size=x[te].shape)
    shifted /= np.linalg.norm(shifted, axis=1, keepdims=True)
    return x[tr], labels[tr], x[te], labels[te], shifted, x[unseen]


def expected_calibration_error(p: np.ndarray, labels: np.ndarray, bins: int = BINS) -> float:
    """sum over bins of the top probability: (bin's share) |accuracy - mean confidence|."""
    conf, hit = p.max(1), p.argmax(1) == labels
    which = np.minimum((conf * bins).astype(int), bins - 1)
    return float(sum(abs(hit[which == b].mean() - conf[which == b].mean()) * (which == b).mean()
                     for b in range(bins) if (which == b).any()))


def scores(seed: int) -> tuple[dict[str, dict[str, float]], float]:
    """The metrics of each model on one split, and the median of the mixture's q(s)."""
    x, y, xt, yt, xs, xu = (torch.as_tensor(v) for v in split(seed))
    net = fc(ACTIVATION, DEPTH, w_std=W_STD, b_std=B_STD)
    k = net.kernel(x).nngp
    tests = {name: (net.kernel(v, x).nngp, net.kernel(v).nngp.diagonal())
             for name, v in (("test", xt), ("shifted", xs), ("unseen", xu))}
    mixture = scale_mixture_classification(k, y, a=A, b=B, steps=STEPS, seed=seed)
    s_med = float(stats.invgamma(mixture.alpha, scale=mixture.beta).median())
    fits = {"NNGP": (scale_mixture_classification(k, y, prior=None, steps=STEPS, seed=seed), 1.0),
            "inverse-gamma mixture": (mixture, 1.0),
            "NNGP at the mixture's scale": (scale_mixture_classification(
                s_med * k, y, prior=None, steps=STEPS, seed=seed), s_med)}
    out = {}
    for model, (clf, c) in fits.items():
        row = {}
        for name, prefix in (("test", ""), ("shifted", "shifted_")):
            ks, kss = tests[name]
            p = clf.predict_proba(c * ks, c * kss, samples=SAMPLES, seed=seed)
            lpd = clf.log_predictive_density(c * ks, c * kss, yt, samples=SAMPLES, seed=seed)
            row |= {prefix + "accuracy": float((p.argmax(1) == yt.numpy()).mean()),
                    prefix + "nll": float(-lpd.mean()),
                    prefix + "ece": expected_calibration_error(p, yt.numpy())}
        ks, kss = tests["unseen"]
        p = clf.predict_proba(c * ks, c * kss, samples=SAMPLES, seed=seed)
        row["unseen_entropy"] = float(-(p * np.log(np.clip(p, 1e-300, None))).sum(1).mean())
        out[model] = row
    return out, s_med


def classification_rows(seeds: int = 5, log=None, threads: int | None = 1) -> list[dict]:
    """Rows (model, each metric's mean over seeds and standard error ``<metric>_se``, and
    ``scale``: the mean over seeds of the median of the mixture's q(s)). ``threads``: torch's
    threads while it runs (one is the fastest for these small matrices; None leaves it)."""
    runs, scales = [], []
    with _threads(threads):
        for seed in range(seeds):
            row, s_med = scores(seed)
            runs.append(row)
            scales.append(s_med)
            if log is not None:
                log(f"seed {seed + 1}/{seeds} done")
    rows = []
    for model in MODELS:
        vals = np.array([[r[model][m] for m in METRICS] for r in runs])
        se = vals.std(0, ddof=1) / math.sqrt(len(vals)) if len(vals) > 1 else np.full(len(METRICS), math.nan)
        row = {"model": model, "scale": float(np.mean(scales))}
        for i, m in enumerate(METRICS):
            row |= {m: float(vals[:, i].mean()), m + "_se": float(se[i])}
        rows.append(row)
    return rows


def classification_table(rows: list[dict]) -> str:
    """A markdown table of ``classification_rows``: mean +- standard error over seeds."""
    heads = ("accuracy", "NLL", "ECE", "shifted accuracy", "shifted NLL", "shifted ECE",
             "entropy on classes 5-9")
    lines = ["| model | " + " | ".join(heads) + " |", "|---|" + "---|" * len(heads)]
    for r in rows:
        cells = [f"{r[m]:.3f} +- {r[m + '_se']:.3f}" for m in METRICS]
        lines.append(f"| {r['model']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


@contextlib.contextmanager
def _threads(n: int | None):
    old = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)
