"""Classifiers on the sphere: values against independent computations and the paper's figures."""

import warnings

import numpy as np
import pytest
import torch
from scipy.integrate import dblquad, quad
from scipy.special import gammaln
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.kernel_ridge import KernelRidge
from sklearn.model_selection import cross_val_score
from sklearn.neighbors import KNeighborsClassifier

import infnet
from infnet.data import PAPER_ALPHAS, digits_sphere, dirichlet_sphere
from infnet.estimators.sphere import (
    BayesDirichlet,
    HilbertKernel,
    KernelClassifier,
    MajorityVote,
    NearestNeighbor,
)

N = 2000  # n_train = n_test, as the re-run figures of docs/theory/infinite-depth.md#reference-experiments
SEEDS = (0, 1, 2)
#: re-run figures at n = 2000 (docs/theory/infinite-depth.md#reference-experiments): accuracy by dimension
QUOTED = {2: {"bayes": 0.760, "nn": 0.661, "hilbert": 0.733},
          3: {"bayes": 0.954, "nn": 0.907, "hilbert": 0.933}}


def _log_dirichlet(alpha, s):
    alpha = np.asarray(alpha)
    return gammaln(alpha.sum()) - gammaln(alpha).sum() + ((alpha - 1) * np.log(s)).sum()


def _integral_over_simplex(alphas, prior, f):
    """integral over the simplex of f(prior p_1(s), (1 - prior) p_2(s)), by quadrature."""
    a1, a2 = alphas
    if len(a1) == 2:
        def g(t):
            s = np.array([t, 1 - t])
            return f(prior * np.exp(_log_dirichlet(a1, s)), (1 - prior) * np.exp(_log_dirichlet(a2, s)))
        return quad(g, 0, 1, limit=200)[0]

    def h(s1, v):  # s2 = v^2 takes the s2^(-1/2) singularity out of the integrand
        s = np.array([s1, v * v, 1 - s1 - v * v])
        if (s <= 0).any():
            return 0.0
        return 2 * v * f(prior * np.exp(_log_dirichlet(a1, s)),
                         (1 - prior) * np.exp(_log_dirichlet(a2, s)))
    return dblquad(h, 0, 1, 0, lambda v: 1 - v * v, epsabs=1e-7, epsrel=1e-7)[0]


@pytest.fixture(scope="module")
def accuracies():
    """Mean accuracy over SEEDS of each rule, n_train = n_test = 2000, for d = 2 and 3."""
    out = {}
    for d in (2, 3):
        acc = {"bayes": [], "nn": [], "hilbert": [], "majority": []}
        for seed in SEEDS:
            x, y = dirichlet_sphere(2 * N, d=d, seed=seed)  # paper style: first half trains
            x_tr, y_tr, x_te, y_te = x[:N], y[:N], x[N:], y[N:]
            rules = {"bayes": BayesDirichlet(0.4, PAPER_ALPHAS[d]), "nn": NearestNeighbor(),
                     "hilbert": HilbertKernel(), "majority": MajorityVote()}
            for name, rule in rules.items():
                acc[name].append(rule.fit(x_tr, y_tr).score(x_te, y_te))
        out[d] = {name: float(np.mean(v)) for name, v in acc.items()}
    return out


@pytest.mark.parametrize("d", [2, 3])
def test_bayes_accuracy_is_the_bayes_rate(d, accuracies):
    # Bayes rate = integral of max(prior p_1, (1 - prior) p_2); 2-D by hand: 0.76
    rate = 1 - _integral_over_simplex(PAPER_ALPHAS[d], 0.4, min)
    if d == 2:
        assert rate == pytest.approx(0.76, abs=1e-10)
    se = np.sqrt(rate * (1 - rate) / (N * len(SEEDS)))
    assert abs(accuracies[d]["bayes"] - rate) < 4 * se
    se_quoted = np.sqrt(rate * (1 - rate) / N)
    assert abs(QUOTED[d]["bayes"] - rate) < 4 * se_quoted


