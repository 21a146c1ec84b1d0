"""infnet's kernels against an independent reference (docs/theory/numerical-duals.md#reference-quadrature).

The reference computes E[f(u) g(v)], (u, v) ~ N(0, [[q1, c], [c, q2]]), by conditioning:
u = sqrt(q1) z1 and v | u ~ N(c u / q1, q2 - c^2 / q1), so

    E[f(u) g(v)] = int phi(z1) f(sqrt(q1) z1) [ int phi(z2) g(m(z1) + sd z2) dz2 ] dz1,

two nested adaptive ``scipy.integrate.quad`` calls split at the kinks (rho = +-1, a degenerate
conditional, is a single 1-D integral). Nothing here uses infnet's quadrature: the library only
supplies phi itself (its torch function); phi' is written out below, by hand, from the formula.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction

import pytest
import torch
from scipy import integrate

import infnet

TOL = 1e-12
#: truncation of the standard normal variables: phi(12) ~ 5e-32
Z_MAX = 12.0
QUAD = {"epsabs": 1e-14, "epsrel": 1e-13, "limit": 200}
INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


# ---- the reference ---------------------------------------------------------------------------
def _quad(h: Callable[[float], float], lo: float, hi: float, points) -> float:
    """int_lo^hi h, adaptive Gauss-Kronrod on each piece between the break points."""
    edges = [lo, *sorted({p for p in points if lo < p < hi}), hi]
    return math.fsum(integrate.quad(h, a, b, **QUAD)[0] for a, b in itertools.pairwise(edges))


def _normal(z: float) -> float:
    return INV_SQRT_2PI * math.exp(-0.5 * z * z)


def exact_det(q1: float, q2: float, c: float) -> float:
    """q1 q2 - c^2 of the given floats, without cancellation (the reference's truth)."""
    return float(Fraction(q1) * Fraction(q2) - Fraction(c) ** 2)


def _near(kinks, width: float):
    """The kinks, and for a kink smoothed on the scale ``width`` points across that layer."""
    if not width:
        return list(kinks)
    return [k + j * width for k in kinks for j in (-30, -10, -3, -1, 0, 1, 3, 10, 30)]


def reference_expectation(f, g, q1: float, q2: float, c: float, kinks_f=(), kinks_g=(),
                          width: float = 0.0) -> float:
    """E[f(u) g(v)] by conditioning on u; f, g scalar functions, kinks where they are not smooth
    (or, with ``width``, where they bend on that small scale: quad must be told where to look)."""
    s1, s2 = math.sqrt(q1), math.sqrt(q2)
    pf, pg = _near(kinks_f, width), _near(kinks_g, width)
    det = exact_det(q1, q2, c)
    if det <= 0.0:  # rho = +-1: v = sign(c) sqrt(q2 / q1) u
        sgn = math.copysign(1.0, c)
        pts = [k / s1 for k in pf] + [sgn * k / s2 for k in pg]
        return _quad(lambda z: _normal(z) * f(s1 * z) * g(sgn * s2 * z), -Z_MAX, Z_MAX, pts)
    sd = math.sqrt(det / q1)  # conditional standard deviation of v
    slope = c / s1  # conditional mean of v is slope * z1

    def inner(z1: float) -> float:
        m = slope * z1
        return _quad(lambda z2: _normal(z2) * g(m + sd * z2), -Z_MAX, Z_MAX,
                     [(k - m) / sd for k in pg])

    pts = [k / s1 for k in pf]
    if slope != 0.0:
        # inner(z1) changes on the scale sd / |slope| around the z1 where the mean crosses a kink
        # of g; near rho = 1 that scale is tiny, so tell quad where to look.
        pts += [k / slope for k in _near(pg, sd)]
    return _quad(lambda z1: _normal(z1) * f(s1 * z1) * inner(z1), -Z_MAX, Z_MAX, pts)


# ---- activations: phi from the library's torch function, phi' and kinks written here --------
def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def _softplus(x: float) -> float:
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


def _d_gelu(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0))) + x * _normal(x)


def _d_swish(x: float, beta: float) -> float:
    s = _sigmoid(beta * x)
    return s + beta * x * s * (1.0 - s)


def _d_mish(x: float) -> float:
    t = math.tanh(_softplus(x))
    return t + x * (1.0 - t * t) * _sigmoid(x)


