"""Closed-form kernels against the library's quadrature, Price's theorem, duals, input errors.

docs/theory/closed-forms.md and numerical-duals.md. For every catalog entry with a closed form (default
parameters and a
set of non-default ones), K and Kdot from the closed form must equal ``numerical_kernel`` (polar
quadrature) to 1e-12 on a grid of (q1, q2, rho) that includes rho = +-1 and 1 -+ 1e-12.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from scipy import integrate

import infnet
from infnet.numerics import quadrature

TOL = 1e-12
DTYPE = torch.float64

QS = (0.1, 0.5, 1.0, 2.0, 3.0)
RHOS = (-1.0, -1.0 + 1e-12, -0.999, -0.6, -0.2, 0.0, 0.3, 0.7, 0.95, 1.0 - 1e-12, 1.0)


def grid(qs=QS, rhos=RHOS):
    """(q1, q2, c) as broadcast float64 tensors over qs x qs x rhos."""
    q1, q2, rho = torch.meshgrid(torch.tensor(qs, dtype=DTYPE), torch.tensor(qs, dtype=DTYPE),
                                 torch.tensor(rhos, dtype=DTYPE), indexing="ij")
    return q1, q2, rho * (q1 * q2).sqrt()


def assert_close(got, want, what, tol=TOL, scaled=True):
    """|got - want| <= tol * max(1, |want|) (absolute for values of order one)."""
    scale = want.abs().clamp(min=1.0) if scaled else torch.ones_like(want)
    err = (got - want).abs() / scale
    worst = int(err.reshape(-1).argmax())
    assert bool((err <= tol).all()), (
        f"{what}: max scaled error {float(err.max()):.3e} at flat index {worst}: "
        f"got {float(got.reshape(-1)[worst])!r}, want {float(want.reshape(-1)[worst])!r}")


# ---- which entries: all closed forms of the catalog, plus non-default parameters --------------
JUMPS = {"step", "sign"}
CLOSED = [n for n in infnet.list_activations() if infnet.activation(n).is_closed_form]
VARIANTS = [
    ("leaky_relu", {"alpha": 0.2}),
    ("prelu", {"alpha": -0.5}),
    ("erf", {"scale": 0.5}),
    ("sin", {"frequency": 2.0, "phase": 0.3}),
    ("sin", {"amplitude": 1.5, "frequency": 0.7, "phase": -1.1}),
    ("cos", {"frequency": 2.0, "phase": 0.3}),
    ("snake", {"a": 0.5}),
    ("snake", {"a": 2.0}),
    ("relu_power", {"n": 1}),
    ("relu_power", {"n": 2}),
    ("polynomial", {"coefficients": (1.0, -2.0, 0.5, 0.3)}),
    ("hermite", {"k": 3}),
    ("hermite", {"k": 5}),
    ("monomial", {"k": 4}),
    ("gaussian", {"rate": -1.0}),
    ("gaussian", {"amplitude": 1.5, "rate": 0.05}),
    ("exp", {"amplitude": 2.0, "rate": -0.7}),
    ("rff", {"gamma": 0.3}),
    # SAU's default n = 20000 smooths the kink on a scale the quadrature cannot resolve; at small
    # n it can, which checks the smoothing-as-variance-inflation closed form itself
    ("sau", {"n": 1.0}),
    ("sau", {"alpha": 0.3, "n": 2.0}),
]
# erf(2x) is steep: at q >= 2 the default quadrature nodes are short of 1e-12 (REPORT, below)
ERF_STEEP = ("erf", {"scale": 2.0})


def _id(name, params):
    return name + ("(" + ",".join(f"{k}={v}" for k, v in params.items()) + ")" if params else "")


# sau's default n = 20000 smooths its kink on a 5e-5 scale: checked against scipy in
# test_kernel_reference.py instead (the quadrature needs a declared kink to resolve it)
CONTINUOUS = [(n, {}) for n in CLOSED if n not in JUMPS | {"sau"}] + VARIANTS


def test_catalog_has_the_expected_closed_forms():
    """Guards the parametrization: these must stay closed forms (docs/theory/closed-forms.md)."""
    expected = {"identity", "relu", "leaky_relu", "abs", "step", "sign", "relu_power", "erf",
                "gelu", "sin", "cos", "exp", "gaussian", "snake", "polynomial", "hermite",
                "monomial", "rff"}
    assert expected <= set(CLOSED), f"missing closed forms: {expected - set(CLOSED)}"
    for name, params in VARIANTS + [ERF_STEEP]:
        assert infnet.activation(name, **params).is_closed_form, _id(name, params)
    # relu_power n = 3 has no closed form in the catalog: it falls back to the quadrature
    assert not infnet.activation("relu_power", n=3).is_closed_form


@pytest.mark.parametrize(("name", "params"), CONTINUOUS,
                         ids=[_id(n, p) for n, p in CONTINUOUS])
def test_closed_form_matches_quadrature(name, params):
    act = infnet.activation(name, **params)
    assert act.is_closed_form
    q1, q2, c = grid()
    if name == "gaussian" and params.get("rate", -0.5) > 0:
        q1, q2, c = grid(qs=(0.1, 0.5, 1.0, 2.0))  # finite only while det > 0
    K, Kdot = act.kernel(q1, q2, c)
    Kn, Kdotn = act.numerical_kernel(q1, q2, c)
    assert K.shape == Kdot.shape == c.shape and K.dtype == Kdot.dtype == DTYPE
    if any(k != 0.0 for k in act.kinks):
        # at |rho| = 1 - 1e-12 the input itself is ill-conditioned: c is known to 1e-16
        # relative, so theta = arccos(rho) ~ 1.4e-6 is known to ~1e-16 / theta ~ 1e-10, and a
        # kink away from 0 makes Kdot depend on theta to first order. Both methods agree to
        # that conditioning there and to 1e-12 elsewhere.
        near = (c.abs() / (q1 * q2).sqrt() > 1 - 1e-9) & (c.abs() / (q1 * q2).sqrt() < 1)
        assert_close(K[near], Kn[near], f"{_id(name, params)} K near |rho| = 1", tol=1e-10)
        assert_close(Kdot[near], Kdotn[near], f"{_id(name, params)} Kdot near |rho| = 1",
                     tol=1e-10)
        K, Kn, Kdot, Kdotn = K[~near], Kn[~near], Kdot[~near], Kdotn[~near]
    assert_close(K, Kn, f"{_id(name, params)} K")
    assert_close(Kdot, Kdotn, f"{_id(name, params)} Kdot")


def test_closed_form_matches_quadrature_steep_erf_moderate_q():
    act = infnet.activation(*ERF_STEEP[:1], **ERF_STEEP[1])
    q1, q2, c = grid(qs=(0.1, 0.5, 1.0))
    K, Kdot = act.kernel(q1, q2, c)
    Kn, Kdotn = act.numerical_kernel(q1, q2, c)
    assert_close(K, Kn, "erf(scale=2) K")
    assert_close(Kdot, Kdotn, "erf(scale=2) Kdot")


def test_closed_form_matches_quadrature_steep_erf_large_q():
    """erf(2x) at q up to 3: the closed form is right (checked against a 1-D quad at rho = 1);
    numerical_kernel with its default nodes misses Kdot by 7e-11 (q1 = q2 = 3, rho = 0.9)."""
    act = infnet.activation(*ERF_STEEP[:1], **ERF_STEEP[1])
    q1, q2, c = grid()
    K, Kdot = act.kernel(q1, q2, c)
    Kn, Kdotn = act.numerical_kernel(q1, q2, c)
    assert_close(K, Kn, "erf(scale=2) K")
    assert_close(Kdot, Kdotn, "erf(scale=2) Kdot")


# ---- step and sign: phi jumps, phi' is a Dirac mass --------------------------------------------
@pytest.mark.parametrize("name", sorted(JUMPS))
def test_jump_closed_form_K_matches_quadrature(name):
    """K on the whole grid (rho = +-1 included) against the polar quadrature on (phi, phi).

    ``kernel`` refuses rho = +-1 (Kdot infinite), so K comes from the entry's closed form."""
    act = infnet.activation(name)
    q1, q2, c = grid()
    K, _ = act.closed_form(q1, q2, c, **act.params)
    (Kn,) = quadrature.gaussian_expectation([(act, act)], q1, q2, c, act.kinks)
    assert_close(K, Kn, f"{name} K")
    inner = c.abs() < (q1 * q2).sqrt()
    Kk, _ = act.kernel(q1[inner], q2[inner], c[inner])
    assert_close(Kk, Kn[inner], f"{name} kernel() K")


