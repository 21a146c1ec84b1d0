"""Deep fully-connected networks: variances kept at fixed points of the variance map, runs of
identical blocks computed at the cost of ``deep_kernels``, ill-conditioned inputs refused.

References are independent of infnet: the recursions written out here in mpmath (40 digits) or
numpy, with the closed forms of the units (the Hermite combination by Isserlis' theorem, the erf
kernel of Williams 1997, the ReLU arc-cosine kernel of Cho & Saul 2009), and input angles from
the chord of the exact binary inputs (well conditioned also for near-parallel rows)."""

import math

import mpmath as mp
import numpy as np
import pytest
import torch

import infnet
from infnet.network.runs import Run, RunTrace

F64 = torch.float64


def sphere_rows(n, d, seed, sq=1.0):
    """Rows with x.x/d = sq (to rounding)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=F64)
    return x / x.norm(dim=1, keepdim=True) * math.sqrt(d * sq)


def mp_angle(a, b):
    with mp.workdps(40):
        a, b = [mp.mpf(float(v)) for v in a], [mp.mpf(float(v)) for v in b]
        na, nb = mp.sqrt(mp.fsum(v * v for v in a)), mp.sqrt(mp.fsum(v * v for v in b))
        half = mp.sqrt(mp.fsum((p / na - q / nb) ** 2 for p, q in zip(a, b, strict=True))) / 2
        return 2 * mp.asin(min(half, mp.mpf(1)))


# ---- the normalized setting of the infinite-depth paper -------------------------------------------
# optimal_activation(3) = (h_1 + h_3) / sqrt(2), h_3 = (x^3 - 3x) / sqrt(6): dual (rho + rho^3) / 2

def mp_hermite13_kernel(q1, q2, c):
    """E[phi(u) phi(v)], E[phi'(u) phi'(v)] for phi = (x + (x^3 - 3x)/sqrt 6)/sqrt 2, by Isserlis:
    E[uv] = c, E[u v^3] = 3 c q2, E[u^3 v^3] = 9 c q1 q2 + 6 c^3; phi' = (1 + (3x^2 - 3)/sqrt 6)/sqrt 2."""
    s6 = mp.sqrt(6)
    a = 1 - 3 / s6  # phi = (a x + x^3 / sqrt 6) / sqrt 2
    K = (a * a * c + a / s6 * (3 * c * q2 + 3 * c * q1) + (9 * c * q1 * q2 + 6 * c**3) / 6) / 2
    # phi' = (a + b x^2) / sqrt 2: E[(a + b u^2)(a + b v^2)] = a^2 + ab(q1 + q2) + b^2 (q1 q2 + 2 c^2)
    b = 3 / s6
    Kdot = (a * a + a * b * (q1 + q2) + b * b * (q1 * q2 + 2 * c * c)) / 2
    return K, Kdot


def mp_fc(kernel, theta, sq1, sq2, depth, w, b):
    """NNGP and NTK of fc(act, depth, w, b) (NTK parameterization) for two inputs with x.x/d =
    sq1, sq2 at angle theta: the plain recursion, at 40 digits."""
    with mp.workdps(40):
        w2, b2 = mp.mpf(w) ** 2, mp.mpf(b) ** 2
        q1, q2 = w2 * sq1 + b2, w2 * sq2 + b2
        s = w2 * mp.sqrt(sq1 * sq2) * mp.cos(theta) + b2
        t = s
        for _ in range(depth):
            K, Kd = kernel(q1, q2, s)
            K1 = kernel(q1, q1, q1)[0]
            K2 = kernel(q2, q2, q2)[0]
            s, t = w2 * K + b2, w2 * Kd * t + w2 * K + b2
            q1, q2 = w2 * K1 + b2, w2 * K2 + b2
        return float(s), float(t)


