"""Catalog entries from recent literature (entries_literature.py) against independent references.

* each function against its paper's formula written out here with ``math``/``scipy.special``
  (and hand-computed values);
* the Mittag-Leffler function against a high-precision mpmath series (mpmath has none built in);
* K = E[phi(u) phi(v)] and Kdot = E[phi'(u) phi'(v)] against nested ``scipy.integrate.quad``
  over the bivariate normal, split at the kinks, with phi' differentiated by hand below;
* SAU's closed form (Gaussian smoothing = variance inflation) against the library's quadrature.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import mpmath as mp
import pytest
import torch
from scipy import integrate, special

import infnet
from infnet.activations.entries_literature import (
    PAU_LEAKY_RELU_DENOMINATOR,
    PAU_LEAKY_RELU_NUMERATOR,
    mittag_leffler,
    mittag_leffler_log,
)

TOL = 1e-10
Z_MAX = 11.0  # phi(11) ~ 1e-27
QUAD = {"epsabs": 1e-12, "epsrel": 1e-12, "limit": 200}
INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
F64 = torch.float64


# ---- reference: E[f(u) g(v)] by conditioning on u, nested adaptive quad ----------------------
def _quad(h, lo, hi, points):
    edges = [lo, *sorted({p for p in points if lo < p < hi}), hi]
    return math.fsum(integrate.quad(h, a, b, **QUAD)[0] for a, b in itertools.pairwise(edges))


def _normal(z):
    return INV_SQRT_2PI * math.exp(-0.5 * z * z)


def reference_expectation(f, g, q1, q2, rho, kinks=()):
    """E[f(u) g(v)], (u, v) ~ N(0, [[q1, c], [c, q2]]), c = rho sqrt(q1 q2), |rho| < 1:
    u = sqrt(q1) z1, v | z1 ~ N(rho sqrt(q2) z1, q2 (1 - rho^2))."""
    s1 = math.sqrt(q1)
    slope, sd = rho * math.sqrt(q2), math.sqrt(q2 * (1.0 - rho * rho))

    def inner(z1):
        m = slope * z1
        return _quad(lambda z2: _normal(z2) * g(m + sd * z2), -Z_MAX, Z_MAX,
                     [(k - m) / sd for k in kinks])

    pts = [k / s1 for k in kinks]
    if slope:  # inner(z1) turns on the scale sd / |slope| where the mean crosses a kink
        w = sd / abs(slope)
        pts += [k / slope + j * w for k in kinks for j in (-10, -3, -1, 0, 1, 3, 10)]
    return _quad(lambda z1: _normal(z1) * f(s1 * z1) * inner(z1), -Z_MAX, Z_MAX, pts)


# ---- the formulas, written out independently of the library ----------------------------------
def _sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def sau(x, alpha, n):
    z = n * x
    return ((1 - alpha) * INV_SQRT_2PI / n * math.exp(-0.5 * z * z) + (1 + alpha) / 2 * x
            + (1 - alpha) / 2 * x * math.erf(z / math.sqrt(2)))


def d_sau(x, alpha, n):  # the exp term's derivative cancels x d/dx erf: alpha + (1-alpha) Phi(nx)
    return alpha + (1 - alpha) * 0.5 * math.erfc(-n * x / math.sqrt(2))


def apa(x, lambd, kappa):
    return math.exp(-math.log1p(lambd * math.exp(-kappa * x)) / lambd)


def d_apa(x, lambd, kappa):  # kappa e^{-kappa x} (lambd e^{-kappa x} + 1)^(-1/lambd - 1)
    e = math.exp(-kappa * x)
    return kappa * e * math.exp(-(1 / lambd + 1) * math.log1p(lambd * e))


def aglu(x, lambd, kappa):
    return x * apa(x, lambd, kappa)


def d_aglu(x, lambd, kappa):
    return apa(x, lambd, kappa) + x * d_apa(x, lambd, kappa)


def _horner(coefficients, x):
    out = 0.0
    for a in reversed(coefficients):
        out = out * x + a
    return out


def pade(x, numerator, denominator):  # P / (1 + sum |b_k| |x|^k)
    return _horner(numerator, x) / (1 + abs(x) * _horner([abs(b) for b in denominator], abs(x)))


def d_pade(x, numerator, denominator):  # P'/Q - P Q'/Q^2, Q' = sign(x) sum k |b_k| |x|^(k-1)
    p = _horner(numerator, x)
    dp = _horner([k * a for k, a in enumerate(numerator)][1:], x)
    b = [abs(v) for v in denominator]
    q = 1 + abs(x) * _horner(b, abs(x))
    dq = math.copysign(1.0, x) * _horner([(k + 1) * v for k, v in enumerate(b)], abs(x))
    return dp / q - p * dq / (q * q)


def cauchy(x, lambda1, lambda2, d):
    return lambda1 * x / (x * x + d * d) + lambda2 / (x * x + d * d)


def d_cauchy(x, lambda1, lambda2, d):
    r = x * x + d * d
    return lambda1 / r - 2 * x * (lambda1 * x + lambda2) / (r * r)


def elephant(x, a, d):
    return 1.0 / (1.0 + abs(x / a) ** d)


def d_elephant(x, a, d):
    t = abs(x / a)
    return -d * t ** (d - 1) * math.copysign(1.0, x) / a / (1 + t**d) ** 2


def _expanded(gate, dgate):
    def phi(x, alpha):
        return x * (gate(x) * (1 + 2 * alpha) - alpha)

    def dphi(x, alpha):
        return gate(x) * (1 + 2 * alpha) - alpha + x * (1 + 2 * alpha) * dgate(x)
    return phi, dphi


xatlu, d_xatlu = _expanded(lambda x: math.atan(x) / math.pi + 0.5,
                           lambda x: 1.0 / (math.pi * (1 + x * x)))
xgelu, d_xgelu = _expanded(lambda x: 0.5 * math.erfc(-x / math.sqrt(2)), _normal)
xsilu, d_xsilu = _expanded(_sigmoid, lambda x: _sigmoid(x) * (1 - _sigmoid(x)))


def ml_half(x, gamma):
    """The Mittag-Leffler gate at alpha = 1/2, beta = 1: E_{1/2,1}(z) = exp(z^2) erfc(-z)
    = erfcx(-z), so g(x) = 1 / (1 + erfcx(gamma x))."""
    return x / (1.0 + special.erfcx(gamma * x))


def d_ml_half(x, gamma):
    # E'(z) = 2 z erfcx(-z) + 2/sqrt(pi) at z = -gamma x; phi' = g + x gamma E' g^2
    # = g + x gamma (E'/E) g (1 - g), E'/E = 2 z + 2 / (sqrt(pi) erfcx(-z)) (finite for all x)
    e = float(special.erfcx(gamma * x))
    g = 1.0 / (1.0 + e)
    return g + x * gamma * (-2 * gamma * x + 2 / (math.sqrt(math.pi) * e)) * g * (1 - g)


@dataclass(frozen=True)
class Case:
    name: str
    params: dict = field(default_factory=dict)
    phi: Callable[..., float] | None = None
    dphi: Callable[..., float] | None = None  # the NTK's derivative (HeLU: the surrogate)
    kinks: Callable[..., tuple[float, ...]] = lambda **_: ()
    #: quadrature nodes (angle, radius) at which the library's generic quadrature reaches the
    #: reference's 1e-10 (None: act.kernel at its defaults does)
    nodes: tuple[int, int] | None = None

    @property
    def id(self):
        args = ",".join(f"{k}={v}" for k, v in self.params.items()
                        if not isinstance(v, tuple))
        return f"{self.name}({args})" if args else self.name

    def activation(self):
        return infnet.activation(self.name, **self.params)


def _zero(**_):
    return (0.0,)


CASES = [
    Case("sau", phi=sau, dphi=d_sau),
    Case("sau", {"alpha": 0.3, "n": 2.0}, phi=sau, dphi=d_sau),
    Case("apa", phi=apa, dphi=d_apa),
    Case("apa", {"lambd": 0.3, "kappa": 2.0}, phi=apa, dphi=d_apa),
    Case("aglu", phi=aglu, dphi=d_aglu),
    Case("aglu", {"lambd": 2.5, "kappa": 0.7}, phi=aglu, dphi=d_aglu),
    Case("pade", phi=pade, dphi=d_pade, kinks=_zero),
    Case("cauchy", phi=cauchy, dphi=d_cauchy),
    Case("cauchy", {"lambda1": 0.7, "lambda2": -0.4, "d": 1.5}, phi=cauchy, dphi=d_cauchy),
    # elephant's poles at x = a exp(i pi (2j + 1) / d) lie close to the real axis: the default
    # polar quadrature (40 x 56 nodes) gets its kernel to ~1e-9 only (to ~1e-2 at a = 0.1)
    Case("elephant", phi=elephant, dphi=d_elephant, nodes=(80, 112)),
    Case("elephant", {"a": 0.7, "d": 3.0}, phi=elephant, dphi=d_elephant, kinks=_zero,
         nodes=(80, 112)),
    Case("helu", phi=lambda x, alpha: max(x, 0.0), dphi=lambda x, alpha: float(x > -alpha),
         kinks=lambda alpha: (-alpha, 0.0)),
    Case("helu", {"alpha": 0.4}, phi=lambda x, alpha: max(x, 0.0),
         dphi=lambda x, alpha: float(x > -alpha), kinks=lambda alpha: (-alpha, 0.0)),
    Case("atlu", phi=lambda x: xatlu(x, 0.0), dphi=lambda x: d_xatlu(x, 0.0)),
    Case("xatlu", {"alpha": 0.3}, phi=xatlu, dphi=d_xatlu),
    Case("xgelu", {"alpha": 0.2}, phi=xgelu, dphi=d_xgelu),
    Case("xsilu", {"alpha": 0.2}, phi=xsilu, dphi=d_xsilu),
    Case("mittag_leffler", {"alpha": 0.5, "beta": 1.0, "gamma": 1.5},
         phi=lambda x, alpha, beta, gamma: ml_half(x, gamma),
         dphi=lambda x, alpha, beta, gamma: d_ml_half(x, gamma)),
]
CASE_BY_ID = {case.id: case for case in CASES}
assert len(CASE_BY_ID) == len(CASES)

POINTS = [(1.0, 1.0, 0.3), (0.6, 2.2, -0.55), (1.4, 0.8, 0.99)]
VARIANT_POINTS = POINTS[1:]  # parameter variants: fewer points (the file stays fast)


@functools.cache
def reference(case_id, q1, q2, rho):
    case = CASE_BY_ID[case_id]
    params = dict(case.activation().params)
    kinks = tuple(case.kinks(**params))
    if case.name == "sau":  # quad must look inside its 1/n-wide bend at 0 (else sees a kink)
        kinks = tuple(j / params["n"] for j in (-30, -10, -3, -1, 0, 1, 3, 10, 30))
    phi = functools.partial(case.phi, **params)
    dphi = functools.partial(case.dphi, **params)
    return (reference_expectation(phi, phi, q1, q2, rho, kinks),
            reference_expectation(dphi, dphi, q1, q2, rho, kinks))


# ---- the functions ---------------------------------------------------------------------------
XS = [-37.0, -6.5, -2.0, -1.0, -0.3, -1e-3, 0.0, 2e-5, 0.25, 1.0, 1.7, 4.0, 39.0]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_function_matches_formula(case):
    act = case.activation()
    params = dict(act.params)
    got = act(torch.tensor(XS, dtype=F64))
    want = torch.tensor([case.phi(x, **params) for x in XS], dtype=F64)
    torch.testing.assert_close(got, want, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_derivative_matches_formula(case):
    """The library's phi' (autograd or the entry's derivative) is the hand-written one."""
    act = case.activation()
    params = dict(act.params)
    kinks = case.kinks(**params)
    xs = [x for x in XS if all(abs(x - k) > 1e-9 for k in kinks)]
    got = act.derivative(torch.tensor(xs, dtype=F64))
    want = torch.tensor([case.dphi(x, **params) for x in xs], dtype=F64)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-14)


