"""infnet.shaping: DKS and TAT transforms phi_hat(x) = gamma (phi(alpha x + beta) + delta).

The targets are re-evaluated independently of the solver: scipy.integrate.quad of the returned
activation's own function against the analytic derivatives of the base (tanh, ELU, ReLU) at the
fitted parameters; the returned activation's kernel from the engine (act.kernel) with finite
differences in c, checked against quad; the leaky-ReLU C map written out from
docs/theory/signal-propagation.md#tat-for-leaky-relu and iterated; and the NNGP of infnet.fc(phi_hat,
depth=L) on inputs with x.x/d = 1.
"""

from __future__ import annotations

import math
import pickle

import pytest
import torch
from scipy.integrate import quad
from scipy.special import ndtr

import infnet
from infnet.propagation.shaping import dks, tat, tat_leaky_relu, transform

F64 = torch.float64
SQRT2PI = math.sqrt(2 * math.pi)
TARGET_TOL = 1e-8


def gauss(f, points=()) -> float:
    pts = sorted(p for p in points if -12 < p < 12)
    return quad(lambda z: f(z) * math.exp(-z * z / 2) / SQRT2PI, -12, 12, points=pts or None,
                epsabs=1e-14, epsrel=1e-12, limit=400)[0]


def fn(act):
    return lambda z: float(act(torch.tensor([z], dtype=F64))[0])


def sech2(y):
    return 1.0 / math.cosh(y) ** 2


def moments(phi_hat, d1, d2=None, points=()):
    """Q(1), Q'(1), C(0), C'(1) [, C''(1)] by quad, with phi_hat from the activation itself and
    its derivatives d1, d2 written out analytically."""
    Q = gauss(lambda z: phi_hat(z) ** 2, points)
    out = {"Q(1)": Q, "Q'(1)": gauss(lambda z: phi_hat(z) * d1(z) * z, points),
           "C(0)": gauss(phi_hat, points) ** 2 / Q, "C'(1)": gauss(lambda z: d1(z) ** 2, points) / Q}
    if d2 is not None:
        out["C''(1)"] = gauss(lambda z: d2(z) ** 2, points) / Q
    return out


def unit_pairs(rhos, d=8):
    """Pairs (e1, rho e1 + sqrt(1 - rho^2) e2) scaled to x.x/d = 1, stacked: rows 2i, 2i + 1."""
    rows = []
    for r in rhos:
        a = torch.zeros(d, dtype=F64)
        b = torch.zeros(d, dtype=F64)
        a[0], b[0], b[1] = 1.0, r, math.sqrt(1 - r * r)
        rows += [a * math.sqrt(d), b * math.sqrt(d)]
    return torch.stack(rows)


def network_c_f(act, depth, rhos):
    k = infnet.fc(act, depth=depth, w_std=1.0, b_std=0.0).kernel(unit_pairs(rhos)).nngp
    return k, [float(k[2 * i, 2 * i + 1]) for i in range(len(rhos))]


# ---- DKS ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("depth,zeta", [(5, 1.5), (20, 3.0)])
def test_dks_tanh_targets_by_quad(depth, zeta):
    s = dks("tanh", depth, zeta=zeta)
    a, b, g, d = (s.params[k] for k in ("alpha", "beta", "gamma", "delta"))
    phi = fn(s.activation)
    assert phi(0.3) == pytest.approx(g * (math.tanh(a * 0.3 + b) + d), rel=1e-15)
    m = moments(phi, lambda z: g * a * sech2(a * z + b))
    assert m["Q(1)"] == pytest.approx(1.0, abs=TARGET_TOL)
    assert m["Q'(1)"] == pytest.approx(1.0, abs=TARGET_TOL)
    assert m["C(0)"] == pytest.approx(0.0, abs=TARGET_TOL)
    assert m["C'(1)"] == pytest.approx(zeta ** (1 / depth), abs=TARGET_TOL)
    assert m["C'(1)"] ** depth == pytest.approx(zeta, abs=1e-8)
    assert s.max_error <= 1e-10