@pytest.mark.parametrize("depth", [10, 30, 100, 1000])
def test_normalized_optimal_network_is_the_deep_kernel(depth):
    """fc(optimal_activation(3), w_std=1, b_std=0) on inputs with x.x/d = 1: the variance is 1 at
    every layer (an unstable fixed point: it drifted to 1.19 at depth 30 and overflowed from 40
    before), and the kernels are those of deep_kernels, to 1e-10 at every depth."""
    opt = infnet.optimal_activation(3)
    x = sphere_rows(10, 3, seed=depth)
    x = torch.cat([x, x[:1] * (1 + 2**-52)])  # x.x/d one ulp off 1: kept at the fixed point
    net = infnet.fc(opt, depth=depth, w_std=1.0, b_std=0.0)
    k = net.kernel(x)
    assert float((k.nngp.diagonal() - 1).abs().max()) <= 1e-15
    n = x.shape[0]
    theta = torch.tensor([[float(mp_angle(x[i], x[j])) for j in range(n)] for i in range(n)],
                         dtype=F64)
    S, K = infnet.deep_kernels(opt, torch.cos(theta), depth, theta=theta)
    for got, want in ((k.nngp, S), (k.ntk, K)):
        assert float(((got - want).abs() / want.abs().clamp(min=1e-300)).max()) < 1e-10
    # the deep kernels themselves against the plain recursion at 40 digits (a few pairs)
    for i, j in ((0, 1), (2, 7), (3, 3)):
        s, t = mp_fc(mp_hermite13_kernel, mp.mpf(float(theta[i, j])), mp.mpf(1), mp.mpf(1),
                     depth, 1, 0)
        assert abs(float(k.nngp[i, j]) - s) <= 1e-10 * abs(s) and \
            abs(float(k.ntk[i, j]) - t) <= 1e-10 * abs(t), (i, j, depth)
    # at the cost of deep_kernels: at most 64 blocks layer by layer on the pairs, then one jump
    run = net.trace(torch.tensor(1.0, dtype=F64), 3).records[1]
    assert isinstance(run, RunTrace) and run.explicit <= 64 + 2
    assert run.jump == ("fixed" if depth > 64 else None)


def test_inputs_near_an_unstable_fixed_point_are_ill_conditioned():
    """x.x/d = 1 + 1e-7: the variance map (slope 3.22 at q = 1) amplifies the offset by
    3.22^L. Shallow networks are computed exactly; from 13 layers on the amplification of
    rounding exceeds 1e6 and infnet says so instead of returning a drifting kernel."""
    opt = infnet.optimal_activation(3)
    sq = 1 + 1e-7
    x = sphere_rows(5, 3, seed=1, sq=sq)
    k = infnet.fc(opt, depth=5, w_std=1.0, b_std=0.0).kernel(x)
    for i, j in ((0, 1), (2, 4), (3, 3)):
        th = mp_angle(x[i], x[j])
        sq_i = mp.mpf(float((x[i] * x[i]).sum() / 3))
        sq_j = mp.mpf(float((x[j] * x[j]).sum() / 3))
        s, t = mp_fc(mp_hermite13_kernel, th, sq_i, sq_j, 5, 1, 0)
        assert abs(float(k.nngp[i, j]) - s) <= 1e-10 * abs(s)
        assert abs(float(k.ntk[i, j]) - t) <= 1e-10 * abs(t)
    with pytest.raises(infnet.IllConditionedError, match="ill-conditioned.*amplify"):
        infnet.fc(opt, depth=13, w_std=1.0, b_std=0.0).kernel(x)
    with pytest.raises(infnet.IllConditionedError):
        infnet.fc(opt, depth=13, w_std=1.0, b_std=0.0).kernel(x, method="exact")


# ---- a stable fixed point, inputs of different norms ----------------------------------------------

def np_erf_fc(x, depth, w, b):
    """The erf network's NNGP and NTK by the plain recursion in numpy (Williams 1997:
    K = (2/pi) arcsin(2c / sqrt((1 + 2 q1)(1 + 2 q2))), Kdot = (4/pi) / sqrt((1 + 2 q1)(1 + 2 q2) - 4c^2))."""
    d = x.shape[1]
    s = w * w * (x @ x.T) / d + b * b
    t = s.copy()
    for _ in range(depth):
        q = np.diag(s)
        a = 1 + 2 * q
        den = np.sqrt(np.outer(a, a))
        K = 2 / np.pi * np.arcsin(np.clip(2 * s / den, -1, 1))
        Kd = 4 / np.pi / np.sqrt(np.outer(a, a) - 4 * s * s)
        s, t = w * w * K + b * b, w * w * Kd * t + w * w * K + b * b
    return s, t