@pytest.mark.parametrize("name", sorted(JUMPS))
def test_jump_Kdot_is_the_density_at_the_origin(name):
    """|rho| < 1: phi' = m delta (m = 1 step, 2 sign), Kdot = m^2 / (2 pi sqrt(q1 q2 - c^2))."""
    act = infnet.activation(name)
    q1, q2, c = grid(rhos=(-0.999, -0.6, -0.2, 0.0, 0.3, 0.7, 0.95, 0.999))
    m2 = {"step": 1.0, "sign": 4.0}[name]
    _, Kdot = act.kernel(q1, q2, c)
    want = m2 / (2 * math.pi * (q1 * q2 - c * c).sqrt())
    assert_close(Kdot, want, f"{name} Kdot", tol=1e-12)


@pytest.mark.parametrize("name", sorted(JUMPS))
def test_jump_Kdot_near_and_at_the_diagonal(name):
    act = infnet.activation(name)
    q1, q2, c = grid(rhos=(-1.0 + 1e-12, 1.0 - 1e-12))
    _, Kdot = act.kernel(q1, q2, c)  # large but finite
    assert bool(torch.isfinite(Kdot).all()) and bool((Kdot > 1e4).all())
    with pytest.raises(infnet.KernelOverflowError, match="infinite at correlation"):
        act.kernel(1.0, 1.0, 1.0)
    with pytest.raises(NotImplementedError, match="Dirac"):
        act.numerical_kernel(1.0, 1.0, 0.5)


