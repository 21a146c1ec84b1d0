"""The layer protocol: LayerNorm, residual sums and parallel branches against kernels written
out by hand from their formulas (closed-form ReLU/erf), Monte Carlo of wide finite networks of
the same specification, and the Gaussian-input rule."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import infnet
from infnet.network import Dense, LayerNorm, branch_sum, parallel, residual, serial
from infnet.network.finite import monte_carlo_kernel

F64 = torch.float64


def relu_maps(q1, q2, c):
    """Arc-cosine kernel of order 1 (Cho & Saul 2009) and its derivative kernel, numpy."""
    r = np.sqrt(q1 * q2)
    rho = np.clip(c / r, -1, 1)
    t = np.arccos(rho)
    return r * (np.sin(t) + (np.pi - t) * np.cos(t)) / (2 * np.pi), (np.pi - t) / (2 * np.pi)


def data(n=5, d=4, seed=0):
    g = np.random.default_rng(seed)
    return g.standard_normal((n, d))


def by_hand(x, steps):
    """NNGP and NTK of a chain of steps on all pairs (numpy, float64); each step maps
    (S, T) -> (S, T)."""
    d = x.shape[1]
    S, T = x @ x.T / d, np.zeros((len(x), len(x)))
    for step in steps:
        S, T = step(S, T)
    return S, T


def dense(w, b):
    def step(S, T):
        S2 = w * w * S + b * b
        return S2, w * w * T + S2
    return step


def relu(S, T):
    q = np.diag(S)
    K, Kd = relu_maps(q[:, None], q[None, :], S)
    return K, Kd * T


def layer_norm(S, T):
    q = np.sqrt(np.diag(S))
    return S / np.outer(q, q), T / np.outer(q, q)


def skip_plus(branch, a=1.0, b=1.0):
    def step(S, T):
        Sb, Tb = S, T
        for s in branch:
            Sb, Tb = s(Sb, Tb)
        return a * a * S + b * b * Sb, a * a * T + b * b * Tb
    return step


def assert_kernel(k, S, T, rtol=1e-12):
    scale = np.sqrt(np.outer(np.diag(S), np.diag(S)))
    np.testing.assert_array_less(np.abs(k.nngp.numpy() - S), rtol * scale + 1e-300)
    scale = np.sqrt(np.outer(np.diag(T), np.diag(T)))
    np.testing.assert_array_less(np.abs(k.ntk.numpy() - T), rtol * scale + 1e-300)


def test_layer_norm_divides_by_the_variances():
    x = data()
    net = serial(Dense(1.3, 0.4), LayerNorm(), "relu", Dense(0.9, 0.2))
    S, T = by_hand(x, [dense(1.3, 0.4), layer_norm, relu, dense(0.9, 0.2)])
    assert_kernel(net.kernel(torch.from_numpy(x)), S, T)


def test_residual_block_adds_the_branch_to_the_skip():
    x = data(seed=1)
    net = serial(Dense(1.0, 0.3), residual("relu", Dense(1.2, 0.1), branch_weight=0.7,
                                           skip_weight=1.1), "relu", Dense(1.0))
    S, T = by_hand(x, [dense(1.0, 0.3), skip_plus([relu, dense(1.2, 0.1)], 1.1, 0.7), relu,
                       dense(1.0, 0.0)])
    assert_kernel(net.kernel(torch.from_numpy(x)), S, T)


def test_branch_sum_of_two_dense_branches_and_parallel_is_their_mean():
    x = data(seed=2)
    a, b = [Dense(1.0, 0.0), "relu", Dense(1.5, 0.2)], [Dense(0.8, 0.5), "erf", Dense(1.0, 0.0)]
    summed = serial(branch_sum(a, b, weights=(0.6, 0.8)), "relu", Dense())
    ka, kb = serial(*a).kernel(torch.from_numpy(x)), serial(*b).kernel(torch.from_numpy(x))
    # after the sum: relu of the combined pre-activation, then Dense(1, 0)
    S = 0.36 * ka.nngp.numpy() + 0.64 * kb.nngp.numpy()
    T = 0.36 * ka.ntk.numpy() + 0.64 * kb.ntk.numpy()
    S, T = relu(S, T)
    S, T = dense(1.0, 0.0)(S, T)
    assert_kernel(summed.kernel(torch.from_numpy(x)), S, T)
    both = serial(parallel(a, b), "relu", Dense())
    S = (ka.nngp.numpy() + kb.nngp.numpy()) / 2
    T = (ka.ntk.numpy() + kb.ntk.numpy()) / 2
    S, T = dense(1.0, 0.0)(*relu(S, T))
    assert_kernel(both.kernel(torch.from_numpy(x)), S, T)


def test_the_angle_of_a_sum_keeps_near_duplicate_inputs_exact():
    """skip + identity branch is a scaling by sqrt(a^2 + b^2): the kinked ReLU NTK after it
    must equal the one after Dense(sqrt(a^2 + b^2)) for pairs 1e-9 apart, where an angle from
    arccos of the rounded correlation would be off by ~1e-8."""
    g = np.random.default_rng(3)
    x0 = g.standard_normal((1, 6))
    x = torch.from_numpy(np.concatenate([x0, x0 + 1e-9 * g.standard_normal((1, 6)),
                                         -x0 + 1e-9 * g.standard_normal((1, 6))]))
    summed = serial(Dense(1.0, 0.2), branch_sum([], [], weights=(0.6, 0.8)), "relu", Dense())
    scaled = serial(Dense(1.0, 0.2), Dense(1.0, 0.0), "relu", Dense())
    ks, kd = summed.kernel(x), scaled.kernel(x)
    # Dense(1, 0) after Dense(1, 0.2): the same NNGP as the sum (0.36 + 0.64 = 1) but an NTK
    # that counts the extra layer (+ Sigma), so compare the NNGPs and the NTKs less Sigma
    torch.testing.assert_close(ks.nngp, kd.nngp, rtol=1e-13, atol=0)
    plain = serial(Dense(1.0, 0.2), "relu", Dense()).kernel(x)
    torch.testing.assert_close(ks.ntk, plain.ntk, rtol=1e-13, atol=0)


@pytest.mark.parametrize("seed", [0, 1])
def test_wide_finite_networks_have_these_kernels(seed):
    """Monte Carlo over 48 networks of width 1024: every entry within 5 standard errors plus
    the O(1/width) finite-width bias (3 / width of the diagonal scale)."""
    x = torch.from_numpy(data(4, 5, seed=seed))
    net = serial(Dense(1.0, 0.2), residual("relu", Dense(1.0, 0.1), branch_weight=0.8), LayerNorm(),
                 "erf", Dense(1.0, 0.1))
    k = net.kernel(x)
    mc = monte_carlo_kernel(net, x, width=1024, n_samples=48, seed=seed)
    for got, se, want in ((mc.nngp, mc.nngp_se, k.nngp), (mc.ntk, mc.ntk_se, k.ntk)):
        bias = 3.0 / 1024 * float(want.diagonal().max())
        assert bool(((got - want).abs() <= 5 * se + bias).all()), ((got - want) / se)


def test_parallel_builds_a_concatenation_and_residual_keeps_the_width():
    net = serial(Dense(), parallel([Dense(), "relu"], [Dense(), "erf"]), Dense())
    model = net.finite(16, in_features=3, seed=0)
    assert model(torch.ones(2, 3, dtype=F64)).shape == (2, 1)
    wrong = serial(residual(Dense(), "relu"), Dense())  # skip keeps d = 3, the branch gives 16
    with pytest.raises(ValueError, match="widths"):
        wrong.finite(16, in_features=3)


@pytest.mark.parametrize("layers", [("relu", Dense()), (Dense(), "relu", "relu", Dense()),
                                    (LayerNorm(), Dense()), (Dense(), "relu", LayerNorm()),
                                    (Dense(), residual("relu", Dense()), "relu", "tanh")])
def test_an_activation_needs_a_gaussian_input(layers):
    with pytest.raises(ValueError, match="not a Gaussian pre-activation"):
        serial(*layers)


def test_layer_norm_of_a_zero_row_without_bias_says_what_to_do():
    x = torch.tensor([[0.0, 0.0], [1.0, 2.0]], dtype=F64)
    with pytest.raises(ValueError, match="zero variance"):
        serial(Dense(), LayerNorm(), "relu", Dense()).kernel(x)


def test_infinite_depth_has_the_network_interface():
    net = infnet.fc("relu", depth=math.inf)
    assert isinstance(net, infnet.network.inputs.KernelModel)
    assert [a.name for a in net.activations] == ["relu"]
    with pytest.raises(TypeError, match="finite depth"):
        net.finite(8, in_features=3)
