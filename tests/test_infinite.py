"""fc(act, depth=inf): the infinite-depth kernel on data, against the finite-depth networks it
is the limit of, and the Koenigs function evaluated directly (infnet.koenigs)."""

from __future__ import annotations

import math

import pytest
import torch

import infnet
from infnet.network.infinite import InfiniteDepth

F64 = torch.float64


def sphere(n, d, seed=0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=F64).abs()  # positive orthant: rho in (0, 1)
    return x / x.norm(dim=1, keepdim=True) * scale


@pytest.mark.parametrize("act", [infnet.optimal_activation(3), infnet.activation("erf")],
                         ids=lambda a: a.name)
def test_finite_depth_network_tends_to_the_limit_kernel(act):
    """The NNGP of the normalized bias-free depth-L network (layer by layer, infnet.fc) divided
    by c0^L tends to the infinite-depth kernel off the diagonal; the diagonal diverges. (The
    polynomial's variance map has an unstable fixed point at q = 1: rounding drifts the finite
    network's variances like 3^L eps, so depths stop at 16; deep_dual goes to 1e-12, test_study.)"""
    d = 5
    x = sphere(12, d, scale=math.sqrt(d))  # x.x / d = 1: unit variances at every layer
    inf = infnet.fc(act, math.inf)
    k_inf = inf.kernel(x).nngp
    off = ~torch.eye(12, dtype=torch.bool)
    assert bool(torch.isinf(k_inf.diagonal()).all())
    c0 = inf.limit.slope0
    errs = []
    for L in (4, 8, 12, 16):
        net = infnet.fc(act.normalized(), L, w_std=1.0, b_std=0.0)
        k = net.kernel(x, method="exact").nngp / c0**L
        errs.append(float(((k - k_inf)[off]).abs().max() / k_inf[off].abs().max()))
    assert all(b < a for a, b in zip(errs, errs[1:], strict=False)), errs
    assert errs[-1] < (1e-5 if c0 < 0.6 else 0.5), errs


@pytest.mark.parametrize("act", ["erf", "sign", "tanh"])
def test_limit_kernel_table_matches_koenigs(act):
    """The tabulated Koenigs function (and Schroeder's equation beyond |rho| = 0.9) against
    infnet.koenigs evaluated directly: 1e-12 relative where |h| > 1, absolute below, plus what
    one rounding of the dual near +-1 becomes there (h ~ (1 - rho)^-beta: relative condition
    beta / (1 - |rho|); a vectorized and a scalar atan2 may differ in the last bit)."""
    net = InfiniteDepth(act)
    rho = torch.cat([torch.linspace(-0.999999, 0.999999, 4001, dtype=F64),
                     1 - torch.logspace(-14, -1, 40, dtype=F64)])
    fast = net.koenigs(rho)
    ref = infnet.koenigs(net.limit, rho)
    err = (fast - ref).abs() / ref.abs().clamp(min=1.0)
    rounding = 16 * 2.0**-52 / (1 - rho.abs())
    assert bool((err < 1e-12 + rounding).all()), float((err / (1e-12 + rounding)).max())


def test_kernel_on_data_and_its_symmetry():
    x = sphere(300, 7, seed=3)
    y = sphere(40, 7, seed=4)
    net = infnet.fc(infnet.optimal_activation(7), math.inf)
    k = net.kernel(x, block=64).nngp
    assert torch.equal(k, k.T)
    rho = (x @ y.T).clamp(-1, 1)
    want = infnet.koenigs(net.limit, rho)
    got = net.kernel(x, y, block=64).nngp
    assert float(((got - want).abs() / want.abs()).max()) < 1e-12
    # only directions count
    assert torch.allclose(net.kernel(3 * x[:5], y).nngp, got[:5], rtol=1e-13, atol=0)


def test_other_classes_and_bad_input():
    x = sphere(6, 4, seed=5)
    relu = infnet.fc("relu", math.inf)
    assert relu.limit.kind == "majority_vote"
    assert torch.equal(relu.kernel(x).nngp, torch.ones(6, 6, dtype=F64))  # rho* = 1
    h2 = infnet.fc("hermite", math.inf).kernel(x).nngp  # Boettcher: |rho| for rho^2
    assert torch.allclose(h2, (x @ x.T).abs().fill_diagonal_(1.0), rtol=1e-12, atol=1e-15)
    with pytest.raises(ValueError, match="b_std=0"):
        infnet.fc("erf", math.inf, b_std=0.1)
    with pytest.raises(ValueError, match="zero input"):
        infnet.fc("erf", math.inf).kernel(torch.zeros(2, 4, dtype=F64))
    with pytest.raises(ValueError, match="NaN"):
        infnet.fc("erf", math.inf).kernel(torch.tensor([[float("nan"), 1.0]]))


@pytest.mark.parametrize("act", ["erf", "tanh", infnet.optimal_activation(3)],
                         ids=lambda a: getattr(a, "name", a))
def test_koenigs_next_to_one(act):
    """rho = 1 - k eps: float64 cannot hold the orbit next to 1 (f(1 - eps) rounds back), so
    the first layers go by the linearization there; h then scales like (1 - rho)^-beta (the
    log-periodic factor varies little over these few ulps) and is finite, direct and tabulated
    paths agreeing."""
    lim = infnet.limit(act)
    gaps = torch.tensor([2.0**-53, 2.0**-52, 2.0**-49, 2.0**-46], dtype=F64)
    rho = 1 - gaps
    h = infnet.koenigs(lim, rho)
    assert bool(torch.isfinite(h).all())
    slope = torch.diff(h.log()) / torch.diff(gaps.log())
    assert torch.allclose(slope, torch.full_like(slope, -lim.beta), rtol=0.02, atol=0), slope
    tab = InfiniteDepth(lim).koenigs(rho.clone())
    assert float(((tab - h) / h).abs().max()) < 1e-12
