"""infnet.propagation and infnet.phase_diagram: length and correlation maps, fixed points, phases,
depth scales, the critical line, the phase diagram and the catalog table.

Independent references: closed forms written out here (ReLU: Q(q) = w^2 q / 2 + b^2, chi_1 = w^2/2;
erf: E[erf(sqrt(q) z)^2] = (2/pi) arcsin(2q / (1 + 2q)), E[erf'^2] = (4/pi) / sqrt(1 + 4q)), solved
with scipy's brentq; tanh's fixed points and critical line from scipy.integrate.quad / dblquad of
tanh and its analytic derivative; depth scales against the decay rate measured by iterating the
maps layer by layer.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from scipy.integrate import dblquad, quad
from scipy.optimize import brentq

import infnet
from infnet.propagation.maps import (
    STATUSES,
    correlation_map,
    length_fixed_points,
    length_map,
    propagation,
    variance_slope,
)
from infnet.propagation.phase_diagram import (
    chi_1_grid,
    critical_weight,
    format_table,
    phase_diagram,
    propagation_table,
)

F64 = torch.float64
SQRT2PI = math.sqrt(2 * math.pi)


def gauss(f, lo=-12.0, hi=12.0) -> float:
    return quad(lambda z: f(z) * math.exp(-z * z / 2) / SQRT2PI, lo, hi, epsabs=1e-15,
                epsrel=1e-13, limit=400)[0]


def sech2(x: float) -> float:
    return 1.0 / math.cosh(x) ** 2


# ---- independent tanh references (scipy quad) -------------------------------------------------------
def tanh_v(q):
    return gauss(lambda z: math.tanh(math.sqrt(q) * z) ** 2)


def tanh_vdot(q):
    return gauss(lambda z: sech2(math.sqrt(q) * z) ** 2)


def tanh_q_star(w2, b2):
    return brentq(lambda q: w2 * tanh_v(q) + b2 - q, b2, w2 + b2, xtol=1e-15, rtol=1e-14)


def tanh_critical_w2(b2):
    return brentq(lambda w2: w2 * tanh_vdot(tanh_q_star(w2, b2)) - 1, 0.5, 6.0, xtol=1e-14,
                  rtol=1e-13)


@pytest.fixture(scope="module")
def tanh_line():
    return {b2: tanh_critical_w2(b2) for b2 in (0.05, 0.3)}


# ---- ReLU: closed forms --------------------------------------------------------------------------
def test_relu_critical_point_is_exact():
    p = propagation("relu", math.sqrt(2), 0.0)
    assert abs(p.chi_1 - 1) <= 4e-16
    assert p.phase == "critical" and p.status == "marginal"
    assert p.xi_c == math.inf and p.xi_q == math.inf
    assert p.q_star == pytest.approx(1.0, abs=1e-15)  # every q is fixed: q0 stays
    assert critical_weight("relu", 0.0) == pytest.approx(math.sqrt(2), rel=1e-14)


@pytest.mark.parametrize("w2,b2", [(1.0, 0.1), (1.5, 0.3), (1.9, 0.05), (0.4, 1.0)])
def test_relu_ordered_closed_form(w2, b2):
    """Q(q) = w^2 q/2 + b^2: q* = b^2 / (1 - w^2/2), chi_1 = chi_c = Q'(q*) = w^2/2, c* = 1."""
    p = propagation("relu", math.sqrt(w2), math.sqrt(b2))
    assert p.q_star == pytest.approx(b2 / (1 - w2 / 2), rel=1e-13)
    assert p.chi_1 == pytest.approx(w2 / 2, rel=1e-14)
    assert p.phase == "ordered" and p.c_star == 1.0
    xi = -1 / math.log(w2 / 2)
    assert p.xi_c == pytest.approx(xi, rel=1e-12) and p.xi_q == pytest.approx(xi, rel=1e-12)


