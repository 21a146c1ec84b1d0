"""Benchmark of infnet's Gaussian-process kernels against BoTorch's ``InfiniteWidthBNNKernel``
and scikit-ntk's ``NeuralTangentKernel`` on the same ReLU work. Prints Markdown tables for the
README.

Setting: n inputs of dimension d (the MNIST digits of ``$INFNET_MNIST_5K`` when set, else
Gaussian), depth-10 ReLU networks, float64. Two of the inputs are near-duplicates of a third
(relative perturbations 1e-7 and 1e-10) and one is an exact duplicate: there the angle between
inputs is tiny and the arccos of a rounded correlation loses digits. "Gram" is the time of the
matrix product X X^T the kernels start from. The NNGP times of infnet and BoTorch are medians
of ``--rounds`` interleaved rounds (each round runs both, so their ratio compares runs under
the same load); the others are the best of ``--repeat`` runs.

- NNGP (BoTorch's convention): Sigma_0 = w^2 x.x'/d + b^2, then 10 times
  Sigma <- w^2 E[relu(u) relu(v)] + b^2 (infnet: ``fc("relu", 10, w_std=w, b_std=b)``).
- NTK (scikit-ntk's convention, bias 0): Sigma_0 = x.x', the first layer's weights of
  variance 1 and the others 2, divided by L + 1 (infnet: the same network written with
  ``serial``).
- Errors: max relative error over the pairs of the near-duplicates (and a few others) against
  the same recursion in 40-digit arithmetic (mpmath).
- Marginal-likelihood gradient: one evaluation of log p(y) and its gradient in the
  hyperparameters (w, b for the NNGP; scikit-ntk: its bias) with a white-noise term, through
  each library's own GP machinery (scikit-learn's ``GaussianProcessRegressor`` for infnet and
  scikit-ntk, GPyTorch's ``ExactMarginalLogLikelihood`` for BoTorch).

Runs in a virtual environment holding botorch and scikit-ntk besides infnet (never a
dependency of infnet):

    python -m venv /tmp/bvenv && /tmp/bvenv/bin/pip install -c constraints.txt torch==2.13.0 \\
        botorch scikit-ntk mpmath && /tmp/bvenv/bin/pip install --no-deps -e .
    /tmp/bvenv/bin/python bench/bench_gp.py [--n 2000]
"""

from __future__ import annotations

import argparse
import math
import os
import time

import mpmath
import numpy as np
import torch

import infnet

DEPTH, W, B, NOISE = 10, 1.4, 0.3, 1e-2
mpmath.mp.dps = 40


def inputs(n: int, seed: int = 0) -> np.ndarray:
    folder = os.environ.get("INFNET_MNIST_5K")
    if folder:
        from infnet.data import load_idx_folder

        x = load_idx_folder(folder)[0].reshape(-1, 784)[:n].astype(np.float64) / 255.0
    else:
        x = np.random.default_rng(seed).normal(size=(n, 784))
    rng = np.random.default_rng(seed + 1)
    x[1] = x[0] * (1 + 1e-7 * rng.normal(size=x.shape[1]))
    x[2] = x[0] * (1 + 1e-10 * rng.normal(size=x.shape[1]))
    x[3] = x[0]
    return x


def interleaved(ours, theirs, rounds: int) -> tuple[list, list]:
    """Times of ``ours`` and ``theirs`` run alternately, ``rounds`` each (after one warm-up
    of each): the ratio of a round compares two runs under the same load."""
    ours(), theirs()
    a, b = [], []
    for _ in range(rounds):
        for out, fn in ((a, ours), (b, theirs)):
            t0 = time.perf_counter()
            with torch.no_grad():
                fn()
            out.append(time.perf_counter() - t0)
    return a, b


def best(fn, repeat: int) -> float:
    out = math.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out = min(out, time.perf_counter() - t0)
    return out


# ---- the 40-digit reference ------------------------------------------------------------------
def relu_maps(q1, q2, c):
    r = mpmath.sqrt(q1 * q2)
    theta = mpmath.acos(max(min(c / r, 1), -1))
    k = r / (2 * mpmath.pi) * (mpmath.sin(theta) + (mpmath.pi - theta) * mpmath.cos(theta))
    return k, (mpmath.pi - theta) / (2 * mpmath.pi)


