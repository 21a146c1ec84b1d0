"""infnet.gp: gradients with respect to an activation's own parameters (swish's beta, a
tempered sigmoid's temperature), against finite differences of the kernel at shifted
parameters; and what is refused."""

import pytest
import torch

import infnet
from infnet.gp import activation_parameters, diagonal_gradients, kernel_gradients
from infnet.gp.hyper import with_hyperparameters


def data(n=5, d=3, seed=0):
    x = torch.randn(n, d, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    x[3] = x[1]  # a duplicated input: a pair exactly at rho = 1
    return x


def five_point(net, name, x1, x2=None, h=1e-3):
    """d kernel / d name, 4th-order central difference (truncation ~h^4, rounding ~eps/h)."""
    v = activation_parameters(net)[name]
    k = {s: with_hyperparameters(net, **{name: v + s * h}).kernel(x1, x2) for s in (-2, -1, 1, 2)}
    return {f: (8 * (getattr(k[1], f) - getattr(k[-1], f))
                - (getattr(k[2], f) - getattr(k[-2], f))) / (12 * h) for f in ("nngp", "ntk")}


def relative(got, want) -> float:
    return float((got - want).abs().max() / want.abs().max())


# closed forms (leaky ReLU and erf by forward-mode autograd through the formula, snake's
# trigonometric one) and quadrature units, smooth (swish, softplus, the tempered sigmoid) and
# kinked at a fixed point (ELU, CELU: phi' jumps at 0 for alpha != 1)
CASES = [("swish", "beta", 1.5), ("tempered_sigmoid", "temperature", 1.3),
         ("leaky_relu", "alpha", 0.2), ("erf", "scale", 0.8), ("elu", "alpha", 0.7),
         ("softplus", "beta", 2.0), ("snake", "a", 0.6), ("celu", "alpha", 1.4)]


@pytest.mark.parametrize("act,name,value", CASES)
def test_activation_parameter_gradient_matches_finite_differences(act, name, value):
    net = infnet.fc(infnet.activation(act, **{name: value}), 2, w_std=1.3, b_std=0.4)
    x = data()
    k, grads = kernel_gradients(net, x, wrt=["w_std", name])
    ref = five_point(net, name, x)
    for f in ("nngp", "ntk"):
        g = getattr(grads[name], f)
        assert relative(g, ref[f]) < 1e-7, (f, relative(g, ref[f]))
        assert torch.equal(g, g.T)
    assert torch.equal(k.nngp, net.kernel(x).nngp)


def test_standard_parameterization_cross_kernel_and_diagonal():
    """x1 against x2 (one pair duplicated across them) in the standard parameterization; the
    diagonal pass gives the diagonal of the symmetric kernel's gradients."""
    net = infnet.fc(infnet.activation("swish", beta=0.8), 2, w_std=1.1, b_std=0.3,
                    parameterization="standard", width=6)
    x1, x2 = data(5, 3, 1), data(4, 3, 2)
    x2[0] = x1[2]
    _, grads = kernel_gradients(net, x1, x2, wrt=["beta"])
    ref = five_point(net, "beta", x1, x2)
    for f in ("nngp", "ntk"):
        assert relative(getattr(grads["beta"], f), ref[f]) < 1e-7
    _, full = kernel_gradients(net, x1, wrt=["beta", "b_std"])
    _, diag = diagonal_gradients(net, x1, wrt=["beta", "b_std"])
    for name in ("beta", "b_std"):
        for f in ("nngp", "ntk"):
            torch.testing.assert_close(getattr(diag[name], f),
                                       getattr(full[name], f).diagonal(), rtol=1e-12, atol=0)


def test_activation_parameters_and_copies():
    net = infnet.fc("tempered_sigmoid", 2)
    assert activation_parameters(net) == {"scale": 2.0, "temperature": 2.0, "offset": 1.0}
    assert activation_parameters(infnet.fc("relu", 2)) == {}
    assert activation_parameters(infnet.fc("relu_power", 2)) == {}  # the integer n is discrete
    moved = with_hyperparameters(net, temperature=3.0, w_std=1.2)
    acts = [layer.act for layer in moved.layers if isinstance(layer, infnet.Nonlinearity)]
    assert len(acts) == 2 and all(a.params["temperature"] == 3.0 for a in acts)
    assert infnet.gp.hyperparameters(moved)["w_std"] == 1.2


def test_refusals_name_the_problem():
    x = data()
    with pytest.raises(ValueError, match="moves a kink"):  # phi' jumps where max_val is
        kernel_gradients(infnet.fc("hardtanh", 1), x, wrt=["max_val"])
    mine = infnet.activation(lambda t, c=1.0: torch.tanh(c * t), name="mine")
    with pytest.raises((TypeError, ValueError), match="w_std"):
        kernel_gradients(infnet.fc(mine, 1), x, wrt=["c"])
    mixed = infnet.serial(infnet.Dense(), "swish", infnet.Dense(),
                          infnet.activation("swish", beta=2.0), infnet.Dense())
    with pytest.raises(ValueError, match="activation layers differ"):
        kernel_gradients(mixed, x, wrt=["beta"])
    with pytest.raises(TypeError, match="unknown hyperparameter 'gamma'"):
        kernel_gradients(infnet.fc("swish", 1), x, wrt=["gamma"])
    with pytest.raises(TypeError, match="sequence of names"):
        kernel_gradients(infnet.fc("swish", 1), x, wrt="beta")
    with pytest.raises(ValueError, match="twice"):
        kernel_gradients(infnet.fc("swish", 1), x, wrt=["beta", "beta"])


def test_celu_kdot_is_exact_for_every_alpha():
    """celu'(x; alpha) = elu'(x / alpha; 1) for x < 0 and 1 beyond, so Kdot of CELU at the
    moments (q1, q2, c) is Kdot of ELU(1) at (q1, q2, c) / alpha^2. torch's own celu backward
    rounds 1/alpha to float32, which put CELU's Kdot 1e-7 off; its derivative is explicit
    now."""
    q1 = torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64)
    q2 = torch.tensor([1.3, 0.7, 0.5], dtype=torch.float64)
    c = torch.tensor([0.3, -0.5, 0.2], dtype=torch.float64)
    for alpha in (0.7, 1.6):
        got = infnet.activation("celu", alpha=alpha).kernel(q1, q2, c)[1]
        want = infnet.activation("elu").kernel(q1 / alpha**2, q2 / alpha**2, c / alpha**2)[1]
        torch.testing.assert_close(got, want, rtol=1e-12, atol=0)