def test_hand_computed_values():
    """A few values worked out by hand from the papers' formulas."""
    def at(name, x, **params):
        return float(infnet.activation(name, **params)(torch.tensor(x, dtype=F64)))

    # APA(0; lambda, kappa) = (lambda + 1)^(-1/lambda); lambda = kappa = 1 is the sigmoid
    assert at("apa", 0.0, lambd=0.5, kappa=3.0) == pytest.approx(1.5**-2, rel=1e-15)
    assert at("apa", 2.0) == pytest.approx(1 / (1 + math.exp(-2)), rel=1e-15)
    assert at("aglu", 2.0) == pytest.approx(2 / (1 + math.exp(-2)), rel=1e-15)
    # Cauchy: (l1 x + l2) / (x^2 + d^2) at x = 1, d = 2: (0.5 + 3) / 5
    assert at("cauchy", 1.0, lambda1=0.5, lambda2=3.0, d=2.0) == pytest.approx(0.7, rel=1e-15)
    # elephant: 1/2 at |x| = a for every d, 1 at 0
    assert at("elephant", -0.7, a=0.7, d=6.0) == pytest.approx(0.5, rel=1e-15)
    assert at("elephant", 0.0) == 1.0
    # ATLU(1) = 1 (1/4 + 1/2) = 3/4; xATLU widens the gate: at x = -1, -1 (1/4 (1 + 2a) - a)
    assert at("atlu", 1.0) == pytest.approx(0.75, rel=1e-15)
    assert at("xatlu", -1.0, alpha=0.5) == pytest.approx(0.0, abs=1e-16)
    assert at("xatlu", 1.0, alpha=1.0) == pytest.approx(1.25, rel=1e-15)
    # SAU(0) = (1 - alpha) / (n sqrt(2 pi)); far from 0 it is the leaky ReLU
    assert at("sau", 0.0) == pytest.approx(0.85 / (20000 * math.sqrt(2 * math.pi)), rel=1e-14)
    assert at("sau", -1.0) == pytest.approx(-0.15, rel=1e-15)
    # PAU at 0: a_0; its default fits leaky ReLU(0.01) on [-3, 3]
    assert at("pade", 0.0) == PAU_LEAKY_RELU_NUMERATOR[0]
    for x in (-2.0, 1.0, 2.5):
        assert at("pade", x) == pytest.approx(x if x > 0 else 0.01 * x, abs=0.04)
    # the Mittag-Leffler gate at alpha = beta = 1 is the logistic one: swish
    assert at("mittag_leffler", 1.3, gamma=0.8) == pytest.approx(1.3 * _sigmoid(1.04), rel=1e-15)


