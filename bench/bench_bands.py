"""Benchmark of spatial kernels in bands of rows (one pair over ``memory=``). Prints a Markdown
table for the README.

Setting: float64 Gaussian images of 3 channels, NNGP and NTK together, the symmetric kernel of
n images, ``memory=`` 1 GiB (the default). For each network and image size: one pair's work
unbanded (``SpatialPlan.tile_bytes``; above the budget, so it is banded), the bands chosen (input
rows a band, and the rows before and after that widen it), ``peak_memory``'s estimate, the peak
resident memory of a fresh process computing the kernel (VmHWM, torch and the images included;
in brackets: above the resident memory before the kernel), and its time, with the time of a
self pass (each image with itself: O(n)) and of a pair (O(n^2): what a large kernel's time is
made of); where the unbanded kernel fits in ``--unbanded-memory``, the same for it, in the same
process (the ratios are the price of the bands).

    python bench/bench_bands.py            # ~6 minutes
    python bench/bench_bands.py --quick    # 64 x 64 only
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

SCRIPT = """
import json, time, torch
from infnet.network import banded, cnn, myrtle
from infnet.network.spatial import SpatialPlan
spent = {{}}
def timed(owner, name, key):
    fn = getattr(owner, name)
    def wrapper(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            spent[key] = spent.get(key, 0.0) + time.perf_counter() - t0
    setattr(owner, name, wrapper)
for owner, name in ((banded, "self_pass"), (banded, "pairs_pass"), (SpatialPlan, "self_pass"),
                    (SpatialPlan, "pairs_pass")):
    timed(owner, name, name)
nets = {{"erf CNN-GAP, 4 layers": lambda: cnn("erf", 4, readout="gap", w_std=1.5, b_std=0.1),
         "Myrtle-5": lambda: myrtle(5)}}
net = nets[{name!r}]()
size, n, unbanded = {size}, {n}, {unbanded}
x = torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
plan = net._spatial_plan()
out = {{"work": plan.tile_bytes((size, size)),
        "bands": banded.band_rows(plan, (size, size), 1 << 30),
        "estimate": net.peak_memory((size, size), n)}}
rss = next(line for line in open("/proc/self/status") if line.startswith("VmRSS"))
out["base"] = int(rss.split()[1]) * 1024
t0 = time.perf_counter()
k = net.kernel(x)
out["time"] = time.perf_counter() - t0
out["self"], out["pair"] = spent["self_pass"] / n, spent["pairs_pass"] / (n * (n - 1) / 2)
spent.clear()
hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM"))
out["hwm"] = int(hwm.split()[1]) * 1024
if unbanded:
    t0 = time.perf_counter()
    ref = net.kernel(x, memory=unbanded)
    out["unbanded"] = time.perf_counter() - t0
    out["self_unbanded"] = spent["self_pass"] / n
    out["pair_unbanded"] = spent["pairs_pass"] / (n * (n - 1) / 2)
    out["error"] = max(float(((a - b).abs().max() / b.abs().max())) for a, b in
                       ((k.nngp, ref.nngp), (k.ntk, ref.ntk)))
print(json.dumps(out))
"""


def run(name: str, size: int, n: int, unbanded: int) -> dict:
    code = SCRIPT.format(name=name, size=size, n=n, unbanded=unbanded)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=False)
    if out.returncode != 0:
        raise SystemExit(f"the run of {name} at {size} failed: {out.stderr[-800:]}")
    return json.loads(out.stdout.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--n", type=int, default=3)
    parser.add_argument("--unbanded-memory", type=int, default=4 << 30,
                        help="bytes: compare with the unbanded kernel where a pair fits in it")
    args = parser.parse_args()
    cases = [("erf CNN-GAP, 4 layers", 64), ("Myrtle-5", 64)]
    if not args.quick:
        cases.append(("erf CNN-GAP, 4 layers", 96))
    print(f"n = {args.n} images, memory = 1 GiB\n")
    print("| network | image | one pair unbanded | bands (rows; before, after) | estimate "
          "| peak RSS (above torch + images) | kernel s | s a self pass | s a pair "
          "| unbanded: kernel, self, pair s | max rel. diff |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, size in cases:
        r = run(name, size, args.n, args.unbanded_memory if size <= 64 else 0)
        pair_gib = r["work"] / 2**30
        rows, (before, after) = r["bands"]
        unb = (f"{r['unbanded']:.1f}, {r['self_unbanded']:.2f}, {r['pair_unbanded']:.2f}"
               if "unbanded" in r else "-")
        err = f"{r['error']:.1e}" if "error" in r else "-"
        print(f"| {name} | {size}x{size} | {pair_gib:.2f} GiB | {rows}; {before}, {after} "
              f"| {r['estimate'] / 2**20:.0f} MiB | {r['hwm'] / 2**20:.0f} MiB "
              f"({(r['hwm'] - r['base']) / 2**20:.0f} MiB) "
              f"| {r['time']:.1f} | {r['self']:.2f} | {r['pair']:.2f} | {unb} | {err} |")


if __name__ == "__main__":
    main()
