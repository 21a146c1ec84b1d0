"""An MNIST-sized kernel regression without the kernel in memory: n = 60000, float32 store.

The depth-3 ReLU NTK of 60000 unit-norm rows of 784 features (the real MNIST training set when
``--mnist-root`` holds its IDX files, else synthetic data of the same shape: 10 noisy class
prototypes) is computed into a tiled float32 store by 2 Dask workers (``infnet.scale``), then
kernel regression of the one-hot labels is solved by Nystrom-preconditioned CG reading the
store; 10000 test points are predicted. Prints times, iterations, residual, test accuracy and
the peak memory in use on the machine (psutil, sampled every 0.5 s) next to the 14.4 GB the
float32 kernel would take in memory.

    python bench/bench_scale_solve.py --store /tmp/K60k        # ~15-30 min on 2 cores
    python bench/bench_scale_solve.py --n 8000 --store /tmp/K8k  # quick
"""

from __future__ import annotations

import argparse
import threading
import time

import numpy as np
import psutil
import torch

import infnet
from infnet.scale import compute_kernel, predict, solve


def data(n: int, n_test: int, root: str | None, seed: int = 0):
    if root:
        from infnet.data import load_mnist

        x, y = load_mnist(root, "train")
        xt, yt = load_mnist(root, "test")
        x, y, xt, yt = x[:n].reshape(n, -1), y[:n], xt[:n_test].reshape(n_test, -1), yt[:n_test]
    else:
        g = np.random.default_rng(seed)
        protos = g.random((10, 784)) * (g.random((10, 784)) < 0.3)
        def draw(m):
            labels = g.integers(0, 10, m)
            return protos[labels] + 0.35 * g.random((m, 784)) * (g.random((m, 784)) < 0.3), labels
        (x, y), (xt, yt) = draw(n), draw(n_test)
    unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
    return unit(x.astype(np.float64)), y, unit(xt.astype(np.float64)), yt


class PeakMemory:
    """Largest psutil.virtual_memory().used (all processes: client and workers) while running."""

    def __enter__(self):
        self.base = psutil.virtual_memory().used
        self.peak, self._stop = self.base, False
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self):
        while not self._stop:
            self.peak = max(self.peak, psutil.virtual_memory().used)
            time.sleep(0.5)

    def __exit__(self, *exc):
        self._stop = True
        self._thread.join()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=60000)
    p.add_argument("--n-test", type=int, default=10000)
    p.add_argument("--store", required=True, help="folder for the kernel store (resumable)")
    p.add_argument("--mnist-root", help="folder with the official MNIST IDX files")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--tile", type=int, default=4096)
    p.add_argument("--ridge", type=float, default=1e-4, help="relative to the mean diagonal")
    p.add_argument("--tol", type=float, default=1e-5)
    p.add_argument("--rank", type=int, default=1000)
    args = p.parse_args()
    x, y, xt, yt = data(args.n, args.n_test, args.mnist_root)
    net = infnet.fc("relu", 3, w_std=2**0.5)
    with PeakMemory() as mem:
        start = time.perf_counter()
        store = compute_kernel(net, torch.as_tensor(x), path=args.store, kind="ntk",
                               tile=args.tile, scheduler="local", workers=args.workers,
                               dtype=torch.float32, progress=False)
        t_kernel = time.perf_counter() - start
        Y = torch.as_tensor(np.eye(10)[y])
        mean_diag = float(store.diagonal().double().mean())
        start = time.perf_counter()
        alpha, info = solve(store, Y, ridge=args.ridge * mean_diag, tol=args.tol, rank=args.rank,
                            progress=False)
        t_solve = time.perf_counter() - start
        start = time.perf_counter()
        f = predict(net, torch.as_tensor(xt), torch.as_tensor(x), alpha)
        t_predict = time.perf_counter() - start
    acc = float((f.argmax(1).numpy() == yt).mean())
    gib = 2**30
    source = "MNIST" if args.mnist_root else "synthetic MNIST-shaped"
    print(f"n = {args.n} ({source}, unit rows), depth-3 ReLU NTK, float32 store, tile "
          f"{args.tile}, {args.workers} Dask workers; ridge {args.ridge:g} x mean diagonal, "
          f"tol {args.tol:g}, Nystrom rank {info.rank}")
    print()
    print("| step | seconds | notes |")
    print("|---|---|---|")
    print(f"| kernel store | {t_kernel:.0f} | {args.n**2 * 4 / gib:.1f} GiB as a dense float32 "
          f"matrix; the store keeps the upper tiles |")
    print(f"| solve (CG) | {t_solve:.0f} | {info.iterations} iterations, {info.matvecs} products, "
          f"largest final relative residual {float(info.final_residuals.max()):.1e}, converged "
          f"{info.converged} |")
    print(f"| predict {args.n_test} test points | {t_predict:.0f} | accuracy {acc:.4f} |")
    print()
    print(f"peak memory in use on the machine: {mem.peak / gib:.1f} GiB (before: "
          f"{mem.base / gib:.1f} GiB; total {psutil.virtual_memory().total / gib:.1f} GiB)")


if __name__ == "__main__":
    main()
