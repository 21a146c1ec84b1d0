"""Benchmark of convolutional kernels (CNN-GP, CNTK). Prints a Markdown table for the README.

Setting: float64, 32 x 32 x 3 Gaussian images, NNGP and NTK together, the symmetric kernel of n
images; "ms per pair" is the time over n^2 (neural-tangents' convention for the numbers
measured on the same machine: Myrtle-5 248 ms, the 4-layer erf CNN-GAP 331 ms, the 8-layer ReLU
CNN-VEC 0.29 ms per pair).

The floor of each network is its arithmetic at this machine's elementwise rate: per pair of
images and per layer, the entries of the pair's covariance (P^2 with pooling, P without) times
the elementwise operations of the layer (a Conv: 2 tensors x (kh + kw) shifted additions and 3
scalings; an activation: the operations of its map from the covariance, ``MAP_OPS``; a pooling:
2 x 2 x (kh + kw) additions), divided by the rate of one in-cache float64 elementwise operation
(``torch.addcmul_``, measured here). Memory: the peak resident memory of a fresh process
computing the Myrtle-5 kernel between 4 and ``--memory-n`` images, and ``peak_memory``'s
estimate for the full n x n kernel.

    python bench/bench_conv.py            # all rows (~3 minutes)
    python bench/bench_conv.py --quick    # fewer images
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import time

import torch

from infnet.network import cnn, myrtle

#: elementwise operations of an activation's map from (q1, q2, c) (closed forms: the passes of
#: ``closed_forms``; the Kdot * Theta product included)
MAP_OPS = {"relu": 10, "erf": 12}


def images(n: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, size, size, generator=g, dtype=torch.float64)


def op_rate(repeat: int = 200) -> float:
    """Elementwise float64 operations per second, in cache (65536 entries)."""
    a, b, c = (torch.rand(1 << 16, dtype=torch.float64) for _ in range(3))
    best = math.inf
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(repeat):
            a.addcmul_(b, c, value=1e-9)
        best = min(best, time.perf_counter() - t0)
    return repeat * a.numel() / best


def floor_ops(net, size: int) -> float:
    """Elementwise operations of one pair (module docstring)."""
    shape, total = (size, size), 0.0
    full = any(getattr(layer, "reads_pairs", False) for layer in net.layers)
    for layer in net.layers:
        p = math.prod(shape) if shape else 1
        entries = p * p if full else p
        name = type(layer).__name__
        if name == "Conv":
            total += entries * (2 * sum(layer.filter_shape) + 3)
        elif name == "Nonlinearity":
            total += entries * MAP_OPS.get(layer.act.name, 12)
        elif name == "AvgPool":
            total += entries * 2 * 2 * sum(layer.window_shape)
        if getattr(layer, "spatial", False):
            shape = layer.out_shape(shape)
    return total


def per_pair(net, x, repeat: int) -> float:
    net.kernel(x[:2])  # warm-up
    best = math.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        net.kernel(x)
        best = min(best, time.perf_counter() - t0)
    return best / x.shape[0] ** 2


#: the peak is VmHWM, the high-water mark of this process's own address space: getrusage's
#: ru_maxrss of a child started by fork counts the parent's resident memory at the fork
MEMORY_SCRIPT = """
import torch, infnet
g = torch.Generator().manual_seed(0)
x = torch.randn({n}, 3, 32, 32, generator=g, dtype=torch.float64)
infnet.network.myrtle(5).kernel(x[:4], x)
hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(int(hwm.split()[1]) / 1024)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--memory-n", type=int, default=1000)
    parser.add_argument("--memory-only", action="store_true", help="only the memory run")
    args = parser.parse_args()
    if args.memory_only:
        return memory(args.memory_n)
    rate = op_rate()
    n_pool, n_vec, repeat = (6, 32, 1) if args.quick else (16, 64, 2)
    rows = [
        ("Myrtle-5", myrtle(5), n_pool, 248.0, 25.0),
        ("erf CNN-GAP, 4 layers", cnn("erf", 4, readout="gap", w_std=1.5, b_std=0.1), n_pool,
         331.0, 33.0),
        ("ReLU CNN-GAP, 4 layers", cnn("relu", 4, readout="gap", w_std=1.5, b_std=0.1), n_pool,
         None, None),
        ("ReLU CNN-VEC, 8 layers", cnn("relu", 8, readout="flatten"), n_vec, 0.29, 0.1),
    ]
    print(f"elementwise rate: {rate / 1e9:.2f} G operations/s (float64, in cache)\n")
    print("| network (32x32x3, float64) | n | ms per pair | neural-tangents | target | floor ms "
          "| x floor |")
    print("|---|---|---|---|---|---|---|")
    for label, net, n, nt, target in rows:
        t = per_pair(net, images(n), repeat) * 1e3
        floor = floor_ops(net, 32) / rate * 1e3 * (n * (n + 1) / 2) / n**2
        print(f"| {label} | {n} | {t:.2f} | {nt or '-'} | {target or '-'} | {floor:.2f} "
              f"| {t / floor:.1f} |")
    # activations without a closed form: the same CNN-GAP (their Hermite series; ReLU again
    # in the same run, as the baseline of the ratio)
    print(f"\n| 4-layer CNN-GAP, 32x32x3 images, n = {n_pool} | ms per pair | x ReLU |")
    print("|---|---|---|")
    x = images(n_pool)
    base = None
    for act in ("relu", "swish", "tanh", "gelu_tanh"):
        t = per_pair(cnn(act, 4, readout="gap", w_std=1.5, b_std=0.1), x, 1) * 1e3
        base = base or t
        print(f"| {act} | {t:.1f} | {t / base:.2f} |")
    # without pooling (the diagonal layout: P entries a pair) the series' coefficients, one
    # set per image and layer, weigh most
    print(f"\n| 8-layer CNN-VEC, 32x32x3 images, n = {n_vec // 2} | ms per pair | x ReLU |")
    print("|---|---|---|")
    x = images(n_vec // 2)
    base = None
    for act in ("relu", "swish", "tanh"):
        t = per_pair(cnn(act, 8, readout="flatten"), x, 1) * 1e3
        base = base or t
        print(f"| {act} | {t:.2f} | {t / base:.0f} |")
    memory(args.memory_n)


def memory(n: int) -> None:
    """The peak resident memory of a fresh process computing a Myrtle-5 block of 4 x n."""
    est = myrtle(5).peak_memory((32, 32), n) / 2**20
    out = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT.format(n=n)], capture_output=True,
                         text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"the memory run failed ({out.returncode}): {out.stderr[-500:]}")
    print(f"\nMyrtle-5, {n} images: peak_memory estimate for the {n} x {n} kernel "
          f"{est:.0f} MiB; a process computing its 4 x {n} block peaked at "
          f"{float(out.stdout.split()[-1]):.0f} MiB resident (torch included)")


if __name__ == "__main__":
    main()