def _d_hardswish(x: float) -> float:
    return 0.0 if x <= -3.0 else 1.0 if x >= 3.0 else (2.0 * x + 3.0) / 6.0


def _d_sau(x: float, alpha: float, n: float) -> float:
    return alpha + (1.0 - alpha) * 0.5 * (1.0 + math.erf(n * x / math.sqrt(2.0)))


@dataclass(frozen=True)
class Case:
    name: str
    params: dict = field(default_factory=dict)
    #: phi'(x, **params); None for step (a Dirac mass, handled separately)
    dphi: Callable[..., float] | None = None
    kinks: Callable[..., tuple[float, ...]] = lambda **_: ()
    closed_form: bool = False  # the catalog has one, so also test numerical_kernel
    #: width of a smoothed kink (SAU): the reference places break points across it
    width: Callable[..., float] = lambda **_: 0.0
    slow: bool = False  # its reference is costly (~20-30 s a point): COSTLY_POINTS only

    @property
    def id(self) -> str:
        args = ",".join(f"{k}={v}" for k, v in self.params.items())
        return f"{self.name}({args})" if args else self.name

    def activation(self) -> infnet.Activation:
        return infnet.activation(self.name, **self.params)


def _zero(**_):
    return (0.0,)


CASES = [
    Case("relu", dphi=lambda x: float(x > 0), kinks=_zero, closed_form=True),
    Case("step", dphi=None, kinks=_zero, closed_form=True),
    Case("leaky_relu", dphi=lambda x, alpha: 1.0 if x > 0 else alpha, kinks=_zero,
         closed_form=True),
    Case("leaky_relu", {"alpha": 0.2}, dphi=lambda x, alpha: 1.0 if x > 0 else alpha,
         kinks=_zero, closed_form=True),
    Case("abs", dphi=lambda x: math.copysign(1.0, x), kinks=_zero, closed_form=True),
    Case("hardtanh", dphi=lambda x, min_val, max_val: float(min_val < x < max_val),
         kinks=lambda min_val, max_val: (min_val, max_val)),
    Case("hardtanh", {"min_val": -0.5, "max_val": 2.0},
         dphi=lambda x, min_val, max_val: float(min_val < x < max_val),
         kinks=lambda min_val, max_val: (min_val, max_val)),
    Case("gelu", dphi=_d_gelu, closed_form=True),
    Case("swish", dphi=_d_swish),
    Case("swish", {"beta": 1.7}, dphi=_d_swish),
    Case("tanh", dphi=lambda x: 1.0 - math.tanh(x) ** 2),
    Case("elu", dphi=lambda x, alpha: 1.0 if x > 0 else alpha * math.exp(x), kinks=_zero),
    Case("elu", {"alpha": 0.5}, dphi=lambda x, alpha: 1.0 if x > 0 else alpha * math.exp(x),
         kinks=_zero),
    Case("selu", dphi=lambda x, scale, alpha: scale * (1.0 if x > 0 else alpha * math.exp(x)),
         kinks=_zero),
    Case("softplus", dphi=lambda x, beta: _sigmoid(beta * x)),
    Case("softplus", {"beta": 2.5}, dphi=lambda x, beta: _sigmoid(beta * x)),
    Case("snake", dphi=lambda x, a: 1.0 + math.sin(2.0 * a * x), closed_form=True),
    Case("snake", {"a": 0.5}, dphi=lambda x, a: 1.0 + math.sin(2.0 * a * x), closed_form=True),
    Case("sigmoid", dphi=lambda x: _sigmoid(x) * (1.0 - _sigmoid(x))),
    Case("mish", dphi=_d_mish),
    Case("relu6", dphi=lambda x: float(0.0 < x < 6.0), kinks=lambda: (0.0, 6.0)),
    Case("hardswish", dphi=_d_hardswish, kinks=lambda: (-3.0, 3.0)),
    Case("celu", dphi=lambda x, alpha: 1.0 if x > 0 else math.exp(x / alpha), kinks=_zero),
    Case("celu", {"alpha": 2.0}, dphi=lambda x, alpha: 1.0 if x > 0 else math.exp(x / alpha),
         kinks=_zero),
    # leaky ReLU smoothed on the scale 1/n = 5e-5: for the reference a kink at 0. Its
    # numerical_kernel cannot resolve that scale (test_closed_forms covers it), hence no
    # closed_form=True here.
    Case("sau", dphi=_d_sau, kinks=_zero, width=lambda alpha, n: 1.0 / n, slow=True),
]
CASE_BY_ID = {case.id: case for case in CASES}