def test_relu_has_no_critical_point_with_bias():
    """chi_1 = w^2/2 = 1 only at w^2 = 2, where Q(q) = q + b^2 has no fixed point for b > 0:
    the critical line of ReLU is the single point (2, 0); for b > 0, q diverges past w^2 = 2."""
    for b in (0.1, 0.5):
        assert critical_weight("relu", b) is None
        assert propagation("relu", math.sqrt(2.05), b).phase == "diverges"
        assert propagation("relu", math.sqrt(1.99), b).chi_1 == pytest.approx(0.995, rel=1e-14)
    p = propagation("relu", math.sqrt(2.5), 0.0)
    assert p.status == "diverges" and p.q_star == math.inf and p.chi_1 is None


# ---- erf: closed form --------------------------------------------------------------------------
def test_erf_catalog_scaling_matches_the_closed_form():
    for q in (0.3, 2.0):
        ref = gauss(lambda z, q=q: math.erf(math.sqrt(q) * z) ** 2)
        assert ref == pytest.approx(2 / math.pi * math.asin(2 * q / (1 + 2 * q)), abs=1e-13)
        assert float(length_map("erf", q)) == pytest.approx(ref, abs=1e-14)


@pytest.mark.parametrize("w2,b2", [(1.0, 0.0), (1.7, 0.2), (3.0, 0.05), (0.5, 0.3)])
def test_erf_fixed_point_and_chi_1(w2, b2):
    def Q(q):
        return w2 * 2 / math.pi * math.asin(2 * q / (1 + 2 * q)) + b2

    q_ref = brentq(lambda q: Q(q) - q, 1e-6, 50.0, xtol=1e-15, rtol=1e-15)
    p = propagation("erf", math.sqrt(w2), math.sqrt(b2))
    assert p.q_star == pytest.approx(q_ref, rel=1e-13)
    assert p.chi_1 == pytest.approx(w2 * 4 / math.pi / math.sqrt(1 + 4 * q_ref), rel=1e-13)
    slope = w2 * (2 / math.pi) * 2 / ((1 + 2 * q_ref) * math.sqrt(1 + 4 * q_ref))
    assert p.xi_q == pytest.approx(-1 / math.log(slope), rel=1e-10)


def test_erf_critical_weight_at_zero_bias():
    """At b = 0, q -> 0 below and chi_1 -> w^2 erf'(0)^2 = 4 w^2 / pi: w_c^2 = pi / 4."""
    assert critical_weight("erf", 0.0) == pytest.approx(math.sqrt(math.pi) / 2, rel=1e-7)


def test_variance_slope_against_closed_forms():
    q = torch.tensor([0.1, 1.0, 3.0], dtype=F64)
    ref = 4 / math.pi / ((1 + 2 * q) * (1 + 4 * q).sqrt())
    assert torch.allclose(variance_slope("erf", q), ref, rtol=1e-13, atol=0)
    assert torch.allclose(variance_slope("relu", q), torch.full_like(q, 0.5), rtol=1e-14)
    # gated units take the finite-difference path: V = q V_gelu(q), V' = V_gelu + q V_gelu'
    gelu = infnet.activation("gelu")
    ref = gelu.variance_map(q) + q * variance_slope(gelu, q)
    assert torch.allclose(variance_slope("geglu", q), ref, rtol=1e-9, atol=0)


# ---- tanh: quadrature references --------------------------------------------------------------------
def test_tanh_critical_line_against_quad(tanh_line):
    for b2, w2_ref in tanh_line.items():
        wc = critical_weight("tanh", math.sqrt(b2))
        assert wc**2 == pytest.approx(w2_ref, rel=1e-9)
        # and Poole et al.'s parametrization of the line: w^2 = 1 / E[phi'^2], b^2 = q* - w^2 V(q*)
        q = propagation("tanh", wc, math.sqrt(b2)).q_star
        assert 1 / tanh_vdot(q) == pytest.approx(wc**2, rel=1e-9)
        assert q - wc**2 * tanh_v(q) == pytest.approx(b2, rel=1e-9)


def test_tanh_critical_point_at_zero_bias():
    """b = 0: q -> 0 for w^2 < 1 with chi_1 = w^2; chi_1 - 1 ~ (w^2 - 1)^2 / 3 above, so w_c is
    found only to ~sqrt(eps)."""
    assert critical_weight("tanh", 0.0) == pytest.approx(1.0, abs=1e-7)
    p = propagation("tanh", 0.9, 0.0)
    assert p.status == "vanishes" and p.q_star == 0.0 and p.chi_1 == pytest.approx(0.81)
    assert p.c_star is None and p.phase == "ordered"