@pytest.mark.parametrize("d", [2, 3])
@pytest.mark.parametrize("rule", ["nn", "hilbert"])
def test_accuracies_match_the_quoted_figures(d, rule, accuracies):
    acc, quoted = accuracies[d][rule], QUOTED[d][rule]
    # the quoted figure is one run (binomial s.e. over 2000 test points, plus the spread of
    # the training set, of the same size); ours averages len(SEEDS) runs
    se = np.sqrt(acc * (1 - acc) / N)
    assert abs(acc - quoted) < 4 * np.sqrt(2 * se**2 + 2 * se**2 / len(SEEDS))
    assert acc < accuracies[d]["bayes"] + 2 * se  # nothing beats Bayes


@pytest.mark.parametrize("d", [2, 3])
def test_nearest_neighbor_near_the_cover_hart_limit(d, accuracies):
    # as n -> infinity, 1-NN accuracy -> integral of (q_1^2 + q_2^2) / (q_1 + q_2), q_k = prior_k p_k
    limit = 1 - _integral_over_simplex(PAPER_ALPHAS[d], 0.4, lambda p, q: 2 * p * q / (p + q))
    assert abs(accuracies[d]["nn"] - limit) < 0.03  # finite-n bias + sampling error
    assert accuracies[d]["majority"] == pytest.approx(0.6, abs=0.02)


def _sphere(n, d, seed, classes=2):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True), rng.integers(0, classes, n)


def test_nearest_neighbor_agrees_with_sklearn():
    x, y = _sphere(300, 5, 0, classes=3)
    labels = np.array(["cat", "dog", "emu"])[y]
    xt, _ = _sphere(200, 5, 1)
    ours = NearestNeighbor().fit(x, labels).predict(xt)
    np.testing.assert_array_equal(ours, KNeighborsClassifier(1).fit(x, labels).predict(xt))
    np.testing.assert_array_equal(NearestNeighbor().fit(x, labels).predict(x), labels)


def _exp_kernel(a, b):
    return np.exp(2.0 * a @ b.T)  # positive definite on distinct points


def test_kernel_classifier_interpolates_and_matches_kernel_ridge():
    x, y = _sphere(80, 4, 2)
    xt, _ = _sphere(50, 4, 3)
    pm = np.where(y == 1, 1.0, -1.0)  # classes_[1] = 1 is the positive class
    clf = KernelClassifier(_exp_kernel).fit(x, y)
    np.testing.assert_allclose(clf.decision_function(x), pm, atol=1e-8)
    np.testing.assert_array_equal(clf.predict(x), y)
    for ridge in (1e-3, 0.5):
        ours = KernelClassifier(_exp_kernel, ridge=ridge).fit(x, y).decision_function(xt)
        ref = KernelRidge(alpha=ridge, kernel="precomputed").fit(_exp_kernel(x, x), pm)
        np.testing.assert_allclose(ours, ref.predict(_exp_kernel(xt, x)), rtol=1e-8, atol=1e-10)
    # three classes: argmax of kernel ridge on one-hot targets
    x3, y3 = _sphere(90, 4, 4, classes=3)
    onehot = np.eye(3)[y3]
    ref = KernelRidge(alpha=0.1, kernel="precomputed").fit(_exp_kernel(x3, x3), onehot)
    clf = KernelClassifier(_exp_kernel, ridge=0.1).fit(x3, y3 + 10)
    np.testing.assert_allclose(clf.decision_function(xt), ref.predict(_exp_kernel(xt, x3)), atol=1e-10)
    np.testing.assert_array_equal(clf.predict(xt), ref.predict(_exp_kernel(xt, x3)).argmax(1) + 10)


