"""Finite-width networks built from kernel specs (``infnet.network.finite``) and their comparison
with infinite-width predictions (``infnet.finite_vs_infinite``).

Expected values are independent of the code under test where possible: closed forms written out
here (ReLU arc-cosine kernel, linear-model gradient descent), Monte Carlo over many seeds with
standard errors, and scaling laws (Lee et al. 2019, arXiv 1902.06720)."""

import math

import pytest
import torch
from torch import nn

import infnet
from infnet.empirical import empirical_ntk
from infnet.empirical.structured import mlp_layers
from infnet.experiments.finite_vs_infinite import compare, fit_slope, train
from infnet.network import Dense, serial
from infnet.network.finite import build, monte_carlo_kernel, sample_seeds
from infnet.network.modules import GatedUnit, Scale


def sphere(n, d, seed=0, radius=None):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    return x / x.norm(dim=1, keepdim=True) * (math.sqrt(d) if radius is None else radius)


def relu_depth1(x1, x2, w, b):
    """NNGP and NTK of Dense(w, b), relu, Dense(w, b) in the NTK parameterization, by hand
    (Cho & Saul 2009 arc-cosine kernel; Jacot et al. 2018 recursion).

    The first layer's covariance is that of the augmented vectors a = (w x / sqrt(d), b), and
    their angle is taken from the chord, 2 atan2(|u - u'|, |u + u'|) for u = a / |a|, which is
    exact for equal rows: arccos of a rounded correlation near 1 would be off by ~1e-8 (and
    differently on different BLAS builds), and the ReLU NTK feels that error linearly."""
    d = x1.shape[1]
    a1 = torch.cat([w * x1 / math.sqrt(d), torch.full((x1.shape[0], 1), float(b), dtype=x1.dtype)], 1)
    a2 = torch.cat([w * x2 / math.sqrt(d), torch.full((x2.shape[0], 1), float(b), dtype=x2.dtype)], 1)
    s0 = a1 @ a2.T
    q1, q2 = (a1 * a1).sum(1), (a2 * a2).sum(1)
    r = (q1[:, None] * q2[None, :]).sqrt()
    u1, u2 = a1 / q1.sqrt()[:, None], a2 / q2.sqrt()[:, None]
    diff = (u1[:, None, :] - u2[None, :, :]).norm(dim=-1)
    summ = (u1[:, None, :] + u2[None, :, :]).norm(dim=-1)
    theta = 2 * torch.atan2(diff, summ)
    k = r / (2 * math.pi) * (torch.sin(theta) + (math.pi - theta) * torch.cos(theta))
    kdot = (math.pi - theta) / (2 * math.pi)
    nngp = w**2 * k + b**2
    return nngp, w**2 * kdot * s0 + nngp


def problem(n_train=20, n_test=10, d=8, outputs=2, seed=0):
    x = sphere(n_train + n_test, d, seed)
    g = torch.Generator().manual_seed(seed + 1)
    y = torch.sin(x[:n_train] @ torch.randn(d, outputs, generator=g, dtype=torch.float64))
    return x[:n_train], y, x[n_train:]


# ---- structure ---------------------------------------------------------------------------------

def test_structure_follows_the_spec():
    net = infnet.fc("relu", depth=2, w_std=1.5, b_std=0.1)
    model = net.finite(32, in_features=5, outputs=3, seed=0)
    assert isinstance(model, nn.Sequential) and len(model) == len(net.layers)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(5, 32), (32, 32), (32, 3)]
    assert all(m.weight.dtype == torch.float64 for m in linears)
    first = model[0]
    assert isinstance(first[0], Scale) and first[0].factor == pytest.approx(1.5 / math.sqrt(5) / 0.1)
    assert isinstance(first[2], Scale) and first[2].factor == pytest.approx(0.1)
    assert mlp_layers(model) is not None  # the structured empirical NTK applies
    no_bias = infnet.fc("relu", depth=1, b_std=None).finite(8, in_features=3, seed=0)
    assert all(m.bias is None for m in no_bias.modules() if isinstance(m, nn.Linear))
    # standard parameterization: the spec's width wins, b_std=0 is a trained bias at 0
    std = infnet.fc("erf", depth=2, b_std=0.0, parameterization="standard", width=16)
    model = std.finite(1000, in_features=4, seed=0, dtype=torch.float32)
    linears = [m for m in model if isinstance(m, nn.Linear)]
    assert [m.out_features for m in linears] == [16, 16, 1]
    assert all(m.bias is not None and not m.bias.any() for m in linears)
    assert linears[0].weight.dtype == torch.float32


