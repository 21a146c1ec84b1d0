"""infnet.limit: the infinite-depth taxonomy, Koenigs and Boettcher functions, deep kernels.

Independent references: the closed-form duals of docs/theory/infinite-depth.md#paper-duals written out here
(ReLU, erf, the sine family, the paper's polynomial duals), the exponent 2 log(1/c0) / log(A)
from those, fixed points by scipy's brentq on the closed forms, brute-force iteration in mpmath
(50 digits) for Koenigs, Boettcher and the deep NNGP/NTK, and plain float iteration.
"""

from __future__ import annotations

import math
import sys
import time

import mpmath as mp
import pytest
import torch
from scipy.optimize import brentq

import infnet
from infnet.depth.deep import MARGINAL_DEPTH, deep_dual, deep_kernels, deep_ntk
from infnet.depth.design import from_dual, optimal_activation, sine_activation
from infnet.depth.limit import KINDS, Limit, limit
from infnet.depth.linearize import bottcher, koenigs, limit_kernel

F64 = torch.float64
ASIN23 = math.asin(2 / 3)


def t(values) -> torch.Tensor:
    return torch.as_tensor(values, dtype=F64)


def relu_dual(r):
    return (math.sqrt(1 - r * r) + (math.pi - math.acos(r)) * r) / math.pi


def erf_dual(r):
    return math.asin(2 * r / 3) / ASIN23


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """max relative difference; equal entries (including equal infinities) and pairs of
    subnormal-or-zero values (rounding debris of an underflowing iteration) count as 0."""
    same = (a == b) | ((a.abs() < 1e-290) & (b.abs() < 1e-290))
    d = (a - b).abs() / torch.maximum(a.abs(), b.abs())
    return float(torch.where(same, torch.zeros_like(d), d).max())


# ---- the taxonomy ---------------------------------------------------------------------------------
def test_relu_is_a_marginal_majority_vote():
    lim = limit("relu")
    assert lim.kind == "majority_vote"
    assert lim.dual0 == pytest.approx(relu_dual(0.0), abs=1e-15)  # 1/pi
    assert lim.slope0 == pytest.approx(0.5, abs=1e-15)
    assert lim.slope1 == pytest.approx(1.0, abs=1e-15)
    assert lim.fixed_point == 1.0 and lim.marginal
    assert lim.exponent is None and lim.order is None
    assert "majority vote" in lim.explanation and "marginal" in lim.explanation
    assert limit(lim) is lim


@pytest.mark.parametrize("k", [2, 3, 4, 5])
def test_hermite_k_is_nearest_neighbour(k):
    lim = limit("hermite", k=k)
    assert lim.kind == "nearest_neighbor" and lim.order == k
    assert abs(lim.dual0) < 1e-14 and abs(lim.slope0) < 1e-14
    assert lim.slope1 == pytest.approx(k, rel=1e-13)  # dual rho^k: f'(1) = k
    assert "nearest-neighbour" in lim.explanation


def test_erf_is_singular_with_the_closed_form_exponent():
    lim = limit("erf")
    c0 = (2 / 3) / ASIN23  # d/drho arcsin(2 rho / 3) / arcsin(2/3) at 0 and at 1
    A = (2 / 3) / math.sqrt(1 - 4 / 9) / ASIN23
    assert lim.kind == "singular"
    assert lim.slope0 == pytest.approx(c0, rel=1e-13)
    assert lim.slope1 == pytest.approx(A, rel=1e-13)
    assert lim.exponent == pytest.approx(2 * math.log(1 / c0) / math.log(A), rel=1e-12)
    assert lim.beta == pytest.approx(lim.exponent / 2)


@pytest.mark.parametrize("coefficients, exponent", [
    ((0, 0.5, 0, 0, 0, 0, 0, 0.5), 1.0),       # 2d_opt: rho/2 + rho^7/2
    ((0, 0.5, 0, 0.5), 2.0),                   # 3d_opt
    ((0, 0.25, 0.5, 0.25), 4.0),               # 5d_opt
    ((0, 1 / 16, 7 / 8, 1 / 16), 8.0),         # 9d_opt
])
def test_paper_optimal_duals_have_exponent_d_minus_1(coefficients, exponent):
    lim = limit(from_dual(coefficients))
    assert lim.kind == "singular"
    assert lim.exponent == pytest.approx(exponent, rel=1e-12)
    assert "Hilbert kernel on S^" in lim.explanation