def test_tanh_chaotic_c_star_against_dblquad():
    w, b = 2.0, math.sqrt(0.3)
    p = propagation("tanh", w, b)
    assert p.phase == "chaotic" and 0 < p.c_star < 1
    q, c = p.q_star, p.c_star
    assert q == pytest.approx(tanh_q_star(w * w, b * b), rel=1e-12)
    s = math.sqrt(1 - c * c)

    def e2(f):
        def g(z2, z1):
            u, v = math.sqrt(q) * z1, math.sqrt(q) * (c * z1 + s * z2)
            return f(u, v) * math.exp(-(z1 * z1 + z2 * z2) / 2) / (2 * math.pi)
        return dblquad(g, -10, 10, -10, 10, epsabs=1e-13, epsrel=1e-12)[0]

    assert (w * w * e2(lambda u, v: math.tanh(u) * math.tanh(v)) + b * b) / q == pytest.approx(
        c, abs=1e-9)
    assert w * w * e2(lambda u, v: sech2(u) * sech2(v)) == pytest.approx(p.chi_c, abs=1e-9)
    assert p.chi_c < 1 < p.chi_1
    # odd phi, no bias: C(0) = 0 is the stable point
    assert propagation("tanh", 1.5, 0.0).c_star == 0.0


@pytest.mark.parametrize("w,b", [(2.0, math.sqrt(0.3)), (1.0, math.sqrt(0.3))])
def test_depth_scales_match_measured_decay(w, b):
    """xi_c = -1 / log chi_c (Schoenholz et al. 2017, sec. 3) against the rate at which
    |c_l - c*| shrinks when the correlation map is iterated, and xi_q against |q_l - q*|."""
    act = infnet.activation("tanh")
    p = propagation(act, w, b)
    c, dev = p.c_star + 0.05 if p.c_star < 1 else 0.9, []
    for _ in range(200):
        c = float(correlation_map(act, c, p.q_star, w, b))
        dev.append(abs(c - p.c_star))
        if dev[-1] < 1e-10:
            break
    use = [(i, d) for i, d in enumerate(dev) if 1e-9 < d < 1e-5]
    assert len(use) >= 3
    slope = np.polyfit([i for i, _ in use], np.log([d for _, d in use]), 1)[0]
    assert -1 / slope == pytest.approx(p.xi_c, rel=2e-3)
    q, dq = 3.0, []
    for _ in range(100):
        q = float(length_map(act, q, w, b))
        dq.append(abs(q - p.q_star))
        if dq[-1] < 1e-12:
            break
    use = [(i, d) for i, d in enumerate(dq) if 1e-11 < d < 1e-5]
    slope = np.polyfit([i for i, _ in use], np.log([d for _, d in use]), 1)[0]
    assert -1 / slope == pytest.approx(p.xi_q, rel=2e-3)


# ---- fixed points of the length map ---------------------------------------------------------------
def test_length_map_statuses():
    st = {n: STATUSES.index(n) for n in STATUSES}
    q, s = length_fixed_points("bilinear", 1.0, 0.0, torch.tensor([0.5, 1.0, 2.0], dtype=F64))
    assert s.tolist() == [st["vanishes"], st["unstable"], st["diverges"]]  # Q(q) = q^2
    assert q.tolist() == [0.0, 1.0, math.inf]
    for name, w in (("exp", 1.0), ("relu", 1.5), ("snake", 1.0)):
        assert propagation(name, w, 0.0).status == "diverges"
    assert propagation("exp", 0.2, 0.0).status == "fixed_point"
    q, s = length_fixed_points("tanh", torch.tensor([0.0, 0.5, 2.0], dtype=F64), 0.0)
    assert s.tolist() == [st["vanishes"], st["vanishes"], st["fixed_point"]]