def test_model_is_the_formula_of_the_ntk_parameterization():
    """y = (w / sqrt(n_in)) W x + b_std b with standard normal W, b: the Scale-Linear-Scale form."""
    net = serial(Dense(1.3, 0.2))
    model = net.finite(in_features=6, outputs=4, seed=3)
    lin = model[0][1]
    x = sphere(5, 6)
    expected = (1.3 / math.sqrt(6)) * x @ lin.weight.T + 0.2 * lin.bias
    torch.testing.assert_close(model(x), expected, rtol=1e-13, atol=1e-13)
    assert abs(float(lin.weight.detach().std()) - 1) < 0.3  # standard normal parameters


def test_gated_activation_doubles_the_width_before_it():
    net = infnet.fc("swiglu", depth=1, w_std=1.0, b_std=0.1)
    model = net.finite(16, in_features=3, outputs=2, seed=0)
    assert isinstance(model[1], GatedUnit)
    assert model[0][1].out_features == 32 and model[2][1].in_features == 16
    x = sphere(4, 3)
    assert model(x).shape == (4, 2)
    assert empirical_ntk(model, x).shape == (4, 4)  # general method (not elementwise)


def test_init_is_reproducible_bit_for_bit():
    net = infnet.fc("gelu", depth=2, w_std=1.2, b_std=0.3)
    x = sphere(6, 5)
    a, b = (net.finite(64, in_features=5, outputs=2, seed=11) for _ in range(2))
    c = net.finite(64, in_features=5, outputs=2, seed=12)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    assert torch.equal(a(x), b(x)) and not torch.equal(a(x), c(x))
    x_train, y, x_test = problem(8, 4, d=5)
    runs = [compare(net, x_train, y, x_test, widths=(16,), n_seeds=2, steps=(3,), seed=5)
            for _ in range(2)]
    assert torch.equal(runs[0].finite, runs[1].finite)
    assert sample_seeds(0, 3) == sample_seeds(0, 3) and len(set(sample_seeds(0, 3))) == 3


# ---- kernels at initialization -------------------------------------------------------------------

@pytest.mark.parametrize("parameterization", ["ntk", "standard"])
@pytest.mark.parametrize("b_std", [0.4, None])
def test_output_variance_matches_nngp_diagonal(parameterization, b_std):
    """E[f(x)^2] over seeds = NNGP diagonal. For ReLU it is exact at any width (the variance of a
    ReLU layer is linear in that of its input), so only Monte Carlo error remains."""
    width = 64
    net = infnet.fc("relu", depth=2, w_std=1.4, b_std=b_std, parameterization=parameterization,
                    width=width if parameterization == "standard" else None)
    x = torch.cat([sphere(3, 4), 0.3 * sphere(2, 4)])  # two norms: the layer-by-layer path
    expected = net.kernel(x).nngp.diagonal()
    hand = 1.4**2 * relu_depth1(x, x, 1.4, b_std or 0.0)[0].diagonal() / 2 + (b_std or 0.0) ** 2
    torch.testing.assert_close(expected, hand, rtol=1e-12, atol=0)
    samples = torch.stack([(net.finite(width, in_features=4, outputs=8, seed=s)(x) ** 2).mean(1).detach()
                           for s in range(300)])
    mean, se = samples.mean(0), samples.std(0) / math.sqrt(samples.shape[0])
    assert bool((se < 0.06 * expected).all())  # power: a 30% error would show
    assert bool(((mean - expected).abs() < 4.5 * se).all()), (mean, expected, se)