# (q1, q2, rho). At rho = +-1, q1 q2 is a perfect square so c = rho sqrt(q1 q2) is exact.
FAST_POINTS = [
    (0.5, 2.0, -0.7),
    (1.0, 1.0, 1.0 - 1e-9),
    (2.0, 0.5, 1.0),
]
SLOW_POINTS = [
    (1.0, 1.0, 0.0),
    (0.8, 2.5, 0.3),
    (1.0, 1.0, 0.5),
    (2.0, 0.3, 0.999),
    (3.0, 3.0, -0.999),
    (0.7, 1.9, 1.0 - 1e-9),
    (0.1, 0.4, 0.9),
    (0.25, 4.0, -1.0),
    (2.25, 1.0, 1.0),
]


def _c(q1: float, q2: float, rho: float) -> float:
    return rho * math.sqrt(q1 * q2)


def _scalar(act: infnet.Activation) -> Callable[[float], float]:
    """phi on a float through the library's torch function (one reused 0-d tensor: 2x faster)."""
    buf = torch.empty((), dtype=torch.float64)

    def phi(x: float) -> float:
        buf.fill_(x)
        return act(buf).item()
    return phi


@functools.cache
def reference(case_id: str, q1: float, q2: float, rho: float) -> tuple[float, float | None]:
    """(K, Kdot) of a case at a point by the nested-quad reference (Kdot None for step)."""
    case = CASE_BY_ID[case_id]
    act = case.activation()
    params = dict(act.params)  # the catalog's defaults: the formulas below need all of them
    kinks = tuple(case.kinks(**params))
    c = _c(q1, q2, rho)
    phi = _scalar(act)
    width = case.width(**params)
    K = reference_expectation(phi, phi, q1, q2, c, kinks, kinks, width)
    if case.dphi is None:
        return K, None
    dphi = functools.partial(case.dphi, **params)
    return K, reference_expectation(dphi, dphi, q1, q2, c, kinks, kinks, width)


def _params(cases, points, marks=()):
    return [pytest.param(case.id, *pt, id=f"{case.id}-{pt[0]}-{pt[1]}-{pt[2]!r}", marks=marks)
            for case in cases for pt in points]


# fast subset: every activation with its default parameters at FAST_POINTS; the rest is slow
_DEFAULTS = [case for case in CASES if not case.params and not case.slow]
_VARIANTS = [case for case in CASES if case.params or case.slow]
#: costly references (SAU, ~30 s a point) at the regimes FAST_POINTS leaves out: independent
#: inputs, a near-parallel and a near-antiparallel pair of unequal variances
COSTLY_POINTS = [(1.0, 1.0, 0.0), (2.0, 0.3, 0.999), (3.0, 3.0, -0.999)]
_CHEAP = [case for case in CASES if not case.slow]
ALL = (_params(_DEFAULTS, FAST_POINTS) + _params(_VARIANTS, FAST_POINTS, marks=pytest.mark.slow)
       + _params(_CHEAP, SLOW_POINTS, marks=pytest.mark.slow)
       + _params([case for case in CASES if case.slow], COSTLY_POINTS, marks=pytest.mark.slow))


def _assert_close(*checks):
    """Each check is (got, reference, label); all are compared before failing, so that a report
    shows K and Kdot together."""
    bad = [f"{what}: got {float(got)!r}, reference {want!r}, diff {float(got) - want:.3e}"
           for got, want, what in checks if not abs(float(got) - want) <= TOL]
    assert not bad, "; ".join(bad)


@pytest.mark.parametrize(("case_id", "q1", "q2", "rho"), ALL)
def test_kernel_matches_reference(case_id, q1, q2, rho):
    case = CASE_BY_ID[case_id]
    act = case.activation()
    K_ref, Kdot_ref = reference(case_id, q1, q2, rho)
    c = _c(q1, q2, rho)
    if case.dphi is None:  # step: K from the closed form (kernel() refuses rho = +-1 by design)
        K = act.closed_form(*(torch.tensor(t, dtype=torch.float64) for t in (q1, q2, c)),
                            **act.params)[0]
        checks = [(K, K_ref, f"{case_id} K")]
        if abs(rho) < 1:
            checks.append((act.kernel(q1, q2, c)[0], K_ref, f"{case_id} kernel K"))
        _assert_close(*checks)
        return
    K, Kdot = act.kernel(q1, q2, c)
    _assert_close((K, K_ref, f"{case_id} K"), (Kdot, Kdot_ref, f"{case_id} Kdot"))


