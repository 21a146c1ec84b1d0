"""The two sides of the Lee et al. 2020 comparison (``experiments.lee2020``): the infinitely wide
network's predictions from its NNGP and NTK (kernel regression, and the NTK's gradient flow at
the finite nets' training time), and finite networks of the same specification trained by
full-batch gradient descent on the MSE (``experiments.finite_vs_infinite.train``).

Lee et al., "Finite versus infinite neural networks: an empirical study", NeurIPS 2020, arXiv
2007.15801: NNGP and NTK regression on zero-mean one-hot targets, with a diagonal regularizer
relative to the kernel's mean diagonal; finite networks in the NTK parameterization.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from ...network.finite import sample_seeds
from ...predict import gradient_descent_mse
from ..finite_vs_infinite import train
from .data import Images

Tensor = torch.Tensor


def network_inputs(architecture: str, x: Tensor) -> Tensor:
    """FC takes flattened images (n, H W); the convolutional networks (n, 1, H, W)."""
    return x.reshape(len(x), -1) if architecture == "fc" else x


def scores(pred: Tensor, labels: np.ndarray, targets: Tensor) -> tuple[float, float]:
    """Test accuracy (argmax against the labels) and MSE (mean over points and outputs)."""
    pred = pred.to(torch.float64)
    accuracy = float((pred.argmax(1).numpy() == labels).mean())
    return accuracy, float(((pred - targets) ** 2).mean())


def _row(architecture, model, width, data: Images, accuracy, mse, seconds, *, steps="",
         accuracy_std=0.0, mse_std=0.0, seeds=1, note="") -> dict:
    return {"architecture": architecture, "model": model, "width": width,
            "n_train": len(data.y_train), "n_test": len(data.y_test), "steps": steps,
            "accuracy": accuracy, "accuracy_std": accuracy_std, "mse": mse, "mse_std": mse_std,
            "seeds": seeds, "seconds": round(seconds, 3), "note": note}


def kernel_rows(architecture: str, net, data: Images, *, ridge: float, steps: int | None = None,
                rate: float = 1.0) -> tuple[list[dict], float]:
    """NNGP and NTK regression (t = inf) of ``net`` on ``data``: rows "nngp" and "ntk" with
    ``ridge`` x mean(diag) on the diagonal; with ``steps``, a row "ntk_t": the mean over
    initializations of the infinitely wide network after that many gradient steps at learning
    rate ``rate`` N / lambda_max (N = targets.numel(), no ridge), the finite nets' schedule.

    Returns the rows and that learning rate."""
    y = data.targets()
    y_test = data.targets(data.y_test)
    x_tr = network_inputs(architecture, data.x_train)
    x_te = network_inputs(architecture, data.x_test)
    start = time.perf_counter()
    k_train = net.kernel(x_tr)
    k_cross = net.kernel(x_te, x_tr)
    kernel_seconds = time.perf_counter() - start
    rows = []
    for kind in ("nngp", "ntk"):
        start = time.perf_counter()
        k = getattr(k_train, kind)
        flow = gradient_descent_mse(k, y, ridge=ridge * float(k.diagonal().mean()))
        acc, mse = scores(flow.predict(getattr(k_cross, kind)), data.y_test, y_test)
        rows.append(_row(architecture, kind, "inf", data, acc, mse,
                         kernel_seconds + time.perf_counter() - start))
    learning_rate = math.nan
    if steps is not None:
        start = time.perf_counter()
        top = float(torch.linalg.eigvalsh(k_train.ntk)[-1])
        learning_rate = rate * y.numel() / top
        flow = gradient_descent_mse(k_train.ntk, y, learning_rate=learning_rate)
        acc, mse = scores(flow.predict(k_cross.ntk, steps), data.y_test, y_test)
        rows.append(_row(architecture, "ntk_t", "inf", data, acc, mse,
                         kernel_seconds + time.perf_counter() - start, steps=steps,
                         note=f"learning rate {learning_rate:.4g}"))
    return rows, learning_rate


def finite_rows(architecture: str, net, data: Images, *, widths, seeds: int, steps: int,
                learning_rate: float, center: bool = False, seed: int = 0,
                dtype: torch.dtype = torch.float32) -> list[dict]:
    """Finite networks ``net.finite(width, ...)`` (``seeds`` per width, ``sample_seeds((seed,
    width))``) trained by ``steps`` full-batch gradient steps on |f(X) - Y|^2 / (2 N) at
    ``learning_rate`` (``center``: f - f_0, Lee et al. 2020): one row per width with the mean
    and std (ddof 1) over seeds of the test accuracy and MSE. A network that diverges counts as
    nan and is said in the row's note."""
    y = data.targets().to(dtype)
    y_test = data.targets(data.y_test)
    x_tr = network_inputs(architecture, data.x_train).to(dtype)
    x_te = network_inputs(architecture, data.x_test).to(dtype)
    shape = x_tr.shape[1] if architecture == "fc" else tuple(x_tr.shape[1:])
    rows = []
    for width in widths:
        start = time.perf_counter()
        accs, mses, diverged = [], [], 0
        for s in sample_seeds((seed, width), seeds):
            model = net.finite(width, in_features=shape, outputs=data.classes, seed=s, dtype=dtype)
            try:
                out, _, _ = train(model, x_tr, y, x_te, learning_rate=learning_rate,
                                  steps=(steps,), center=center)
            except FloatingPointError:
                diverged += 1
                accs.append(math.nan)
                mses.append(math.nan)
                continue
            acc, mse = scores(out[-1], data.y_test, y_test)
            accs.append(acc)
            mses.append(mse)
        ddof = 1 if seeds > 1 else 0
        note = f"{diverged} of {seeds} diverged" if diverged else ""
        rows.append(_row(architecture, "finite", width, data, float(np.mean(accs)),
                         float(np.mean(mses)), time.perf_counter() - start, steps=steps,
                         accuracy_std=float(np.std(accs, ddof=ddof)),
                         mse_std=float(np.std(mses, ddof=ddof)), seeds=seeds, note=note))
    return rows