@pytest.mark.parametrize("d, a", [(3, 2.67607), (5, 6.13539), (9, 13.82585)])
def test_sine_a_is_singular_with_exponent_d_minus_1(d, a):
    lim = limit(sine_activation(a))
    c0, A = a / math.sinh(a), a / math.tanh(a)  # the dual sinh(a rho)/sinh(a)
    assert lim.kind == "singular"
    assert lim.slope0 == pytest.approx(c0, rel=1e-12)
    assert lim.slope1 == pytest.approx(A, rel=1e-12)
    assert lim.exponent == pytest.approx(d - 1, abs=2e-5)  # a given to 5 decimals
    assert limit(optimal_activation(d, "sine")).exponent == pytest.approx(d - 1, rel=1e-9)


def test_linear_kind_for_the_identity():
    lim = limit("identity")
    assert lim.kind == "linear" and lim.kind in KINDS
    assert lim.exponent is None and lim.fixed_point is None
    rho = t([-1.0, -0.3, 0.0, 0.7, 1.0])
    assert torch.equal(limit_kernel(lim, rho), rho)
    S, K = deep_kernels(lim, rho, 1000)
    assert torch.equal(S, rho) and torch.allclose(K, 1001 * rho)


def test_sign_is_singular_with_exponent_zero_and_step_is_a_majority_vote():
    sign = limit("sign")
    assert sign.kind == "singular" and sign.slope1 == math.inf and sign.exponent == 0.0
    assert sign.slope0 == pytest.approx(2 / math.pi, rel=1e-14)
    assert "more slowly than any power" in sign.explanation
    step = limit("step")  # dual 1 - arccos(rho)/pi, f(0) = 1/2
    assert step.kind == "majority_vote" and step.slope1 == math.inf
    rho_star = brentq(lambda r: 1 - math.acos(r) / math.pi - r, 0.0, 0.999, xtol=1e-16)
    assert step.fixed_point == pytest.approx(rho_star, abs=1e-14)
    assert step.fixed_point_slope == pytest.approx(1 / (math.pi * math.sqrt(1 - rho_star**2)),
                                                   rel=1e-12)


def test_gelu_fixed_point_against_brentq_on_the_closed_form():
    act = infnet.activation("gelu")
    lim = limit(act)

    def g(r):
        return float(act.dual(t(r))) - r

    assert lim.kind == "majority_vote" and not lim.marginal
    assert lim.fixed_point == pytest.approx(brentq(g, 0.0, 0.99, xtol=1e-16), abs=1e-14)
    assert 0 < lim.fixed_point_slope < 1
    assert "majority vote" in lim.explanation


def test_fixed_point_below_one_for_x_squared():
    # x^2 has the dual (1 + 2 rho^2)/3: fixed points 1/2 and 1
    lim = limit("monomial", k=2)
    assert lim.fixed_point == pytest.approx(0.5, abs=1e-15)
    assert lim.fixed_point_slope == pytest.approx(2 / 3, rel=1e-13)
    assert torch.equal(limit_kernel(lim, t([0.3, 1.0])), t([lim.fixed_point, 1.0]))


def test_str_is_readable():
    text = str(limit("erf"))
    assert text.startswith("infinite-depth limit of erf: singular")
    assert "exponent" in text and "c0" in text
    assert "fixed point" in str(limit("gelu"))
    assert "order k" in str(limit("hermite", k=3))


def test_user_functions():
    he3 = limit(infnet.activation(lambda x: x**3 - 3 * x, name="he3"))  # He_3: dual rho^3
    assert he3.kind == "nearest_neighbor" and he3.order == 3
    mine = limit(infnet.activation(lambda x: torch.erf(x), name="my_erf"))  # quadrature
    assert mine.kind == "singular"
    assert mine.exponent == pytest.approx(limit("erf").exponent, rel=1e-10)
    relu = limit(infnet.activation(torch.relu, kinks=[0.0], name="my_relu"))
    assert relu.kind == "majority_vote" and relu.marginal


