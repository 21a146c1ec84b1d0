"""``infnet study``: NNGP and NTK of many activations and depths on embedded data.

Inputs are scikit-learn's digits, scaled so that x.x/d = 1; every network is normalized
(w_std^2 = 1 / E[phi(z)^2], no bias) so that the variance stays 1 at every depth and only the
correlations change (the setting of Radhakrishnan, Belkin & Uhler 2023). For each activation,
depth and kernel the report gives kernel-regression test accuracy on a stratified 50/50 split,
the time of the kernel, and the mean off-diagonal correlation (how fast depth washes the data
out). Results are appended row by row to results.csv, so an interrupted study continues where
it stopped when run again.
"""

from __future__ import annotations

import csv
import math
import time
from pathlib import Path

import numpy as np
import torch

from . import activation, fc

FIELDS = ["activation", "depth", "kernel", "test_accuracy", "mean_offdiag_corr", "seconds"]


def digits_on_sphere(n: int | None = None, seed: int = 0):
    """scikit-learn digits scaled to x.x/d = 1; a stratified 50/50 split (random_state=seed)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    if n is not None and n < len(y):
        x, _, y, _ = train_test_split(x, y, train_size=n, stratify=y, random_state=seed)
    x = x / np.linalg.norm(x, axis=1, keepdims=True) * math.sqrt(x.shape[1])
    return train_test_split(x, y, test_size=0.5, stratify=y, random_state=seed)


def kernel_regression_accuracy(k_train: torch.Tensor, k_test: torch.Tensor, y_train, y_test,
                               ridge: float = 1e-10) -> float:
    """Accuracy of argmax of the min-norm (tiny ridge) interpolant of one-hot targets."""
    classes = np.unique(y_train)
    onehot = torch.as_tensor((y_train[:, None] == classes[None, :]).astype(np.float64))
    scale = float(k_train.diagonal().mean())
    eye = torch.eye(k_train.shape[0], dtype=k_train.dtype)
    jitter = ridge
    while True:
        chol, info = torch.linalg.cholesky_ex(k_train + jitter * scale * eye)
        if int(info) == 0:
            break
        jitter *= 10
        if jitter > 1e-2:
            raise np.linalg.LinAlgError("kernel matrix is not positive definite even with jitter")
    alpha = torch.cholesky_solve(onehot, chol)
    pred = classes[(k_test @ alpha).argmax(dim=1).numpy()]
    return float((pred == y_test).mean())


def normalized_fc(name: str, depth: int):
    """depth x [Dense(w_std=1), phi / sqrt(E phi(z)^2)]: unit variance at every layer."""
    return fc(activation(name).normalized(), depth, w_std=1.0, b_std=0.0)


def run_study(out: Path, activations, depths, n_samples: int = 1797, seed: int = 0) -> Path:
    from rich.progress import Progress

    out.mkdir(parents=True, exist_ok=True)
    x_tr, x_te, y_tr, y_te = digits_on_sphere(n_samples, seed)
    x = torch.as_tensor(np.concatenate([x_tr, x_te]))
    n_tr = len(y_tr)
    path = out / "results.csv"
    done = set()
    if path.exists():
        with open(path) as fh:
            done = {(r["activation"], int(r["depth"]), r["kernel"]) for r in csv.DictReader(fh)}
    else:
        with open(path, "w", newline="") as fh:
            csv.DictWriter(fh, FIELDS).writeheader()
    jobs = [(a, d) for a in activations for d in depths
            if not {(a, d, "nngp"), (a, d, "ntk")} <= done]
    with Progress() as progress:
        task = progress.add_task("kernels", total=len(jobs))
        for name, depth in jobs:
            progress.update(task, description=f"{name} depth {depth}")
            net = normalized_fc(name, depth)
            t0 = time.perf_counter()
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                k = net.kernel(x)
            seconds = time.perf_counter() - t0
            rows = []
            for kind in ("nngp", "ntk"):
                mat = getattr(k, kind)
                diag = mat.diagonal()
                corr = mat / torch.sqrt(diag[:, None] * diag[None, :])
                off = (corr.sum() - corr.diagonal().sum()) / (corr.numel() - corr.shape[0])
                acc = kernel_regression_accuracy(mat[:n_tr, :n_tr], mat[n_tr:, :n_tr], y_tr, y_te)
                rows.append({"activation": name, "depth": depth, "kernel": kind,
                             "test_accuracy": f"{acc:.4f}", "mean_offdiag_corr": f"{float(off):.6f}",
                             "seconds": f"{seconds:.3f}"})
            with open(path, "a", newline="") as fh:  # a row pair lands whole or not at all
                csv.DictWriter(fh, FIELDS).writerows(rows)
            progress.advance(task)
    _report(out, path, n_tr, len(y_te))
    return out


def _report(out: Path, path: Path, n_train: int, n_test: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(path) as fh:
        rows = list(csv.DictReader(fh))
    acts = sorted({r["activation"] for r in rows})
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, kind in zip(axes, ("nngp", "ntk"), strict=True):
        for a in acts:
            pts = sorted((int(r["depth"]), float(r["test_accuracy"])) for r in rows
                         if r["activation"] == a and r["kernel"] == kind)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=a)
        ax.set_xscale("log")
        ax.set_xlabel("depth")
        ax.set_title(kind.upper())
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test accuracy (digits, 50/50)")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "accuracy_vs_depth.png", dpi=120)
    plt.close(fig)
    lines = ["# infnet study: kernels on scikit-learn digits", "",
             f"Kernel regression (min-norm, one-hot targets) with {n_train} training and "
             f"{n_test} test digits, inputs scaled to x.x/d = 1, networks normalized so the "
             "variance stays 1 at every depth.", "",
             "![accuracy against depth](accuracy_vs_depth.png)", "",
             "| activation | depth | kernel | test accuracy | mean off-diagonal correlation | "
             "seconds |", "|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["activation"], int(r["depth"]), r["kernel"])):
        lines.append(f"| {r['activation']} | {r['depth']} | {r['kernel']} | "
                     f"{r['test_accuracy']} | {r['mean_offdiag_corr']} | {r['seconds']} |")
    (out / "report.md").write_text("\n".join(lines) + "\n")
