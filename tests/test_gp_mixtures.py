"""Scale mixtures of NNGPs: the Student-t process against direct integration over the scale,
and importance sampling against the closed form."""

import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

import infnet
from infnet.gp import scale_mixture_inference, student_t_inference


def problem(n=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n + 3, 2, dtype=torch.float64, generator=g)
    k = infnet.fc("erf", 2, w_std=1.3, b_std=0.3).kernel(x).nngp
    y = torch.randn(n + 3, dtype=torch.float64, generator=g)
    y[2] += 4.0  # an outlier
    return k, y, n


def gaussian_loglik(k, y, s, ridge):
    cov = s * (k + ridge * torch.eye(k.shape[0], dtype=k.dtype))
    return float(torch.distributions.MultivariateNormal(torch.zeros_like(y), cov).log_prob(y))


def integrated(k, y, a, b, ridge):
    """log of the integral over s of N(y | 0, s (K + ridge I)) IG(s | a, b), by quadrature in
    log s, scaled by the integrand's peak."""
    prior = stats.invgamma(a, scale=b)
    logs = np.linspace(-12, 12, 481)
    vals = np.array([gaussian_loglik(k, y, math.exp(t), ridge) + prior.logpdf(math.exp(t)) + t
                     for t in logs])
    top = vals.max()
    peak = logs[vals.argmax()]
    f = lambda t: math.exp(gaussian_loglik(k, y, math.exp(t), ridge)  # noqa: E731
                           + prior.logpdf(math.exp(t)) + t - top)
    total, _ = integrate.quad(f, peak - 15, peak + 15, points=[peak], limit=200, epsabs=0,
                              epsrel=1e-12)
    return top + math.log(total)


@pytest.mark.parametrize("a, b", [(2.0, 2.0), (0.7, 3.0), (10.0, 0.5)])
def test_marginal_likelihood_integrates_the_gaussian_one(a, b):
    k, y, n = problem()
    tp = student_t_inference(k[:n, :n], y[:n], a=a, b=b, ridge=0.05)
    assert math.isclose(tp.log_marginal_likelihood(), integrated(k[:n, :n], y[:n], a, b, 0.05),
                        rel_tol=0, abs_tol=1e-9)


def test_predictive_density_is_a_ratio_of_marginal_likelihoods():
    """p(y* | y) = p(y, y*) / p(y): each test point appended to the training set."""
    k, y, n = problem()
    a, b, ridge = 1.5, 2.5, 0.05
    tp = student_t_inference(k[:n, :n], y[:n], a=a, b=b, ridge=ridge)
    got = tp.log_predictive_density(k[n:, :n], k.diagonal()[n:], y[n:])
    for i in range(3):
        idx = list(range(n)) + [n + i]
        joint = student_t_inference(k[idx][:, idx], y[idx], a=a, b=b, ridge=ridge)
        want = joint.log_marginal_likelihood() - tp.log_marginal_likelihood()
        assert math.isclose(float(got[i]), want, rel_tol=0, abs_tol=1e-10)
    gp = infnet.predict.gp_inference(k[:n, :n], y[:n], ridge=ridge)
    assert torch.allclose(tp.mean(k[n:, :n]), gp.mean(k[n:, :n]), rtol=1e-14)
    var = tp.variance(k[n:, :n], k.diagonal()[n:])
    scale = tp.scale(k[n:, :n], k.diagonal()[n:])
    assert torch.allclose(var, scale * tp.dof / (tp.dof - 2), rtol=1e-14)
    assert tp.dof == 2 * a + n


def test_large_shape_is_the_gaussian_process():
    """a -> inf with b = a v: s concentrates at v, the process tends to the GP of kernel v K,
    its log marginal likelihood with an error that falls as 1 / a."""
    k, y, n = problem()
    gp = infnet.predict.gp_inference(2 * k[:n, :n], y[:n], ridge=0.1).log_marginal_likelihood()
    gap = [student_t_inference(k[:n, :n], y[:n], a=a, b=2 * a, ridge=0.05)
           .log_marginal_likelihood() - gp for a in (1e5, 1e6)]
    assert abs(gap[1]) < 0.02
    assert math.isclose(gap[0] / gap[1], 10.0, rel_tol=0.01)


def test_importance_sampling_converges_to_the_closed_form():
    k, y, n = problem()
    a, b, ridge = 2.0, 2.0, 0.05
    tp = student_t_inference(k[:n, :n], y[:n], a=a, b=b, ridge=ridge)
    mix = scale_mixture_inference(k[:n, :n], y[:n], stats.invgamma(a, scale=b),
                                  samples=200_000, ridge=ridge, seed=1)
    assert mix.effective_samples > 200  # (the outlier makes the posterior of s narrow)
    # the estimate of p(y) is a mean of prior draws: relative error ~ 1 / sqrt(ESS)
    err = 4 / math.sqrt(mix.effective_samples)
    assert abs(mix.log_marginal_likelihood() - tp.log_marginal_likelihood()) < err
    got = mix.log_predictive_density(k[n:, :n], k.diagonal()[n:], y[n:])
    want = tp.log_predictive_density(k[n:, :n], k.diagonal()[n:], y[n:])
    assert torch.allclose(got, want, atol=err, rtol=0)
    again = scale_mixture_inference(k[:n, :n], y[:n], stats.invgamma(a, scale=b),
                                    samples=1000, ridge=ridge, seed=1)
    same = scale_mixture_inference(k[:n, :n], y[:n], stats.invgamma(a, scale=b),
                                   samples=1000, ridge=ridge, seed=1)
    assert np.array_equal(again.weights, same.weights)  # reproducible given the seed


def test_callable_prior_and_errors():
    k, y, n = problem()
    mix = scale_mixture_inference(k[:n, :n], y[:n], lambda rng, size: rng.lognormal(0, 0.5, size),
                                  samples=500)
    assert mix.scales.shape == (500,) and math.isclose(mix.weights.sum(), 1.0)
    with pytest.raises(ValueError, match="a must be"):
        student_t_inference(k[:n, :n], y[:n], a=0.0)
    with pytest.raises(ValueError, match="b must be"):
        student_t_inference(k[:n, :n], y[:n], b=math.inf)
    with pytest.raises(ValueError, match="samples"):
        scale_mixture_inference(k[:n, :n], y[:n], stats.expon(), samples=0)
    with pytest.raises(ValueError, match="draws"):
        scale_mixture_inference(k[:n, :n], y[:n], lambda rng, size: -np.ones(size))
