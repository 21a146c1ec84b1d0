"""infnet.design: activations from Hermite coefficients and duals, the sine family, optimal activations.

Independent references: numpy's probabilists' Hermite polynomials (hermeval), the dual
sum a_k^2 rho^k / sum a_k^2, the library's quadrature (``numerical_kernel``) for the kernel at
other variances, autograd for the derivative, sinh(a rho)/sinh(a) for the sine family, and the
paper's constants and duals (docs/theory/infinite-depth.md#paper-duals).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import infnet
from infnet.depth.design import (
    from_dual,
    from_hermite,
    optimal_activation,
    optimal_dual,
    optimal_sine_a,
    sine_activation,
)
from infnet.depth.limit import limit

F64 = torch.float64
RHO = torch.linspace(-1, 1, 201, dtype=F64)


def dual_of(coefficients, rho):
    a2 = np.asarray(coefficients, dtype=float) ** 2
    return sum(float(c) * rho**k for k, c in enumerate(a2)) / a2.sum()


@pytest.mark.parametrize("coefficients", [
    [0.3, -0.5, 0.2, 0.0, 0.7],
    [0.0, 1.0],
    [1.0, 0.0, 0.0, -2.0, 0.0, 0.5],
    [0.0] * 25 + [1.0],                      # h_25: the monomial form would lose all digits
    list(np.linspace(1, 0.1, 12)),
])
def test_from_hermite_dual(coefficients):
    act = from_hermite(coefficients)
    assert float((act.dual(RHO) - dual_of(coefficients, RHO)).abs().max()) < 1e-12
    deriv = sum(k * float(c) ** 2 * RHO ** (k - 1) for k, c in enumerate(coefficients) if k)
    deriv = deriv / sum(float(c) ** 2 for c in coefficients)
    assert float((act.dual_derivative(RHO) - deriv).abs().max()) < 1e-11


def test_from_hermite_function_and_derivative():
    coefficients = [0.3, -0.5, 0.2, 0.0, 0.7, 0.1]
    act = from_hermite(coefficients, name="mine")
    x = torch.linspace(-4, 4, 41, dtype=F64)
    scaled = [c / math.sqrt(math.factorial(k)) for k, c in enumerate(coefficients)]
    ref = np.polynomial.hermite_e.hermeval(x.numpy(), scaled)
    assert np.abs(act(x).numpy() - ref).max() < 1e-12
    auto = torch.func.vmap(torch.func.grad(lambda v: act.fn(v, **act.params)))(x)
    assert float((act.derivative(x) - auto).abs().max()) < 1e-12
    assert act.name == "mine" and act.is_closed_form


def test_from_hermite_kernel_at_other_variances_against_quadrature():
    act = from_hermite([0.3, -0.5, 0.2, 0.0, 0.7])
    q1 = torch.tensor([0.5, 1.0, 2.0, 0.3, 1.7], dtype=F64)
    q2 = torch.tensor([1.5, 1.0, 0.7, 0.3, 0.2], dtype=F64)
    c = torch.tensor([0.3, -0.9, 1.1, 0.3, -0.5], dtype=F64)
    K, Kdot = act.kernel(q1, q2, c)
    Kq, Kdotq = act.numerical_kernel(q1, q2, c)
    assert torch.allclose(K, Kq, rtol=1e-11, atol=1e-13)
    assert torch.allclose(Kdot, Kdotq, rtol=1e-11, atol=1e-13)
    # a zero variance: u = 0, K = phi(0) E[phi(v)]
    K0, _ = act.kernel(torch.tensor(0.0, dtype=F64), torch.tensor(1.0, dtype=F64),
                       torch.tensor(0.0, dtype=F64))
    phi0 = float(act(torch.zeros((), dtype=F64)))
    assert float(K0) == pytest.approx(phi0 * 0.3, rel=1e-13)


def test_from_dual_gives_the_dual_and_unit_second_moment():
    p = [0.1, 0.2, 0.0, 0.3, 0.4]
    act = from_dual(p)
    assert float((act.dual(RHO) - sum(c * RHO**k for k, c in enumerate(p))).abs().max()) < 1e-13
    assert float(act.variance_map(1.0)) == pytest.approx(1.0, rel=1e-14)
    # not normalized: normalized with the same dual
    act2 = from_dual([2 * c for c in p])
    assert float((act2.dual(RHO) - act.dual(RHO)).abs().max()) < 1e-15
    assert float(act2.variance_map(1.0)) == pytest.approx(1.0, rel=1e-14)


def test_from_dual_and_hermite_errors():
    with pytest.raises(ValueError, match="must be >= 0"):
        from_dual([0.5, -0.1, 0.6])
    with pytest.raises(ValueError, match="all zero"):
        from_dual([0.0, 0.0])
    with pytest.raises(ValueError, match="all zero"):
        from_hermite([0.0])
    with pytest.raises(ValueError, match="must not be empty"):
        from_dual([])
    with pytest.raises(ValueError, match="finite"):
        from_hermite([1.0, math.nan])
    with pytest.raises(TypeError, match="sequence of numbers"):
        from_dual(["a"])


@pytest.mark.parametrize("a", [0.3, 1.0, 2.67607, 6.13539, 13.82585, 40.0])
def test_sine_family_dual(a):
    act = sine_activation(a)
    ref = torch.sinh(a * RHO) / math.sinh(a)
    assert torch.allclose(act.dual(RHO), ref, rtol=1e-12, atol=1e-14)
    ref_d = a * torch.cosh(a * RHO) / math.sinh(a)
    assert torch.allclose(act.dual_derivative(RHO), ref_d, rtol=1e-12, atol=1e-14)
    # the amplitude sqrt(2 / (1 - e^-2a)) gives E[phi(z)^2] = 1
    assert float(act.variance_map(1.0)) == pytest.approx(1.0, rel=1e-13)
    assert act.params["phase"] == 0.0
    assert act.params["frequency"] == pytest.approx(math.sqrt(a), rel=1e-15)


def test_sine_family_against_quadrature():
    act = sine_activation(2.67607)
    rho = torch.linspace(-0.9, 0.9, 7, dtype=F64)
    K, Kdot = act.numerical_kernel(1.0, 1.0, rho)
    assert torch.allclose(K, torch.sinh(2.67607 * rho) / math.sinh(2.67607), rtol=1e-11, atol=1e-13)
    with pytest.raises(ValueError, match="a > 0"):
        sine_activation(0.0)


@pytest.mark.parametrize("d, a", [(3, 2.67607), (5, 6.13539), (9, 13.82585)])
def test_optimal_sine_a_matches_the_paper(d, a):
    assert optimal_sine_a(d) == pytest.approx(a, abs=5e-6)
    act = optimal_activation(d, "sine")
    assert act.name == f"optimal_sine_d{d}"
    root = optimal_sine_a(d)
    assert math.log(math.sinh(root) / root) == pytest.approx(
        (d - 1) / 2 * math.log(root / math.tanh(root)), rel=1e-13)


def test_no_optimal_sine_on_the_circle():
    with pytest.raises(ValueError, match="no member of the sine family is optimal on S"):
        optimal_activation(2, "sine")


@pytest.mark.parametrize("d, dual", [
    (2, {1: 0.5, 7: 0.5}),
    (3, {1: 0.5, 3: 0.5}),
    (5, {1: 0.25, 2: 0.5, 3: 0.25}),
    (9, {1: 1 / 16, 2: 7 / 8, 3: 1 / 16}),
])
def test_optimal_polynomial_duals_are_the_papers(d, dual):
    p = optimal_dual(d)
    assert {k: v for k, v in enumerate(p) if v} == pytest.approx(dual, rel=1e-15)
    act = optimal_activation(d)
    assert act.name == f"optimal_polynomial_d{d}"
    ref = sum(v * RHO**k for k, v in dual.items())
    assert float((act.dual(RHO) - ref).abs().max()) < 1e-14


@pytest.mark.parametrize("d", range(2, 13))
def test_optimal_exponent_identity(d):
    for family in ("polynomial", "sine") if d >= 3 else ("polynomial",):
        act = optimal_activation(d, family)
        c0 = float(act.dual_derivative(0.0))
        A = float(act.dual_derivative(1.0))
        assert c0 == pytest.approx(A ** (-(d - 1) / 2), rel=1e-12)
        assert float(act.dual(0.0)) == pytest.approx(0.0, abs=1e-15)
        lim = limit(act)
        assert lim.kind == "singular"
        assert lim.exponent == pytest.approx(d - 1, rel=1e-10)


@pytest.mark.parametrize("d", [64, 94])
def test_optimal_polynomial_is_singular_up_to_its_largest_dimension(d):
    """dual'(0) = 2^-((d-1)/2) is still resolved (>= 1e-14) up to d = 94: the class is singular
    with exponent d - 1."""
    lim = limit(optimal_activation(d))
    assert lim.kind == "singular" and lim.slope0 == pytest.approx(2.0 ** (-(d - 1) / 2), rel=1e-12)
    assert lim.exponent == pytest.approx(d - 1, rel=1e-9)


@pytest.mark.parametrize("d", [95, 300, 784])
def test_optimal_polynomial_refuses_what_float64_cannot_resolve(d):
    """Beyond d = 94, dual'(0) < 1e-14 could not be told from 0 (the nearest-neighbour class):
    refused with the reason, not silently classified as nearest neighbour."""
    with pytest.raises(ValueError, match=f"dual'\\(0\\) = 2\\^-{(d - 1) / 2:g}.*nearest-neighbour"):
        optimal_activation(d)


def test_optimal_bad_arguments():
    for bad in (1, 2.5, "3", True):
        with pytest.raises(ValueError, match="integer >= 2"):
            optimal_activation(bad)
    with pytest.raises(ValueError, match="family must be"):
        optimal_activation(3, "relu")


def test_designed_activations_work_in_networks():
    act = optimal_activation(3)
    net = infnet.fc(act, depth=3, w_std=1.0, b_std=0.0)
    x = torch.nn.functional.normalize(torch.randn(5, 3, dtype=F64), dim=1) * math.sqrt(3)
    k = net.kernel(x)
    rho = (x @ x.T / 3).clamp(-1, 1)
    ref = rho
    for _ in range(3):
        ref = ref / 2 + ref**3 / 2
    assert torch.allclose(k.nngp, ref, rtol=1e-10, atol=1e-12)
