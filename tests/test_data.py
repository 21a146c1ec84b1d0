"""Data on the sphere: the paper's Dirichlet scheme, digits, and input validation."""

import warnings

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.special import gammaln

from infnet.data import (
    PAPER_ALPHAS,
    DirichletData,
    check_labels,
    digits_sphere,
    dirichlet_setting,
    dirichlet_sphere,
    on_sphere,
    train_test,
)


@pytest.mark.parametrize("d", [2, 3, 5, 9])
def test_dirichlet_sphere_follows_the_paper_scheme(d):
    n, prior = 20000, 0.4
    x, y = dirichlet_sphere(n, d=d, prior=prior, seed=1)
    assert x.shape == (n, d) and x.dtype == np.float64
    assert np.issubdtype(y.dtype, np.integer) and set(np.unique(y)) == {-1, 1}
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, rtol=1e-14)
    assert (x > 0).all()
    # exactly int(n * prior) points of class +1 (fixed counts, as get_dirichlet_data)
    assert (y == 1).sum() == int(n * prior)
    # the rows are shuffled: a paper-style training half has the prior frequency (5 s.e.)
    half = y[: n // 2]
    assert abs((half == 1).mean() - prior) < 5 * np.sqrt(prior * (1 - prior) / (n // 2))
    # back on the simplex, each class has the Dirichlet mean alpha / sum(alpha) (5 s.e.)
    s = x / x.sum(axis=1, keepdims=True)
    for label, alpha in zip((1, -1), PAPER_ALPHAS[d], strict=True):
        alpha = np.array(alpha)
        sk = s[y == label]
        se = sk.std(axis=0, ddof=1) / np.sqrt(len(sk))
        assert np.all(np.abs(sk.mean(axis=0) - alpha / alpha.sum()) < 5 * se)
        # and the Dirichlet variance a_i (a0 - a_i) / (a0^2 (a0 + 1)) within 10%
        a0 = alpha.sum()
        np.testing.assert_allclose(sk.var(axis=0), alpha * (a0 - alpha) / (a0**2 * (a0 + 1)),
                                   rtol=0.1)


def test_dirichlet_sphere_seeds():
    x1, y1 = dirichlet_sphere(500, d=2, seed=3)
    x2, y2 = dirichlet_sphere(500, d=2, seed=3)
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
    x3, _ = dirichlet_sphere(500, d=2, seed=4)
    assert not np.allclose(x1, x3)
    x4, y4 = dirichlet_sphere(500, d=2, seed=np.random.default_rng(3))  # a Generator works too
    np.testing.assert_array_equal(x1, x4)


def test_dirichlet_custom_alphas_and_errors():
    alphas = ((1.0, 2.0, 3.0, 4.0), (4.0, 3.0, 2.0, 1.0))
    x, y = dirichlet_sphere(100, d=4, prior=0.25, alphas=alphas, seed=0)
    assert x.shape == (100, 4) and (y == 1).sum() == 25
    with pytest.raises(ValueError, match="pass alphas"):
        dirichlet_sphere(10, d=4)
    with pytest.raises(ValueError, match="length 4 but d = 3"):
        dirichlet_sphere(10, d=3, alphas=alphas)
    with pytest.raises(ValueError, match="> 0"):
        DirichletData(((1.0, -1.0), (1.0, 1.0)))
    with pytest.raises(ValueError, match="one length"):
        DirichletData(((1.0, 1.0), (1.0, 1.0, 1.0)))
    with pytest.raises(ValueError, match="one length"):
        DirichletData(((1.0,), (2.0,)))
    with pytest.raises(ValueError, match="prior"):
        DirichletData(((1.0, 2.0), (2.0, 1.0)), prior=1.0)
    with pytest.raises(ValueError, match="distinct"):
        DirichletData(((1.0, 2.0), (2.0, 1.0)), labels=(1, 1))
    with pytest.raises(ValueError, match="positive integer"):
        dirichlet_sphere(0, d=2)


def test_log_joint_is_prior_times_dirichlet_density():
    data = dirichlet_setting(3)
    x, _ = data.sample(50, seed=2)
    s = x / x.sum(axis=1, keepdims=True)
    for k, (alpha, p) in enumerate(zip(data.alphas, (0.4, 0.6), strict=True)):
        alpha = np.array(alpha)
        expected = (np.log(p) + gammaln(alpha.sum()) - gammaln(alpha).sum()
                    + ((alpha - 1) * np.log(s)).sum(axis=1))
        np.testing.assert_allclose(data.log_joint(x)[:, k], expected, rtol=1e-12)
    # outside the positive orthant both densities vanish: only the prior is left
    out = data.log_joint(np.array([[-0.6, 0.0, 0.8]]))
    np.testing.assert_allclose(out, np.log([[0.4, 0.6]]))


def test_digits_sphere_and_split():
    x, y = digits_sphere()
    assert x.shape == (1797, 64) and y.shape == (1797,)
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, rtol=1e-14)
    assert set(y) == set(range(10))
    xs, ys = digits_sphere(500, seed=1)
    assert xs.shape == (500, 64)
    assert np.bincount(ys).min() >= 45  # stratified: about 50 per class
    x_tr, x_te, y_tr, y_te = train_test(xs, ys, test_size=0.5, seed=0)
    assert len(y_tr) == len(y_te) == 250
    assert np.abs(np.bincount(y_tr, minlength=10) - np.bincount(y_te, minlength=10)).max() <= 1


def test_on_sphere_normalizes_with_a_warning():
    x = np.array([[3.0, 4.0], [0.0, 2.0]])
    with pytest.warns(UserWarning, match="2 of 2 rows of x do not have unit norm"):
        u = on_sphere(x)
    np.testing.assert_allclose(u, [[0.6, 0.8], [0.0, 1.0]])
    np.testing.assert_array_equal(x, [[3.0, 4.0], [0.0, 2.0]])  # input untouched
    with pytest.raises(ValueError, match="divide each row by its norm"):
        on_sphere(x, normalize=False)
    with warnings.catch_warnings():  # unit rows (to 1e-10, or float32 rounding): no warning
        warnings.simplefilter("error")
        v = on_sphere(np.array([[0.6, 0.8 * (1 + 1e-12)]]))
        w = on_sphere(torch.tensor([[0.6, 0.8]], dtype=torch.float32))
    assert v.dtype == w.dtype == np.float64
    np.testing.assert_allclose(v, [[0.6, 0.8]], rtol=1e-11)
    np.testing.assert_allclose(w, [[0.6, 0.8]], rtol=1e-7)
    for u in (v, w):  # and they come back of norm 1 to float64 rounding
        assert abs(np.linalg.norm(u) - 1) < 4e-16
    with pytest.warns(UserWarning, match="1 of 1 rows"):
        on_sphere(np.array([[0.6, 0.8 * (1 + 1e-9)]]))
    with pytest.warns(UserWarning):  # huge entries: no overflow in the norm
        np.testing.assert_allclose(on_sphere([[3e300, 4e300]]), [[0.6, 0.8]])


@pytest.mark.parametrize("bad, match", [
    ([[1.0, 0.0], [np.nan, 1.0]], "row 1 contains NaN or inf"),
    ([[np.inf, 0.0]], "row 0 contains NaN or inf"),
    ([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]], "row 2 is the zero vector"),
    (np.zeros((0, 3)), "empty"),
    ([1.0, 0.0], "reshape"),
    ([["a", "b"]], "numeric"),
])
def test_on_sphere_rejects(bad, match):
    with pytest.raises(ValueError, match=match):
        on_sphere(bad)


@settings(max_examples=50, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(1, 6), st.integers(1, 5)),
              elements=st.floats(-1e6, 1e6, allow_nan=False)))