# ---- Price's theorem: Kdot = dK/dc -------------------------------------------------------------
PRICE_POINTS = [(1.0, 1.0, 0.0), (0.5, 2.0, -0.6), (2.0, 0.3, 0.4), (1.3, 0.8, 0.9),
                (3.0, 0.2, -0.85)]
PRICE = [
    ("relu", {}), ("leaky_relu", {"alpha": 0.2}), ("abs", {}), ("step", {}), ("sign", {}),
    ("relu_power", {"n": 2}), ("erf", {"scale": 2.0}), ("gelu", {}),
    ("sin", {"frequency": 2.0, "phase": 0.3}), ("snake", {"a": 0.5}), ("gaussian", {}),
    ("polynomial", {"coefficients": (1.0, -2.0, 0.5, 0.3)}), ("exp", {}),
    # no closed form: Kdot from the quadrature of phi' phi', K from that of phi phi
    ("tanh", {}), ("swish", {}), ("elu", {}), ("softplus", {}), ("hardtanh", {}), ("relu6", {}),
    ("hardswish", {}), ("mish", {}), ("relu_power", {"n": 3}),
]


@pytest.mark.parametrize(("name", "params"), PRICE, ids=[_id(n, p) for n, p in PRICE])
def test_price_theorem(name, params):
    act = infnet.activation(name, **params)
    h = 1e-6
    q1, q2, rho = (torch.tensor(t, dtype=DTYPE) for t in zip(*PRICE_POINTS, strict=True))
    c = rho * (q1 * q2).sqrt()
    K_plus, _ = act.kernel(q1, q2, c + h)
    K_minus, _ = act.kernel(q1, q2, c - h)
    _, Kdot = act.kernel(q1, q2, c)
    fd = (K_plus - K_minus) / (2 * h)
    assert_close(Kdot, fd, f"{_id(name, params)}: Kdot vs dK/dc at {PRICE_POINTS}", tol=1e-7)


