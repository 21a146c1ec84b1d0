"""Classification with the scale mixture of NNGPs by stochastic variational inference: the
inverse-gamma KL against quadrature, the ELBO against an independent Monte Carlo estimate and
against the log marginal likelihood, the predictive against the GP conditional, and errors."""

import doctest
import math

import numpy as np
import pytest
import torch
from scipy import integrate, special, stats

import infnet
from infnet.gp import mixture_classifier
from infnet.gp.mixture_classifier import (
    ScaleMixtureClassifier,
    inverse_gamma_kl,
    scale_mixture_classification,
)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny matrices: one thread is several times faster, and far faster on a busy machine."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def problem(n, seed=0, scale=3.0):
    """An erf-network NNGP kernel of n random inputs in 2-D (times ``scale``)."""
    x = np.random.default_rng(seed).normal(size=(n, 2))
    return scale * infnet.fc("erf", 2, w_std=1.5, b_std=0.5).kernel(torch.as_tensor(x)).nngp


def kl_by_quadrature(a1, b1, a2, b2):
    """int q log(q / p) ds in t = log s (q, p inverse-gamma densities of scipy)."""
    q, p = stats.invgamma(a1, scale=b1), stats.invgamma(a2, scale=b2)
    peak = math.log(b1 / (a1 + 1))  # q's mode

    def f(t):
        s = math.exp(t)
        lq = q.logpdf(s)
        return math.exp(lq + t) * (lq - p.logpdf(s))

    val, _ = integrate.quad(f, peak - 40, peak + 40, points=[peak], limit=400, epsabs=1e-14,
                            epsrel=1e-13)
    return val


def cholesky_prior(k, jitter):
    return np.linalg.cholesky(k.numpy() + jitter * np.eye(k.shape[0]))


def gaussian_kl(m_q, c_q, m_p, c_p):
    """KL(N(m_q, c_q) || N(m_p, c_p)), the textbook formula."""
    d = m_p - m_q
    sol = np.linalg.solve(c_p, np.column_stack([c_q, d]))
    return 0.5 * (np.trace(sol[:, :-1]) + d @ sol[:, -1] - len(d)
                  + np.linalg.slogdet(c_p)[1] - np.linalg.slogdet(c_q)[1])


@pytest.mark.parametrize("a1, b1, a2, b2", [(2.0, 3.0, 2.0, 3.0), (3.0, 2.0, 2.0, 2.0),
                                            (0.7, 1.5, 2.0, 2.0), (10.0, 0.5, 1.2, 4.0)])
def test_inverse_gamma_kl_is_the_integral(a1, b1, a2, b2):
    got = inverse_gamma_kl(a1, b1, a2, b2)
    assert math.isclose(got, kl_by_quadrature(a1, b1, a2, b2), rel_tol=0, abs_tol=1e-9)
    assert got >= 0


