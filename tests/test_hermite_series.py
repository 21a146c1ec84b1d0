"""The Hermite (Mehler) series of the kernel maps, used by spatial networks for smooth
activations without a closed form: coefficients against exact ones, the maps against the closed
forms and the polar quadrature, the truncation bound it certifies, the entries it hands back to
the quadrature, and its cache between tiles."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import infnet
from infnet.activations.series import DEGREES, TOLERANCE, Series, SeriesCache, TileSeries, supports_series
from infnet.network.architectures import cnn
from infnet.numerics import hermite

F64 = torch.float64


def test_coefficients_of_a_cubic_are_exact():
    """x^3 = He_3 + 3 He_1, so f(sqrt(q) z) = q^(3/2) (sqrt(6) h_3 + 3 h_1), no tail."""
    q = torch.tensor([0.0, 0.25, 1.0, 7.0], dtype=F64)
    a, tail = hermite.coefficients(lambda x: x**3, q, 8)
    want = torch.zeros(4, 9, dtype=F64)
    want[:, 3] = math.sqrt(6) * q**1.5
    want[:, 1] = 3 * q**1.5
    torch.testing.assert_close(a, want, rtol=0, atol=1e-14 * float(want.abs().max()))
    assert float(tail[:, 3:].max()) < 1e-13  # all the energy within degree 3
    assert float(tail[1:, 1].min()) > 0.3  # after degree 1, h_3's share (6 / 15) is left


def test_coefficients_of_an_exponential_are_exact():
    """exp(s z) = exp(s^2 / 2) sum_k s^k / sqrt(k!) h_k(z): every degree, exact values."""
    q = torch.tensor([0.3, 1.0, 2.0], dtype=F64)
    a, _ = hermite.coefficients(torch.exp, q, 40)
    s = q.sqrt()[:, None]
    k = torch.arange(41, dtype=F64)[None, :]
    want = torch.exp(s * s / 2) * s**k / torch.exp(torch.lgamma(k + 1) / 2)
    torch.testing.assert_close(a, want, rtol=0, atol=1e-14 * float(want.max()))


def test_interpolated_coefficients_of_an_exponential_are_exact(monkeypatch):
    """Many variances take their coefficients by interpolation in log q from a few direct
    sums: against exp's exact coefficients (relative to sqrt(E[f^2]) = exp(q)) and its exact
    tails, P(Poisson(q) > k), while the direct sums ran at fewer than a tenth of them."""
    import scipy.stats

    seen = []
    direct = hermite.direct_coefficients

    def counted(f, q, degree, with_energy=False):
        seen.append(q.numel())
        return direct(f, q, degree, with_energy)

    monkeypatch.setattr(hermite, "direct_coefficients", counted)
    g = torch.Generator().manual_seed(3)
    q = 0.05 + 0.95 * torch.rand(1000, generator=g, dtype=F64)  # (E[f^2] finite to |z| = 10)
    a, tail = hermite.coefficients(torch.exp, q, 160)
    assert sum(seen) < 100
    s = q.sqrt()[:, None]
    k = torch.arange(161, dtype=F64)[None, :]
    want = torch.exp(s * s / 2) * s**k / torch.exp(torch.lgamma(k + 1) / 2)
    assert float(((a - want).abs() / torch.exp(q)[:, None]).max()) < 1e-13
    exact_tail = scipy.stats.poisson.sf(np.arange(161)[None, :], q.numpy()[:, None])
    assert float(np.abs(tail.numpy() - exact_tail).max()) < 1e-13


@pytest.mark.parametrize("name", ["tanh", "gelu_tanh"])
def test_interpolation_over_a_wide_range_matches_the_direct_sums(name):
    """Variances over nine decades (the range is halved where one interpolant fails its
    check), and a zero variance, against the direct sums at every variance."""
    act = infnet.activations.activation(name)
    g = torch.Generator().manual_seed(4)
    q = 10 ** (-6 + 9 * torch.rand(600, generator=g, dtype=F64))
    q[7] = 0.0
    for f in (act, act.derivative):
        a, tail = hermite.coefficients(f, q, 256)
        a0, tail0, energy = hermite.direct_coefficients(f, q, 256, with_energy=True)
        scale = energy.sqrt().clamp(min=1e-300)[:, None]
        assert float(((a - a0).abs() / scale).max()) < 1e-13
        assert float((tail - tail0).abs().max()) < 1e-13


def test_interpolation_carries_the_tangent_in_an_activation_parameter():
    """The gradient code differentiates swish's coefficients in beta by forward-mode autograd:
    interpolated over 1000 variances, values and tangents equal the direct sums' to 1e-13."""
    import dataclasses

    import torch.autograd.forward_ad as fwAD

    act = infnet.activations.activation("swish")
    q = 0.05 + 4 * torch.rand(1000, generator=torch.Generator().manual_seed(5), dtype=F64)
    with fwAD.dual_level():
        one = torch.tensor(1.0, dtype=F64)
        dual = dataclasses.replace(act, params={**act.params, "beta": fwAD.make_dual(one, one)})
        got = fwAD.unpack_dual(hermite.coefficients(dual, q, 256)[0])
        want = fwAD.unpack_dual(hermite.direct_coefficients(dual, q, 256)[0])
    assert got.tangent is not None
    assert float((got.primal - want.primal).abs().max()) < 1e-13 * float(want.primal.abs().max())
    assert float((got.tangent - want.tangent).abs().max()) < 1e-13 * float(
        want.tangent.abs().max())