NUMERICAL = [p for p in ALL if CASE_BY_ID[p.values[0]].closed_form
             and CASE_BY_ID[p.values[0]].dphi is not None]


@pytest.mark.parametrize(("case_id", "q1", "q2", "rho"), NUMERICAL)
def test_numerical_kernel_matches_reference(case_id, q1, q2, rho):
    """The quadrature on entries that also have a closed form (it must not lean on it)."""
    act = CASE_BY_ID[case_id].activation()
    K_ref, Kdot_ref = reference(case_id, q1, q2, rho)
    K, Kdot = act.numerical_kernel(q1, q2, _c(q1, q2, rho))
    _assert_close((K, K_ref, f"{case_id} numerical K"),
                  (Kdot, Kdot_ref, f"{case_id} numerical Kdot"))


@pytest.mark.parametrize(("q1", "q2", "rho"), [(1.0, 1.0, 0.5), (0.5, 2.0, -0.7),
                                               (2.0, 0.3, 0.999), (0.7, 1.9, 1.0 - 1e-9)])
def test_step_kdot_is_the_density_at_the_origin(q1, q2, rho):
    """phi' = delta for step: Kdot = E[delta(u) delta(v)] = p_u(0) p_(v|u=0)(0), by conditioning."""
    c = _c(q1, q2, rho)
    sd2 = exact_det(q1, q2, c) / q1
    want = 1.0 / math.sqrt(2 * math.pi * q1) / math.sqrt(2 * math.pi * sd2)
    got = float(infnet.activation("step").kernel(q1, q2, c)[1])
    # Kdot ~ 1/sqrt(det) is as ill-conditioned as q1 q2 - c^2 is in floating point: relative
    # tolerance 1e-12 plus the rounding of that difference.
    tol = 1e-12 + 4 * 2.0**-52 * q1 * q2 / (q1 * q2 - c * c)
    assert abs(got - want) <= tol * want, f"step Kdot: got {got!r}, want {want!r}"


@pytest.mark.parametrize("case", [c for c in CASES if c.dphi is not None], ids=lambda c: c.id)
def test_handwritten_derivative_matches_autograd(case):
    """Guards the reference itself: phi' written above is the derivative of the library's phi."""
    act = case.activation()
    params = dict(act.params)
    kinks = case.kinks(**params)
    xs = [x for x in torch.linspace(-7.3, 7.1, 97, dtype=torch.float64).tolist()
          if all(abs(x - k) > 1e-3 for k in kinks)]
    x = torch.tensor(xs, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(act(x).sum(), x)
    want = torch.tensor([case.dphi(v, **params) for v in xs], dtype=torch.float64)
    # atol, not rtol: torch.softplus switches to x above beta x = 20, off by 2e-9 there
    torch.testing.assert_close(grad, want, rtol=0.0, atol=1e-8)


def test_reference_on_known_integrals():
    """The reference itself on moments with exact values (Isserlis) and the arc-cosine kernel."""
    q1, q2 = 0.7, 1.9
    for rho in (-1.0, -0.3, 0.0, 0.8, 1.0 - 1e-9):
        c = _c(q1, q2, rho) if abs(rho) < 1 else -math.sqrt(0.7 * 1.9)
        got = reference_expectation(lambda x: x * x, lambda x: x * x, q1, q2, c)
        assert abs(got - (2 * c * c + q1 * q2)) <= 1e-13
    # P(u > 0, v > 0) = (pi - theta) / (2 pi), near rho = 1 where the conditional is narrow
    for rho in (0.5, 0.999, 1.0 - 1e-9):
        c = _c(q1, q2, rho)
        theta = math.atan2(math.sqrt(exact_det(q1, q2, c)), c)
        step = lambda x: float(x > 0)  # noqa: E731
        got = reference_expectation(step, step, q1, q2, c, (0.0,), (0.0,))
        assert abs(got - (math.pi - theta) / (2 * math.pi)) <= 1e-14
