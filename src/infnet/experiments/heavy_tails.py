"""Heavy-tailed scale mixtures of NNGPs against the plain and the learned NNGP (the claim of
Lee, Yun, Yang & Lee, ICLR 2022: heavy tails help with outliers and out-of-distribution
inputs), measured on two regression tasks over seeds:

- ``outliers``: y = sin(2x) + 0.1 e on x in [-3, 3], 15% of the targets (train and test) moved
  by +-(2 to 4); 40 training points.
- ``other digits``: scikit-learn's digits on the sphere, trained on classes 0-4 (150 images,
  one-hot targets centred), tested on classes 5-9: inputs and targets the training never saw.

Four predictives from one network (erf, depth 2, w_std 1.5, b_std 0.5), noise variance 0.01:
the NNGP posterior; the NNGP with w_std, b_std and the noise learned by maximizing the marginal
likelihood (``gp.NetworkKernel`` in scikit-learn's ``GaussianProcessRegressor``); the Student-t
process (inverse-gamma scale prior, a = b = 2); the scale mixture with a log-normal prior
(sigma 1) by importance sampling. Metrics per test target: the negative log predictive density
(NLL, lower is better) and the coverage of the central 90% predictive interval (calibrated:
0.90).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy import stats

from ..core.files import atomic_path
from ..gp import NetworkKernel, scale_mixture_inference, student_t_inference
from ..network import fc
from ..predict import gp_inference

ACTIVATION, DEPTH, W_STD, B_STD, NOISE = "erf", 2, 1.5, 0.5, 1e-2
MODELS = ("NNGP", "learned NNGP", "Student-t", "log-normal mixture")
TASKS = ("outliers", "other digits")


def outliers(seed: int, n_train: int = 40, n_test: int = 400):
    """The 1-D task (module docstring): (x_train, y_train, x_test, y_test), x as (n, 1)."""
    rng = np.random.default_rng(seed)
    n = n_train + n_test
    x = rng.uniform(-3, 3, size=(n, 1))
    y = np.sin(2 * x[:, 0]) + 0.1 * rng.normal(size=n)
    hit = rng.random(n) < 0.15
    y[hit] += rng.choice([-1.0, 1.0], hit.sum()) * rng.uniform(2, 4, hit.sum())
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


def other_digits(seed: int, n_train: int = 150, n_test: int = 300):
    """Digits on the sphere: train on classes 0-4, test on 5-9; centred one-hot targets."""
    from ..data import digits_sphere

    x, labels = digits_sphere()
    rng = np.random.default_rng(seed)
    seen, unseen = np.flatnonzero(labels < 5), np.flatnonzero(labels >= 5)
    tr, te = rng.choice(seen, n_train, replace=False), rng.choice(unseen, n_test, replace=False)
    targets = np.eye(10)[labels] - 0.1
    return x[tr], targets[tr], x[te], targets[te]


@dataclass
class Predictive:
    """A predictive per test target: log densities and the probability integral transform."""

    log_density: np.ndarray
    pit: np.ndarray

    def scores(self) -> tuple[float, float]:
        """(NLL per target, coverage of the central 90% interval)."""
        return float(-self.log_density.mean()), float(((self.pit > 0.05) & (self.pit < 0.95)).mean())


def predictives(x, y, xs, ys) -> dict[str, Predictive]:
    """The four models of the module docstring on one split."""
    x, xs = torch.as_tensor(x), torch.as_tensor(xs)
    y, ys = torch.as_tensor(y), torch.as_tensor(ys)
    out = {}
    net = fc(ACTIVATION, DEPTH, w_std=W_STD, b_std=B_STD)
    k, ks, kss = net.kernel(x).nngp, net.kernel(xs, x).nngp, net.kernel(xs).nngp.diagonal()
    plain = gp_inference(k, y, ridge=NOISE)
    out["NNGP"] = _gaussian(plain, ks, kss, ys, NOISE)
    learned, noise = learned_network(x, y)
    lk, lks = learned.kernel(x).nngp, learned.kernel(xs, x).nngp
    out["learned NNGP"] = _gaussian(gp_inference(lk, y, ridge=noise), lks,
                                    learned.kernel(xs).nngp.diagonal(), ys, noise)
    tp = student_t_inference(k, y, a=2.0, b=2.0, ridge=NOISE)
    mean, scale = tp.mean(ks), tp.scale(ks, kss)
    z = ((ys - mean) / _column(scale.sqrt(), mean)).numpy()
    out["Student-t"] = Predictive(tp.log_predictive_density(ks, kss, ys).numpy(),
                                  stats.t.cdf(z, tp.dof))
    mix = scale_mixture_inference(k, y, stats.lognorm(1.0), samples=4096, ridge=NOISE, seed=0)
    mean = mix.mean(ks)
    var = _column(plain.variance(ks, kss) + NOISE, mean)  # at scale 1
    sd = (var[..., None] * torch.as_tensor(mix.scales)).sqrt()
    pit = (torch.as_tensor(mix.weights) * torch.special.ndtr((ys - mean)[..., None] / sd)).sum(-1)
    out["log-normal mixture"] = Predictive(mix.log_predictive_density(ks, kss, ys).numpy(),
                                           pit.numpy())
    return out


def learned_network(x: torch.Tensor, y: torch.Tensor):
    """The network with w_std, b_std (and the noise variance) that maximize the marginal
    likelihood, from the defaults (scikit-learn's optimizer on ``gp.NetworkKernel``)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import WhiteKernel

    # (bounds that keep the optimizer away from saturated networks, whose erf units are sign
    # functions: the search stays where the data can tell values apart)
    kernel = NetworkKernel(ACTIVATION, DEPTH, w_std=W_STD, b_std=B_STD, w_std_bounds=(0.1, 5.0),
                           b_std_bounds=(1e-3, 3.0)) + WhiteKernel(NOISE, (1e-6, 1e1))
    with warnings.catch_warnings():  # (an optimum at a bound is a result here, not a fault)
        warnings.simplefilter("ignore", ConvergenceWarning)
        fit = GaussianProcessRegressor(kernel, random_state=0).fit(x.numpy(), y.numpy()).kernel_
    return (fc(ACTIVATION, DEPTH, w_std=fit.k1.w_std, b_std=fit.k1.b_std),
            float(fit.k2.noise_level))


def _column(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.reshape(-1, *([1] * (like.ndim - 1)))


def _gaussian(gp, ks, kss, ys, noise: float) -> Predictive:
    mean = gp.mean(ks)
    sd = _column((gp.variance(ks, kss) + noise).sqrt(), mean)
    z = (ys - mean) / sd
    logp = -0.5 * z**2 - torch.log(sd) - 0.5 * math.log(2 * math.pi)
    return Predictive(logp.numpy(), torch.special.ndtr(z).numpy())


def run(seeds: int = 10, log=None) -> list[dict]:
    """Rows (task, model, NLL mean and standard error, coverage mean and standard error)."""
    scores = {(t, m): [] for t in TASKS for m in MODELS}
    for seed in range(seeds):
        for task, make in zip(TASKS, (outliers, other_digits), strict=True):
            for model, p in predictives(*make(seed)).items():
                scores[(task, model)].append(p.scores())
        if log is not None:
            log(f"seed {seed + 1}/{seeds} done")
    rows = []
    for (task, model), vals in scores.items():
        a = np.array(vals)
        se = a.std(0, ddof=1) / math.sqrt(len(a)) if len(a) > 1 else np.full(2, math.nan)
        rows.append({"task": task, "model": model, "nll": a[:, 0].mean(), "nll_se": se[0],
                     "coverage90": a[:, 1].mean(), "coverage90_se": se[1]})
    return rows


def table(rows: list[dict], seeds: int) -> str:
    lines = [f"| task | model | test NLL (mean +- s.e., {seeds} seeds) | 90% coverage |",
             "|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['task']} | {r['model']} | {r['nll']:.3f} +- {r['nll_se']:.3f} | "
                     f"{r['coverage90']:.3f} +- {r['coverage90_se']:.3f} |")
    return "\n".join(lines)


def figure(path, seed: int = 0) -> None:
    """The 1-D outliers task: predictive mean and central 90% band of the NNGP, the learned
    NNGP and the Student-t process (three panels), with the training points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x, y, _, _ = outliers(seed)
    grid = np.linspace(-3.5, 3.5, 300)[:, None]
    bands = _bands(x, y, grid)
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6), sharey=True)
    for ax, (name, (mean, lo, hi)) in zip(axes, bands.items(), strict=True):
        ax.fill_between(grid[:, 0], lo, hi, color="C0", alpha=0.25, label="90% interval")
        ax.plot(grid[:, 0], mean, color="C0", label="mean")
        ax.plot(grid[:, 0], np.sin(2 * grid[:, 0]), color="k", lw=0.8, ls="--", label="sin(2x)")
        ax.scatter(x[:, 0], y, s=12, color="C3", zorder=3, label="training data")
        ax.set_title(name)
        ax.set_xlabel("x")
        ax.set_ylim(-6, 6)
    axes[0].legend(loc="lower left", fontsize=8)
    fig.suptitle(f"erf network, depth {DEPTH}: 40 points, 15% outliers (seed {seed})")
    fig.tight_layout()
    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def _bands(x, y, grid) -> dict:
    """(mean, 5%, 95%) of y at the grid for the three models of the figure."""
    x, y, g = torch.as_tensor(x), torch.as_tensor(y), torch.as_tensor(grid)
    out = {}
    net = fc(ACTIVATION, DEPTH, w_std=W_STD, b_std=B_STD)
    k, ks, kss = net.kernel(x).nngp, net.kernel(g, x).nngp, net.kernel(g).nngp.diagonal()
    gp = gp_inference(k, y, ridge=NOISE)
    mean, sd = gp.mean(ks), (gp.variance(ks, kss) + NOISE).sqrt()
    out["NNGP"] = _band(mean, sd)
    learned, noise = learned_network(x, y)
    lgp = gp_inference(learned.kernel(x).nngp, y, ridge=noise)
    lks = learned.kernel(g, x).nngp
    mean = lgp.mean(lks)
    sd = (lgp.variance(lks, learned.kernel(g).nngp.diagonal()) + noise).sqrt()
    w, b = (learned.layers[0].w_std, learned.layers[0].b_std)
    out[f"learned NNGP (w {w:.2f}, b {b:.2f})"] = _band(mean, sd)
    tp = student_t_inference(k, y, a=2.0, b=2.0, ridge=NOISE)
    mean, scale = tp.mean(ks), tp.scale(ks, kss).sqrt()
    q = stats.t.ppf(0.95, tp.dof)
    out[f"Student-t process (a = b = 2, dof {tp.dof:g})"] = (
        mean.numpy(), (mean - q * scale).numpy(), (mean + q * scale).numpy())
    return out


def _band(mean: torch.Tensor, sd: torch.Tensor) -> tuple:
    return mean.numpy(), (mean - 1.645 * sd).numpy(), (mean + 1.645 * sd).numpy()
