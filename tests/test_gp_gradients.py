"""infnet.gp: exact hyperparameter gradients of NNGP and NTK, against finite differences of
the kernel itself (the exact path, at shifted w_std / b_std)."""

import math

import pytest
import torch

import infnet
from infnet.gp import hyperparameters, kernel_gradients, with_hyperparameters


def five_point(net, name, x1, x2=None, h=1e-4):
    """d kernel / d name by the 4th-order central difference of ``Network.kernel`` (error
    ~h^4 f^(5) + eps/h: about 1e-11 relative here)."""
    v = hyperparameters(net)[name]
    k = {s: with_hyperparameters(net, **{name: v + s * h}).kernel(x1, x2, method="exact")
         for s in (-2, -1, 1, 2)}
    return {f: (8 * (getattr(k[1], f) - getattr(k[-1], f))
                - (getattr(k[2], f) - getattr(k[-2], f))) / (12 * h) for f in ("nngp", "ntk")}


def data(n=5, d=4, seed=0):
    x = torch.randn(n, d, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    if n > 3:
        x[3] = x[1]  # a duplicated input: a pair exactly at rho = 1
    return x


def assert_close(grads, name, ref, rtol=1e-7):
    for f in ("nngp", "ntk"):
        got, want = getattr(grads[name], f), ref[f]
        err = float((got - want).abs().max() / want.abs().max())
        assert err < rtol, (name, f, err)


@pytest.mark.parametrize("act", ["relu", "erf", "gelu", "swish", "tanh", "mish", "elu", "leaky_relu"])
@pytest.mark.parametrize("parameterization", ["ntk", "standard"])
def test_gradients_match_finite_differences(act, parameterization):
    width = 7 if parameterization == "standard" else None
    net = infnet.fc(act, 3, w_std=1.3, b_std=0.2, parameterization=parameterization,
                    width=width)
    x = data()
    k, grads = kernel_gradients(net, x)
    assert torch.equal(k.nngp, net.kernel(x).nngp)
    for name in ("w_std", "b_std"):
        assert_close(grads, name, five_point(net, name, x))
        for g in (grads[name].nngp, grads[name].ntk):
            assert torch.equal(g, g.T)


@pytest.mark.parametrize("name, params", [("relu", {}), ("leaky_relu", {"alpha": 0.2}),
                                          ("abs", {}), ("identity", {})])
def test_two_slope_units_by_hand_equal_forward_mode_autograd(name, params):
    """The ReLU family's tangents are written by hand (the family recognized by
    ``activations.slopes.two_slopes``): against forward-mode autograd through the same
    closed form, at random moments of a tile with tangents along rows, columns and entries,
    to 1e-13; and the family is recognized."""
    from infnet.activations.slopes import two_slopes
    from infnet.gp import unit_tangents

    act = infnet.activations.activation(name, **params)
    assert two_slopes(act) is not None
    g = torch.Generator().manual_seed(7)
    q1 = 0.2 + 2 * torch.rand(6, 1, generator=g, dtype=torch.float64)
    q2 = 0.2 + 2 * torch.rand(1, 5, generator=g, dtype=torch.float64)
    c = (2 * torch.rand(6, 5, generator=g, dtype=torch.float64) - 1) * (q1 * q2).sqrt() * 0.99
    dq1 = [torch.randn(6, 1, generator=g, dtype=torch.float64) for _ in range(2)]
    dq2 = [torch.randn(1, 5, generator=g, dtype=torch.float64) for _ in range(2)]
    dc = [torch.randn(6, 5, generator=g, dtype=torch.float64) for _ in range(2)]
    got = unit_tangents._two_slope_tangents(*two_slopes(act), q1, q2, c, dq1, dq2,
                                            dc, c.shape)
    want = unit_tangents._forward(act.kernel, q1, q2, c, dq1, dq2, dc, c.shape, True)
    for a, b in zip([got[0], got[1], *got[2], *got[3]], [want[0], want[1], *want[2], *want[3]],
                    strict=True):
        assert float((a - b).abs().max()) <= 1e-13 * float(b.abs().max())
    for other in ("erf", "step", "gelu", "elu"):
        assert two_slopes(infnet.activations.activation(other)) is None


def test_kinked_quadrature_unit_and_cross_kernel():
    """hardswish: no closed form and phi' jumps at +-3 (the quadrature's breakpoints move with
    the moments); x1 against x2 of other sizes, one pair duplicated across them."""
    net = infnet.fc("hardswish", 2, w_std=1.6, b_std=0.3)
    x1, x2 = data(3, 3, 1), data(2, 3, 2)
    x2[0] = x1[2]
    k, grads = kernel_gradients(net, x1, x2)
    assert k.nngp.shape == (3, 2)
    for name in ("w_std", "b_std"):
        assert_close(grads, name, five_point(net, name, x1, x2))


def residual_net(act, parameterization="ntk", width=None):
    """Dense, LayerNorm, two pre-activation residual blocks (one with a LayerNorm inside), a
    concatenation of two branches, and the readout: every layer kind the walk knows."""
    net = infnet.network
    dense = {"w_std": 1.3, "b_std": 0.2, "parameterization": parameterization, "width": width}
    return infnet.serial(
        infnet.Dense(**dense), net.LayerNorm(),
        net.residual(act, infnet.Dense(**dense), branch_weight=0.7),
        net.residual(net.LayerNorm(), act, infnet.Dense(**dense), act, infnet.Dense(**dense),
                     skip_weight=0.9, branch_weight=0.5),
        net.parallel([act], [infnet.Dense(**dense), act]),
        infnet.Dense(**dense))


@pytest.mark.parametrize("act,parameterization", [("relu", "ntk"), ("erf", "standard"),
                                                   ("swish", "ntk"), ("elu", "ntk")])
def test_residual_blocks_and_layer_norm(act, parameterization):
    """Branches and LayerNorm between the Dense layers (closed forms, the Hermite series of
    swish, the quadrature of ELU), against finite differences; a duplicated input."""
    width = 6 if parameterization == "standard" else None
    net = residual_net(act, parameterization, width)
    assert hyperparameters(net) == {"w_std": 1.3, "b_std": 0.2}
    x = data()
    k, grads = kernel_gradients(net, x)
    assert torch.equal(k.nngp, net.kernel(x).nngp)
    for name in ("w_std", "b_std"):
        assert_close(grads, name, five_point(net, name, x))
    x2 = data(2, 4, 5)
    _, cross = kernel_gradients(net, x, x2, wrt=["w_std"])
    assert_close(cross, "w_std", five_point(net, "w_std", x, x2))


def test_layer_norm_then_relu_is_free_of_the_first_layer():
    """Dense(w, b), LayerNorm, ReLU, Dense(w, b): the normalization removes the first layer's
    scale, so with b = 0 the NNGP is w^2 (a function of the angle) + b^2: d/dw = 2 K / w."""
    net = infnet.serial(infnet.Dense(1.4, None), infnet.network.LayerNorm(), "relu",
                        infnet.Dense(1.4, None))
    x = data(4, 3, 6)
    k, grads = kernel_gradients(net, x)
    assert torch.allclose(grads["w_std"].nngp, 2 * k.nngp / 1.4, rtol=1e-13, atol=0)


def test_no_bias_homogeneous_identity():
    """ReLU without bias: every layer is homogeneous in w, the NNGP of depth L is w^(2(L+1))
    times a function of the data, so d NNGP / d w = 2 (L + 1) NNGP / w exactly."""
    depth, w = 4, 1.7
    net = infnet.fc("relu", depth, w_std=w, b_std=None)
    x = data(4, 3, 3)
    k, grads = kernel_gradients(net, x)
    assert set(grads) == {"w_std"}
    want = 2 * (depth + 1) * k.nngp / w
    assert torch.allclose(grads["w_std"].nngp, want, rtol=1e-13, atol=0)


def test_no_bias_identity_with_the_nngp_alone():
    """get="nngp": the values are the NNGP alone (carried as covariances for inputs of
    different norms), the derivatives unchanged: d NNGP / d w = 2 (L + 1) NNGP / w."""
    depth, w = 4, 1.7
    net = infnet.fc("relu", depth, w_std=w, b_std=None)
    x = data(5, 3, 3) * torch.tensor([[0.5], [1.0], [2.0], [3.0], [0.7]], dtype=torch.float64)
    k, grads = kernel_gradients(net, x, get="nngp")
    assert k.ntk is None
    assert torch.allclose(grads["w_std"].nngp, 2 * (depth + 1) * k.nngp / w, rtol=1e-13,
                          atol=0)


def test_bias_derivative_of_one_dense_layer():
    """A single Dense layer: NNGP = w^2 x.x'/d + b^2, so d/db = 2b and d/dw = 2 w x.x'/d."""
    net = infnet.serial(infnet.Dense(1.5, 0.4))
    x = data(3, 2, 4)
    _, grads = kernel_gradients(net, x)
    assert torch.allclose(grads["b_std"].nngp, torch.full((3, 3), 0.8, dtype=torch.float64),
                          rtol=1e-15)
    assert torch.allclose(grads["w_std"].nngp, 3.0 * x @ x.T / 2, rtol=1e-14)


def test_hyperparameters_and_errors():
    net = infnet.fc("relu", 2, w_std=1.2, b_std=0.1)
    assert hyperparameters(net) == {"w_std": 1.2, "b_std": 0.1}
    assert hyperparameters(with_hyperparameters(net, w_std=2.0)) == {"w_std": 2.0, "b_std": 0.1}
    with pytest.raises(TypeError, match="unknown hyperparameter"):
        kernel_gradients(net, data(), wrt=["beta"])
    with pytest.raises(ValueError, match="no bias"):
        kernel_gradients(infnet.fc("relu", 2, b_std=None), data(), wrt=["b_std"])
    mixed = infnet.serial(infnet.Dense(1.0), "relu", infnet.Dense(2.0))
    with pytest.raises(ValueError, match="different w_std"):
        hyperparameters(mixed)
    with pytest.raises(TypeError, match="jumps"):
        hyperparameters(infnet.fc("step", 1))
    with pytest.raises(TypeError, match="networks of Dense and Conv layers"):
        hyperparameters(infnet.fc("reglu", 1))
    with pytest.raises(ValueError, match="must be a finite number"):
        with_hyperparameters(net, w_std=-1.0)
    zero = data()
    zero[0] = 0.0
    with pytest.raises(ValueError, match="zero norm"):
        kernel_gradients(infnet.fc("erf", 1, b_std=None), zero)


def test_gradient_of_a_log_marginal_likelihood():
    """The chain rule through a GP's log marginal likelihood (what optimizers use) against
    its own finite difference: d/dw of log N(y | 0, K(w) + s I)."""
    net = infnet.fc("erf", 2, w_std=1.1, b_std=0.3)
    x = data(6, 3, 5)
    y = torch.sin(x.sum(1))

    def lml(w):
        k = with_hyperparameters(net, w_std=w).kernel(x).nngp + 0.1 * torch.eye(6, dtype=x.dtype)
        return torch.distributions.MultivariateNormal(torch.zeros(6, dtype=x.dtype), k).log_prob(y)

    k, grads = kernel_gradients(net, x, wrt=["w_std"])
    a = torch.linalg.solve(k.nngp + 0.1 * torch.eye(6, dtype=x.dtype), y)
    kinv = torch.linalg.inv(k.nngp + 0.1 * torch.eye(6, dtype=x.dtype))
    dk = grads["w_std"].nngp
    exact = 0.5 * (a @ dk @ a - torch.trace(kinv @ dk))
    h = 1e-5
    fd = (8 * (lml(1.1 + h) - lml(1.1 - h)) - (lml(1.1 + 2 * h) - lml(1.1 - 2 * h))) / (12 * h)
    assert math.isclose(float(exact), float(fd), rel_tol=1e-7)


def test_series_entries_handed_to_the_quadrature_keep_their_tangents(monkeypatch):
    """A smooth unit's tangents run through its Hermite series; the entries the series cannot
    bound go to the quadrature, which reads the pairs' angle rather than c: that angle must be
    the dual one, or the tangent along c is lost (13% to 70% off when it was). Here the series
    hands every entry back; near-duplicate pairs included."""
    from infnet.activations import series

    real = series.TileSeries.kernel

    def hand_back(self, c, index=None):
        out = real(self, c, index)
        return out if out is None else (*out[:2], torch.ones(c.shape, dtype=torch.bool))

    x = data(6, 3, 6)
    x[4] = x[0] * (1 + 1e-7)
    x[5] = x[2] * (1 + 3e-5) + 1e-5
    net = infnet.fc("tanh", 2, w_std=1.5, b_std=0.3)
    monkeypatch.setattr(series.TileSeries, "kernel", hand_back)
    _, grads = kernel_gradients(net, x)
    monkeypatch.setattr(series.TileSeries, "kernel", real)
    for name in ("w_std", "b_std"):
        assert_close(grads, name, five_point(net, name, x))
