"""Benchmark of the tiled kernel store (issue: scale beyond one machine). Prints a Markdown table.

Setting: n unit-norm points of d = 784, depth-5 ReLU NTK (w_std = sqrt 2), float64, tiles of
2048, symmetric (tiles j >= i computed and written, 1 + (n / tile) / 2 tiles per row of tiles).
Modes, each in a fresh process (so that its peak memory is its own):
- in memory: ``net.kernel(x, get="ntk")`` with every thread, no disk (the reference);
- single: ``compute_kernel(..., scheduler=None)`` (one thread: tiles are defined single-threaded);
- dask-k: ``infnet.scale.local_cluster(k)`` (the cluster of ``scheduler="local"``: k
  single-threaded worker processes), started before the clock (its start-up is reported
  apart), then ``compute_kernel(..., scheduler=address)``.
Throughput counts the n^2 entries of the kernel (the stored half and its mirror). Peak memory:
VmHWM of the client process (which also hosts the Dask scheduler) and the largest of the
workers'. The tiles' checksums are compared across modes (bit-for-bit agreement).

    python bench/bench_scale.py            # n = 20000 (about 1.6 GB of tiles per mode)
    python bench/bench_scale.py --n 4000   # quicker
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

import infnet
from infnet.scale import compute_kernel, local_cluster


def hwm_mib() -> float:
    """Peak resident memory (VmHWM) of this process, MiB."""
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def data(n: int, d: int, seed: int = 0) -> torch.Tensor:
    x = torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return x / x.norm(dim=1, keepdim=True)


def child(args) -> dict:
    """One mode, in this (fresh) process; returns its measurements."""
    x = data(args.n, args.d)
    net = infnet.fc("relu", depth=args.depth, w_std=2**0.5)
    base = hwm_mib()
    out = {"mode": args.child, "base_mib": base}
    if args.child == "memory":
        t0 = time.perf_counter()
        net.kernel(x, get="ntk")
        out["seconds"] = time.perf_counter() - t0
    elif args.child == "single":
        t0 = time.perf_counter()
        store = compute_kernel(net, x, path=args.path, tile=args.tile, progress=False)
        out["seconds"] = time.perf_counter() - t0
    else:
        from distributed import Client

        k = int(args.child.split("-")[1])
        t0 = time.perf_counter()
        with local_cluster(k) as cluster, Client(cluster) as client:
            out["startup"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            store = compute_kernel(net, x, path=args.path, tile=args.tile, progress=False,
                                   scheduler=cluster.scheduler_address)
            out["seconds"] = time.perf_counter() - t0
            out["worker_mib"] = max(client.run(hwm_mib).values())
    out["client_mib"] = hwm_mib()
    if args.child != "memory":
        out["checksums"] = {f.name: f.read_text() for f in Path(args.path).glob("tile_*.sha256")}
        assert len(out["checksums"]) == len(store.tiles())
    return out


def run_mode(mode: str, args, root: Path) -> dict:
    path = root / mode
    cmd = [sys.executable, __file__, "--child", mode, "--path", str(path), "--n", str(args.n),
           "--d", str(args.d), "--depth", str(args.depth), "--tile", str(args.tile)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    shutil.rmtree(path, ignore_errors=True)
    if proc.returncode:
        raise RuntimeError(f"mode {mode} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--d", type=int, default=784)
    parser.add_argument("--depth", type=int, default=5)
    parser.add_argument("--tile", type=int, default=2048)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--dir", default=None, help="folder for the stores (default: a temporary one)")
    parser.add_argument("--no-memory", action="store_true", help="skip the in-memory reference")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return

    root = Path(tempfile.mkdtemp(prefix="bench_scale_", dir=args.dir))
    modes = ([] if args.no_memory else ["memory"]) + ["single"] + [f"dask-{k}" for k in args.workers]
    results = {}
    try:
        for mode in modes:
            results[mode] = run_mode(mode, args, root)
            print(f"{mode}: {results[mode]['seconds']:.1f} s", file=sys.stderr)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    entries = args.n**2
    stored = [r["checksums"] for r in results.values() if "checksums" in r]
    identical = all(c == stored[0] for c in stored)
    one = results.get("dask-1", {}).get("seconds")
    print(f"n = {args.n}, d = {args.d}, depth-{args.depth} ReLU NTK, float64, tile {args.tile}, "
          f"{len(stored[0])} tiles; {torch.get_num_threads()} threads, {entries:.2e} entries\n")
    print("| mode | time (s) | entries / s | vs dask-1 | cluster start (s) | client peak (MiB) "
          "| worker peak (MiB) |")
    print("|---|---|---|---|---|---|---|")
    for mode, r in results.items():
        ratio = f"{one / r['seconds']:.2f}x" if one and mode.startswith("dask") else ""
        print(f"| {mode} | {r['seconds']:.1f} | {entries / r['seconds']:.3g} | {ratio} | "
              f"{r.get('startup', float('nan')):.1f} | {r['client_mib']:.0f} | "
              f"{r.get('worker_mib', float('nan')):.0f} |".replace("nan", "-"))
    print(f"\ntiles bit-for-bit identical across single and Dask modes: {identical}")


if __name__ == "__main__":
    main()
