"""User functions and the limits of the quadrature: breakpoints found without declared kinks,
functions refused where they are given (NaN, not elementwise, not differentiable), parameters
checked, divergent expectations named as such, zero and extreme variances exact.

References are independent of infnet's quadrature: closed forms (Gaussian integrals of
exp(x^2), the bivariate normal), or one-dimensional scipy integrals of conditional expectations
(v | u is Gaussian), with breakpoints given to scipy by hand."""

import math

import numpy as np
import pytest
import torch
from scipy import integrate
from scipy.stats import norm

import infnet
from infnet import KernelOverflowError

F64 = torch.float64
# numpy functions applied to tensors (refused or wrapped below) warn about __array_wrap__
pytestmark = pytest.mark.filterwarnings("ignore:__array_wrap__:DeprecationWarning")
QUAD = {"epsabs": 1e-16, "epsrel": 1e-13, "limit": 400}


def t(*v):
    return torch.tensor(v, dtype=F64)


def shifted_relu_reference(a, q1, q2, c):
    """E[relu(u - a) relu(v - a)] and P(u > a, v > a) = E[step'...]: u ~ N(0, q1), and
    v | u ~ N(m u, s^2), m = c / q1, s^2 = q2 - c^2 / q1, whose relu and step expectations are
    closed forms; the outer integral by scipy on (a, 40 sqrt(q1))."""
    m, s = c / q1, math.sqrt(q2 - c * c / q1)

    def dens(u):
        return math.exp(-u * u / (2 * q1)) / math.sqrt(2 * math.pi * q1)

    def relu_v(u):
        mu = m * u - a
        return mu * norm.cdf(mu / s) + s * norm.pdf(mu / s)

    top = 40 * math.sqrt(q1)
    K = integrate.quad(lambda u: (u - a) * relu_v(u) * dens(u), a, top, **QUAD)[0]
    Kdot = integrate.quad(lambda u: norm.cdf((m * u - a) / s) * dens(u), a, top, **QUAD)[0]
    return K, Kdot