@pytest.mark.parametrize("name", ["relu", "erf", "hermite", "identity", "sign", "step", "gelu",
                                  "sin", "rff", "exp", "reglu", "bilinear", "monomial"])
def test_limit_runs_on_closed_form_entries(name):
    lim = limit(name)
    assert lim.kind in KINDS and lim.explanation and str(lim)


@pytest.mark.slow
def test_limit_runs_on_every_catalog_entry():
    kinds = {}
    for name in infnet.list_activations():
        lim = limit(name)
        assert isinstance(lim, Limit) and lim.kind in KINDS, name
        assert lim.explanation and str(lim).startswith(f"infinite-depth limit of {name}")
        if lim.kind == "singular":
            assert lim.exponent >= 0
        if lim.kind == "majority_vote":
            assert 0 <= lim.fixed_point <= 1
        kinds[name] = lim.kind
    assert len(kinds) == len(infnet.list_activations()) == 55
    assert {kinds["tanh"], kinds["sigmoid"], kinds["polynomial"]} == {
        "singular", "majority_vote", "linear"}
    assert set(kinds.values()) == set(KINDS)


# ---- invalid activations ---------------------------------------------------------------------
def test_zero_activation_has_no_limit():
    with pytest.raises(ValueError, match=r"E\[phi\(z\)\^2\] = 0"):
        limit(infnet.activation(lambda x: torch.zeros_like(x), name="zero"))


def test_infinite_kernel_has_no_limit():
    with pytest.raises(ValueError, match="no finite normalized dual"):
        limit("gaussian", rate=0.3)  # E[exp(0.3 z^2)^2] diverges


def test_invalid_dual_is_reported():
    bad = infnet.activation(lambda x: x, name="bad", kernel=lambda q1, q2, c: (c - 0.5, c * 0 + 1))
    with pytest.raises(ValueError, match=r"not give a valid normalized dual.*dual\(0\) = -1"):
        limit(bad)


def test_bad_arguments():
    with pytest.raises(ValueError, match="Koenigs function exists only for the singular"):
        koenigs("relu", 0.5)
    with pytest.raises(ValueError, match="nearest-neighbour class"):
        bottcher("erf", 0.5)
    with pytest.raises(ValueError, match="depth must be an integer >= 0"):
        deep_dual("erf", 0.5, -1)
    with pytest.raises(ValueError, match="method must be"):
        deep_dual("erf", 0.5, 3, method="fast")
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        koenigs("erf", t([0.5, 1.5]))
    with pytest.raises(KeyError, match="unknown activation"):
        limit("no_such_activation")


# ---- Koenigs -------------------------------------------------------------------------------------
# (no tiny |rho|: the closed forms of the sine and sign duals lose relative accuracy there)
RHO = t([-0.99, -0.7, -0.3, -0.01, 0.05, 0.4, 0.8, 0.95, 0.99])


@pytest.mark.parametrize("act", [from_dual([0, 0.5, 0, 0.5]), infnet.activation("erf"),
                                 sine_activation(2.67607), from_dual([0, 0.3, 0.5, 0.2]),
                                 infnet.activation("sign")], ids=lambda a: a.name)
def test_schroeder_equation(act):
    lim = limit(act)
    h = koenigs(lim, RHO)
    assert rel_err(koenigs(lim, act.dual(RHO)), lim.slope0 * h) < 1e-12
    assert float(koenigs(lim, t(0.0))) == 0.0
    # h'(0) = 1
    assert float(koenigs(lim, t(1e-9))) == pytest.approx(1e-9, rel=1e-8)


def test_koenigs_against_brute_force_iteration():
    # f = rho/2 + rho^3/2: f^(L)(rho) / c0^L converges quadratically once small
    lim = limit(from_dual([0, 0.5, 0, 0.5]))
    x = RHO.clone()
    for _ in range(60):
        x = x / 2 + x**3 / 2
    assert rel_err(koenigs(lim, RHO), x * 2.0**60) < 1e-12
    assert torch.equal(koenigs(lim, t([1.0, -1.0])), t([math.inf, -math.inf]))  # odd dual