def test_dks_kinked_activation_maps_its_kink():
    """ELU: phi' continuous, phi'' jumps at 0; the kink moves to -beta/alpha."""
    s = dks("elu", 8)
    a, b, g, d = (s.params[k] for k in ("alpha", "beta", "gamma", "delta"))
    kink = -b / a
    assert s.activation.kinks == pytest.approx((kink,), rel=1e-15)

    def d1(z):
        y = a * z + b
        return g * a * (1.0 if y > 0 else math.exp(y))

    m = moments(fn(s.activation), d1, points=[kink])
    for key, target in (("Q(1)", 1.0), ("Q'(1)", 1.0), ("C(0)", 0.0),
                        ("C'(1)", 1.5 ** (1 / 8))):
        assert m[key] == pytest.approx(target, abs=TARGET_TOL), key


def test_dks_relu_needs_q_slope_none():
    """ReLU is positively homogeneous (alpha scales out): Q'(1) = 1 cannot be met as well;
    without it, C'(1) = gamma^2 Phi(beta) (alpha = 1) in closed form."""
    with pytest.raises(ValueError, match="q_slope=None"):
        dks("relu", 5)
    s = dks("relu", 5, q_slope=None)
    b, g = s.params["beta"], s.params["gamma"]
    assert s.params["alpha"] == 1.0
    assert g * g * ndtr(b) == pytest.approx(1.5 ** 0.2, abs=1e-12)
    m = moments(fn(s.activation), lambda z: g * (z + b > 0), points=[-b])
    assert m["Q(1)"] == pytest.approx(1.0, abs=TARGET_TOL)
    assert m["C(0)"] == pytest.approx(0.0, abs=TARGET_TOL)


def test_dks_in_a_network():
    """NNGP of the depth-L network: diagonal 1, C_f(0) = 0, C_f'(1) = zeta (Richardson
    extrapolation of (1 - C_f(1 - e)) / e)."""
    depth = 6
    s = dks("tanh", depth)
    e = 1e-3
    k, (c0, c1, c2) = network_c_f(s.activation, depth, [0.0, 1 - e, 1 - 2 * e])
    assert torch.allclose(k.diagonal(), torch.ones(6, dtype=F64), rtol=0, atol=1e-12)
    assert c0 == pytest.approx(0.0, abs=1e-12)
    slope = 2 * (1 - c1) / e - (1 - c2) / (2 * e)
    assert slope == pytest.approx(1.5, rel=1e-5)


# ---- TAT ---------------------------------------------------------------------------------------
def test_tat_tanh_targets_by_quad():
    depth, tau = 10, 0.3
    s = tat("tanh", depth, tau=tau)
    a, b, g, d = (s.params[k] for k in ("alpha", "beta", "gamma", "delta"))

    def d2(z):
        y = a * z + b
        return g * a * a * (-2 * math.tanh(y) * sech2(y))

    m = moments(fn(s.activation), lambda z: g * a * sech2(a * z + b), d2)
    for key, target in (("Q(1)", 1.0), ("Q'(1)", 1.0), ("C'(1)", 1.0), ("C''(1)", tau / depth)):
        assert m[key] == pytest.approx(target, abs=TARGET_TOL), key
    assert depth * m["C''(1)"] == pytest.approx(tau, abs=1e-8)
    assert a * g < 2  # the stable branch


def test_tat_kernel_engine_and_finite_differences_agree_with_quad():
    """The engine's kernel of phi_hat (polar quadrature): C(0) and C'(c) = Kdot(1, 1, c) / Q(1);
    C''(1) from central differences of C' at c = 1 - h, h (Richardson), against quad."""
    s = tat("softplus", 8)
    act = s.activation
    one = torch.ones((), dtype=F64)
    K0, _ = act.kernel(one, one, torch.zeros((), dtype=F64))
    a, b, g, d = (s.params[k] for k in ("alpha", "beta", "gamma", "delta"))
    sig = lambda y: 1 / (1 + math.exp(-y))  # noqa: E731
    m = moments(fn(act), lambda z: g * a * sig(a * z + b),
                lambda z: g * a * a * sig(a * z + b) * (1 - sig(a * z + b)))
    assert float(K0) == pytest.approx(m["C(0)"], abs=1e-12)

    def cdot(c):
        return float(act.kernel(one, one, torch.tensor(c, dtype=F64))[1])

    h = 1e-2
    fd1 = (cdot(1.0) - cdot(1 - h)) / h
    fd2 = (cdot(1.0) - cdot(1 - 2 * h)) / (2 * h)
    assert 2 * fd1 - fd2 == pytest.approx(m["C''(1)"], rel=1e-4)  # Richardson: O(h^2)
    assert cdot(1.0) == pytest.approx(1.0, abs=TARGET_TOL)
    assert m["C''(1)"] == pytest.approx(0.3 / 8, abs=TARGET_TOL)


