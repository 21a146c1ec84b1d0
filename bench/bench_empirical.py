"""Benchmark of the empirical NTK implementations (infnet.empirical). Prints a Markdown table.

Setting of the Fast Finite Width NTK notebook (Novak, Sohl-Dickstein & Schoenholz, ICML 2022,
arXiv 2206.08720; neural-tangents ``notebooks/empirical_ntk_fcn.ipynb``): a ReLU MLP with 3 hidden
layers of width 2048, inputs of dimension 3072 (CIFAR-10 images), N = 16 inputs in x1 and in x2,
O = 8 outputs, the full (N, N, O, O) kernel (``trace=False``); torch's default initialization.
On a T4 GPU the notebook measured 243 ms for Jacobian contraction, 81 ms for NTK-vector products
and 3.5 ms for structured derivatives (70x).

For each dtype and method: one warm-up on two inputs (first-call costs of torch.func), then the
best of ``--repeat`` runs (``time.perf_counter``), and the largest entrywise difference from
Jacobian contraction, absolute and relative to the largest entry. Jacobian contraction holds the
per-sample Jacobians of a block of x1 and one of x2 (O P entries per sample: 470 MB in float32
here); ``--jacobian-batch-size`` sets that block (default 4; the library's own default keeps
blocks near 256 MiB, which here means one sample per block and about 4x the time).

    python bench/bench_empirical.py            # the notebook's setting, float32 and float64
    python bench/bench_empirical.py --quick    # width 512, d = 784, N = 8
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from torch import nn

from infnet.empirical import empirical_ntk

METHODS = ("jacobian", "ntvp", "structured")


def mlp(d: int, width: int, depth: int, o: int, dtype: torch.dtype) -> nn.Sequential:
    torch.manual_seed(0)
    layers, n_in = [], d
    for _ in range(depth):
        layers += [nn.Linear(n_in, width), nn.ReLU()]
        n_in = width
    return nn.Sequential(*layers, nn.Linear(n_in, o)).to(dtype)


def best_time(fn, repeat: int) -> tuple[float, torch.Tensor]:
    """Best wall time of ``repeat`` calls of ``fn`` and its last result."""
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def run(args, dtype: torch.dtype) -> list[dict]:
    model = mlp(args.d, args.width, args.depth, args.o, dtype)
    gen = torch.Generator().manual_seed(1)
    x1 = torch.randn(args.n, args.d, generator=gen, dtype=dtype)
    x2 = torch.randn(args.n, args.d, generator=gen, dtype=dtype)
    rows, ref = [], None
    for method in METHODS:
        batch_size = args.jacobian_batch_size if method == "jacobian" else None

        def call(a=x1, b=x2, method=method, batch_size=batch_size):
            return empirical_ntk(model, a, b, method=method, trace=args.trace, batch_size=batch_size)

        call(x1[:2], x2[:2])  # warm-up
        seconds, theta = best_time(call, args.repeat)
        ref = theta if ref is None else ref
        diff = float((theta - ref).abs().max())
        rows.append(dict(dtype=str(dtype).removeprefix("torch."), method=method, seconds=seconds,
                         batch=batch_size or "default", diff=diff, rel=diff / float(ref.abs().max())))
        print(f"  {rows[-1]['dtype']:8s} {method:10s} {seconds:9.4f} s", flush=True)
    for row in rows:
        row["speedup"] = rows[0]["seconds"] / row["seconds"]
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="width 512, d = 784, N = 8")
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--depth", type=int, default=3, help="hidden layers")
    parser.add_argument("--d", type=int, default=3072, help="input dimension")
    parser.add_argument("--n", type=int, default=16, help="inputs in x1 and in x2")
    parser.add_argument("--o", type=int, default=8, help="outputs")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--trace", action="store_true", help="the traced (N, N) kernel instead")
    parser.add_argument("--jacobian-batch-size", type=int, default=4)
    parser.add_argument("--dtypes", nargs="+", default=["float32", "float64"])
    args = parser.parse_args(argv)
    if args.quick:
        args.width, args.d, args.n = 512, 784, 8
    torch.set_num_threads(args.threads)
    n_params = sum(p.numel() for p in mlp(args.d, args.width, args.depth, args.o, torch.float32)
                   .parameters())
    print(f"# empirical NTK: {args.depth} x {args.width} ReLU MLP, d = {args.d}, P = {n_params:,}, "
          f"N = {args.n}, O = {args.o}, trace = {args.trace}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; load average {os.getloadavg()[0]:.2f}", flush=True)
    rows = [row for name in args.dtypes for row in run(args, getattr(torch, name))]
    print(f"\nload average at the end {os.getloadavg()[0]:.2f}\n")
    print("| dtype | method | batch_size | time (s) | speed-up vs jacobian | max abs diff vs jacobian "
          "(relative) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['dtype']} | {r['method']} | {r['batch']} | {r['seconds']:.4f} | "
              f"{r['speedup']:.1f}x | {r['diff']:.2e} ({r['rel']:.1e}) |")


if __name__ == "__main__":
    main()
