"""Convolutional networks (Conv, ConvLocal, AvgPool, Flatten, GlobalAvgPool, residual blocks;
1-D and 2-D; SAME, VALID and CIRCULAR padding; strides; NTK and standard parameterizations)
against a slow reference written here from the CNN-GP / CNTK formulas (Novak et al. 2019, arXiv
1810.05148; Arora et al. 2019, arXiv 1904.11955): an interpreter over layer descriptions that
carries the full (P, P) spatial covariance of every pair of inputs with explicit loops over pairs
of positions and filter offsets, with the activation maps written out here too (closed-form ReLU
and erf; an independent Gauss-Hermite quadrature for tanh and swish), none of the library's code.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from numpy.polynomial.hermite_e import hermegauss
from scipy.special import erf as scipy_erf
from scipy.special import expit

import infnet
from infnet.network import ConvLocal, residual

F64 = torch.float64


# ---- layer descriptions ------------------------------------------------------------------------


def conv(k, s=None, pad="SAME", w=1.0, b=0.0, param="ntk", width=None, local=False):
    return ("conv", dict(k=tuple(k), s=tuple(s) if s else (1,) * len(k), pad=pad, w=w, b=b,
                         param=param, width=width, local=local))


def pool(k, s=None, pad="VALID"):
    return ("pool", dict(k=tuple(k), s=tuple(s) if s else tuple(k), pad=pad))


def dense(w=1.0, b=0.0):
    return ("dense", dict(w=w, b=b))


def res(branch, branch_weight=1.0, skip_weight=1.0):
    return ("residual", dict(branch=branch, bw=branch_weight, sw=skip_weight))


RELU, ERF, TANH, SWISH = ("relu",), ("erf",), ("tanh",), ("swish",)
FLATTEN, GAP = ("flatten",), ("gap",)


def build(spec):
    """The library's network of a description."""
    return infnet.serial(*[_layer(item) for item in spec])


def _layer(item):
    kind, p = item[0], (item[1] if len(item) > 1 else {})
    if kind == "conv":
        cls = ConvLocal if p["local"] else infnet.Conv
        return cls(p["k"], w_std=p["w"], b_std=p["b"], strides=p["s"], padding=p["pad"],
                   parameterization=p["param"], width=p["width"])
    if kind == "pool":
        return infnet.AvgPool(p["k"], strides=p["s"], padding=p["pad"])
    if kind == "dense":
        return infnet.Dense(p["w"], p["b"])
    if kind == "flatten":
        return infnet.Flatten()
    if kind == "gap":
        return infnet.GlobalAvgPool()
    if kind == "residual":
        return residual(*[_layer(i) for i in p["branch"]], branch_weight=p["bw"],
                        skip_weight=p["sw"])
    return kind  # an activation by its catalog name


# ---- the reference: activation maps --------------------------------------------------------------


def relu_maps(q1, q2, c):
    """E[relu(u) relu(v)] and E[step(u) step(v)] (Cho & Saul 2009)."""
    r = np.sqrt(q1 * q2)
    theta = np.arccos(np.clip(c / r, -1.0, 1.0))
    return (r / (2 * np.pi) * (np.sin(theta) + (np.pi - theta) * np.cos(theta)),
            (np.pi - theta) / (2 * np.pi))


def erf_maps(q1, q2, c):
    """E[erf(u) erf(v)] and E[erf'(u) erf'(v)] (Williams 1997)."""
    a = (1 + 2 * q1) * (1 + 2 * q2)
    return 2 / np.pi * np.arcsin(2 * c / np.sqrt(a)), 4 / np.pi / np.sqrt(a - 4 * c * c)


def _tanh(x):
    return np.tanh(x), 1 - np.tanh(x) ** 2


def _swish(x):
    s = expit(x)
    return x * s, s * (1 + x * (1 - s))


def _erf(x):
    return scipy_erf(x), 2 / np.sqrt(np.pi) * np.exp(-x * x)