def test_kernel_classifier_with_an_infnet_network():
    x, y = digits_sphere(300, seed=0)
    x_tr, y_tr, x_te, y_te = x[:200], y[:200], x[200:], y[200:]
    net = infnet.fc("relu", 2)
    for kind in ("nngp", "ntk"):
        clf = KernelClassifier(net, kind=kind).fit(x_tr, y_tr)
        by_hand = KernelClassifier(lambda a, b, k=kind: getattr(net.kernel(a, b), k)).fit(x_tr, y_tr)
        np.testing.assert_allclose(clf.decision_function(x_te), by_hand.decision_function(x_te))
        assert clf.score(x_te, y_te) > 0.85
        assert clf.score(x_tr, y_tr) == 1.0  # min-norm interpolation
    fitted = cross_val_score(KernelClassifier(net, kind="ntk"), x_tr, y_tr, cv=3)
    assert fitted.mean() > 0.8


def test_kernel_classifier_singular_matrix_falls_back_with_a_warning():
    x, y = _sphere(30, 3, 5)
    y[:20] = 1
    y[20:] = 0
    ones = lambda a, b: torch.ones(len(a), len(b), dtype=torch.float64)  # noqa: E731
    with pytest.warns(UserWarning, match="min-norm least squares"):
        clf = KernelClassifier(ones).fit(x, y)
    np.testing.assert_array_equal(clf.predict(x[:5]), 1)  # rank 1: the majority vote


def test_kernel_classifier_errors():
    x, y = _sphere(20, 3, 6)
    with pytest.raises(ValueError, match="kind"):
        KernelClassifier(_exp_kernel, kind="gp").fit(x, y)
    with pytest.raises(ValueError, match="ridge"):
        KernelClassifier(_exp_kernel, ridge=-1.0).fit(x, y)
    with pytest.raises(ValueError, match="shape"):
        KernelClassifier(lambda a, b: np.ones((3, 3))).fit(x, y)
    with pytest.raises(ValueError, match="NaN"):
        KernelClassifier(lambda a, b: np.full((len(a), len(b)), np.nan)).fit(x, y)
    with pytest.raises(TypeError, match="callable"):
        KernelClassifier(3.0).fit(x, y)


def _hilbert_by_hand(x, y, xt, exponent):
    classes = np.unique(y)
    dist = np.linalg.norm(xt[:, None, :] - x[None, :, :], axis=2)
    w = dist ** (-exponent)
    return classes[np.array([w[:, y == c].sum(1) for c in classes]).argmax(0)]


def test_hilbert_kernel_matches_direct_sums():
    x, y = _sphere(40, 3, 7, classes=3)
    xt, _ = _sphere(60, 3, 8)
    clf = HilbertKernel().fit(x, y)
    assert clf.exponent_ == 2
    np.testing.assert_array_equal(clf.predict(xt), _hilbert_by_hand(x, y, xt, 2.0))
    np.testing.assert_array_equal(HilbertKernel(exponent=0.5).fit(x, y).predict(xt),
                                  _hilbert_by_hand(x, y, xt, 0.5))
    # exponent 0: every point weighs 1, the majority vote
    np.testing.assert_array_equal(HilbertKernel(exponent=0).fit(x, y).predict(xt),
                                  MajorityVote().fit(x, y).predict(xt))
    with pytest.raises(ValueError, match="exponent"):
        HilbertKernel(exponent=-1).fit(x, y)