# ---- duals ------------------------------------------------------------------------------------
DUALS = [("relu", {}), ("leaky_relu", {"alpha": 0.2}), ("erf", {}), ("gelu", {}), ("tanh", {}),
         ("sin", {"frequency": 2.0, "phase": 0.3}), ("snake", {}), ("hermite", {"k": 3}),
         ("swish", {}), ("elu", {}), ("hardtanh", {}), ("relu_power", {"n": 2})]
DUALS_JUMPS = [("step", {}), ("sign", {})]


def reference_second_moment(act, q: float, fn=None) -> float:
    """E[f(sqrt(q) z)^2], f = phi by default, by adaptive quad split at the kinks (not infnet's
    quadrature)."""
    fn = act if fn is None else fn
    buf = torch.empty((), dtype=DTYPE)

    def h(z):
        buf.fill_(math.sqrt(q) * z)
        return math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi) * fn(buf).item() ** 2

    edges = [-12.0, *sorted(k / math.sqrt(q) for k in act.kinks if abs(k) < 12 * math.sqrt(q)),
             12.0]
    return math.fsum(integrate.quad(h, a, b, epsabs=1e-14, epsrel=1e-13, limit=200)[0]
                     for a, b in itertools.pairwise(edges))


def _check_dual(act):
    one = act.dual(1.0)
    assert one.dtype == DTYPE and abs(float(one) - 1.0) <= 1e-15
    assert abs(float(act.dual(torch.tensor(1.0, dtype=DTYPE))) - 1.0) <= 1e-15
    h = 1e-6
    rho = torch.tensor([-0.9, -0.5, 0.0, 0.3, 0.7, 0.9], dtype=DTYPE)
    fd = (act.dual(rho + h) - act.dual(rho - h)) / (2 * h)
    d = act.dual_derivative(rho)
    assert d.shape == rho.shape
    assert_close(d, fd, f"{act!r} dual'", tol=1e-7)
    # the dual is the unit-variance kernel over E[phi(z)^2]
    K, Kdot = act.kernel(1.0, 1.0, rho)
    n2 = reference_second_moment(act, 1.0)
    assert_close(act.dual(rho), K / n2, f"{act!r} dual")
    assert_close(d, Kdot / n2, f"{act!r} dual'")


@pytest.mark.parametrize(("name", "params"), DUALS, ids=[_id(n, p) for n, p in DUALS])
def test_dual(name, params):
    _check_dual(infnet.activation(name, **params))


@pytest.mark.parametrize(("name", "params"), DUALS_JUMPS, ids=[_id(n, p) for n, p in DUALS_JUMPS])
def test_dual_of_discontinuous_activations(name, params):
    """The normalized dual only needs K, which is finite; E[phi(z)^2] = 1/2 (step), 1 (sign)."""
    _check_dual(infnet.activation(name, **params))


def test_dual_known_values():
    # docs/theory/infinite-depth.md#paper-duals: relu (sqrt(1 - rho^2) + (pi - arccos rho) rho) / pi,
    # erf arcsin(2 rho / 3) / arcsin(2 / 3), hermite k: rho^k
    rho = torch.linspace(-1, 1, 41, dtype=DTYPE)
    relu = ((1 - rho**2).clamp(min=0).sqrt() + (math.pi - torch.arccos(rho)) * rho) / math.pi
    assert_close(infnet.activation("relu").dual(rho), relu, "relu dual")
    erf = torch.arcsin(2 * rho / 3) / math.asin(2 / 3)
    assert_close(infnet.activation("erf").dual(rho), erf, "erf dual")
    for k in (1, 2, 3, 4):
        assert_close(infnet.activation("hermite", k=k).dual(rho), rho**k, f"hermite {k} dual")


VARIANCE = ["tanh", "sigmoid", "swish", "softplus", "mish", "gelu_tanh", "relu", "gelu", "elu",
            "hardtanh", "relu6", "hardswish", "step", "sign", "snake"]


