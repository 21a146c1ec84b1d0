"""Benchmark of the kernel engine (issue: kernel engine). Prints a Markdown table for the README.

Setting: float64, unit-norm inputs, d = 784, depth-10 fully-connected network, n points.
- Gram: X @ X.T alone, the floor any kernel pays.
- ReLU NTK: infnet.fc("relu", 10, w_std=sqrt(2)).kernel(X), first call (table built) and again.
- swish NTK (no closed form): the same with swish, first call includes the table build.
- accuracy: the swish NTK and NNGP at sampled entries against the exact layer-by-layer kernel
  (closed forms / polar quadrature per layer) at the same angles.
- memory: peak resident memory of a fresh process computing the n-point ReLU and swish kernels.
Times are the best of --repeat runs, measured in one process so that ratios are comparable.

    python bench/bench_kernel.py            # n = 4000
    python bench/bench_kernel.py --n 1000   # quicker
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import torch

import infnet

GRAM_TIMES: list[float] = []


def best_time(fn, repeat: int, floor=None, floors: list[float] | None = None) -> float:
    """Best of ``repeat`` runs; with ``floor`` (the Gram), each run is preceded by one of the
    floor, so that both see the same moments of a shared machine; the floor's times are
    appended to ``floors`` (default ``GRAM_TIMES``)."""
    floors = GRAM_TIMES if floors is None else floors
    best = float("inf")
    for _ in range(repeat):
        if floor is not None:
            t0 = time.perf_counter()
            floor()
            floors.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def data(n: int, d: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    return x / x.norm(dim=1, keepdim=True)


def networks():
    return {"relu": lambda: infnet.fc("relu", 10, w_std=2**0.5, b_std=0.0),
            "swish": lambda: infnet.fc("swish", 10, w_std=2**0.5, b_std=0.0),
            # with a bias the pre-activations are O(1): swish far from its linear regime
            "swish_bias": lambda: infnet.fc("swish", 10, w_std=1.5, b_std=1.0)}


def peak_memory(n: int, d: int, name: str) -> float:
    """Peak RSS (MiB) of a fresh process computing one kernel, minus that of the same process
    before the kernel (torch and the data already loaded)."""
    # VmHWM (not ru_maxrss, which keeps the parent's high-water mark across exec)
    code = f"""
import sys
sys.path.insert(0, "bench")
from bench_kernel import data, networks
def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
x = data({n}, {d})
net = networks()["{name}"]()
base = hwm()
k = net.kernel(x)
print(base, hwm())
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    base, peak = map(float, out.stdout.split())
    return base, peak


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=4000)
    p.add_argument("--d", type=int, default=784)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--samples", type=int, default=400, help="entries checked against exact")
    p.add_argument("--json", help="also write the numbers to this file")
    args = p.parse_args()
    x = data(args.n, args.d)
    kernel_rows, res = [], {"n": args.n, "d": args.d, "threads": torch.get_num_threads()}
    def gram():
        return x @ x.T

    gram()
    for name, make in networks().items():
        first = []

        def cold(make=make, first=first):
            net = make()  # a new network: its table is built in the call
            first.append(net)
            return net.kernel(x)

        t_cold = best_time(cold, args.repeat, floor=gram)
        net = first[-1]
        t_warm = best_time(lambda net=net: net.kernel(x), args.repeat, floor=gram)
        res[f"{name}_cold_s"], res[f"{name}_warm_s"] = t_cold, t_warm
        table = next(iter(net._tables.values()))
        kernel_rows.append((f"{name} NTK+NNGP, depth 10 (first call, builds table)", t_cold,
                     None, f"Chebyshev degree {table.degree}, {table.intervals} cubic pieces"))
        kernel_rows.append((f"{name} NTK+NNGP, depth 10 (table cached)", t_warm, None, ""))
        # accuracy at sampled entries against the exact layer-by-layer kernel
        k = net.kernel(x)
        g = torch.Generator().manual_seed(1)
        i = torch.randint(0, args.n, (args.samples,), generator=g)
        j = torch.randint(0, args.n, (args.samples,), generator=g)
        i[:8] = j[:8]  # a few diagonal entries
        theta = torch.acos((x[i] * x[j]).sum(1).clamp(-1, 1))
        theta[:8] = 0.0
        nngp_ref, ntk_ref = net.angle_kernel(theta, 1.0 / args.d, args.d)
        err_nngp = float((k.nngp[i, j] - nngp_ref).abs().max())
        err_ntk = float((k.ntk[i, j] - ntk_ref).abs().max())
        res[f"{name}_max_abs_err_nngp"], res[f"{name}_max_abs_err_ntk"] = err_nngp, err_ntk
        kernel_rows[-1] = kernel_rows[-1][:3] + (f"max abs error vs exact ({args.samples} entries): "
                                   f"NNGP {err_nngp:.1e}, NTK {err_ntk:.1e} "
                                   f"(NTK scale {float(k.ntk.diagonal().max()):.3g})",)
    res["swish_over_relu_cold"] = res["swish_cold_s"] / res["relu_cold_s"]
    t_gram = res["gram_s"] = min(GRAM_TIMES)
    rows = [("Gram X @ X.T (the floor)", t_gram, 1.0, f"best of {len(GRAM_TIMES)}, interleaved")]
    rows += [(lab, sec, sec / t_gram, note) for lab, sec, _, note in kernel_rows]
    for name in ("relu", "swish"):
        base, peak = peak_memory(args.n, args.d, name)
        res[f"{name}_peak_rss_mib"] = peak
        rows.append((f"{name}: peak memory of the process", None, None,
                     f"{peak:.0f} MiB peak RSS ({peak - base:.0f} MiB above torch + data; the "
                     f"two float64 outputs are {2 * 8 * args.n**2 / 2**20:.0f} MiB)"))
    print(f"n = {args.n}, d = {args.d}, float64, unit-norm inputs, "
          f"{torch.get_num_threads()} threads, best of {args.repeat}\n")
    print("| computation | seconds | x Gram | notes |")
    print("|---|---|---|---|")
    for label, sec, ratio, note in rows:
        s = "" if sec is None else f"{sec:.3f}"
        r = "" if ratio is None else f"{ratio:.2f}"
        print(f"| {label} | {s} | {r} | {note} |")
    print(f"\nswish / ReLU (first calls): {res['swish_over_relu_cold']:.2f}x")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(res, fh, indent=1)


if __name__ == "__main__":
    main()
