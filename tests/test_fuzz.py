"""Property-based fuzzing of the public API (hypothesis): random shapes, scales from 1e-300 to
1e300, NaN and inf placed at random, duplicate and near-duplicate rows, parameters inside and
outside their ranges.

The property, for every call: either a finite result that agrees with an independent evaluation
(a 40-digit mpmath recursion of the closed-form kernels, the quadrature against the closed form,
a dense solve, a brute-force Jacobian), or one of infnet's documented exceptions with a message;
never NaN, never an internal exception type.

The default run is short; the ``slow`` part runs many more examples (CI runs both). For a long
local run: ``INFNET_FUZZ_EXAMPLES=10000 python -m pytest tests/test_fuzz.py``.
"""

from __future__ import annotations

import math
import os
import warnings

import mpmath as mp
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import infnet
from infnet import predict as P

F64 = torch.float64
LONG = int(os.environ.get("INFNET_FUZZ_EXAMPLES", "0"))


def examples(n: int) -> settings:
    return settings(max_examples=LONG or n, deadline=None, derandomize=not LONG,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


def documented(err: BaseException) -> bool:
    """infnet's own exception types, or the plain ones it raises with its messages."""
    return (type(err) in (ValueError, TypeError, NotImplementedError, FloatingPointError)
            or type(err).__module__.startswith("infnet")) and len(str(err)) > 20


def outcome(fn):
    """(value, None) or (None, a documented exception); anything else fails the test."""
    try:
        return fn(), None
    except Exception as err:  # noqa: BLE001 - the property is about which exceptions
        assert documented(err), f"undocumented {type(err).__name__}: {err}"
        return None, err


# ---- data ---------------------------------------------------------------------------------------
@st.composite
def data(draw, max_rows=6, max_features=5):
    """Rows with duplicates, near-duplicates (relative 1e-9), zero rows, a common scale
    10^k (k in [-300, 300]) and, sometimes, one NaN or inf."""
    n = draw(st.integers(1, max_rows))
    d = draw(st.integers(1, max_features))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    for i in range(1, n):
        kind = draw(st.sampled_from(["plain", "plain", "duplicate", "near", "zero"]))
        j = draw(st.integers(0, i - 1))
        if kind == "duplicate":
            x[i] = x[j]
        elif kind == "near":
            x[i] = x[j] * (1 + 1e-9 * rng.normal(size=d))
        elif kind == "zero":
            x[i] = 0.0
    x = x * 10.0 ** draw(st.sampled_from([-300, -150, -20, -3, 0, 0, 0, 1, 3, 20, 150, 300]))
    if draw(st.integers(0, 9)) == 0:
        x[draw(st.integers(0, n - 1)), draw(st.integers(0, d - 1))] = draw(
            st.sampled_from([math.nan, math.inf, -math.inf]))
    return x


STD = st.one_of(st.sampled_from([0.0, 0.5, 1.0, 2**0.5, 2.0]),
                st.floats(-1.0, 1e3),
                st.sampled_from([1e200, math.nan, -0.5]))


# ---- reference: the recursion of closed-form kernels at 40 digits -------------------------------
def _angle(q1, q2, c):
    r = mp.sqrt(q1 * q2)
    return mp.acos(max(-1, min(1, c / r))) if r > 0 else mp.pi / 2


def mp_unit(name, q1, q2, c):
    if name in ("relu", "abs", "leaky_relu", "identity"):
        a, b = {"relu": (0, 1), "abs": (-1, 1), "leaky_relu": (mp.mpf("0.01"), 1),
                "identity": (1, 1)}[name]
        th = _angle(q1, q2, c)
        kdot = (a * a + b * b) / 2 - (a - b) ** 2 * th / (2 * mp.pi)
        k = (a - b) ** 2 / (2 * mp.pi) * mp.sqrt(max(q1 * q2 - c * c, 0)) + kdot * c
        return k, kdot
    if name == "erf":  # (1 + 2 q1)(1 + 2 q2) - 4 c^2, expanded so that 40 digits suffice
        det = 1 + 2 * (q1 + q2) + 4 * max(q1 * q2 - c * c, 0)
        return 2 / mp.pi * mp.atan2(2 * c, mp.sqrt(det)), 4 / mp.pi / mp.sqrt(det)
    if name == "sin":  # (e^(c - S/2) -+ e^(-c - S/2)) / 2, S = q1 + q2, without cancellation
        s = mp.exp(-(q1 + q2) / 2)
        return s * mp.sinh(c), s * mp.cosh(c)
    raise KeyError(name)


def mp_fc(name, x, depth, w, b):
    """NNGP and NTK of fc(name, depth, w_std=w, b_std=b) on the rows of x, at 40 digits and
    more until two precisions agree to 1e-14 (near-parallel rows of large norm with a bias
    cancel 40 digits and more in q1 q2 - c^2)."""
    prev = None
    for dps in (40, 80, 160, 320, 700):
        cur = _mp_fc(name, x, depth, w, b, dps)
        if prev is not None and all(np.allclose(a, p, rtol=1e-14, atol=0, equal_nan=True)
                                    for a, p in zip(cur, prev, strict=True)):
            return cur
        prev = cur
    return cur


def _mp_fc(name, x, depth, w, b, dps):
    with mp.workdps(dps):
        rows = [[mp.mpf(float(v)) for v in r] for r in x]
        d = len(rows[0])
        w2, b2 = mp.mpf(w) ** 2, mp.mpf(b) ** 2
        n = len(rows)
        sig = [[w2 * mp.fsum(p * q for p, q in zip(rows[i], rows[j], strict=True)) / d + b2
                for j in range(n)] for i in range(n)]
        ntk = [row[:] for row in sig]
        for _ in range(depth):
            new_s, new_t = [[0] * n for _ in range(n)], [[0] * n for _ in range(n)]
            for i in range(n):
                for j in range(n):
                    k, kdot = mp_unit(name, sig[i][i], sig[j][j], sig[i][j])
                    new_s[i][j] = w2 * k + b2
                    new_t[i][j] = w2 * kdot * ntk[i][j] + new_s[i][j]
            sig, ntk = new_s, new_t
        return (np.array([[float(v) for v in r] for r in sig]),
                np.array([[float(v) for v in r] for r in ntk]))


def assert_close_kernel(got: torch.Tensor, ref: np.ndarray, rtol: float):
    """Entry (i, j) within rtol of sqrt(K_ii K_jj) (the scale a kernel entry is measured on)."""
    got = got.numpy()
    assert np.isfinite(got).all()
    diag = np.sqrt(np.abs(np.diag(ref)))
    scale = np.maximum(np.outer(diag, diag), 1e-290)
    bad = np.abs(got - ref) > rtol * scale
    assert not bad.any(), (got[bad], ref[bad])


FC_UNITS = ["relu", "abs", "leaky_relu", "identity", "erf", "sin"]


def _fc_property(name, x, depth, w, b):
    net, err = outcome(lambda: infnet.fc(name, depth, w_std=w, b_std=b))
    if err is not None:
        assert not all(v == 0 or (math.isfinite(v) and 1e-150 < v < 1e150) for v in (w, b))
        return
    k, err = outcome(lambda: net.kernel(torch.from_numpy(x)))
    if err is not None:
        return
    with np.errstate(all="ignore"):
        ref_s, ref_t = mp_fc(name, x, depth, w, b)
    assume(np.isfinite(ref_s).all() and np.isfinite(ref_t).all())
    # sin's kernels go like exp(c - q): float64 holds the first covariance c to eps q, which
    # each layer turns into a relative error of that size (its condition; the others' is ~1)
    q0 = (w * w * float((x * x).sum(1).max()) / x.shape[1] + b * b) if name == "sin" else 0.0
    rtol = 1e-10 + 100 * 2.0**-52 * q0 * max(1.0, w * w) ** depth
    assert_close_kernel(k.nngp, ref_s, rtol)
    assert_close_kernel(k.ntk, ref_t, rtol)


@examples(60)
@given(name=st.sampled_from(FC_UNITS), x=data(), depth=st.integers(1, 3), w=STD, b=STD)
def test_fc_kernel_is_exact_or_a_documented_error(name, x, depth, w, b):
    _fc_property(name, x, depth, w, b)


@pytest.mark.slow
@examples(1500)
@given(name=st.sampled_from(FC_UNITS), x=data(), depth=st.integers(1, 4), w=STD, b=STD)
def test_fc_kernel_fuzz_long(name, x, depth, w, b):
    _fc_property(name, x, depth, w, b)


# ---- kernel maps: the quadrature against the closed form ----------------------------------------
MOMENT = st.one_of(st.sampled_from([0.0, 1e-300, 1e-20, 1e-3, 1.0, 7.5, 1e3, 1e20, 1e300]),
                   st.floats(0, 50), st.sampled_from([math.nan, math.inf, -1.0]))
CLOSED = ["relu", "erf", "gelu", "sin", "leaky_relu", "abs", "snake", "identity", "cos"]


def _map_property(name, q1, q2, rho):
    act = infnet.activation(name)
    c = rho * math.sqrt(q1 * q2) if math.isfinite(q1 * q2) and q1 * q2 >= 0 else rho
    closed, err = outcome(lambda: act.kernel(q1, q2, c))
    if err is not None:
        return
    assert all(math.isfinite(float(v)) for v in closed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", infnet.QuadratureWarning)
        quad, err = outcome(lambda: act.numerical_kernel(q1, q2, c))
    if err is not None:
        return
    # the documented contract: silent means 1e-9 or better here, a QuadratureWarning means the
    # largest node counts reached only 1e-11..1e-8 (e.g. snake's sin^2 at a variance of 1e20)
    warned = any(issubclass(w.category, infnet.QuadratureWarning) for w in caught)
    tol = 1e-8 if warned else 1e-9
    # an entry is measured on the scale sqrt(K(q1, q1, q1) K(q2, q2, q2)) (Cauchy-Schwarz)
    diagonal, err = outcome(lambda: (act.kernel(q1, q1, q1), act.kernel(q2, q2, q2)))
    if err is not None:
        return
    scales = [math.sqrt(abs(float(a)) * abs(float(b))) for a, b in zip(*diagonal, strict=True)]
    for which, a, b, size in zip(("K", "Kdot"), closed, quad, scales, strict=True):
        scale = max(1.0, abs(float(b)), size)
        if which == "Kdot" and 0.0 in act.kinks and (abs(abs(rho) - 1) < 1e-6 or q1 * q2 == 0):
            continue  # Kdot of a kink at 0: linear in theta (c alone does not hold it near
            # rho = +-1), phi'(0) a matter of convention at a zero variance
        assert abs(float(a) - float(b)) <= tol * scale, (name, which, q1, q2, rho, a, b, warned)


@examples(80)
@given(name=st.sampled_from(CLOSED), q1=MOMENT, q2=MOMENT,
       rho=st.one_of(st.floats(-1, 1), st.sampled_from([-1.0, 1.0, 1 - 1e-12, 1.0000001, 2.0])))
def test_kernel_map_is_its_closed_form_or_a_documented_error(name, q1, q2, rho):
    _map_property(name, q1, q2, rho)


@pytest.mark.slow
@examples(1500)
@given(name=st.sampled_from(CLOSED), q1=MOMENT, q2=MOMENT,
       rho=st.one_of(st.floats(-1, 1), st.sampled_from([-1.0, 1.0, 1 - 1e-12, 1.0000001, 2.0])))
def test_kernel_map_fuzz_long(name, q1, q2, rho):
    _map_property(name, q1, q2, rho)


# ---- deep kernels -------------------------------------------------------------------------------
def mp_relu_dual(rho):
    return (mp.sqrt(1 - rho * rho) + (mp.pi - mp.acos(rho)) * rho) / mp.pi, \
        (mp.pi - mp.acos(rho)) / mp.pi


def mp_erf_dual(rho):
    a = mp.asin(mp.mpf(2) / 3)
    return mp.asin(2 * rho / 3) / a, 2 / (3 * a * mp.sqrt(1 - 4 * rho * rho / 9))


@examples(60)
@given(name=st.sampled_from(["relu", "erf"]),
       rho=st.one_of(st.floats(-1, 1), st.sampled_from([-1.0, 1.0, 1 - 1e-15, -1 + 1e-15, 0.0])),
       depth=st.one_of(st.integers(1, 40), st.sampled_from([0, -3, 10**6, 10**4])))
def test_deep_kernels_match_a_40_digit_iteration(name, rho, depth):
    out, err = outcome(lambda: infnet.deep_kernels(name, torch.tensor([rho], dtype=F64), depth))
    if err is not None:
        assert depth < 1 or depth > 40
        return
    S, K = (float(v[0]) for v in out)
    assert math.isfinite(S) and math.isfinite(K) and -1 <= S <= 1
    if depth > 40:
        return
    dual = mp_relu_dual if name == "relu" else mp_erf_dual
    with mp.workdps(40):
        s = k = mp.mpf(rho)
        for _ in range(depth):
            f, fd = dual(s)
            s, k = f, f + k * fd
    assert S == pytest.approx(float(s), rel=1e-11, abs=1e-13)
    assert K == pytest.approx(float(k), rel=1e-10, abs=1e-12)


# ---- predictors and estimators -----------------------------------------------------------------
@examples(60)
@given(x=data(max_rows=8), ridge=st.sampled_from([0.0, 1e-8, 1.0, -1.0, math.nan]),
       t=st.sampled_from([math.inf, 1.0, 0.0, -1.0]), seed=st.integers(0, 1000))
def test_gradient_descent_prediction_is_the_dense_solution(x, ridge, t, seed):
    """Kernel regression on an NTK (duplicates make it singular): finite predictions or a
    documented error; with a ridge of the kernel's mean diagonal, the dense float64 solve."""
    assume(np.isfinite(x).all() and 1e-100 < np.abs(x).max() < 1e100)
    net = infnet.fc("relu", 2, w_std=2**0.5, b_std=0.1)
    xt = torch.from_numpy(x)
    k = net.kernel(xt).ntk
    y = torch.from_numpy(np.random.default_rng(seed).normal(size=(x.shape[0], 2)))
    ridge = ridge * float(k.diagonal().mean()) if math.isfinite(ridge) else ridge  # relative
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", P.JitterWarning)
        flow, err = outcome(lambda: P.gradient_descent_mse(k.clone(), y, ridge=ridge))
        if err is not None:
            assert not (ridge >= 0)
            return
        f, err = outcome(lambda: flow.predict(k, t))
    if err is not None:
        assert not (t >= 0)
        return
    assert torch.isfinite(f).all()
    if t == math.inf and ridge == float(k.diagonal().mean()):  # well conditioned: compare
        want = k @ torch.linalg.solve(k + ridge * torch.eye(len(k), dtype=F64), y)
        assert torch.allclose(f, want, rtol=1e-8, atol=1e-8 * float(y.abs().max()))


@examples(25)
@given(x=data(max_rows=8), depth=st.sampled_from([1, 3, math.inf]),
       labels=st.sampled_from(["two", "one", "nan"]))
def test_estimators_fit_and_predict_or_say_why(x, depth, labels):
    n = x.shape[0]
    y = {"two": np.arange(n) % 2, "one": np.zeros(n, dtype=int),
         "nan": np.where(np.arange(n) == 0, np.nan, 1.0)}[labels]
    clf = infnet.NTKClassifier("relu", depth=depth)
    fitted, err = outcome(lambda: clf.fit(x, y))
    if err is not None:
        return
    pred, err = outcome(lambda: fitted.predict(x))
    if err is None:
        assert set(np.unique(pred)) <= set(np.unique(y))
    reg, err = outcome(lambda: infnet.NNGPRegressor("erf", 2, ridge=1e-3).fit(x, y))
    if err is None:
        mean, std = reg.predict(x, return_std=True)
        assert np.isfinite(mean).all() and np.isfinite(std).all()


# ---- empirical NTK ------------------------------------------------------------------------------
@examples(30)
@given(width=st.integers(1, 6), depth=st.integers(1, 3), outputs=st.integers(1, 3),
       act=st.sampled_from([torch.nn.ReLU, torch.nn.Tanh, torch.nn.GELU, torch.nn.Identity]),
       x=data(max_rows=4, max_features=3), method=st.sampled_from(
           ["auto", "jacobian", "ntvp", "structured"]), seed=st.integers(0, 100))
def test_empirical_ntk_is_the_jacobian_product(width, depth, outputs, act, x, method, seed):
    torch.manual_seed(seed)
    d = x.shape[1]
    layers, fan = [], d
    for _ in range(depth):
        layers += [torch.nn.Linear(fan, width), act()]
        fan = width
    model = torch.nn.Sequential(*layers, torch.nn.Linear(fan, outputs)).to(F64)
    xt = torch.from_numpy(x)
    theta, err = outcome(lambda: infnet.empirical_ntk(model, xt, method=method, trace=False))
    if err is not None:
        assert not (np.isfinite(x).all() and np.abs(x).max() < 1e100)
        return
    assert torch.isfinite(theta).all()
    params = dict(model.named_parameters())

    def jac(i):
        out = torch.func.jacrev(lambda p: torch.func.functional_call(model, p, (xt[i:i + 1],))[0])(
            params)
        return torch.cat([v.reshape(outputs, -1) for v in out.values()], dim=1)

    J = [jac(i) for i in range(x.shape[0])]
    want = torch.stack([torch.stack([a @ b.T for b in J]) for a in J])
    scale = float(want.abs().max()) + 1e-300
    assert float((theta - want).abs().max()) <= 1e-9 * scale