def test_stable_fixed_point_with_different_norms():
    """erf with w = 1.8, b = 0.3: every input's variance converges to the same stable q*, after
    which the blocks share one dual (majority vote, rho* < 1) and the run jumps. Against the
    plain recursion, entries off the diagonal (well conditioned) to 1e-10."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(7, 5, generator=g, dtype=F64) * torch.tensor([0.2, 0.5, 1, 2, 3, 5, 8],
                                                                   dtype=F64)[:, None]
    depth, w, b = 300, 1.8, 0.3
    net = infnet.fc("erf", depth=depth, w_std=w, b_std=b)
    k = net.kernel(x)
    s, t = np_erf_fc(x.numpy(), depth, w, b)
    off = ~np.eye(7, dtype=bool)
    for got, want in ((k.nngp.numpy(), s), (k.ntk.numpy(), t)):
        assert np.abs((got - want) / want)[off].max() < 1e-10
        assert np.abs((np.diag(got) - np.diag(want)) / np.diag(want)).max() < 1e-12
    tr = net.trace((x * x).sum(1) / 5, 5)
    assert tr.records[1].jump == "fixed" and tr.records[1].explicit < 200


# ---- positively homogeneous units ----------------------------------------------------------------

def test_homogeneity_is_detected_from_the_kernel():
    dense = infnet.Dense(1.3, 0.0)
    for name in ("relu", "leaky_relu", "abs", "identity", "prelu"):
        assert Run(infnet.activation(name), dense, 5).homogeneous, name
    for name in ("gelu", "relu6", "softplus", "erf", "step"):
        assert not Run(infnet.activation(name), dense, 5).homogeneous, name
    shifted = infnet.activation(lambda z: torch.relu(z - 0.5), kinks=[0.5], name="shifted")
    assert not Run(shifted, dense, 5).homogeneous
    assert not Run(infnet.activation("relu"), infnet.Dense(1.3, 0.1), 5).homogeneous


def mp_relu_dual(theta):
    """One normalized ReLU layer on the angle: cos theta' = (sin t + (pi - t) cos t) / pi and
    f'(cos t) = (pi - t) / pi (Cho & Saul 2009)."""
    c = (mp.sin(theta) + (mp.pi - theta) * mp.cos(theta)) / mp.pi
    return mp.acos(c), c, (mp.pi - theta) / mp.pi


@pytest.mark.slow
@pytest.mark.parametrize("w", [2**0.5, 1.2])
def test_relu_at_great_depth_has_the_cost_of_deep_kernels(w):
    """ReLU without bias at depth 1000 on inputs of different norms: the correlations follow the
    ReLU dual whatever the variances (q_L = (w^2/2)^L q_0), so the run is 64 blocks and one jump
    by the marginal class's tables. Against 40-digit iteration of the dual."""
    g = torch.Generator().manual_seed(5)
    x = torch.randn(5, 4, generator=g, dtype=F64) * torch.tensor([0.5, 1, 2, 3, 4], dtype=F64)[:, None]
    depth = 1000
    net = infnet.fc("relu", depth=depth, w_std=w, b_std=0.0)
    k = net.kernel(x)
    sq = (x * x).sum(1) / 4
    for i, j in ((0, 1), (1, 4), (2, 3), (3, 3)):
        with mp.workdps(40):
            th = mp_angle(x[i], x[j])
            S, T = mp.cos(th), mp.cos(th)
            for _ in range(depth):
                th, c, slope = mp_relu_dual(th)
                S, T = c, c + slope * T
            scale = (mp.mpf(w) ** 2 / 2) ** depth * mp.mpf(w) ** 2 * mp.sqrt(
                mp.mpf(float(sq[i])) * mp.mpf(float(sq[j])))
            want_s, want_t = float(scale * S), float(scale * T)
        assert abs(float(k.nngp[i, j]) - want_s) <= 1e-10 * abs(want_s), (i, j)
        assert abs(float(k.ntk[i, j]) - want_t) <= 1e-10 * abs(want_t), (i, j)
    run = net.trace(sq, 4).records[1]
    assert run.jump == "homogeneous" and run.explicit == 64


@pytest.mark.parametrize("act, depth, w", [("tanh", 10, 1.5), ("relu", 100, 2**0.5),
                                           (infnet.optimal_activation(3), 30, 1.0)])
def test_float32_kernel_is_the_float64_kernel_rounded(act, depth, w):
    """dtype=float32 stores the outputs in float32; the entries are the float64 ones rounded
    (relative error within float32 rounding, 6e-8, of each kernel's scale), also where the
    float64 path keeps variances at an unstable fixed point."""
    x = sphere_rows(40, 6, seed=3)
    net = infnet.fc(act, depth, w_std=w, b_std=0.0)
    k64 = net.kernel(x)
    k32 = net.kernel(x, dtype=torch.float32)
    for a, b in ((k32.nngp, k64.nngp), (k32.ntk, k64.ntk)):
        assert a.dtype == torch.float32
        assert float((a.double() - b).abs().max()) <= 1.2e-7 * float(b.abs().max())