def test_tat_in_a_network():
    """C_f(1 - t) = 1 - t + tau t^2 / 2 + O(t^3): slope 1 and curvature tau at c = 1, from the
    network's NNGP at t = e, 2e, 4e (Richardson-extrapolated differences)."""
    depth, tau, e = 8, 0.3, 1e-3
    s = tat("tanh", depth, tau=tau)
    k, (c1, c2, c4) = network_c_f(s.activation, depth, [1 - e, 1 - 2 * e, 1 - 4 * e])
    assert torch.allclose(k.diagonal(), torch.ones(6, dtype=F64), rtol=0, atol=1e-12)
    slope = 2 * (1 - c1) / e - (1 - c2) / (2 * e)
    curv = 2 * (1 - 2 * c1 + c2) / e**2 - (1 - 2 * c2 + c4) / (4 * e**2)
    assert slope == pytest.approx(1.0, abs=1e-5)
    assert curv == pytest.approx(tau, rel=1e-4)


def test_tat_leaky_relu_iterated_closed_form():
    depth, eta = 30, 0.9
    s = tat_leaky_relu(depth, eta=eta)
    a = s.params["negative_slope"]
    assert 0 < a < 1
    assert s.params["gamma"] == pytest.approx(math.sqrt(2 / (1 + a * a)), rel=1e-15)

    def C(c):  # docs/theory/signal-propagation.md#tat-for-leaky-relu, normalized by Q(1) = (1 + a^2) / 2
        return ((1 - a) ** 2 * (math.sqrt(1 - c * c) + (math.pi - math.acos(c)) * c) / math.pi
                + 2 * a * c) / (1 + a * a)

    c = 0.0
    for _ in range(depth):
        c = C(c)
    assert c == pytest.approx(eta, abs=1e-13)
    k, (c0,) = network_c_f(s.activation, depth, [0.0])
    assert torch.allclose(k.diagonal(), torch.ones(2, dtype=F64), rtol=0, atol=1e-13)
    assert c0 == pytest.approx(eta, abs=1e-12)
    assert s.activation.is_closed_form


# ---- errors and the transform ---------------------------------------------------------------------
def test_errors_are_clear():
    with pytest.raises(ValueError, match="deeper network"):
        tat_leaky_relu(3, eta=0.9)
    with pytest.raises(ValueError, match="phi' continuous"):
        tat("relu", 5)
    with pytest.raises(ValueError, match="zeta"):
        dks("tanh", 5, zeta=1.0)
    with pytest.raises(TypeError, match="elementwise"):
        dks("geglu", 5)
    with pytest.raises(ValueError, match="depth"):
        tat("tanh", 0)
    with pytest.raises(ValueError, match="autograd"):  # phi' given without a graph
        tat("mittag_leffler", 5)
    with pytest.raises(ValueError, match="continuous phi"):
        dks("step", 5)


def test_transform_maps_kinks_and_values():
    act = transform("relu6", alpha=2.0, beta=1.0, gamma=0.5, delta=-1.0)
    assert act.kinks == (-0.5, 2.5)
    x = torch.linspace(-3, 3, 12, dtype=F64)  # off the kinks (phi' there follows relu6's own rule)
    assert torch.equal(act(x), 0.5 * ((2 * x + 1).clamp(0, 6) - 1))
    assert torch.equal(act.derivative(x), 0.5 * 2 * ((2 * x + 1 > 0) & (2 * x + 1 < 6)).to(F64))
    # its kernel comes from the engine: E[phi_hat(u) phi_hat(v)] at one point against quad
    K, _ = act.kernel(1.0, 1.0, 1.0)
    assert float(K) == pytest.approx(gauss(lambda z: fn(act)(z) ** 2, [-0.5, 2.5]), abs=1e-13)


def test_shaped_activation_pickles():
    act = dks("tanh", 4).activation
    back = pickle.loads(pickle.dumps(act))
    x = torch.linspace(-2, 2, 5, dtype=F64)
    assert torch.equal(back(x), act(x)) and back.kinks == act.kinks
