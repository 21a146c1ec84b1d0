"""Benchmark of infinite and very large depth (issue: infinite depth). Prints Markdown tables.

1. The infinite-depth kernel, ``infnet.fc(act, math.inf).kernel(X)``, for n points on the
   sphere in d = 784, against the Gram matrix X @ X.T (interleaved runs, best of --repeat).
2. Depth scaling of ``infnet.deep_kernels(act, rho, L)`` (NNGP and NTK of the depth-L normalized
   network) on the correlations of --m points, for L = 100 ... 1e6: the cost should not grow
   with L. ReLU (the marginal class) builds log2(L) tables once (cached per activation, so
   each depth's time includes only the levels the previous depths did not build). Where the
   NTK leaves float64 (it grows like f'(1)^L) the NNGP alone is timed ("NNGP").
3. ``infnet.fc(act, L).kernel(X)`` on data against ``deep_kernels`` on the same correlations:
   a run of identical blocks costs about what deep_kernels costs, at any depth.

    python bench/bench_depth.py              # n = 10000
    python bench/bench_depth.py --n 3000     # quicker
"""

from __future__ import annotations

import argparse
import math
import sys

import torch
from bench_kernel import best_time as best  # the same interleaved timing (bench/ is on the path)

import infnet


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=10000)
    p.add_argument("--d", type=int, default=784)
    p.add_argument("--m", type=int, default=1000, help="points for the depth scaling")
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--depth-only", action="store_true", help="only the depth scaling table")
    args = p.parse_args()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.n, args.d, generator=g, dtype=torch.float64)
    x /= x.norm(dim=1, keepdim=True)
    floors: list[float] = []

    def gram():
        return x @ x.T

    acts = {"optimal_polynomial_d3 (singular)": infnet.optimal_activation(3),
            "erf (singular)": "erf", "relu (majority vote)": "relu",
            "hermite h_2 (nearest neighbour)": "hermite"}
    rows = []
    for label, act in ({} if args.depth_only else acts).items():
        net = infnet.fc(act, math.inf)
        net.kernel(x[:64])  # builds the table of the limit kernel
        t = best(lambda net=net: net.kernel(x), args.repeat, gram, floors)
        rows.append((label, t))
    floor = min(floors, default=math.nan)
    print(f"n = {args.n}, d = {args.d}, float64, {torch.get_num_threads()} threads\n")
    print("| infinite-depth kernel | seconds | x Gram |\n|---|---|---|")
    print(f"| Gram X @ X.T (floor) | {floor:.3f} | 1.00 |")
    for label, t in rows:
        print(f"| {label} | {t:.3f} | {t / floor:.2f} |")

    rho = (x[:args.m] @ x[:args.m].T).clamp(-1, 1)
    rho.fill_diagonal_(1.0)
    depths = [100, 10**4, 10**5, 10**6]
    deep = {"erf (singular)": "erf", "optimal_polynomial_d3 (singular)": infnet.optimal_activation(3),
            "gelu (majority, f'(1) > 1)": "gelu", "hermite h_3 (nearest neighbour)":
            infnet.activation("hermite", k=3), "relu (majority, marginal)": "relu"}
    print(f"\nDepth-L NNGP and NTK (deep_kernels) on {args.m}^2 correlations, seconds "
          "(x: the time at depth 100)\n")
    print("| activation | " + " | ".join(f"L = {L:.0e}" for L in depths) + " |")
    print("|---|" + "---|" * len(depths))
    for label, act in deep.items():
        lim = infnet.limit(act)
        cells = []
        base = None
        for L in depths:
            fn, mark = (lambda lim=lim, L=L: infnet.deep_kernels(lim, rho, L)), ""
            try:
                fn()
            except infnet.KernelOverflowError:  # the NTK ~ f'(1)^L has left float64
                fn, mark = (lambda lim=lim, L=L: infnet.deep_dual(lim, rho, L)), " NNGP"
            t = best(fn, 1)
            base = base or t
            cells.append(f"{t:.3f} ({t / base:.1f}x){mark}")
        print(f"| {label} | " + " | ".join(cells) + " |")

    # 3. fully-connected networks of these depths on data: fc(act, L).kernel(X) against
    # deep_kernels on the same correlations (the normalized setting: x.x/d = 1, w = 1, b = 0;
    # ReLU with w^2 = 2 on inputs of several norms)
    m = min(args.m, 300)
    xs = x[:m] * math.sqrt(args.d)
    xr = xs * torch.linspace(0.5, 2.0, m, dtype=torch.float64)[:, None]
    nets = {"optimal_polynomial_d3": (infnet.optimal_activation(3), 1.0, xs),
            "erf (normalized)": (infnet.activation("erf").normalized(), 1.0, xs),
            "relu, several norms": (infnet.activation("relu"), 2**0.5, xr)}
    fc_depths = [10, 100, 1000, 10**5]
    print(f"\nfc(act, L, w_std, b_std=0).kernel(X) on {m} points against deep_kernels on their "
          f"{m}^2 correlations, seconds (first call, tables included)\n")
    print("| network | " + " | ".join(f"L = {L:.0e}" for L in fc_depths) + " |")
    print("|---|" + "---|" * len(fc_depths))
    for label, (act, w, data) in nets.items():
        cells = []
        for L in fc_depths:
            u = data / data.norm(dim=1, keepdim=True)
            r = (u @ u.T).clamp(-1, 1)
            try:  # each from empty caches: both pay for the tables they build
                sys.modules["infnet.depth.limit"]._LIMITS.clear()
                t_deep = best(lambda act=act, L=L, r=r: infnet.deep_kernels(act, r, L), 1)
                sys.modules["infnet.depth.limit"]._LIMITS.clear()
                t_fc = best(lambda act=act, L=L, w=w, data=data:
                            infnet.fc(act, L, w_std=w, b_std=0.0).kernel(data), 1)
                cells.append(f"{t_fc:.2f} / {t_deep:.2f}")
            except infnet.KernelOverflowError:
                cells.append("NTK overflows")
        print(f"| {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