def test_helu_is_relu_forward_with_a_shifted_backward_threshold():
    act = infnet.activation("helu")
    x = torch.tensor([-0.2, -0.04, -0.01, 0.3], dtype=F64)
    torch.testing.assert_close(act(x), torch.relu(x))
    torch.testing.assert_close(act.derivative(x), torch.tensor([0.0, 1.0, 1.0, 1.0], dtype=F64))
    assert act.params["alpha"] == 0.05 and act.kinks == (-0.05, 0.0)


def test_kinks_and_parameter_checks():
    assert infnet.activation("pade").kinks == (0.0,)
    assert infnet.activation("pade", denominator=(0.0, 2.0)).kinks == ()
    assert infnet.activation("elephant").kinks == ()  # d = 4: |x|^4 = x^4 is smooth
    assert infnet.activation("elephant", d=2.5).kinks == (0.0,)
    assert infnet.activation("rational").name == infnet.activation("pau").name == "pade"
    for name, bad in [("sau", {"n": 0.0}), ("apa", {"lambd": 0.0}), ("cauchy", {"d": 0.0}),
                      ("elephant", {"d": 0.5}), ("elephant", {"a": -1.0}),
                      ("helu", {"alpha": -0.1}), ("mittag_leffler", {"alpha": 0.05}),
                      ("mittag_leffler", {"alpha": 0.5, "beta": 0.3}),
                      ("pade", {"numerator": ()})]:
        with pytest.raises(ValueError):
            infnet.activation(name, **bad)