def quadrature_maps(fn, step=0.1, half_width=9.0, chunk=64):
    """E[f(u) f(v)] and E[f'(u) f'(v)] for (u, v) Gaussian, u = sqrt(q1) z1,
    v = sqrt(q2) (rho z1 + sqrt(1 - rho^2) z2), by the 2-D trapezoidal rule on
    [-half_width, half_width]^2 against the standard normal density. For an integrand analytic
    in a strip |Im z| < d (tanh(a z): d = pi / (2 a)) its error is about exp(-2 pi d / step), and
    the tails cost exp(-half_width^2 / 2): at q <= 4, step 0.1 and half width 9 both are below
    1e-17, where Gauss-Hermite rules converge slowly (``test_quadrature_reference_is_converged``)."""
    z = np.arange(-half_width, half_width + step / 2, step)
    wz = step * np.exp(-z * z / 2) / math.sqrt(2 * math.pi)
    z1, z2 = z[None, :, None], z[None, None, :]
    w2 = wz[:, None] * wz[None, :]

    def maps(q1, q2, c):
        shape = np.broadcast_shapes(np.shape(q1), np.shape(q2), np.shape(c))
        q1, q2, c = (np.ravel(v) for v in np.broadcast_arrays(q1, q2, c))
        K, Kd = np.empty(len(c)), np.empty(len(c))
        for start in range(0, len(c), chunk):
            sl = slice(start, start + chunk)
            a, b = np.sqrt(q1[sl])[:, None, None], np.sqrt(q2[sl])[:, None, None]
            ab = a * b  # a zero variance is the constant 0: its correlation does not matter
            with np.errstate(invalid="ignore", divide="ignore"):
                rho = np.where(ab > 0, np.clip(c[sl][:, None, None] / ab, -1.0, 1.0), 0.0)
            fu, du = fn(a * z1)
            fv, dv = fn(b * (rho * z1 + np.sqrt(1 - rho * rho) * z2))
            K[sl] = np.sum(w2 * fu * fv, axis=(1, 2))
            Kd[sl] = np.sum(w2 * du * dv, axis=(1, 2))
        return K.reshape(shape), Kd.reshape(shape)

    return maps


ACTIVATIONS = {"relu": relu_maps, "erf": erf_maps, "tanh": quadrature_maps(_tanh),
               "swish": quadrature_maps(_swish)}


# ---- the reference: spatial maps -----------------------------------------------------------------