# ---- breakpoints found ------------------------------------------------------------------------
def test_undeclared_kink_is_found_and_the_kernel_is_exact():
    act = infnet.activation(lambda x: torch.relu(x - 0.5), name="shifted")
    assert act.kinks == (0.5,) and not act.jumps
    q1, q2, c = t(1.0, 2.0, 1.5), t(1.0, 0.5, 1.5), t(0.3, 0.9, -1.2)
    K, Kdot = act.kernel(q1, q2, c)
    for i in range(3):
        ref = shifted_relu_reference(0.5, float(q1[i]), float(q2[i]), float(c[i]))
        assert float(K[i]) == pytest.approx(ref[0], rel=1e-12, abs=1e-15)
        assert float(Kdot[i]) == pytest.approx(ref[1], rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("fn, kinks", [
    (lambda x: x.clamp(-1.0, 1.0), (-1.0, 1.0)),
    (lambda x: x.clamp(-20.0, 20.0), (-20.0, 20.0)),
    (lambda x: x * x.abs(), (0.0,)),                       # a kink of phi' only
    (lambda x: torch.where(x > 0, x, torch.expm1(x)), (0.0,)),  # ELU: phi'' jumps at 0
    (lambda x: torch.relu(x - 0.3) - torch.relu(-x - 2.75), (-2.75, 0.3)),
    (torch.tanh, ()),
    (lambda x: torch.sin(30 * x), ()),
])
def test_breakpoints_of_user_functions(fn, kinks):
    assert infnet.activation(fn).kinks == kinks


def test_a_jump_is_found_and_the_nngp_is_exact_while_kdot_asks_for_a_closed_form():
    act = infnet.activation(lambda x: (x > 0.25).to(x.dtype), name="step_quarter")
    assert act.jumps and act.kinks == (0.25,)
    q1, q2, c = 1.0, 2.0, 0.6
    m, s = c / q1, math.sqrt(q2 - c * c / q1)
    ref = integrate.quad(lambda u: norm.sf((0.25 - m * u) / s) * norm.pdf(u / math.sqrt(q1))
                         / math.sqrt(q1), 0.25, 40, **QUAD)[0]
    assert float(act.nngp_map(q1, q2, c)) == pytest.approx(ref, rel=1e-12)
    with pytest.raises(NotImplementedError, match="kernel="):
        act.kernel(q1, q2, c)


# ---- functions refused where they are given ---------------------------------------------------
@pytest.mark.parametrize("fn, error, text", [
    (torch.log, ValueError, "returns NaN at x ="),
    (torch.sqrt, ValueError, "returns NaN"),
    (lambda x: x - x.mean(), TypeError, "not elementwise"),
    (lambda x: torch.tanh(x) / x.norm(), TypeError, "not elementwise"),
    (lambda x: np.tanh(x), TypeError, "give derivative="),
    (lambda x: math.tanh(x), TypeError, "torch operations"),
    (lambda x: torch.heaviside(x, torch.zeros_like(x)), TypeError, "give derivative="),
    (lambda x: x.numpy(), TypeError, "not a torch tensor"),
    (lambda x: x.sum(), TypeError, "elementwise"),
])
def test_unusable_functions_are_refused_with_what_to_do(fn, error, text):
    with pytest.raises(error, match=text):
        infnet.activation(fn, name="mine")


def test_a_numpy_function_with_its_derivative_is_the_catalog_unit():
    act = infnet.activation(lambda x: np.tanh(x), derivative=lambda x: 1 - np.tanh(x) ** 2,
                            name="np_tanh")
    q1, q2, c = t(0.7, 2.0), t(1.3, 0.4), t(0.2, -0.5)
    mine, ref = act.kernel(q1, q2, c), infnet.activation("tanh").kernel(q1, q2, c)
    for a, b in zip(mine, ref, strict=True):
        assert torch.allclose(a, b, rtol=1e-13, atol=0)


@pytest.mark.parametrize("value, error", [("abc", TypeError), (float("nan"), ValueError),
                                          (float("inf"), ValueError), (True, TypeError),
                                          (None, TypeError)])
def test_parameters_are_checked_where_they_are_given(value, error):
    with pytest.raises(error, match="parameter beta of activation 'swish'"):
        infnet.activation("swish", beta=value)


def test_numeric_parameters_of_any_kind_are_accepted():
    want = infnet.activation("swish", beta=2.0).kernel(1.0, 1.0, 0.3)
    for beta in (2, np.float32(2.0), torch.tensor(2.0, dtype=F64)):
        got = infnet.activation("swish", beta=beta)
        assert got.params["beta"] == 2.0 and isinstance(got.params["beta"], float)
        assert float(got.kernel(1.0, 1.0, 0.3)[0]) == float(want[0])


# ---- divergence ---------------------------------------------------------------------------------
def test_exp_of_x_squared_converges_or_diverges_as_its_closed_form_says():
    """E[exp(u^2) exp(v^2)] = det(I - 2 Sigma)^(-1/2), finite iff q + |c| < 1/2 (q1 = q2 = q)."""
    act = infnet.activation(lambda x: torch.exp(x * x), name="exp_sq")
    q, c = 0.1, 0.05
    K = float(act.nngp_map(q, q, c))
    assert K == pytest.approx(((1 - 2 * q) ** 2 - 4 * c * c) ** -0.5, rel=1e-12)
    for args in ((1.0, 1.0, 0.5), (0.3, 0.3, 0.3)):
        with pytest.raises(KernelOverflowError, match="diverges"):
            act.kernel(*args)
    with pytest.raises(KernelOverflowError, match="diverges"):
        act.dual(t(0.5))
    with pytest.raises((KernelOverflowError, ValueError), match="diverges"):
        infnet.limit(act)


def test_singular_activations_say_that_their_expectation_diverges():
    spiky = infnet.activation(lambda x: x.abs() ** -0.6, name="spiky")
    (s,) = spiky.singular
    assert s.at == 0.0 and s.order == pytest.approx(-0.6, abs=1e-3)
    assert s.derivative_order == pytest.approx(-1.6, abs=1e-3)
    with pytest.raises(KernelOverflowError, match="diverges"):
        spiky.kernel(1.0, 1.0, 0.5)        # E[phi'(u) phi'(v)]: |u|^-1.6 is not integrable
    with pytest.raises(KernelOverflowError, match="diverges"):
        spiky.variance_map(t(1.0))         # E[phi(x)^2] = E|x|^-1.2
    cusp = infnet.activation(lambda x: x.abs() ** 0.3, name="cusp")
    with pytest.raises(KernelOverflowError, match="diverges"):    # E[phi'(x)^2] = E|x|^-1.4
        infnet.fc(cusp, 2).kernel(torch.randn(3, 4, dtype=F64))


# ---- zero, tiny and large variances -------------------------------------------------------------
def test_a_zero_input_row_without_bias_is_exact_for_quadrature_units():
    """Depth 1, no bias: Sigma(0, x) = w^2 sigmoid(0) E[sigmoid(sqrt(q) z)], q = w^2 x.x/d."""
    x = torch.tensor([[0.0, 0.0, 0.0], [1.0, -2.0, 0.5]], dtype=F64)
    w = 1.3
    k = infnet.fc("sigmoid", 1, w_std=w, b_std=0.0).kernel(x)
    q = w * w * float((x[1] ** 2).mean())
    mean = integrate.quad(lambda z: norm.pdf(z) / (1 + math.exp(-math.sqrt(q) * z)), -40, 40,
                          **QUAD)[0]
    assert float(k.nngp[0, 1]) == pytest.approx(w * w * 0.5 * mean, rel=1e-12)
    assert float(k.nngp[0, 0]) == pytest.approx(w * w * 0.25, rel=1e-14)
    assert torch.isfinite(k.ntk).all()


def test_large_variance_diagonal_is_exact():
    """E[phi(sqrt(q) z)^2] for the elephant unit 1 / (1 + |x|^4) at q = 100 (was 7e-5 off)."""
    act = infnet.activation("elephant")
    q = 100.0
    phi = act.fn

    def integrand(z):
        return float(phi(torch.tensor(math.sqrt(q) * z, dtype=F64), **act.params)) ** 2 * norm.pdf(z)

    ref = sum(integrate.quad(integrand, a, b, **QUAD)[0]
              for a, b in ((-12, -0.3), (-0.3, 0), (0, 0.3), (0.3, 12)))
    assert float(act.variance_map(t(q))[0]) == pytest.approx(ref, rel=1e-12)


def test_tiny_variance_of_tanhshrink_is_its_leading_term():
    """x - tanh(x) ~ x^3 / 3: E[phi^2] = 15 q^3 / 9 (1 + O(q)) at q = 1e-18."""
    q = 1e-18
    K = float(infnet.activation("tanhshrink").variance_map(t(q))[0])
    assert K == pytest.approx(15 * q**3 / 9, rel=1e-12)


# ---- extreme scales ------------------------------------------------------------------------------
@pytest.mark.parametrize("q", [1e3, 1e6, 1e200])
def test_sine_and_erf_closed_forms_at_large_variances(q):
    """sin: e^-q sinh q = (1 - e^-2q) / 2, e^-q cosh q = (1 + e^-2q) / 2 (sinh q alone
    overflows past 710); erf: Kdot = (4 / pi) / sqrt(1 + 4q), K = (2 / pi) atan(2q / sqrt(1 + 4q))
    (the product form (1 + 2q)^2 - 4q^2 cancels to 0 beyond q ~ 1e16)."""
    K, Kdot = infnet.activation("sin").kernel(q, q, q)
    assert float(K) == pytest.approx(-math.expm1(-2 * q) / 2, rel=1e-14)
    assert float(Kdot) == pytest.approx((1 + math.exp(-2 * q)) / 2, rel=1e-14)
    K, Kdot = infnet.activation("erf").kernel(q, q, q)
    root = math.sqrt(1 + 4 * q)
    assert float(Kdot) == pytest.approx(4 / math.pi / root, rel=1e-13)
    assert float(K) == pytest.approx(2 / math.pi * math.atan2(2 * q, root), rel=1e-14)


@pytest.mark.parametrize("scale", [1e-151, 1e-120, 1e120, 1e150])
def test_relu_network_is_homogeneous_at_extreme_scales(scale):
    """Without bias the ReLU kernel of s x is s^2 times that of x: products of variances that
    would underflow or overflow (q1 q2 ~ 1e-604) are taken without them."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(5, 3, generator=g, dtype=F64)
    x[3] = -2 * x[1]                        # antiparallel rows
    net = infnet.fc("relu", 3, w_std=2**0.5)
    ref, got = net.kernel(x), net.kernel(x * scale)
    for a, b in ((got.nngp, ref.nngp), (got.ntk, ref.ntk)):
        assert torch.allclose(a / scale**2, b, rtol=1e-12, atol=1e-14 * float(b.abs().max()))


@pytest.mark.parametrize("n", [1, 300])  # one entry; the angle table (90000 entries)
@pytest.mark.parametrize("scale", [1e-21, 1e-100, 1e100])
def test_inputs_of_one_small_norm_are_homogeneous(scale, n):
    """Inputs of one norm take the cached diagonal pass and the angle table, built at the
    variance rounded to 15 significant digits: a variance of 1e-42 must stay 1e-42 (rounding
    to 15 decimal places made it 0, and the kernel of x = [[1.26e-21]] came out 0, not 5e-44;
    found by the fuzz suite)."""
    g = torch.Generator().manual_seed(2)
    x = torch.randn(n, 5, generator=g, dtype=F64)
    x = x / x.norm(dim=1, keepdim=True)
    net = infnet.fc("relu", 2, w_std=1.3)
    ref, got = net.kernel(x), net.kernel(x * scale)
    for a, b in ((got.nngp, ref.nngp), (got.ntk, ref.ntk)):
        assert torch.allclose(a / scale**2, b, rtol=1e-12, atol=1e-14 * float(b.abs().max()))


def test_variances_beyond_1e24_reach_only_homogeneous_units():
    x = torch.randn(4, 3, dtype=F64) * 1e13
    with pytest.raises(ValueError, match="Rescale the inputs"):
        infnet.fc("erf", 2, b_std=0.5).kernel(x)
    k = infnet.fc("relu", 2, b_std=0.0).kernel(x)
    assert torch.isfinite(k.ntk).all()
    for bad in (1e300, math.inf, math.nan, -1.0):
        with pytest.raises(ValueError, match="w_std"):
            infnet.fc("relu", 2, w_std=bad)
    with pytest.raises(TypeError, match="w_std"):
        infnet.Dense("1.0")


def test_large_variance_reports_the_accuracy_it_reached():
    """At variances of 1e4 to 1e6 the features of swish near x = 0 are thin slices of the polar
    pieces: the self-check stops short of machine precision and says how far it got."""
    act = infnet.activation("swish")
    q1, q2 = 22271.7, 564722.0
    with pytest.warns(infnet.QuadratureWarning, match=r"converged only to \d.\de-(09|1\d)"):
        K, Kdot = act.kernel(q1, q2, 0.991136673611 * math.sqrt(q1 * q2))
    assert math.isfinite(float(K)) and math.isfinite(float(Kdot))


def test_pairs_away_from_rho_one_jump_as_soon_as_the_variances_settle(monkeypatch):
    """Deep networks at a stable fixed point of the variance map: pairs that are not
    near-parallel jump with deep_kernels once every variance is fixed; the result is that of
    carrying every pair through the explicit blocks first (1e-12), near-parallel and
    antiparallel pairs included."""
    from infnet.network import runs

    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, 3, generator=g, dtype=F64)
    x[3] = x[2] * (1 + 1e-9)
    x[4] = -x[1]
    for act, w, b in (("erf", 2.5, 0.1), ("erf", 1.5, 0.5)):
        net = infnet.fc(act, 120, w_std=w, b_std=b)
        trace = net.trace((x * x).mean(1), 3).records[1]
        assert trace.jump == "fixed" and trace.settled < trace.explicit < 120
        fast = net.kernel(x, method="exact")
        with monkeypatch.context() as m:
            m.setattr(runs, "NEAR_PARALLEL", 10.0)  # every pair through the explicit blocks
            slow = infnet.fc(act, 120, w_std=w, b_std=b).kernel(x, method="exact")
        for a, b_ in ((fast.nngp, slow.nngp), (fast.ntk, slow.ntk)):
            assert torch.allclose(a, b_, rtol=0, atol=1e-12 * float(b_.diagonal().max()))


def test_pair_map_takes_0d_tensors_near_parallel():
    """The output angle of a near-parallel pair (recomputed without cancellation) works on 0-d
    tensors as on 1-element ones, and is the angle of the outputs: for tanh at q = 1 a pair
    4.47e-5 apart leaves at 1.0853 times that angle (E[phi'(z)^2] / E[phi(z)^2], to first
    order in theta, the same ratio the 1-element call gives)."""
    a = infnet.activation("tanh")
    t = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    K, Kdot = a.diagonal_kernel(t(1.0))
    theta = 4.4721e-5
    scalar = a.pair_map(t(1.0), t(1.0), t(math.cos(theta)), t(theta), K, K)
    vector = a.pair_map(t([1.0]), t([1.0]), t([math.cos(theta)]), t([theta]), K, K)
    assert scalar[2].shape == () and float(scalar[2]) == float(vector[2][0])
    assert abs(float(scalar[2]) / theta - math.sqrt(float(Kdot / K))) < 1e-6