def test_defaults_are_the_papers():
    assert infnet.activation("sau").params == {"alpha": 0.15, "n": 20000.0}
    assert infnet.activation("helu").params == {"alpha": 0.05}
    assert infnet.activation("xatlu").params == {"alpha": 0.0}
    assert infnet.activation("pade").params == {"numerator": PAU_LEAKY_RELU_NUMERATOR,
                                               "denominator": PAU_LEAKY_RELU_DENOMINATOR}
    assert infnet.activation("aglu").params == {"lambd": 1.0, "kappa": 1.0}


# ---- Mittag-Leffler against mpmath -----------------------------------------------------------
def _ml_mp(z, alpha, beta):
    """E_{alpha,beta}(z) and E' by the power series at a working precision that covers its
    cancellation (the largest term is ~ exp(|z|^(1/alpha)))."""
    dps = 30 + int(abs(z) ** (1 / alpha) / 2.3)
    with mp.workdps(dps):
        a, b, z = mp.mpf(alpha), mp.mpf(beta), mp.mpf(z)
        s = ds = mp.mpf(0)
        zk, zk1, k = mp.mpf(1), mp.mpf(0), 0
        while True:
            r = mp.rgamma(a * k + b)
            s += zk * r
            ds += k * zk1 * r
            if a * k > abs(z) ** (1 / a) + 10 and abs(zk * r) < mp.mpf(10) ** -25 * (1 + abs(s)):
                return s, ds
            zk1, zk, k = zk, zk * z, k + 1