def reference(x, i, j, first_w2, w2, b2, scale):
    """(NNGP, NTK) of the pair (i, j) by the NTK-parameterization recursion in 40 digits:
    Dense Sigma' = w^2 Sigma + b^2, Theta' = w^2 Theta + Sigma'; ReLU Sigma' = K,
    Theta' = Kdot Theta (Sigma_0 = first_w2 x.x' / scale + b^2)."""
    a, b = ([mpmath.mpf(float(v)) for v in x[k]] for k in (i, j))
    dot = lambda u, v: mpmath.fsum(p * q for p, q in zip(u, v, strict=True)) / scale  # noqa: E731
    q1, q2, c = (first_w2 * v + b2 for v in (dot(a, a), dot(b, b), dot(a, b)))
    t = c
    for _ in range(DEPTH):
        (k, kd), (k1, _), (k2, _) = relu_maps(q1, q2, c), relu_maps(q1, q1, q1), relu_maps(q2, q2, q2)
        c, t = w2 * k + b2, w2 * kd * t + w2 * k + b2
        q1, q2 = w2 * k1 + b2, w2 * k2 + b2
    return c, t


def errors(got: np.ndarray, x, pairs, **kw) -> float:
    worst = 0.0
    for i, j in pairs:
        want = reference(x, i, j, **kw)[0]
        worst = max(worst, float(abs((mpmath.mpf(float(got[i, j])) - want) / want)))
    return worst


def errors_ntk(got: np.ndarray, x, pairs, **kw) -> float:
    worst = 0.0
    for i, j in pairs:
        want = reference(x, i, j, **kw)[1] / (DEPTH + 1)
        worst = max(worst, float(abs((mpmath.mpf(float(got[i, j])) - want) / want)))
    return worst


# ---- the libraries ----------------------------------------------------------------------------
def botorch_kernel():
    from botorch.models.kernels import InfiniteWidthBNNKernel

    k = InfiniteWidthBNNKernel(depth=DEPTH).double()
    k.weight_var, k.bias_var = W * W, B * B
    return k