def test_hilbert_kernel_at_and_near_training_points():
    x, y = digits_sphere(300, seed=1)  # d = 64: weights |x - x_i|^(-63)
    clf = HilbertKernel().fit(x, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow or invalid-value warnings
        np.testing.assert_array_equal(clf.predict(x), y)
        near = x + 1e-9 * np.random.default_rng(0).standard_normal(x.shape)  # weight ~1e567
        near /= np.linalg.norm(near, axis=1, keepdims=True)
        np.testing.assert_array_equal(clf.predict(near), y)
    # a point present three times: the vote among its copies decides
    xs, _ = _sphere(6, 3, 9)
    xd = np.vstack([xs, xs[:1], xs[:1]])
    yd = np.array([0, 1, 1, 1, 1, 1, 0, 0])  # copies of xs[0] labelled 0, 0, 0 vs neighbours 1
    np.testing.assert_array_equal(HilbertKernel().fit(xd, yd).predict(xs[:1]), [0])
    yd[-1] = 1  # copies now labelled 0, 0, 1
    np.testing.assert_array_equal(HilbertKernel().fit(xd, yd).predict(xs[:1]), [0])


def test_majority_vote():
    x, _ = _sphere(7, 2, 10)
    y = np.array(["b", "a", "b", "c", "b", "a", "c"])
    np.testing.assert_array_equal(MajorityVote().fit(x, y).predict(x[:3]), ["b"] * 3)
    tie = np.array([2, 1, 2, 1, 0, 0, 3])  # 0, 1 and 2 tie: the smallest label
    np.testing.assert_array_equal(MajorityVote().fit(x, tie).predict(x[:2]), [0, 0])


def test_bayes_dirichlet_labels_and_errors():
    x, y = dirichlet_sphere(200, d=2, seed=0)
    alphas = PAPER_ALPHAS[2]
    clf = BayesDirichlet(0.4, alphas).fit(x, y)
    np.testing.assert_array_equal(clf.classes_, [-1, 1])
    s = x / x.sum(1, keepdims=True)
    by_hand = [1 if 0.4 * np.exp(_log_dirichlet(alphas[0], si)) > 0.6 * np.exp(_log_dirichlet(alphas[1], si))
               else -1 for si in s]
    np.testing.assert_array_equal(clf.predict(x), by_hand)
    named = BayesDirichlet(0.4, alphas, labels=("one", "two")).fit(x, np.where(y == 1, "one", "two"))
    np.testing.assert_array_equal(named.predict(x), np.where(np.array(by_hand) == 1, "one", "two"))
    with pytest.raises(ValueError, match="not among the classes"):
        BayesDirichlet(0.4, alphas).fit(x, y + 5)
    with pytest.raises(ValueError, match="features"):
        BayesDirichlet(0.4, PAPER_ALPHAS[3]).fit(x, y)


ESTIMATORS = [KernelClassifier(_exp_kernel, ridge=1e-3), NearestNeighbor(), MajorityVote(), HilbertKernel(),
              BayesDirichlet(0.4, PAPER_ALPHAS[2])]
IDS = [type(e).__name__ for e in ESTIMATORS]


@pytest.mark.parametrize("est", ESTIMATORS, ids=IDS)
def test_bad_inputs(est):
    x, y = dirichlet_sphere(20, d=2, seed=1)
    with pytest.raises(NotFittedError):
        clone(est).predict(x)
    cases = [(np.vstack([x[:-1], [[np.nan, 1.0]]]), y, "row 19 contains NaN"),
             (np.vstack([x[:-1], [[0.0, 0.0]]]), y, "row 19 is the zero vector"),
             (x, np.ones_like(y), "a single class"),
             (x[:1], y[:1], "at least 2"),
             (x, y[:-1], "20 rows but y has 19")]
    for xb, yb, match in cases:
        with pytest.raises(ValueError, match=match):
            clone(est).fit(xb, yb)
    fitted = clone(est).fit(x, y)
    with pytest.raises(ValueError, match="3 features, but .* fitted with 2"):
        fitted.predict(np.full((4, 3), 3**-0.5))
    with pytest.warns(UserWarning, match="unit norm"):
        fitted.predict(3 * x)


@pytest.mark.parametrize("est", ESTIMATORS, ids=IDS)
def test_clone_and_cross_validation(est):
    x, y = dirichlet_sphere(300, d=2, seed=2)
    copy = clone(est)
    assert copy.get_params() == est.get_params()
    scores = cross_val_score(copy, x, y, cv=3)
    assert scores.shape == (3,) and np.all((scores >= 0.5) & (scores <= 1))