def _mp_koenigs(f, c0, r, n):
    x = mp.mpf(r)
    for _ in range(n):
        x = f(x)
    return x / mp.mpf(c0) ** n


def test_koenigs_against_mpmath_for_erf_and_sine():
    mp.mp.dps = 50
    a = 2.67607
    cases = [("erf", infnet.activation("erf"),
              lambda x: mp.asin(2 * x / 3) / mp.asin(mp.mpf(2) / 3), 900),
             ("sine", sine_activation(a), lambda x: mp.sinh(a * x) / mp.sinh(a), 120)]
    for _, act, f, n in cases:
        lim = limit(act)
        c0 = f(mp.mpf(1e-30)) / mp.mpf(1e-30)
        rho = [-0.9, -0.2, 0.1, 0.6, 0.97]
        ref = t([float(_mp_koenigs(f, c0, r, n)) for r in rho])
        assert rel_err(koenigs(lim, t(rho)), ref) < 1e-12
        # near rho = 1 the error is the conditioning, ~beta eps / (1 - rho)
        near = 1 - 1e-6
        ref = float(_mp_koenigs(f, c0, mp.mpf(near), n + 40))
        assert float(koenigs(lim, t(near))) == pytest.approx(ref, rel=1e-9)
        assert lim.slope0 == pytest.approx(float(c0), rel=1e-13)


def test_koenigs_near_one_is_a_power_law_with_beta_from_the_formula():
    lim = limit(from_dual([0, 0.5, 0, 0.5]))  # beta = log 2 / log 2 = 1
    rho = 1 - torch.logspace(-6, -9, 13, dtype=F64)
    c = koenigs(lim, rho) * (1 - rho) ** lim.beta
    # h (1 - rho)^beta is nearly constant here, C = 0.6051674 (60-digit iteration: 0.60516283 at
    # 1 - rho = 1e-5, 0.60516697 at 1e-6, then constant up to a log-periodic ripple of ~5e-8)
    assert float(c.max() - c.min()) / float(c.mean()) < 2e-6
    assert float(c.mean()) == pytest.approx(0.6051674, rel=2e-6)


@pytest.mark.parametrize("act", [infnet.activation("erf"), from_dual([0, 0.25, 0.5, 0.25]),
                                 sine_activation(2.67607), sine_activation(6.13539),
                                 sine_activation(13.82585)], ids=lambda a: a.name)
def test_koenigs_near_one_is_log_periodic_times_power(act):
    """In general h(rho) (1 - rho)^beta tends not to a constant but to a function of
    log(1 - rho) with period log f'(1): h(f(rho)) = c0 h(rho), 1 - f(1 - e) = A e (1 + O(e)) and
    A^-beta = c0. The ripple is 5e-8 for rho/2 + rho^3/2 but +-2.5% for sine_a with a = 6.14 and
    +-35% with a = 13.8 (also in 50-digit iteration), so only this periodicity is tested."""
    lim = limit(act)
    A = lim.slope1
    e = t([1e-5, 3e-6, 1e-6, 3e-7])
    c = koenigs(lim, 1 - e) * e**lim.beta
    c_next = koenigs(lim, 1 - e / A) * (e / A) ** lim.beta
    assert float((c_next / c - 1).abs().max()) < 1e-4


# ---- Boettcher -------------------------------------------------------------------------------------
def test_bottcher_of_monomial_duals():
    rho = t([-1.0, -0.9, -0.5, -0.1, 0.0, 0.1, 0.5, 0.9, 0.999, 1.0])
    assert rel_err(bottcher("hermite", rho), rho.abs()) < 1e-14  # k = 2: B = |rho|
    assert rel_err(bottcher(limit("hermite", k=3), rho), rho) < 1e-12  # odd k: B = rho