def ntk_network():
    """scikit-ntk's NTK (bias 0) as an infnet network: inputs not divided by d, first layer
    weights of variance 1, the others 2."""
    layers = [infnet.Dense(1.0, 0.0)]
    for _ in range(DEPTH):
        layers += ["relu", infnet.Dense(math.sqrt(2.0), 0.0)]
    return infnet.serial(*layers)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--rounds", type=int, default=9, help="interleaved rounds of the NNGP timings")
    args = p.parse_args()
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import WhiteKernel
    from skntk import NeuralTangentKernel

    x = inputs(args.n)
    d = x.shape[1]
    xt = torch.from_numpy(x)
    y = np.sin(x[:, :5].sum(1))
    pairs = [(0, 1), (0, 2), (0, 3), (1, 2), (0, 10), (5, 6)]
    gram = best(lambda: xt @ xt.T, args.repeat)
    print(f"n = {args.n}, d = {d}, depth {DEPTH}, {torch.get_num_threads()} threads; "
          f"Gram {gram * 1e3:.1f} ms\n")

    # NNGP: infnet against BoTorch, raw digits and inputs of one norm (x / |x| sqrt(d): the
    # angle table), timed in interleaved rounds (this machine's load drifts within a run)
    net = infnet.fc("relu", DEPTH, w_std=W, b_std=B)
    bk = botorch_kernel()
    xn = xt / xt.norm(dim=1, keepdim=True) * math.sqrt(d)
    nngp_kw = {"first_w2": W * W, "w2": W * W, "b2": B * B, "scale": d}
    rows, ratios = [], []
    for label, z in (("raw digits", xt), ("inputs of one norm", xn)):
        ours = net.kernel(z, get="nngp").nngp.numpy()
        with torch.no_grad():
            theirs = bk(z).to_dense().numpy()
        t_ours, t_theirs = interleaved(lambda z=z: net.kernel(z, get="nngp"),
                                       lambda z=z: bk(z).to_dense(), args.rounds)
        rows += [(f"infnet NNGP, {label}", float(np.median(t_ours)),
                  errors(ours, z.numpy(), pairs, **nngp_kw)),
                 (f"BoTorch InfiniteWidthBNNKernel, {label}", float(np.median(t_theirs)),
                  errors(theirs, z.numpy(), pairs, **nngp_kw))]
        r = np.asarray(t_theirs) / np.asarray(t_ours)
        ratios.append(f"{label}: BoTorch / infnet median {np.median(r):.1f}x "
                      f"(rounds {r.min():.1f}x to {r.max():.1f}x)")
    # NTK: infnet against scikit-ntk (bias 0; its inputs are not divided by d)
    ntk_net = ntk_network()
    xs = torch.from_numpy(x * math.sqrt(d))
    sk = NeuralTangentKernel(DEPTH, bias=0.0, bias_bounds="fixed")
    ours = ntk_net.kernel(xs, get="ntk").ntk.numpy() / (DEPTH + 1)
    theirs = sk(x)
    ntk_kw = {"first_w2": 1.0, "w2": 2.0, "b2": 0.0, "scale": 1.0}
    rows += [("infnet NTK (scikit-ntk's convention)",
              best(lambda: ntk_net.kernel(xs, get="ntk"), args.repeat),
              errors_ntk(ours, x, pairs, **ntk_kw)),
             ("scikit-ntk NeuralTangentKernel", best(lambda: sk(x), args.repeat),
              errors_ntk(theirs, x, pairs, **ntk_kw))]
    print("| kernel | ms | x Gram | max rel. error near duplicates (vs 40 digits) |")
    print("|---|---|---|---|")
    for name, t, err in rows:
        print(f"| {name} | {t * 1e3:.0f} | {t / gram:.1f} | {err:.1e} |")
    print(f"\n{args.rounds} interleaved rounds; " + "; ".join(ratios))

    # one marginal-likelihood gradient step
    print("\n| marginal likelihood and its gradient | ms | hyperparameters |")
    print("|---|---|---|")
    ik = infnet.gp.NetworkKernel("relu", DEPTH, w_std=W, b_std=B) + WhiteKernel(NOISE, "fixed")
    gpr = GaussianProcessRegressor(ik, optimizer=None).fit(x, y)
    t = best(lambda: gpr.log_marginal_likelihood(gpr.kernel_.theta, eval_gradient=True), 1)
    print(f"| infnet NetworkKernel in GaussianProcessRegressor | {t * 1e3:.0f} | w, b |")
    t = best(lambda: botorch_step(xt, torch.from_numpy(y)), 1)
    print(f"| BoTorch kernel in an ExactGP (GPyTorch autograd) | {t * 1e3:.0f} | w^2, b^2 |")
    sg = GaussianProcessRegressor(NeuralTangentKernel(DEPTH, bias=0.1) + WhiteKernel(NOISE, "fixed"),
                                  optimizer=None).fit(x, y)
    t = best(lambda: sg.log_marginal_likelihood(sg.kernel_.theta, eval_gradient=True), 1)
    print(f"| scikit-ntk in GaussianProcessRegressor | {t * 1e3:.0f} | bias |")


def botorch_step(x, y):
    import gpytorch

    class Model(gpytorch.models.ExactGP):
        def __init__(self):
            lik = gpytorch.likelihoods.GaussianLikelihood().double()
            lik.noise = NOISE
            super().__init__(x, y, lik)
            self.mean_module = gpytorch.means.ZeroMean()
            self.covar_module = botorch_kernel()

        def forward(self, z):
            return gpytorch.distributions.MultivariateNormal(self.mean_module(z),
                                                             self.covar_module(z))

    m = Model().double()
    mll = gpytorch.mlls.ExactMarginalLogLikelihood(m.likelihood, m)
    m.train()
    with gpytorch.settings.fast_computations(False, False, False):
        loss = -mll(m(x), y)
        loss.backward()


if __name__ == "__main__":
    main()