def test_an_interpolant_that_fails_its_check_is_not_used(monkeypatch):
    """With two sets of points (5 and 9) and no halving, tanh over six decades cannot pass:
    every variance then has the direct sums, bit for bit."""
    monkeypatch.setattr(hermite, "CHEBYSHEV_POINTS", (5, 9))
    monkeypatch.setattr(hermite, "SPLITS", 0)
    act = infnet.activations.activation("tanh")
    q = torch.logspace(-3, 3, 500, dtype=F64)
    a, tail = hermite.coefficients(act, q, 256)
    a0, tail0 = hermite.direct_coefficients(act, q, 256)
    assert torch.equal(a, a0) and torch.equal(tail, tail0)


def _moments(n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    q1 = 0.05 + 3 * torch.rand(n, 1, generator=g, dtype=F64)
    q2 = 0.05 + 3 * torch.rand(1, n, generator=g, dtype=F64)
    rho = 2 * torch.rand(n, n, generator=g, dtype=F64) - 1
    rho[0, :] = 1.0  # exactly parallel and antiparallel pairs
    rho[1, :] = -1.0
    return q1, q2, rho * (q1 * q2).sqrt()


def test_series_equals_the_closed_forms():
    """erf and GELU have closed forms in (q1, q2, c): the series, run on them regardless, gives
    them to the certified tolerance (relative to sqrt(E phi(u)^2 E phi(v)^2)), rho = +-1
    included."""
    q1, q2, c = _moments(24, 0)
    for name in ("erf", "gelu"):
        act = infnet.activation(name)
        K, Kdot, uncertain = TileSeries(act, q1, q2).kernel(c)
        assert uncertain is None
        Kx, Kdotx = act.kernel(q1, q2, c)
        scale = (act.kernel(q1, q1, q1)[0] * act.kernel(q2, q2, q2)[0]).sqrt()
        dscale = (act.kernel(q1, q1, q1)[1] * act.kernel(q2, q2, q2)[1]).sqrt()
        assert float(((K - Kx).abs() / scale).max()) < 2 * TOLERANCE, name
        assert float(((Kdot - Kdotx).abs() / dscale).max()) < 2 * TOLERANCE, name


@pytest.mark.parametrize("name", ["swish", "tanh", "mish"])
def test_series_equals_the_polar_quadrature(name):
    """Activations without a closed form: the series against the library's adaptive polar
    quadrature (an independent method) at variances up to 3 and every correlation."""
    act = infnet.activation(name)
    q1, q2, c = _moments(8, 1)
    K, Kdot, uncertain = TileSeries(act, q1, q2).kernel(c)
    Kx, Kdotx = act.numerical_kernel(*torch.broadcast_tensors(q1, q2, c))
    if uncertain is not None:  # entries handed back are not compared here
        K, Kdot, Kx, Kdotx = (t[~uncertain] for t in (K, Kdot, Kx, Kdotx))
    scale = float(Kx.abs().max())
    assert float((K - Kx).abs().max()) < 1e-11 * scale
    assert float((Kdot - Kdotx).abs().max()) < 1e-11 * float(Kdotx.abs().max())


def test_the_truncation_bound_holds():
    """At a low degree the error against the series of degree 256 stays under the bound
    |rho|^(k+1) t1(k) t2(k) sqrt(E1 E2), and it is not vacuous (within 100x of the error)."""
    act = infnet.activation("swish")
    q1, q2, c = _moments(16, 2)
    s1, s2 = Series.build(act, q1, 256), Series.build(act, q2, 256)
    rho = c / (q1 * q2).sqrt()
    approx = hermite.horner(s1.a, s2.a, rho, 12)
    exact = hermite.horner(s1.a, s2.a, rho, 256)
    energy = (act.diagonal_kernel(q1)[0] * act.diagonal_kernel(q2)[0]).sqrt()
    # (the tails are E[f^2] minus the sum of the a_k^2: differences that round at about
    # 1e-16 of E[f^2], so each carries that floor)
    ta1, ta2 = ((hermite.coefficients(act, q.reshape(-1), 12)[1][:, -1] + 1e-15).sqrt()
                for q in (q1, q2))
    bound = rho.abs() ** 13 * ta1.reshape(q1.shape) * ta2.reshape(q2.shape) * energy
    err = (approx - exact).abs()
    assert bool((err <= bound * (1 + 1e-6) + 1e-15).all())
    assert float(err.max()) > float(bound.max()) / 100


def test_degree_follows_the_correlation():
    """Fewer terms where |rho| is small: the degree is the smallest with r^(k+1) tails below
    the tolerance (pairs of different inputs need a fraction of the terms of rho = 1)."""
    act = infnet.activation("swish")
    q = torch.full((4, 1), 1.5, dtype=F64)
    tile = TileSeries(act, q, q.T)
    used = []
    orig = hermite.horner
    try:
        hermite.horner = lambda a, b, rho, k, *rest: used.append(k) or orig(a, b, rho, k, *rest)
        for r in (0.3, 0.9, 1.0):
            tile.kernel(torch.full((4, 4), 1.5 * r, dtype=F64))
    finally:
        hermite.horner = orig
    ka = used[0::2]
    assert ka[0] < ka[1] < ka[2]
    ta = tile.sides[0].wa
    for r, k in zip((0.3, 0.9, 1.0), ka, strict=True):
        assert r ** (k + 1) * float(ta[k]) ** 2 <= TOLERANCE < r ** k * float(ta[k - 1]) ** 2


def test_unresolved_positions_are_handed_back():
    """tanh at variance 30 (nearly a sign function) is not resolved by the last degree: every
    entry of that position is marked for the quadrature, whatever its correlation (its low
    coefficients would be aliased), and the other entries match the quadrature."""
    act = infnet.activation("tanh")
    q = torch.tensor([[30.0], [0.5], [1.5]], dtype=F64)
    rho = torch.tensor([[1.0, 0.2, -0.3], [0.2, 1.0, 0.6], [-0.3, 0.6, 1.0]], dtype=F64)
    c = rho * (q * q.T).sqrt()
    tile = TileSeries(act, q, q.T)
    K, Kdot, uncertain = tile.kernel(c)
    assert tile.sides[0].degree == DEGREES[-1]
    assert uncertain is not None
    assert uncertain.tolist() == [[True] * 3, [True, False, False], [True, False, False]]
    Kx, Kdotx = act.numerical_kernel(*torch.broadcast_tensors(q, q.T, c))
    ok = ~uncertain
    assert float((K[ok] - Kx[ok]).abs().max()) < 1e-12
    assert float((Kdot[ok] - Kdotx[ok]).abs().max()) < 1e-12


def test_steep_network_matches_the_quadrature_path(monkeypatch):
    """A tanh CNN whose first variances reach ~20: series, mixed with the quadrature where the
    series cannot bound its truncation, equals the quadrature alone."""
    net = cnn("tanh", 2, readout="gap", w_std=4.0, b_std=0.1)
    x = torch.randn(2, 2, 4, 4, dtype=F64, generator=torch.Generator().manual_seed(3))
    _assert_matches_quadrature_path(net, x, monkeypatch)


def _assert_matches_quadrature_path(net, x, monkeypatch):
    """net's kernel of x equals, to 1e-11 of its largest entry, the kernel with the series
    switched off (every entry by the polar quadrature)."""
    import infnet.network.spatial as spatial

    k = net.kernel(x)
    monkeypatch.setattr(spatial, "supports_series", lambda act: False)
    kx = net.kernel(x)
    for a, b in ((k.nngp, kx.nngp), (k.ntk, kx.ntk)):
        assert float((a - b).abs().max()) < 1e-11 * float(b.abs().max())


def test_series_only_for_smooth_activations_without_closed_form():
    assert supports_series(infnet.activation("swish"))
    assert supports_series(infnet.activation("tanh"))
    assert supports_series(infnet.activation(lambda x: torch.sin(x) + x, name="sinx"))
    for name in ("relu", "erf", "gelu", "elu", "step", "hardtanh"):
        assert not supports_series(infnet.activation(name)), name


def test_tiles_and_cache_do_not_change_the_kernel():
    """A budget small enough for one image pair per tile, and a cache that must drop sides,
    give the kernel of the default tiling (the degrees differ with the slabs, the results only
    within the tolerance)."""
    import infnet.network.images as images

    net = cnn("swish", 2, readout="gap", w_std=1.5, b_std=0.1)
    g = torch.Generator().manual_seed(4)
    x1, x2 = (torch.randn(n, 2, 6, 6, dtype=F64, generator=g) for n in (5, 3))
    k = net.kernel(x1, x2)
    small = images.SERIES_CACHE_BYTES
    try:
        images.SERIES_CACHE_BYTES = 40_000  # a few sides only
        k2 = net.kernel(x1, x2, memory=net.peak_memory((6, 6), 1, 1))
    finally:
        images.SERIES_CACHE_BYTES = small
    for a, b in ((k.nngp, k2.nngp), (k.ntk, k2.ntk)):
        assert float((a - b).abs().max()) < 1e-11 * float(b.abs().max())


def test_cache_keeps_within_its_limit():
    act = infnet.activation("swish")
    sides = [Series.build(act, torch.full((3, 4), 0.5 + i, dtype=F64), 32) for i in range(4)]
    cache = SeriesCache(limit=2 * sides[0].nbytes)
    for i, s in enumerate(sides):
        cache.put(i, s)
    assert cache.used <= cache.limit and set(cache.store) == {2, 3}
    assert cache.get(3, 32) is sides[3] and cache.get(3, 64) is None and cache.get(0, 32) is None


def test_split_horner_gives_the_high_degree_where_rho_is_large():
    """Entries with |rho| > split get every term up to the degree, the others those up to
    ``low``: each equals the plain sum of its own degree (to rounding)."""
    g = torch.Generator().manual_seed(5)
    a = torch.randn(41, 6, 1, dtype=F64, generator=g) / torch.arange(1, 42)[:, None, None]
    b = torch.randn(41, 1, 7, dtype=F64, generator=g) / torch.arange(1, 42)[:, None, None]
    rho = 2 * torch.rand(6, 7, dtype=F64, generator=g) - 1
    split = hermite.horner(a, b, rho, 40, 10, 0.5)
    high, low = hermite.horner(a, b, rho, 40), hermite.horner(a, b, rho, 10)
    big = rho.abs() > 0.5
    assert 0 < int(big.sum()) < rho.numel()
    torch.testing.assert_close(split[big], high[big], rtol=1e-14, atol=1e-15)
    torch.testing.assert_close(split[~big], low[~big], rtol=1e-14, atol=1e-15)


def test_a_diverging_expectation_is_not_summed():
    """phi = exp(x^2 / 3) has E[phi^2] infinite above q = 3/4, where a Gauss-Hermite rule still
    returns a finite sum: those positions are never resolved, so the network raises the
    quadrature's KernelOverflowError ("diverges") as it does without the series."""
    act = infnet.activation(lambda x: torch.exp(x * x / 3), name="expsq")
    q = torch.tensor([0.1, 1.1], dtype=F64)
    _, tail = hermite.coefficients(act, q, 32)
    assert float(tail[0, -1]) < 1e-20 and math.isinf(float(tail[1, 0]))
    net = cnn(act, 2, readout="gap", w_std=1.2, b_std=0.1)
    x = torch.randn(2, 2, 4, 4, dtype=F64, generator=torch.Generator().manual_seed(6))
    with pytest.raises(infnet.KernelOverflowError, match="diverges"):
        net.kernel(x)


def test_a_smooth_user_function_matches_the_quadrature_path(monkeypatch):
    """A user's smooth function (sin x + x) in a CNN-GAP: the series equals the quadrature."""
    act = infnet.activation(lambda x: torch.sin(x) + x, name="sinx")
    net = cnn(act, 2, readout="gap", w_std=1.2, b_std=0.1)
    x = torch.randn(3, 2, 5, 5, dtype=F64, generator=torch.Generator().manual_seed(7))
    _assert_matches_quadrature_path(net, x, monkeypatch)


@pytest.mark.parametrize("m", [144, 528, 1040, 2064])
def test_gauss_hermite_rule_is_exact_to_rounding_at_every_size(m):
    """E[exp(0.7 z)] = exp(0.245) and E[z^10] = 945 by the m-point rule, its sum rounded once
    (math.fsum): within 2e-15. SciPy's own weights beyond 150 nodes miss the first by 3e-15 to
    6e-15 (asymptotic formulas); the nodes refined by Newton and the weights recomputed from
    the orthonormal recurrence do not."""
    z, w = hermite.gauss_hermite(m)
    assert math.fsum(w) == pytest.approx(1.0, abs=1e-15)
    want = math.exp(0.49 / 2)
    assert abs(math.fsum(w * np.exp(0.7 * z)) - want) < 2e-15 * want
    assert abs(math.fsum(w * z**10) - 945) < 2e-15 * 945


def test_fully_connected_pairs_use_the_series_and_agree_with_the_quadrature(monkeypatch):
    """A depth-3 swish network on raw inputs of different norms (an exact duplicate, a
    near-duplicate, a near-antiparallel pair): the kernel by the Hermite series (the pairs'
    default) and by the polar quadrature agree to 5e-14 of the kernels' scale (measured
    5e-15); the series path runs no 2-D quadrature on the pairs of different inputs."""
    from infnet.activations import numerical
    from infnet.numerics import quadrature

    x = torch.randn(16, 3, dtype=F64, generator=torch.Generator().manual_seed(5))
    x[5], x[6], x[7] = x[0], x[0] * (1 + 1e-9), -x[1] * (1 + 1e-8)
    net = infnet.fc("swish", 3, w_std=1.3, b_std=0.4)
    calls = []
    real = quadrature.gaussian_expectation
    monkeypatch.setattr(quadrature, "gaussian_expectation",
                        lambda fns, q1, *a, **k: calls.append(q1.numel()) or real(fns, q1, *a, **k))
    by_series = net.kernel(x)
    # (only the output angles of the four near-parallel pairs, at each of the three layers)
    assert calls and max(calls) <= 4
    monkeypatch.setattr(numerical, "supports_series", lambda act: False)
    by_quadrature = net.kernel(x)
    for f in ("nngp", "ntk"):
        a, b = getattr(by_series, f), getattr(by_quadrature, f)
        assert float((a - b).abs().max()) < 5e-14 * float(b.abs().max()), f