@pytest.mark.parametrize("name", VARIANCE)
def test_variance_map(name):
    """Q(q) = E[phi(sqrt(q) z)^2] against adaptive quad, and against the kernel's diagonal."""
    act = infnet.activation(name)
    qs = (0.1, 0.5, 1.0, 2.0, 3.0)
    got = act.variance_map(torch.tensor(qs, dtype=DTYPE))
    want = torch.tensor([reference_second_moment(act, q) for q in qs], dtype=DTYPE)
    assert got.shape == want.shape
    assert_close(got, want, f"{name} variance map")
    assert abs(float(act.variance_map(1.0)) - float(want[2])) <= TOL  # a number works too


DIAGONAL = [n for n in VARIANCE if n not in ("step", "sign")]


@pytest.mark.parametrize("name", DIAGONAL)
def test_diagonal_kernel(name):
    """(K, Kdot) at u = v against adaptive quad of phi^2 and phi'^2 (phi' by autograd)."""
    act = infnet.activation(name)
    if not hasattr(act, "diagonal_kernel"):
        pytest.skip("no Activation.diagonal_kernel in this version")
    qs = (0.1, 0.5, 1.0, 2.0, 3.0)
    K, Kdot = act.diagonal_kernel(torch.tensor(qs, dtype=DTYPE))
    want_K = torch.tensor([reference_second_moment(act, q) for q in qs], dtype=DTYPE)
    want_Kdot = torch.tensor([reference_second_moment(act, q, act.derivative) for q in qs],
                             dtype=DTYPE)
    assert_close(K, want_K, f"{name} diagonal K")
    assert_close(Kdot, want_Kdot, f"{name} diagonal Kdot")


# ---- bad inputs -------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["kernel", "numerical_kernel"])
@pytest.mark.parametrize(("q1", "q2", "c", "match"), [
    (math.nan, 1.0, 0.5, "q1 contains NaN"),
    (1.0, math.nan, 0.5, "q2 contains NaN"),
    (1.0, 1.0, math.nan, "c contains NaN"),
    (1.0, 1.0, math.inf, "c contains NaN or inf"),
    (1.0, 1.0, 1.1, r"\|c\| > sqrt\(q1 q2\)"),
    (1.0, 4.0, -2.01, r"\|c\| > sqrt\(q1 q2\)"),
    (-1.0, 1.0, 0.0, "must be >= 0"),
    (1.0, -0.5, 0.0, "must be >= 0"),
])
def test_bad_moments_raise_value_error(method, q1, q2, c, match):
    for name in ("relu", "tanh"):
        with pytest.raises(ValueError, match=match):
            getattr(infnet.activation(name), method)(q1, q2, c)


def test_bad_moments_in_tensors():
    q = torch.ones(3, dtype=DTYPE)
    c = torch.tensor([0.5, math.nan, 0.2], dtype=DTYPE)
    with pytest.raises(ValueError, match="NaN"):
        infnet.activation("gelu").kernel(q, q, c)
    with pytest.raises(ValueError, match=r"\|c\|"):
        infnet.activation("gelu").kernel(q, q, torch.tensor([0.5, 1.5, 0.2], dtype=DTYPE))


def test_rounding_above_the_bound_is_clamped_not_an_error():
    c = 1.0 + 1e-12  # |c| a hair above sqrt(q1 q2) from rounding
    K, Kdot = infnet.activation("relu").kernel(1.0, 1.0, c)
    assert abs(float(K) - 0.5) <= 1e-12 and abs(float(Kdot) - 0.5) <= 1e-12


@pytest.mark.parametrize("rho", [math.nan, 1.5, -1.01])
def test_bad_dual_argument(rho):
    with pytest.raises(ValueError):
        infnet.activation("relu").dual(rho)


@pytest.mark.parametrize(("typo", "meant"), [("rleu", "relu"), ("gleu", "gelu"),
                                             ("tanhh", "tanh"), ("leaky-rel", "leaky_relu")])