ML_PARAMS = [(0.5, 1.0), (0.3, 0.7), (0.7, 0.8), (0.9, 1.0), (0.1, 0.1)]
ML_Z = [-30.0, -6.0, -2.2, -1.0, -0.4, 0.0, 0.6, 1.0, 1.3, 2.5]


@pytest.mark.parametrize(("alpha", "beta"), ML_PARAMS)
def test_mittag_leffler_against_mpmath_series(alpha, beta):
    zs = [z for z in ML_Z if abs(z) ** (1 / alpha) < 300]
    log_e, dlog_e = mittag_leffler_log(torch.tensor(zs, dtype=F64), alpha, beta)
    for z, le, dle in zip(zs, log_e.tolist(), dlog_e.tolist(), strict=True):
        e, de = _ml_mp(z, alpha, beta)
        if z <= 0:  # 0 < E <= 1/Gamma(beta): absolute accuracy
            assert abs(math.exp(le) - float(e)) <= 2e-14, (z, math.exp(le), float(e))
            assert abs(math.exp(le) * dle - float(de)) <= 2e-13, (z, dle, float(de / e))
        else:  # E grows like exp(z^(1/alpha)): relative accuracy, i.e. of log E
            assert abs(le - float(mp.log(e))) <= 1e-13 * max(1.0, abs(le)), (z, le)
            assert abs(dle - float(de / e)) <= 1e-13 * max(1.0, abs(dle)), (z, dle)


def test_mittag_leffler_closed_forms_over_gaussian_range():
    """E_{1,1} = exp and E_{1/2,1}(z) = erfcx(-z), for |z| up to 40 (log E where E overflows)."""
    z = torch.linspace(-40.0, 40.0, 161, dtype=F64)
    torch.testing.assert_close(mittag_leffler(z, 1.0, 1.0), torch.exp(z), rtol=0, atol=0)
    log_e, dlog_e = mittag_leffler_log(z, 0.5, 1.0)
    want = [math.log(special.erfcx(-v)) if v < 25 else v * v + math.log(math.erfc(-v))
            for v in z.tolist()]
    # log E to 1e-13 relative: E to 1e-13 relative (a few 1e-16 absolute where E < 1)
    torch.testing.assert_close(log_e, torch.tensor(want, dtype=F64), rtol=1e-13, atol=1e-13)
    dwant = [2 * v + 2 / (math.sqrt(math.pi) * float(special.erfcx(-v))) for v in z.tolist()]
    torch.testing.assert_close(dlog_e, torch.tensor(dwant, dtype=F64), rtol=1e-13, atol=1e-13)