def test_monte_carlo_kernel_matches_net_kernel():
    net = infnet.fc("relu", depth=2, w_std=2**0.5, b_std=0.2)
    x1, x2 = sphere(4, 6), sphere(3, 6, seed=1, radius=1.5)
    mc = monte_carlo_kernel(net, x1, x2, width=256, n_samples=120, seed=0, outputs=64)
    k = net.kernel(x1, x2)
    for est, se, exact in ((mc.nngp, mc.nngp_se, k.nngp), (mc.ntk, mc.ntk_se, k.ntk)):
        assert bool((se < 0.04 * exact.abs()).all())  # power check
        assert bool(((est - exact).abs() < 5 * se).all()), ((est - exact) / se)
    wrong = infnet.fc("relu", depth=2, w_std=2**0.5 * 1.1, b_std=0.2).kernel(x1, x2)
    assert bool(((mc.ntk - wrong.ntk).abs() > 5 * mc.ntk_se).any())  # a 10% error in w_std shows
    only = monte_carlo_kernel(net, x1, width=32, n_samples=3, seed=0, get="nngp")
    assert only.ntk is None and only.nngp.shape == (4, 4)


def test_standard_parameterization_ntk_by_monte_carlo():
    width = 128
    net = infnet.fc("erf", depth=1, w_std=1.5, b_std=0.3, parameterization="standard", width=width)
    x = sphere(4, 5)
    mc = monte_carlo_kernel(net, x, width=None, n_samples=60, seed=1, get="ntk")
    exact = net.kernel(x).ntk
    assert bool((mc.ntk_se < 0.03 * exact.abs().max()).all())  # power: ~ width x.x'/d scale
    assert bool(((mc.ntk - exact).abs() < 5 * mc.ntk_se).all())


def test_empirical_ntk_at_large_width_is_the_kernel():
    net = infnet.fc("relu", depth=2, w_std=2**0.5, b_std=0.1)
    x = sphere(5, 8)
    depth1 = infnet.fc("relu", depth=1, w_std=2**0.5, b_std=0.1).kernel(x)
    hand_nngp, hand_ntk = relu_depth1(x, x, 2**0.5, 0.1)
    torch.testing.assert_close(depth1.ntk, hand_ntk, rtol=1e-10, atol=1e-12)
    exact = net.kernel(x).ntk
    wide, narrow = (torch.stack([empirical_ntk(net.finite(width, in_features=8, seed=s), x)
                                 for s in range(10)]) for width in (2048, 128))
    mean, se = wide.mean(0), wide.std(0) / math.sqrt(10)
    assert bool((se < 0.03 * exact).all())
    assert bool(((mean - exact).abs() < 5 * se + 0.005 * exact).all()), (mean - exact) / se
    assert float(((wide - exact) / exact).abs().max()) < 0.3  # each network: O(width^-1/2) off
    ratio = float(((wide - exact) ** 2).mean().sqrt() / ((narrow - exact) ** 2).mean().sqrt())
    assert 0.15 < ratio < 0.45, ratio  # sqrt(128 / 2048) = 0.25
    small = net.finite(16, in_features=8, outputs=3, seed=0)
    torch.testing.assert_close(empirical_ntk(small, x, method="structured"),
                               empirical_ntk(small, x, method="jacobian"), rtol=1e-10, atol=1e-12)


# ---- training ------------------------------------------------------------------------------------

