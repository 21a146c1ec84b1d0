"""The NNGP alone of inputs of different norms, carried as covariances (``get="nngp"``):
against a 40-digit evaluation of the same recursion near duplicates, against the angle path
for every Lipschitz closed form and smooth units' series, and the units and networks it must
leave to the angle path."""

from __future__ import annotations

import mpmath
import pytest
import torch

import infnet
from infnet.network import covariance_pass

F64 = torch.float64


def _raw_inputs(n: int = 40, d: int = 12, seed: int = 0) -> torch.Tensor:
    """Inputs of different norms with an exact duplicate, near-duplicates (relative
    perturbations 1e-7 and 1e-10) and a near-antiparallel pair."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=F64) * (0.2 + 3 * torch.rand(n, 1, generator=g,
                                                                          dtype=F64))
    x[1] = x[0] * (1 + 1e-7 * torch.randn(d, generator=g, dtype=F64))
    x[2] = x[0] * (1 + 1e-10 * torch.randn(d, generator=g, dtype=F64))
    x[3] = x[0]
    x[4] = -x[5] * (1 + 1e-9 * torch.randn(d, generator=g, dtype=F64))
    return x


def _relu_reference(x, i: int, j: int, depth: int, w: float, b: float) -> float:
    """The depth-``depth`` ReLU NNGP of rows i, j in 40-digit arithmetic (Cho & Saul)."""
    mpmath.mp.dps = 40
    d = x.shape[1]
    u = [mpmath.mpf(float(v)) for v in x[i]]
    v = [mpmath.mpf(float(t)) for t in x[j]]
    w2, b2 = mpmath.mpf(w) ** 2, mpmath.mpf(b) ** 2
    q1 = w2 * sum(a * a for a in u) / d + b2
    q2 = w2 * sum(a * a for a in v) / d + b2
    c = w2 * sum(a * t for a, t in zip(u, v, strict=True)) / d + b2
    for _ in range(depth):
        r = mpmath.sqrt(q1 * q2)
        theta = mpmath.acos(max(min(c / r, 1), -1))
        k = r / (2 * mpmath.pi) * (mpmath.sin(theta) + (mpmath.pi - theta) * mpmath.cos(theta))
        c = w2 * k + b2
        q1, q2 = w2 * q1 / 2 + b2, w2 * q2 / 2 + b2
    return float(c)


def test_relu_nngp_near_duplicates_matches_40_digits():
    """Depth-10 ReLU with bias on raw inputs: the pairs of near-duplicates, the exact
    duplicate, the near-antiparallel pair and a few others, to 1e-13 relative (the angle
    path is exact there too; a covariance rounded near rho = 1 moves K by its rounding)."""
    x = _raw_inputs()
    net = infnet.fc("relu", 10, w_std=1.4, b_std=0.3)
    k = net.kernel(x, get="nngp").nngp
    for i, j in [(0, 1), (0, 2), (0, 3), (1, 2), (4, 5), (6, 7), (8, 30)]:
        want = _relu_reference(x, i, j, 10, 1.4, 0.3)
        assert abs(float(k[i, j]) - want) <= 1e-13 * abs(want), (i, j)


@pytest.mark.parametrize("name", ["relu", "leaky_relu", "abs", "erf", "gelu", "sin", "exp",
                                  "swish", "tanh"])
def test_covariances_agree_with_the_angle_path(name, monkeypatch):
    """Every Lipschitz closed form and smooth units through their Hermite series (swish,
    tanh), depth 3 with bias, raw inputs and a cross kernel: the
    NNGP carried as covariances equals the angle path's (``get="both"``) to 1e-14 of the
    diagonal scale sqrt(K_ii K_jj), and the covariance pass did run."""
    calls = []
    original = covariance_pass.nngp_by_covariances

    def counted(*args):
        calls.append(1)
        return original(*args)

    monkeypatch.setattr("infnet.network.network.nngp_by_covariances", counted)
    x = _raw_inputs(seed=1) / (4 if name == "exp" else 1)
    net = infnet.fc(name, 3, w_std=0.6 if name == "exp" else 1.3, b_std=0.2)
    for y in (None, x[10:25] * 1.5):
        got = net.kernel(x, y, get="nngp").nngp
        want = net.kernel(x, y).nngp
        d1 = net.kernel(x, get="nngp").nngp.diagonal()
        d2 = d1 if y is None else net.kernel(y, get="nngp").nngp.diagonal()
        scale = (d1[:, None] * d2[None, :]).sqrt()
        assert float(((got - want).abs() / scale).max()) < 1e-14
    assert calls


@pytest.mark.parametrize("layers", [
    ("elu",),  # a kink without a closed form (its quadrature)
    ("relu", infnet.Dense(1.1, 0.1), infnet.network.LayerNorm()),  # a layer it does not know
])
def test_other_networks_keep_the_angle_path(layers, monkeypatch):
    """Kinked units without a closed form and other layers take the angle path: the NNGP is
    then get="both"'s, bit for bit."""
    def refuse(*args):
        raise AssertionError("the covariance pass ran")

    monkeypatch.setattr("infnet.network.network.nngp_by_covariances", refuse)
    net = infnet.serial(infnet.Dense(1.2, 0.3), *layers, infnet.Dense(1.2, 0.3))
    x = _raw_inputs(n=12, d=5, seed=2)
    assert torch.equal(net.kernel(x, get="nngp").nngp, net.kernel(x).nngp)


def test_units_with_a_jump_are_not_carried():
    """step and sign: K has an infinite slope in the covariance at rho = 1 (Kdot a Dirac
    mass), so a rounded covariance would cost K half its digits there."""
    from infnet.network.layers import Nonlinearity

    for name, carried in (("step", False), ("sign", False), ("relu", True), ("erf", True)):
        segments = [Nonlinearity(infnet.activations.activation(name))]
        assert covariance_pass.carries_covariances(segments) is carried


def test_a_deep_run_that_jumps_keeps_the_angle_path():
    """A run whose variances settle at a fixed point jumps to the depth limit in angle form
    after its explicit blocks: not carried as covariances (``carries_covariances`` reads the
    traces); at depth 10 the same network is."""
    x = _raw_inputs(n=6, d=5, seed=3)
    d = x.shape[1]
    for depth, carried in ((300, False), (10, True)):
        net = infnet.fc("erf", depth, w_std=1.5, b_std=0.3)
        tr = net.trace((x * x).sum(1) / d, d)
        assert covariance_pass.carries_covariances(net._segments, tr) is carried


def test_one_kernel_asked_of_the_angle_table_is_the_same():
    """Inputs of one norm take the angle table, which then evaluates only the kernel asked:
    each equals its field of get="both" bit for bit, and the other is None."""
    g = torch.Generator().manual_seed(4)
    x = torch.randn(300, 6, generator=g, dtype=F64)
    x = x / x.norm(dim=1, keepdim=True)
    net = infnet.fc("relu", 5, w_std=1.4, b_std=0.3)
    both = net.kernel(x)
    for kind in ("nngp", "ntk"):
        one = net.kernel(x, get=kind)
        assert torch.equal(getattr(one, kind), getattr(both, kind))
        assert getattr(one, "ntk" if kind == "nngp" else "nngp") is None