def test_discontinuous_activations_are_chaotic():
    """sign: E[phi'^2] is infinite (chi_1 = inf), C(c) = (2/pi) arcsin(c): c* = 0 with
    chi_c = 2/pi."""
    p = propagation("sign", 1.0, 0.0)
    assert p.chi_1 == math.inf and p.phase == "chaotic" and p.c_star == 0.0
    assert p.xi_c == pytest.approx(-1 / math.log(2 / math.pi), rel=1e-13)


# ---- the phase diagram and the table -------------------------------------------------------------------
def test_phase_diagram_png_and_critical_line(tmp_path, tanh_line):
    path = tmp_path / "tanh.png"
    b_var = np.array([0.0, 0.05, 0.3])
    d = phase_diagram("tanh", np.linspace(0.25, 4.0, 16), b_var, path=path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
    assert d.chi_1.shape == d.q_star.shape == d.status.shape == (3, 16)
    assert d.critical_w_var[0] == pytest.approx(1.0, abs=1e-7)
    for i in (1, 2):
        assert d.critical_w_var[i] == pytest.approx(tanh_line[b_var[i]], rel=1e-9)
    # the grid agrees with single evaluations
    j = 7
    p = propagation("tanh", math.sqrt(d.w_var[j]), math.sqrt(b_var[2]))
    assert d.chi_1[2, j] == pytest.approx(p.chi_1, rel=1e-13)
    assert d.q_star[2, j] == pytest.approx(p.q_star, rel=1e-13)
    # ordered left of the line, chaotic right of it
    below = d.w_var < d.critical_w_var[2]
    assert (d.chi_1[2, below] < 1).all() and (d.chi_1[2, ~below] > 1).all()


def test_phase_diagram_of_relu_marks_divergence(tmp_path):
    d = phase_diagram("relu", np.linspace(0.5, 3.0, 6), np.array([0.0, 0.2]),
                      path=tmp_path / "relu.png")
    assert d.critical_w_var[0] == pytest.approx(2.0, rel=1e-14)
    assert math.isnan(d.critical_w_var[1])
    assert (d.status[:, d.w_var > 2] == "diverges").all()
    assert np.allclose(d.chi_1[:, d.w_var < 2], d.w_var[d.w_var < 2] / 2, rtol=1e-14)


def test_chi_1_grid_broadcasts():
    w = torch.tensor([0.5, 1.0, 2.0], dtype=F64)
    q, s, chi = chi_1_grid("erf", w[None, :], torch.tensor([[0.0], [0.1]], dtype=F64))
    assert q.shape == s.shape == chi.shape == (2, 3)
    assert chi[1, 2] == pytest.approx(propagation("erf", math.sqrt(2), math.sqrt(0.1)).chi_1)


@pytest.mark.slow  # ~20 s: the critical weight of all 55 catalog entries
def test_catalog_table_is_complete_and_tolerant():
    def fragile(x):
        if x.numel() > 16:
            raise RuntimeError("fragile activation")
        return torch.tanh(x)

    names = infnet.list_activations()
    # (infnet.activation(fragile) is refused where it is given: this one fails only later)
    broken = dataclasses.replace(infnet.activation("tanh"), fn=lambda x: fragile(x), name="fragile")
    rows = propagation_table(names + [broken])
    assert [r["name"] for r in rows] == names + ["fragile"]
    by = {r["name"]: r for r in rows}
    assert "RuntimeError" in by["fragile"]["error"]
    assert all(r["error"] == "" for r in rows[:-1]), [r for r in rows if r["error"]]
    assert by["exp"]["phase"] == "diverges" and by["exp"]["critical_w_std"] is None
    assert by["relu"]["critical_w_std"] == pytest.approx(math.sqrt(2), rel=1e-14)
    assert by["erf"]["critical_w_std"] == pytest.approx(math.sqrt(math.pi) / 2, rel=1e-7)
    assert by["identity"]["phase"] == "critical" and by["identity"]["xi_c"] == math.inf
    assert by["selu"]["q_star"] == pytest.approx(1.0, rel=1e-6)  # self-normalizing: q* = 1
    text = format_table(rows)
    assert text.splitlines()[0].split()[:4] == ["name", "q_star", "chi_1", "phase"]
    assert len(text.splitlines()) == len(rows) + 1