def test_gradient_descent_on_a_linear_model_is_the_discrete_linearized_dynamics():
    """A single Dense layer is linear in its parameters with NTK w^2 x.x'/d + b^2 at any width, so k
    steps of size eta give exactly f0 + Theta(x,X) Theta^-1 (I - (I - eta Theta / N)^k)(Y - f0(X))
    with N = Y.numel() (the loss convention of infnet.predict); and the flow is close to it."""
    x_train, y, x_test = problem(12, 5, d=6, outputs=3)
    w, b, eta = 1.2, 0.5, 0.7
    net = serial(Dense(w, b))
    model = net.finite(in_features=6, outputs=3, seed=0)
    out, f0_train, f0_test = train(model, x_train, y, x_test, learning_rate=eta, steps=(4, 25))
    theta = w**2 * x_train @ x_train.T / 6 + b**2
    cross = w**2 * x_test @ x_train.T / 6 + b**2
    n = y.numel()
    for k, got in zip((4, 25), out, strict=True):
        step = torch.eye(12, dtype=torch.float64) - eta * theta / n
        expected = f0_test + cross @ torch.linalg.solve(
            theta, (torch.eye(12, dtype=torch.float64) - torch.linalg.matrix_power(step, k)) @ (y - f0_train))
        torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-10)
    for center in (False, True):  # the stepped reference is exact; the flow is off by the floor
        run = compare(net, x_train, y, x_test, widths=(1,), n_seeds=2, steps=(4, 25),
                      learning_rate=eta, center=center)
        assert float(run.deviation("stepped")[0].max()) < 1e-10
        torch.testing.assert_close(run.deviation("linearized")[0][0], run.discretization,
                                   rtol=1e-8, atol=1e-12)
    # centered: every network gives the ensemble mean of the discrete steps
    assert float((run.finite[0, 0] - run.finite[0, 1]).abs().max()) < 1e-10
    flow = infnet.predict.gradient_descent_mse(theta, y, learning_rate=eta)
    assert float((flow.predict(cross, 25) - run.finite[0, 0, 1]).abs().max()) < 0.05


def test_wide_network_tracks_the_infinite_prediction():
    net = infnet.fc("erf", depth=1, w_std=1.5, b_std=0.1)
    x_train, y, x_test = problem()
    run = compare(net, x_train, y, x_test, widths=(128, 4096), n_seeds=3, steps=(20, 60, 150))
    rms, _ = run.deviation("linearized")
    scale = float(y.pow(2).mean().sqrt())
    assert bool((rms[1] < 0.1 * scale).all()), rms
    assert bool((rms[1] < 0.5 * rms[0]).all()), rms  # shrinks with width
    assert bool((run.discretization < 0.2 * rms[1]).all())  # the steps track the flow
    torch.testing.assert_close(run.deviation("stepped")[0], rms, rtol=0.2, atol=0)


@pytest.mark.parametrize("act", ["relu", "erf"])
def test_deviation_falls_like_inverse_sqrt_width(act):
    net = infnet.fc(act, depth=1, w_std=2**0.5, b_std=0.1)
    x_train, y, x_test = problem()
    run = compare(net, x_train, y, x_test, widths=(128, 256, 512, 1024, 2048), n_seeds=16,
                  steps=(10, 30), seed=1)
    slope = run.slope("linearized")
    assert -0.8 < slope < -0.3, slope


def test_centering_and_ensembling_reduce_the_deviation_from_the_mean():
    net = infnet.fc("relu", depth=1, w_std=2**0.5, b_std=0.1)
    x_train, y, x_test = problem()
    kw = dict(widths=(256, 1024), n_seeds=8, steps=(10, 40), seed=2)
    plain = compare(net, x_train, y, x_test, **kw)
    centered = compare(net, x_train, y, x_test, center=True, **kw)
    d_plain, _ = plain.deviation("mean")
    d_centered, _ = centered.deviation("mean")
    d_ensemble, _ = centered.deviation("mean", ensemble=4)
    assert bool((d_centered < 0.5 * d_plain).all()), (d_centered, d_plain)
    assert bool((d_ensemble < d_centered).all())
    assert float(d_centered[1].mean()) < float(d_centered[0].mean())  # and it falls with width
    assert float(d_plain[1].mean()) > 0.5 * float(d_plain[0].mean())  # f0 noise does not
    torch.testing.assert_close(centered.deviation("linearized")[0], d_centered)  # same reference
    table = centered.table(ensemble=4)
    assert table["widths"] == [256, 1024] and len(table["to_mean"]) == 2
    assert fit_slope([1, 4, 16], [1.0, 0.5, 0.25]) == pytest.approx(-0.5)


