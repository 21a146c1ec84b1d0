"""Kernel regression at scale: infnet's solve against a bare torch Cholesky of the same matrix.

For n training points (synthetic MNIST-shaped data: d = 784, 10 one-hot outputs) the depth-5
ReLU NTK is computed once per process; then, in separate processes so that peak memory is
measured per method (ru_maxrss of the child):

- bare:   L = torch.linalg.cholesky(K); torch.cholesky_solve(Y, L)        (a copy of K: 2 n^2)
- infnet: infnet.predict.gradient_descent_mse(K, Y, overwrite=True).dual_coef()  (in place: n^2)
- fit:    infnet.NTKRegressor(...).fit(X, Y) end to end (kernel + solve), and predict on 1000
          test points (blocks of test rows: O(n * block) beyond the kernel)

Speed is judged as bare time / infnet time (>= 0.6 required: overhead). Prints a markdown table.

    python bench/bench_predict.py            # n = 20000 (about 3 min on 2 cores, ~7 GB)
    python bench/bench_predict.py --n 5000   # quick
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np
import torch

D, OUTPUTS, DEPTH = 784, 10, 5


def _data(n: int, seed: int = 0):
    g = np.random.default_rng(seed)
    x = g.random((n, D))  # MNIST-shaped: pixels in [0, 1]
    y = np.zeros((n, OUTPUTS))
    y[np.arange(n), g.integers(0, OUTPUTS, n)] = 1.0
    return x, y


def _kernel(x: np.ndarray) -> torch.Tensor:
    import infnet

    return infnet.fc("relu", DEPTH, w_std=2**0.5).kernel(torch.as_tensor(x), get="ntk").ntk


def run_one(mode: str, n: int, repeat: int) -> dict:
    torch.set_num_threads(max(1, torch.get_num_threads()))
    x, y = _data(n)
    out = {"mode": mode, "n": n}
    if mode == "fit":
        import infnet

        xt, _ = _data(1000, seed=1)
        start = time.perf_counter()
        reg = infnet.NTKRegressor("relu", DEPTH, w_std=2**0.5).fit(x, y)
        out["fit_s"] = time.perf_counter() - start
        start = time.perf_counter()
        reg.predict(xt)
        out["predict_s"] = time.perf_counter() - start
    else:
        start = time.perf_counter()
        k = _kernel(x)
        out["kernel_s"] = time.perf_counter() - start
        yt = torch.as_tensor(y)
        times = []
        for _ in range(repeat):
            work = k.clone() if repeat > 1 else k  # the last run may consume k
            start = time.perf_counter()
            if mode == "bare":
                chol = torch.linalg.cholesky(work)
                alpha = torch.cholesky_solve(yt, chol)
                del chol
            else:
                from infnet.predict import gradient_descent_mse

                alpha = gradient_descent_mse(work, yt, overwrite=True).dual_coef()
            times.append(time.perf_counter() - start)
            del work
        out["solve_s"] = min(times)
        out["alpha_norm"] = float(alpha.norm())
    out["peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=20000)
    p.add_argument("--repeat", type=int, default=1, help="solves per process (best taken; "
                   "more than 1 keeps a spare copy of K, which raises the peak)")
    p.add_argument("--rounds", type=int, default=2, help="alternating rounds of bare/infnet")
    p.add_argument("--mode", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.mode:
        print(json.dumps(run_one(args.mode, args.n, args.repeat)))
        return
    results = {"bare": [], "infnet": [], "fit": []}
    for _ in range(args.rounds):
        for mode in ("bare", "infnet"):
            proc = subprocess.run([sys.executable, __file__, "--mode", mode, "--n", str(args.n),
                                   "--repeat", str(args.repeat)], capture_output=True, text=True,
                                  check=True)
            results[mode].append(json.loads(proc.stdout.strip().splitlines()[-1]))
    proc = subprocess.run([sys.executable, __file__, "--mode", "fit", "--n", str(args.n)],
                          capture_output=True, text=True, check=True)
    results["fit"].append(json.loads(proc.stdout.strip().splitlines()[-1]))
    bare = min(r["solve_s"] for r in results["bare"])
    ours = min(r["solve_s"] for r in results["infnet"])
    k_mib = args.n**2 * 8 / 2**20
    agree = abs(results["bare"][0]["alpha_norm"] - results["infnet"][0]["alpha_norm"]) / \
        results["bare"][0]["alpha_norm"]
    print(f"n = {args.n}, d = {D}, depth-{DEPTH} ReLU NTK, {OUTPUTS} outputs, float64; "
          f"K alone is {k_mib:.0f} MiB; {torch.get_num_threads()} threads")
    print()
    print("| method | solve s (best) | peak RSS MiB | peak / K |")
    print("|---|---|---|---|")
    for name, rows in (("torch cholesky + cholesky_solve", results["bare"]),
                       ("infnet.predict (in place)", results["infnet"])):
        best = min(r["solve_s"] for r in rows)
        peak = max(r["peak_mib"] for r in rows)
        print(f"| {name} | {best:.2f} | {peak:.0f} | {peak / k_mib:.2f} |")
    fit = results["fit"][0]
    print(f"| NTKRegressor.fit (kernel + solve) | {fit['fit_s']:.2f} | {fit['peak_mib']:.0f} | "
          f"{fit['peak_mib'] / k_mib:.2f} |")
    print()
    print(f"speed of infnet's solve relative to bare torch: {bare / ours:.2f}x (>= 0.6 required); "
          f"kernel time {min(r['kernel_s'] for r in results['bare']):.1f} s; predict on 1000 "
          f"test points {fit['predict_s']:.2f} s; relative difference of |alpha| {agree:.1e}")


if __name__ == "__main__":
    main()