@pytest.mark.parametrize("prior", ["inverse-gamma", None])
def test_elbo_is_an_independent_monte_carlo_estimate(prior):
    """Draw s and f from the stated q with numpy; KL(q(f | s) || p(f | s)) by the Gaussian
    formula at two very different s (equal: it does not depend on s)."""
    k, labels = problem(5), np.array([0, 1, 2, 1, 0])
    clf = scale_mixture_classification(k, labels, prior=prior, a=2.5, b=1.5, steps=40,
                                       learning_rate=0.2, seed=3)
    par = clf.variational_parameters()
    assert np.abs(par["mu"]).max() > 0.1  # (the fit moved away from the prior)
    lk = cholesky_prior(k, clf.jitter)
    kp = lk @ lk.T
    means = [lk @ m for m in par["mu"]]
    covs = [lk @ v @ v.T @ lk.T for v in par["V"]]
    kls = [sum(gaussian_kl(math.sqrt(s) * m, s * c, np.zeros(5), s * kp)
               for m, c in zip(means, covs, strict=True)) for s in (0.37, 41.0)]
    assert math.isclose(kls[0], kls[1], rel_tol=1e-9)
    assert math.isclose(clf.kl_f, kls[0], rel_tol=1e-9)
    kl_s = 0.0 if prior is None else kl_by_quadrature(par["alpha"], par["beta"], 2.5, 1.5)
    assert math.isclose(clf.kl_s, kl_s, rel_tol=0, abs_tol=1e-9)

    rng, draws = np.random.default_rng(11), 20_000
    s = np.ones(draws) if prior is None else \
        stats.invgamma(par["alpha"], scale=par["beta"]).rvs(draws, random_state=rng)
    f = np.stack([m + rng.normal(size=(draws, 5)) @ np.linalg.cholesky(c).T
                  for m, c in zip(means, covs, strict=True)], axis=-1)  # (draws, n, C)
    f *= np.sqrt(s)[:, None, None]
    ell = np.take_along_axis(special.log_softmax(f, -1), labels[None, :, None], -1).sum((1, 2))
    want = ell - kls[1] - kl_s
    got, got_se = clf.estimate_elbo(samples=draws, seed=5)
    err = math.hypot(got_se, want.std() / math.sqrt(draws))
    assert abs(got - want.mean()) < 4 * err