# ---- errors --------------------------------------------------------------------------------------

def test_bad_inputs_give_clear_errors():
    net = infnet.fc("relu", depth=2)
    for width in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="width must be a positive integer"):
            net.finite(width, in_features=3)
    with pytest.raises(ValueError, match="in_features"):
        net.finite(8, in_features=0)
    with pytest.raises(ValueError, match="outputs"):
        net.finite(8, in_features=3, outputs=0)
    with pytest.raises(ValueError, match="hidden width"):
        net.finite(in_features=3)
    spec_width = infnet.fc("relu", depth=1, width=7).finite(in_features=3, seed=0)  # used if none given
    assert spec_width[0][1].out_features == 7
    with pytest.raises(TypeError, match="depth=inf"):
        build(infnet.fc("relu", depth=math.inf), 8, in_features=3)
    with pytest.raises(TypeError, match="depth=inf"):
        monte_carlo_kernel(infnet.fc("relu", depth=math.inf), sphere(2, 3), width=8, n_samples=2)
    with pytest.raises(ValueError, match="not a Gaussian pre-activation"):
        serial("relu", Dense(1.0, 0.0)).finite(8, in_features=3)
    with pytest.raises(ValueError, match="n_samples"):
        monte_carlo_kernel(net, sphere(2, 3), width=8, n_samples=1)
    x_train, y, x_test = problem(6, 2, d=3)
    with pytest.raises(ValueError, match="learning_rate"):
        compare(net, x_train, y, x_test, widths=(8,), learning_rate=1e6)
    with pytest.raises(ValueError, match="steps"):
        compare(net, x_train, y, x_test, widths=(8,), steps=(5, 2))
    with pytest.raises(ValueError, match="widths"):
        compare(net, x_train, y, x_test, widths=(0,))
    run = compare(net, x_train, y, x_test, widths=(8,), n_seeds=2, steps=(1,))
    with pytest.raises(ValueError, match="ensemble"):
        run.deviation(ensemble=3)
    with pytest.raises(ValueError, match="reference"):
        run.deviation("nngp")
    with pytest.warns(UserWarning, match="discontinuous"):
        infnet.fc("step", depth=1).finite(4, in_features=2, seed=0)


# ---- the experiment ------------------------------------------------------------------------------

def test_deviation_figure(tmp_path):
    from infnet.experiments.finite_vs_infinite import deviation_figure

    path = tmp_path / "deviation.png"
    results = deviation_figure(path, widths=(64, 256, 1024), n_seeds=4, steps=(10, 50),
                               n_train=60, n_test=30)
    assert path.stat().st_size > 10_000
    for act in ("relu", "erf"):
        assert -0.8 < results[act]["uncentered"]["slope_to_linearized"] < -0.25
        assert -0.8 < results[act]["centered"]["slope_to_mean"] < -0.25
        assert abs(results[act]["uncentered"]["slope_to_mean"]) < 0.15


@pytest.mark.slow
def test_slope_on_digits_up_to_width_8192():
    """The experiment of deviation_figure at larger widths (about a minute on 2 CPU cores): the
    slope against the network's own linearization approaches -1/2."""
    from infnet.experiments.finite_vs_infinite import digits_problem

    x_train, y, x_test = digits_problem(100, 50)
    net = infnet.fc("relu", depth=1, w_std=2**0.5, b_std=0.1)
    run = compare(net, x_train, y, x_test, widths=(512, 1024, 2048, 4096, 8192), n_seeds=6,
                  steps=(10, 100))
    assert -0.65 < run.slope("linearized") < -0.38
    assert -0.65 < run.slope("stepped") < -0.38
    # the flow reference: its floor is small next to the deviation at the largest width late in
    # training (early, at 10 steps, it is about a third of it: compare with "stepped" there)
    assert float(run.discretization[-1]) < 0.1 * float(run.deviation("linearized")[0][-1, -1])