def test_bottcher_against_mpmath_and_its_functional_equation():
    mp.mp.dps = 50
    p = (0.0, 0.0, 0.3, 0.7)
    act = from_dual(p)
    lim = limit(act)
    assert lim.order == 2
    rho = [-0.95, -0.4, 0.2, 0.6, 0.9]

    def ref(r, n=14):
        x = mp.mpf(r)
        for _ in range(n):
            x = 0.3 * x**2 + 0.7 * x**3
        return float(mp.sign(x) * abs(mp.mpf(0.3) * x) ** (mp.mpf(1) / 2**n))

    b = bottcher(lim, t(rho))
    assert rel_err(b, t([ref(r) for r in rho])) < 1e-12
    assert rel_err(bottcher(lim, act.dual(t(rho))), b**2) < 1e-12
    assert rel_err(limit_kernel(lim, t(rho)), b) == 0


# ---- deep kernels -------------------------------------------------------------------------------
GRID = torch.cat([t([-1.0, -0.999]), torch.linspace(-0.95, 0.95, 20, dtype=F64),
                  t([0.999, 1 - 1e-8, 1.0])])


@pytest.mark.parametrize("act", [from_dual([0, 0.5, 0, 0.5]), optimal_activation(9),
                                 infnet.activation("erf"), infnet.activation("gelu"),
                                 infnet.activation("hermite", k=3), infnet.activation("bilinear"),
                                 infnet.activation("exp"), infnet.activation("rff")],
                         ids=lambda a: a.name)
def test_deep_kernels_match_plain_iteration(act):
    lim = limit(act)
    for depth in (1, 5, 800):
        if depth * math.log(lim.slope1) > math.log(sys.float_info.max):  # NTK(1) = sum_l f'(1)^l overflows
            with pytest.raises(infnet.KernelOverflowError, match="NTK .* overflows.*dual'\\(1\\)"):
                deep_kernels(lim, GRID, depth)
            for method in ("auto", "iterate"):
                with pytest.raises(infnet.KernelOverflowError):
                    deep_kernels(lim, GRID, depth, method=method)
            S = deep_dual(lim, GRID, depth)
            assert rel_err(S, deep_dual(lim, GRID, depth, method="iterate")) < 1e-10
            return
        S, K = deep_kernels(lim, GRID, depth)
        S0, K0 = deep_kernels(lim, GRID, depth, method="iterate")
        assert rel_err(S, S0) < 1e-10 and rel_err(K, K0) < 1e-10, (depth, lim.kind)
    assert torch.equal(deep_dual(lim, GRID, 800), S) and torch.equal(deep_ntk(lim, GRID, 800), K)


def test_deep_relu_is_plain_iteration_and_step_nngp():
    """Below MARGINAL_DEPTH the marginal class is plain iteration; beyond it the tables in
    log(theta) (infnet.depth.marginal) are checked against 40-digit iteration of the ReLU dual, where
    float iteration itself is off by ~3e-10 at rho = 1 - 1e-8."""
    depth = MARGINAL_DEPTH - 1
    for name in ("relu", "step"):
        lim = limit(name)
        S = deep_dual(lim, GRID, depth)
        assert rel_err(S, deep_dual(lim, GRID, depth, method="iterate")) < 1e-12
    S, K = deep_kernels("relu", GRID[2:-1], depth)
    assert rel_err(K, deep_kernels("relu", GRID[2:-1], depth, method="iterate")[1]) < 1e-12
    pi = mp.pi

    def f(s):
        th = mp.acos(s)
        return (mp.sin(th) + (pi - th) * s) / pi

    def df(s):
        return (pi - mp.acos(s)) / pi

    rho = GRID[2:]
    for L in (300, 3000):
        S, K = deep_kernels("relu", rho, L)
        with mp.workdps(40):
            ref = torch.tensor([_mp_deep(f, df, float(r), L) for r in rho], dtype=F64)
        assert rel_err(S, ref[:, 0]) < 1e-14, L
        assert rel_err(K, ref[:, 1]) < 3e-11, L


def _mp_deep(f, df, r, depth):
    s = k = mp.mpf(r)
    for _ in range(depth):
        s, k = f(s), f(s) + k * df(s)
    return s, k