def test_mittag_leffler_gate_autograd_uses_the_exact_derivative():
    act = infnet.activation("mittag_leffler", alpha=0.7, beta=0.9, gamma=1.2)
    x = torch.tensor([-8.0, -1.5, -0.2, 0.0, 0.9, 3.0, 25.0], dtype=F64, requires_grad=True)
    (grad,) = torch.autograd.grad(act(x).sum(), x)
    h = 1e-6
    xd = x.detach()
    fd = (act(xd + h) - act(xd - h)) / (2 * h)
    torch.testing.assert_close(grad, act.derivative(xd), rtol=0, atol=0)
    torch.testing.assert_close(grad, fd, rtol=1e-8, atol=1e-9)


# ---- kernels against the scipy reference -------------------------------------------------------
@pytest.mark.parametrize(("case_id", "q1", "q2", "rho"),
                         [(c.id, *p) for c in CASES
                          for p in (VARIANT_POINTS if c.params else POINTS)])
def test_kernel_matches_scipy_reference(case_id, q1, q2, rho):
    case = CASE_BY_ID[case_id]
    act = case.activation()
    K_ref, Kdot_ref = reference(case_id, q1, q2, rho)
    c = rho * math.sqrt(q1 * q2)
    K, Kdot = act.kernel(q1, q2, c)
    if case.nodes is not None:  # the default quadrature's own accuracy on this entry, then
        assert abs(float(K) - K_ref) <= 1e-9 and abs(float(Kdot) - Kdot_ref) <= 1e-9
        K, Kdot = act.numerical_kernel(q1, q2, c, *case.nodes)  # the entry itself, to 1e-10
    assert abs(float(K) - K_ref) <= TOL, (float(K), K_ref)
    assert abs(float(Kdot) - Kdot_ref) <= TOL, (float(Kdot), Kdot_ref)


@pytest.mark.parametrize("params", [{"alpha": 0.15, "n": 1.0}, {"alpha": -0.4, "n": 3.0}])
def test_sau_closed_form_matches_quadrature(params):
    """K_SAU(q1, q2, c) = K_LReLU(q1 + 1/n^2, q2 + 1/n^2, c), against the library's quadrature.

    (At the default n = 20000 the bend of SAU is 5e-5 wide, below what a fixed quadrature
    resolves; the closed form is exact there and is checked against scipy above.)"""
    act = infnet.activation("sau", **params)
    q1 = torch.tensor([1.0, 0.6, 1.4, 2.0, 0.3], dtype=F64)
    q2 = torch.tensor([1.0, 2.2, 0.8, 2.0, 0.3], dtype=F64)
    rho = torch.tensor([0.3, -0.55, 0.99, 1.0, -1.0], dtype=F64)
    c = rho * (q1 * q2).sqrt()
    K, Kdot = act.kernel(q1, q2, c)
    Kn, Kdotn = act.numerical_kernel(q1, q2, c)
    torch.testing.assert_close(K, Kn, rtol=0, atol=1e-12)
    torch.testing.assert_close(Kdot, Kdotn, rtol=0, atol=1e-12)


def test_reference_on_known_integrals():
    """The reference itself: Isserlis' E[u^2 v^2] and the orthant probability at rho = 0.99."""
    q1, q2 = 0.7, 1.9
    for rho in (-0.3, 0.0, 0.99):
        c = rho * math.sqrt(q1 * q2)
        got = reference_expectation(lambda x: x * x, lambda x: x * x, q1, q2, rho)
        assert abs(got - (2 * c * c + q1 * q2)) <= 1e-12
    theta = math.acos(0.99)
    step = lambda x: float(x > 0)  # noqa: E731
    got = reference_expectation(step, step, q1, q2, 0.99, (0.0,))
    assert abs(got - (math.pi - theta) / (2 * math.pi)) <= 1e-13