@example(np.array([[2.225074e-313, 2.225074e-313]]))  # subnormal rows (found by hypothesis)
def test_on_sphere_gives_unit_rows(x):
    if (np.abs(x).max(axis=1) == 0).any():
        with pytest.raises(ValueError, match="zero vector"):
            on_sphere(x)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        u = on_sphere(x)
    np.testing.assert_allclose(np.linalg.norm(u, axis=1), 1.0, rtol=1e-14)
    # the same directions: equal after scaling each row by its largest entry
    scale = lambda a: a / np.abs(a).max(axis=1, keepdims=True)  # noqa: E731
    np.testing.assert_allclose(scale(u), scale(x), rtol=1e-13, atol=1e-15)


def test_check_labels():
    np.testing.assert_array_equal(check_labels([[1], [2]], 2), [1, 2])  # a column is fine
    assert list(check_labels(["a", "b", "a"])) == ["a", "b", "a"]
    with pytest.raises(ValueError, match="a single class"):
        check_labels([1, 1, 1])
    with pytest.raises(ValueError, match="at least 2"):
        check_labels([1], 1)
    with pytest.raises(ValueError, match="3 rows but y has 2"):
        check_labels([0, 1], 3)
    with pytest.raises(ValueError, match="1-D"):
        check_labels(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="NaN"):
        check_labels([0.0, np.nan, 1.0])
    with pytest.raises(ValueError, match="continuous"):
        check_labels([0.5, 1.5, 0.25])