def geometry(n, k, s, pad):
    """(out, pad_lo) of one spatial dimension."""
    if pad == "VALID":
        return (n - k) // s + 1, 0
    out = -(-n // s)
    return out, max((out - 1) * s + k - n, 0) // 2


def input_position(out_idx, offset, shape, k, s, pad):
    """The flat input position that output position ``out_idx`` reads at filter offset
    ``offset``; None for a zero of SAME padding."""
    pos = []
    for o, d, n, kk, ss in zip(out_idx, offset, shape, k, s, strict=True):
        p = ss * o + d - geometry(n, kk, ss, pad)[1]
        if pad == "CIRCULAR":
            p %= n
        elif not 0 <= p < n:
            return None
        pos.append(p)
    return int(np.ravel_multi_index(pos, shape))


def out_shape(shape, k, s, pad):
    return tuple(geometry(n, kk, ss, pad)[0] for n, kk, ss in zip(shape, k, s, strict=True))


def conv_sum(mats, shape, k, s, pad, same_offset):
    """sum_d M[s i + d - pad, s j + d - pad] (same_offset: a convolution) or
    sum_{d, e} M[s i + d - pad, s j + e - pad] (pooling), divided by the number of terms (k_total
    or k_total^2), for every output pair (i, j) and every matrix of ``mats`` (m, P, P)."""
    oshape = out_shape(shape, k, s, pad)
    outs, offsets = list(np.ndindex(*oshape)), list(np.ndindex(*k))
    table = [[input_position(o, d, shape, k, s, pad) for d in offsets] for o in outs]
    res_ = np.zeros((mats.shape[0], len(outs), len(outs)))
    for a, b in itertools.product(range(len(outs)), repeat=2):
        total = np.zeros(mats.shape[0])
        if same_offset:
            pairs = zip(table[a], table[b], strict=True)
        else:
            pairs = itertools.product(table[a], table[b])
        for pi, pj in pairs:
            if pi is not None and pj is not None:
                total += mats[:, pi, pj]
        res_[:, a, b] = total
    k_total = math.prod(k)
    return res_ / (k_total if same_offset else k_total**2), oshape


class Propagation:
    """Runs a description on the covariance of one pair of inputs. ``variances`` None: an input
    with itself, whose variances at each activation are its own diagonal (recorded in
    ``records``); else an iterator of the (q1, q2) of the two inputs, from their own runs."""

    def __init__(self, variances=None):
        self.variances = variances
        self.records = []
        self.max_rho = 0.0  # the largest |correlation| an activation saw, exact self pairs aside

    def run(self, spec, S, T, shape, width):
        for kind, *rest in spec:
            p = rest[0] if rest else {}
            if kind == "conv":
                S, T, shape, width = self.conv(p, S, T, shape, width)
            elif kind == "pool":
                (S, T), shape = conv_sum(np.stack([S, T]), shape, p["k"], p["s"], p["pad"], False)
            elif kind == "flatten":
                P = S.shape[0]
                S = np.array([[sum(S[i, i] for i in range(P)) / P]])
                T = np.array([[sum(T[i, i] for i in range(P)) / P]])
                shape = ()
            elif kind == "gap":
                P = S.shape[0]
                S = np.array([[sum(S[i, j] for i in range(P) for j in range(P)) / P**2]])
                T = np.array([[sum(T[i, j] for i in range(P) for j in range(P)) / P**2]])
                shape = ()
            elif kind == "dense":
                S = p["w"] ** 2 * S + p["b"] ** 2
                T = p["w"] ** 2 * T + S
            elif kind == "residual":
                Sb, Tb, shape, _ = self.run(p["branch"], S, T, shape, width)
                S = p["sw"] ** 2 * S + p["bw"] ** 2 * Sb
                T = p["sw"] ** 2 * T + p["bw"] ** 2 * Tb
            else:
                S, T = self.activation(ACTIVATIONS[kind], S, T)
        return S, T, shape, width

    def conv(self, p, S, T, shape, width):
        (mS, mT), oshape = conv_sum(np.stack([S, T]), shape, p["k"], p["s"], p["pad"], True)
        w2, b2 = p["w"] ** 2, (p["b"] or 0.0) ** 2
        S2 = w2 * mS + b2
        if p["param"] == "ntk":
            T2 = w2 * mT + S2
        else:
            T2 = width * math.prod(p["k"]) * mS + (0.0 if p["b"] is None else 1.0) + w2 * mT
        if p["local"]:  # unshared weights and biases: distinct positions decorrelate
            off = ~np.eye(S2.shape[0], dtype=bool)
            S2[off], T2[off] = 0.0, 0.0
        return S2, T2, oshape, p["width"]

    def activation(self, maps, S, T):
        if self.variances is None:
            q = np.diag(S).copy()
            self.records.append(q)
            q1, q2 = q, q
            rho = S / np.sqrt(np.outer(q, q))
            rho = rho[~np.eye(len(q), dtype=bool)]
        else:
            q1, q2 = next(self.variances)
            rho = S / np.sqrt(np.outer(q1, q2))
        if rho.size:
            self.max_rho = max(self.max_rho, float(np.max(np.abs(rho))))
        K, Kd = maps(q1[:, None], q2[None, :], S)
        return K, Kd * T


def reference(spec, x1, x2=None):
    """NNGP, NTK (n1, n2) of the description, and the largest |correlation| seen by an
    activation away from the exact self pairs (the conditioning of the inputs)."""
    x1 = x1.numpy()
    x2 = x1 if x2 is None else x2.numpy()
    C = x1.shape[1]
    shape = x1.shape[2:]

    def initial(a, b):
        fa, fb = a.reshape(C, -1), b.reshape(C, -1)
        P = fa.shape[1]
        S = np.array([[sum(fa[c, i] * fb[c, j] for c in range(C)) / C for j in range(P)]
                      for i in range(P)])
        return S, np.zeros_like(S)

    def self_run(x):
        prop = Propagation()
        S, T, _, _ = prop.run(spec, *initial(x, x), shape, C)
        return S[0, 0], T[0, 0], prop.records, prop.max_rho

    selfs1 = [self_run(x) for x in x1]
    selfs2 = selfs1 if x2 is x1 else [self_run(x) for x in x2]
    nngp, ntk = np.empty((len(x1), len(x2))), np.empty((len(x1), len(x2)))
    max_rho = max(s[3] for s in selfs1 + selfs2)
    for i, j in itertools.product(range(len(x1)), range(len(x2))):
        if x2 is x1 and i == j:
            nngp[i, j], ntk[i, j] = selfs1[i][:2]
            continue
        prop = Propagation(zip(selfs1[i][2], selfs2[j][2], strict=True))
        S, T, _, _ = prop.run(spec, *initial(x1[i], x2[j]), shape, C)
        nngp[i, j], ntk[i, j] = S[0, 0], T[0, 0]
        max_rho = max(max_rho, prop.max_rho)
    return nngp, ntk, max_rho


# ---- checks ---------------------------------------------------------------------------------------


def images(n, shape, seed):
    return torch.randn(n, *shape, dtype=F64, generator=torch.Generator().manual_seed(seed))


def assert_matches(got, want, rtol, what):
    got = got.numpy()
    assert got.shape == want.shape, what
    tol = rtol * np.abs(want) + rtol * np.abs(want).max()
    err = np.abs(got - want)
    assert np.all(err <= tol), (
        f"{what}: max |error| / |reference| = {np.max(err / np.abs(want)):.3g}, "
        f"max |error| / max |reference| = {err.max() / np.abs(want).max():.3g}")


def check(spec, shape, rtol, seed, n1=3, n2=2, memory=None):
    net = build(spec)
    xa, xb = images(n1, shape, seed), images(n2, shape, seed + 1000)
    for x1, x2 in ((xa, None), (xa, xb)):
        nngp, ntk, max_rho = reference(spec, x1, x2)
        # well-conditioned inputs: no correlation near +-1 but the exact self pairs
        assert max_rho < 1 - 1e-6, max_rho
        k = net.kernel(x1, x2, memory=memory)
        what = "kernel(x)" if x2 is None else "kernel(x1, x2)"
        assert_matches(k.nngp, nngp, rtol, f"{what} NNGP")
        assert_matches(k.ntk, ntk, rtol, f"{what} NTK")


ARCHITECTURES = {
    "same": ([conv((3, 3), w=1.5, b=0.3), RELU, FLATTEN, dense(1.2, 0.1)], (2, 5, 5)),
    "valid": ([conv((3, 3), pad="VALID", w=1.4, b=0.2), RELU, conv((2, 2), pad="VALID", w=1.1),
               ERF, FLATTEN, dense(0.9, 0.3)], (2, 6, 6)),
    "circular_gap": ([conv((3, 3), pad="CIRCULAR", w=1.3, b=0.4), RELU,
                      conv((3, 2), pad="CIRCULAR", w=1.2, b=0.1), RELU, GAP, dense(1.1, 0.2)],
                     (2, 5, 4)),
    "stride2": ([conv((3, 3), s=(2, 2), w=1.4, b=0.3), RELU, conv((3, 3), s=(2, 1), w=1.2, b=0.2),
                 RELU, GAP, dense(1.0, 0.1)], (2, 5, 6)),
    "conv1d": ([conv((3,), w=1.3, b=0.2), RELU, conv((2,), s=(2,), pad="VALID", w=1.1, b=0.5),
                ERF, conv((3,), pad="CIRCULAR", w=1.2), RELU, GAP, dense(1.2, 0.3)], (2, 9)),
    "pool_same": ([conv((3, 3), w=1.4, b=0.2), RELU, pool((3, 3), s=(2, 2), pad="SAME"),
                   conv((2, 2), w=1.2, b=0.1), RELU, FLATTEN, dense(1.1, 0.2)], (2, 6, 6)),
    "pool_valid": ([conv((2, 2), pad="VALID", w=1.3, b=0.3), pool((3, 2), s=(2, 3)), ERF,
                    conv((2, 2), w=1.2, b=0.2), RELU, GAP, dense(0.8, 0.4)], (2, 6, 6)),
    "local_flatten": ([conv((3, 3), w=1.3, b=0.2, local=True), RELU,
                       conv((2, 2), pad="VALID", w=1.2, b=0.4, local=True), RELU, FLATTEN,
                       dense(1.1, 0.1)], (2, 5, 5)),
    "local_gap": ([conv((3, 3), w=1.3, b=0.2), RELU, conv((3, 3), w=1.2, b=0.3, local=True), RELU,
                   GAP, dense(1.0, 0.2)], (2, 5, 5)),
    "biases": ([conv((3, 3), w=1.3, b=0.5), RELU, conv((3, 3), w=1.1, b=0.7), ERF,
                conv((3, 3), w=1.2, b=0.6), RELU, FLATTEN, dense(1.0, 0.4)], (2, 5, 5)),
    "erf_gap": ([conv((3, 3), w=1.6, b=0.1), ERF, conv((2, 2), w=1.4, b=0.2), ERF, GAP,
                 dense(1.3, 0.2)], (2, 4, 5)),
    "standard": ([conv((3, 3), w=1.2, b=0.3, param="standard", width=7), RELU,
                  conv((2, 2), pad="VALID", w=1.3, b=None, param="standard", width=5), RELU,
                  conv((2, 2), w=1.1, b=0.2, param="standard", width=3), RELU, FLATTEN,
                  dense(1.0, 0.2)], (2, 5, 5)),
    "standard_gap": ([conv((3, 3), w=1.2, b=0.0, param="standard", width=4), ERF,
                      pool((2, 2), s=(1, 1)), conv((3, 3), w=1.3, b=0.2, param="standard",
                                                   width=6), RELU, GAP, dense(1.0, 0.1)],
                     (2, 5, 5)),
    "residual_gap": ([conv((3, 3), w=1.3, b=0.2),
                      res([RELU, conv((3, 3), w=1.4, b=0.3)], branch_weight=0.8, skip_weight=0.6),
                      RELU, GAP, dense(1.1, 0.2)], (2, 5, 5)),
    "residual_flatten": ([conv((3, 3), w=1.2, b=0.1), res([RELU, conv((3, 3), w=1.5, b=0.2)]),
                          res([ERF, conv((2, 2), w=1.1)], branch_weight=0.5), RELU, FLATTEN,
                          dense(1.0, 0.3)], (2, 5, 5)),
}


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_closed_form_networks_match_the_reference(name):
    spec, shape = ARCHITECTURES[name]
    check(spec, shape, 1e-12, seed=sorted(ARCHITECTURES).index(name))


@pytest.mark.parametrize("name", ["tanh", "swish"])
def test_quadrature_reference_is_converged(name):
    """The reference's quadrature: a finer and wider grid agrees to 1e-13, and so does a
    Gauss-Hermite rule at small variances; on erf it reproduces the closed form."""
    q1, q2 = np.array([0.3, 1.2, 2.5, 4.0, 0.5]), np.array([0.8, 1.7, 0.4, 3.0, 0.6])
    rho = np.array([-0.7, 0.2, 0.95, 1.0, 0.999])
    c = rho * np.sqrt(q1 * q2)
    fn = {"tanh": _tanh, "swish": _swish}[name]
    ours = quadrature_maps(fn)(q1, q2, c)
    for a, b in zip(ours, quadrature_maps(fn, step=0.07, half_width=11.0)(q1, q2, c),
                    strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-16)
    z, wz = hermegauss(150)
    wz = wz / math.sqrt(2 * math.pi)
    u = math.sqrt(0.3) * z[:, None]
    v = math.sqrt(0.8) * (-0.7 * z[:, None] + math.sqrt(1 - 0.49) * z[None, :])
    (fu, du), (fv, dv) = fn(u), fn(v)
    w2 = wz[:, None] * wz[None, :]
    np.testing.assert_allclose([ours[0][0], ours[1][0]],
                               [np.sum(w2 * fu * fv), np.sum(w2 * du * dv)], rtol=1e-13)
    for a, b in zip(quadrature_maps(_erf)(q1, q2, c), erf_maps(q1, q2, c), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-13)


NUMERICAL = {
    "flatten": lambda act: ([conv((2, 2), w=1.3, b=0.2), (act,), conv((3, 3), w=1.2, b=0.3),
                             (act,), FLATTEN, dense(1.1, 0.1)], (2, 3, 3)),
    "gap": lambda act: ([conv((2, 2), w=1.4, b=0.1), pool((2, 2), s=(1, 1), pad="SAME"), (act,),
                         conv((2, 2), w=1.2, b=0.3), (act,), GAP, dense(1.0, 0.2)], (2, 2, 3)),
}


@pytest.mark.parametrize("readout", sorted(NUMERICAL))
@pytest.mark.parametrize("act", ["tanh", "swish"])
def test_numerical_activations_match_the_reference(act, readout):
    spec, shape = NUMERICAL[readout](act)
    check(spec, shape, 1e-10, seed=7, n1=2, n2=1)


@pytest.mark.parametrize(("act", "tol", "n", "shape"),
                         [(ERF, 1e-12, 3, (1, 6, 7)), (SWISH, 1e-10, 2, (1, 5, 6))])
def test_blank_regions_match_the_reference(act, tol, n, shape):
    """Inputs with blank regions and no bias (the backgrounds of MNIST digits): positions whose
    variance is exactly 0 at every layer, which the kernel must carry as exact zeros (and
    swish's Hermite series as rho = 0; smaller images: its reference is a 2-D quadrature)."""
    spec = [conv((3, 3), w=1.4, b=0.0), act, conv((3, 3), w=1.2, b=0.0), act, GAP, dense(1.0, 0.0)]
    net = build(spec)
    x = images(n, shape, seed=11)
    x[:, :, :, :3] = 0.0  # the left three columns blank: the first column's windows see nothing
    x2 = images(2, shape, seed=12)
    x2[:, :, :2] = 0.0
    for a, b in ((x, None), (x, x2)):
        nngp, ntk, _ = reference(spec, a, b)
        k = net.kernel(a) if b is None else net.kernel(a, b)
        assert_matches(k.nngp, nngp, tol, "NNGP with blank regions")
        assert_matches(k.ntk, ntk, tol, "NTK with blank regions")


# ---- bands of rows: one pair over the memory budget ---------------------------------------------

FULL_LAYOUT = sorted(name for name, (spec, _) in ARCHITECTURES.items()
                     if build(spec)._spatial_plan().full)


@pytest.mark.parametrize("name", FULL_LAYOUT)
def test_bands_of_rows_match_the_reference(name):
    """memory= below one pair's covariance of pairs of positions: the kernel goes in bands of
    rows (``network.banded``: the first position of a pair holds a band of input rows widened
    by the network's reach; the self pass in square bands), here at the smallest bands (one input
    row each) on images tall enough for several bands; against the reference to 1e-12."""
    from infnet.network import banded

    spec, shape = ARCHITECTURES[name]
    net = build(spec)
    plan = net._spatial_plan()
    halo = banded.reach(plan.head, shape[1:])
    shape = (shape[0], sum(halo) + 3, *shape[2:])  # (two input rows past one band's reach)
    halo = banded.reach(plan.head, shape[1:])  # (SAME padding with strides: of the size)
    memory = banded.band_bytes(plan, shape[1:], 1, halo)
    assert memory < plan.tile_bytes(shape[1:])
    assert banded.band_rows(plan, shape[1:], memory) == (1, halo)
    check(spec, shape, 1e-12, seed=sorted(FULL_LAYOUT).index(name), n1=2, n2=1, memory=memory)


def test_bands_of_rows_with_a_numerical_activation_match_the_reference():
    """The same for swish (Hermite series; the series of a band are not cached) to 1e-10."""
    from infnet.network import banded

    spec, shape = NUMERICAL["gap"]("swish")
    net = build(spec)
    plan = net._spatial_plan()
    halo = banded.reach(plan.head, shape[1:])
    shape = (shape[0], sum(halo) + 4, *shape[2:])
    halo = banded.reach(plan.head, shape[1:])
    memory = banded.band_bytes(plan, shape[1:], 1, halo)
    assert memory < plan.tile_bytes(shape[1:])
    check(spec, shape, 1e-10, seed=8, n1=2, n2=1, memory=memory)