def test_deep_kernels_against_mpmath_at_depth_1000():
    """The Koenigs jump (singular) and the stationary jump (majority) against 40-digit layers."""
    mp.mp.dps = 40
    a = 2.67607
    sa = mp.sinh(a)
    cases = [(from_dual([0, 0.5, 0, 0.5]), lambda x: x / 2 + x**3 / 2, lambda x: 0.5 + 1.5 * x**2),
             (sine_activation(a), lambda x: mp.sinh(a * x) / sa, lambda x: a * mp.cosh(a * x) / sa),
             (from_dual([0.2, 0.3, 0.5]), lambda x: 0.2 + 0.3 * x + 0.5 * x**2,
              lambda x: 0.3 + x)]
    rho = [-0.8, -0.3, 0.2, 0.7, 0.99]
    for act, f, df in cases:
        lim = limit(act)
        for depth in (40, 1000):
            S, K = deep_kernels(lim, t(rho), depth)
            ref = [_mp_deep(f, df, r, depth) for r in rho]
            assert rel_err(S, t([float(s) for s, _ in ref])) < 1e-11, (act.name, depth)
            assert rel_err(K, t([float(k) for _, k in ref])) < 1e-11, (act.name, depth)


def test_deep_kernels_do_not_grow_with_depth():
    lim = limit(from_dual([0, 0.5, 0, 0.5]))
    rho = torch.linspace(-0.99, 0.99, 101, dtype=F64)
    h = koenigs(lim, rho)
    start = time.perf_counter()
    for depth in (10**4, 10**5, 10**6):
        S, K = deep_kernels(lim, rho, depth)
    assert time.perf_counter() - start < 5.0
    S = deep_dual(lim, rho, 1000)  # 2^-1000 h(rho): still a normal float
    assert rel_err(S, h * 2.0**-1000) < 1e-12
    assert torch.equal(deep_dual(lim, rho, 10**6), torch.zeros_like(rho))  # underflow
    gelu = limit("gelu")
    S, K = deep_kernels(gelu, rho, 10**6)
    lam = gelu.fixed_point_slope
    assert torch.allclose(S, torch.full_like(S, gelu.fixed_point), rtol=1e-14, atol=0)
    # K -> rho* / (1 - f'(rho*))
    assert torch.allclose(K, torch.full_like(K, gelu.fixed_point / (1 - lam)), rtol=1e-12, atol=0)


@pytest.mark.slow
def test_deep_kernels_match_plain_iteration_at_depth_10000():
    """At depth 1e4 the NNGP matches plain iteration; the NTK of these duals (f'(1) > 1) has left
    float64 there (it grows like f'(1)^L), which is an error, not inf."""
    for act in (from_dual([0, 0.25, 0.5, 0.25]), infnet.activation("erf"),
                infnet.activation("gelu"), infnet.activation("hermite", k=2)):
        S = deep_dual(act, GRID, 10**4)
        S0 = deep_dual(act, GRID, 10**4, method="iterate")
        assert rel_err(S, S0) < 1e-10, act.name
        A = limit(act).slope1  # NTK(1) ~ A^L / (A - 1)
        if 10**4 * math.log(A) - math.log(A - 1) > math.log(sys.float_info.max) + 1:
            with pytest.raises(infnet.KernelOverflowError, match="overflows"):
                deep_kernels(act, GRID, 10**4)
        else:  # gelu: 1.072^1e4 = 1.8e302
            K = deep_kernels(act, GRID, 10**4)[1]
            assert rel_err(K, deep_kernels(act, GRID, 10**4, method="iterate")[1]) < 1e-10
        S, K = deep_kernels(act, GRID, 600)
        S0, K0 = deep_kernels(act, GRID, 600, method="iterate")
        assert rel_err(S, S0) < 1e-10 and rel_err(K, K0) < 1e-10, act.name


def test_limit_kernel_per_class():
    rho = t([-0.5, 0.2, 0.9, 1.0])
    assert torch.equal(limit_kernel("erf", rho), koenigs("erf", rho))
    assert torch.equal(limit_kernel("relu", rho), torch.ones(4, dtype=F64))
    gelu = limit("gelu")
    assert torch.equal(limit_kernel(gelu, rho), t([gelu.fixed_point] * 3 + [1.0]))
    assert rel_err(limit_kernel("hermite", rho), rho.abs()) < 1e-14