def log_evidence(k, labels, jitter, prior, draws=1_000_000, seed=0):
    """log p(y) by Monte Carlo over the prior (s, f): (estimate, standard error)."""
    rng = np.random.default_rng(seed)
    lk = cholesky_prior(k, jitter)
    lik = []
    for _ in range(draws // 100_000):
        s = np.ones(100_000) if prior is None else \
            stats.invgamma(prior[0], scale=prior[1]).rvs(100_000, random_state=rng)
        f = np.sqrt(s)[:, None, None] * (rng.normal(size=(100_000, 2, 3)) @ lk.T)  # (S, C, n)
        logp = special.log_softmax(f, axis=1)
        lik.append(np.exp(np.take_along_axis(logp, labels[None, None, :], 1).sum((1, 2))))
    lik = np.concatenate(lik)
    return math.log(lik.mean()), lik.std() / lik.mean() / math.sqrt(len(lik))


@pytest.mark.parametrize("prior, gap", [("inverse-gamma", 0.25), (None, 0.12)])
def test_elbo_bounds_the_log_marginal_likelihood(prior, gap):
    """The gaps (about 0.17 and 0.07, the same with 5000 steps of 32 draws) are those of the
    families: q(u) cannot follow the posterior of u given s, which changes with s."""
    k, labels = problem(3, seed=1, scale=1.0), np.array([0, 1, 1])
    clf = scale_mixture_classification(k, labels, prior=prior, a=2.0, b=2.0, steps=1500,
                                       learning_rate=0.05, seed=0)
    elbo, elbo_se = clf.estimate_elbo(samples=50_000, seed=1)
    logp, logp_se = log_evidence(k, labels, clf.jitter, None if prior is None else (2.0, 2.0))
    assert elbo <= logp + 3 * math.hypot(elbo_se, logp_se)
    assert logp - elbo < gap
    assert abs(np.mean(clf.elbo_trace[-200:]) - elbo) < 0.1  # converged


def test_a_separated_problem_is_fit_and_runs_are_reproducible():
    rng = np.random.default_rng(0)
    centres = 3 * np.array([[1.0, 0.0], [-0.5, 0.87], [-0.5, -0.87]])
    labels = np.repeat(np.arange(3), 8)
    x = torch.as_tensor(centres[labels] + 0.3 * rng.normal(size=(24, 2)))
    k = infnet.fc("erf", 2, w_std=1.5, b_std=0.5).kernel(x).nngp
    clf = scale_mixture_classification(k, labels, steps=400, seed=2)
    p = clf.predict_proba(k, k.diagonal(), samples=1000)
    assert p.shape == (24, 3) and np.allclose(p.sum(1), 1.0, rtol=0, atol=1e-12)
    assert (p.argmax(1) == labels).all()
    assert p[np.arange(24), labels].min() > 0.8
    lpd = clf.log_predictive_density(k, k.diagonal(), labels, samples=1000)
    assert np.allclose(lpd, np.log(p[np.arange(24), labels]), rtol=0, atol=1e-12)  # same draws
    again = scale_mixture_classification(k, labels, steps=400, seed=2)
    assert again.elbo_trace == clf.elbo_trace
    assert np.array_equal(again.predict_proba(k, k.diagonal(), samples=1000), p)
    other = scale_mixture_classification(k, labels, steps=400, seed=3)
    assert other.elbo_trace != clf.elbo_trace


@pytest.mark.parametrize("prior", ["inverse-gamma", None])
def test_predictive_is_the_gp_conditional(prior):
    """Two classes: p(y* = 1) = E_s E[sigmoid(f*_1 - f*_0)] with f* the GP conditional of the
    training latents under q, by Gauss-Hermite in the difference and quadrature in s."""
    k = problem(7, seed=4)
    n = 5
    clf = scale_mixture_classification(k[:n, :n], [0, 1, 1, 0, 1], prior=prior, steps=60,
                                       learning_rate=0.2, seed=1)
    par = clf.variational_parameters()
    lk = cholesky_prior(k[:n, :n], clf.jitter)
    kp, kst, kss = lk @ lk.T, k[n:, :n].numpy(), k.diagonal()[n:].numpy()
    w = np.linalg.solve(kp, kst.T)  # K'^-1 k*
    mean = np.stack([w.T @ lk @ m for m in par["mu"]])  # (C, m) at s = 1
    var = np.stack([kss - np.einsum("ij,ij->j", kst.T, w)
                    + np.einsum("ij,ij->j", w, lk @ v @ v.T @ lk.T @ w) for v in par["V"]])
    z, gw = np.polynomial.hermite_e.hermegauss(80)
    gw = gw / gw.sum()

    def p1(s):  # p(y* = 1 | s)
        m, sd = np.sqrt(s) * (mean[1] - mean[0]), np.sqrt(s * (var[0] + var[1]))
        return special.expit(m[:, None] + sd[:, None] * z) @ gw

    if prior is None:
        want = p1(1.0)
    else:
        q = stats.invgamma(par["alpha"], scale=par["beta"])
        want = np.array([integrate.quad(lambda u, i=i: p1(q.ppf(u))[i], 0, 1, limit=200)[0]
                         for i in range(2)])
    got = clf.predict_proba(k[n:, :n], k.diagonal()[n:], samples=40_000, seed=7)[:, 1]
    assert np.allclose(got, want, rtol=0, atol=4 * 0.5 / math.sqrt(40_000))


def test_plain_nngp_kl_is_the_gaussian_kl():
    k, labels = problem(4, seed=2), [0, 1, 0, 1]
    plain = scale_mixture_classification(k, labels, prior=None, steps=30, learning_rate=0.2)
    par = plain.variational_parameters()
    lk = torch.as_tensor(cholesky_prior(k, plain.jitter))
    prior = torch.distributions.MultivariateNormal(torch.zeros(4, dtype=torch.float64),
                                                   scale_tril=lk)
    want = sum(float(torch.distributions.kl_divergence(
        torch.distributions.MultivariateNormal(lk @ torch.as_tensor(m), scale_tril=lk @ torch.as_tensor(v)),
        prior)) for m, v in zip(par["mu"], par["V"], strict=True))
    assert math.isclose(plain.kl_f, want, rel_tol=1e-10)
    assert plain.kl_s == 0.0 and plain.alpha is None and plain.beta is None
    mixed = scale_mixture_classification(k, labels, a=3.0, b=1.0, steps=30, learning_rate=0.2)
    assert mixed.alpha != 3.0 and mixed.beta != 1.0
    assert math.isclose(mixed.kl_s, inverse_gamma_kl(mixed.alpha, mixed.beta, 3.0, 1.0),
                        rel_tol=1e-12)
    diag = scale_mixture_classification(k, labels, prior=None, steps=30, learning_rate=0.2,
                                        covariance="diagonal")
    v = diag.variational_parameters()["V"]
    assert np.count_nonzero(np.tril(v, -1)) == 0 and (np.diagonal(v, 0, 1, 2) > 0).all()


def test_bad_inputs_are_named():
    k, labels = problem(4), np.array([0, 1, 0, 1])
    fit = scale_mixture_classification
    for bad, match in [([0.0, 1.5, 0.0, 1.0], "integer class indices"),
                       ([0, -1, 0, 1], "negative label"), ([0, 0, 0, 0], "at least 2 classes"),
                       ([0, 1, 0], "1-D array of 4"), (np.eye(4, dtype=int), "1-D array")]:
        with pytest.raises(ValueError, match=match):
            fit(k, bad, steps=1)
    with pytest.raises(ValueError, match="square"):
        fit(k[:, :3], labels, steps=1)
    with pytest.raises(ValueError, match="not symmetric"):
        fit(k + torch.triu(torch.ones(4, 4, dtype=torch.float64), 1), labels, steps=1)
    with pytest.raises(ValueError, match="NaN or inf"):
        fit(k * torch.tensor(math.nan), labels, steps=1)
    for kwargs, match in [({"a": 0.0}, "a must be"), ({"b": math.inf}, "b must be"),
                          ({"steps": 0}, "steps must be"), ({"samples": 2.0}, "samples must be"),
                          ({"learning_rate": -1.0}, "learning_rate"), ({"jitter": -1.0}, "jitter"),
                          ({"prior": "gamma"}, "prior must be"), ({"classes": 1}, "at least 2"),
                          ({"covariance": "low-rank"}, "covariance")]:
        with pytest.raises(ValueError, match=match):
            fit(k, labels, **{"steps": 1, **kwargs})
    clf = fit(k, labels, steps=2)
    with pytest.raises(ValueError, match="k_test_train must have shape"):
        clf.predict_proba(k[:, :3], k.diagonal())
    with pytest.raises(ValueError, match="k_test_train must have shape"):
        clf.predict_proba(k, k.diagonal()[:3])
    with pytest.raises(ValueError, match="not a class"):
        clf.log_predictive_density(k, k.diagonal(), [0, 1, 2, 0])
    with pytest.raises(ValueError, match="a1 must be"):
        inverse_gamma_kl(-1.0, 1.0, 1.0, 1.0)
    with pytest.raises(FloatingPointError, match="non-finite"):
        fit(k, labels, steps=5, learning_rate=1e6)


def test_examples_run():
    globs = {"infnet": infnet, "torch": torch, "np": np}
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for obj in (inverse_gamma_kl, ScaleMixtureClassifier, scale_mixture_classification):
        for t in finder.find(obj, obj.__name__, module=mixture_classifier, globs=globs):
            runner.run(t)
    assert runner.failures == 0 and runner.tries >= 8


def test_experiment_calibration_error_and_table():
    from infnet.experiments import heavy_tails_classes as exp

    p = np.array([[0.9, 0.1], [0.4, 0.6], [0.3, 0.7], [0.2, 0.8]])
    # one point per bin: (|1 - 0.9| + |0 - 0.6| + |1 - 0.7| + |1 - 0.8|) / 4
    assert math.isclose(exp.expected_calibration_error(p, np.array([0, 0, 1, 1])), 0.3)
    assert exp.expected_calibration_error(np.array([[1.0, 0.0]] * 3), np.zeros(3, int)) == 0.0
    row = {"model": "m", "scale": 1.0} | {m: 0.5 for m in exp.METRICS} | \
        {m + "_se": 0.01 for m in exp.METRICS}
    table = exp.classification_table([row, row])
    assert len(table.splitlines()) == 4 and "| m | 0.500 +- 0.010 |" in table