def test_unknown_name_suggests_close_match(typo, meant):
    with pytest.raises(KeyError, match=repr(meant)):
        infnet.activation(typo)


def test_unknown_parameter_is_a_type_error():
    with pytest.raises(TypeError, match="alpha"):
        infnet.activation("relu", alpha=0.1)
    with pytest.raises(TypeError, match="beta"):
        infnet.activation("leaky_relu", beta=1.0)


def test_gaussian_overflow_is_an_error_not_nan():
    act = infnet.activation("gaussian", rate=0.4)  # a exp(0.4 x^2): E[phi^2] infinite at q >= 1.25
    for c in (0.0, 1.0, 2.0):
        with pytest.raises(infnet.KernelOverflowError):
            act.kernel(2.0, 2.0, c)
    with pytest.raises(infnet.KernelOverflowError):
        act.variance_map(2.0)
    with pytest.raises(infnet.KernelOverflowError):
        act.kernel(torch.tensor([0.1, 2.0], dtype=DTYPE), 0.1, 0.0)
    K, Kdot = act.kernel(0.5, 0.5, 0.0)  # finite: (1 - 0.4)^-1
    assert abs(float(K) - 1 / 0.6) <= 1e-12 and float(Kdot) == 0.0


@pytest.mark.parametrize("scale", [1.0, 0.3, 4.0])
def test_erf_output_angle_in_closed_form(scale):
    """The angle of two erf outputs, arccos(A / sqrt(A1 A2)) with A = asin(2 b^2 c /
    sqrt((1 + 2 b^2 q1)(1 + 2 b^2 q2))), against the same formula in 50-digit arithmetic, also
    within 1e-12 of 0 and pi where float64's arccos would have lost all digits; equal variances
    at angle 0 stay exactly at 0, a zero variance is at pi/2. (Nearly parallel pairs whose
    variances differ slightly go to the generic rule: not asserted here.)"""
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 50
    act = infnet.activation("erf", scale=scale)

    def want(q1, q2, theta):
        q1, q2, th = mpmath.mpf(q1), mpmath.mpf(q2), mpmath.mpf(theta)
        b2 = mpmath.mpf(scale) ** 2
        p1, p2 = 1 + 2 * b2 * q1, 1 + 2 * b2 * q2
        a = mpmath.asin(2 * b2 * mpmath.sqrt(q1 * q2) * mpmath.cos(th) / mpmath.sqrt(p1 * p2))
        return mpmath.acos(a / mpmath.sqrt(mpmath.asin(2 * b2 * q1 / p1) * mpmath.asin(2 * b2 * q2 / p2)))

    for q1, q2 in [(1.0, 1.0), (0.3, 2.0), (50.0, 50.0), (1e-4, 1e-4), (1e3, 2e3)]:
        for theta in [1e-12, 1e-8, 1e-4, 0.3, 1.5, 3.0, math.pi - 1e-6, math.pi - 1e-11]:
            t = torch.tensor([theta], dtype=torch.float64)
            Q1, Q2 = (torch.tensor([v], dtype=torch.float64) for v in (q1, q2))
            out = act.pair_map(Q1, Q2, (Q1 * Q2).sqrt() * torch.cos(t), t,
                               act.diagonal_kernel(Q1)[0], act.diagonal_kernel(Q2)[0])[2]
            ref = float(want(q1, q2, theta))
            assert abs(float(out[0]) - ref) <= 1e-13 * ref, (q1, q2, theta)
    one = torch.tensor([2.0], dtype=torch.float64)
    zero = torch.zeros(1, dtype=torch.float64)
    q_out = act.diagonal_kernel(one)[0]
    assert float(act.pair_map(one, one, one, zero, q_out, q_out)[2]) == 0.0
    out = act.pair_map(zero, one, zero, torch.full((1,), math.pi / 2, dtype=torch.float64),
                       zero, act.diagonal_kernel(one)[0])[2]
    assert float(out[0]) == pytest.approx(math.pi / 2, abs=1e-15)
