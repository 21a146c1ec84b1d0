"""Scale mixtures of NNGPs (Lee, Yun, Yang & Lee, ICLR 2022, arXiv 2107.01408): a prior on the
variance scale s of the last layer turns the NNGP into a heavy-tailed process,

    f | s ~ GP(0, s K),  y = f + e,  e ~ N(0, s sigma^2 I)   (the noise scaled with the kernel).

- Inverse-gamma prior s ~ IG(a, b): a Student-t process (Shah, Wilson & Ghahramani 2014),
  in closed form (``student_t_inference``). With beta = y^T (K + sigma^2 I)^-1 y:
  s | y ~ IG(a + n/2, b + beta/2); the marginal likelihood is the multivariate t
  log p(y) = lgamma(a + n/2) - lgamma(a) - (n/2) log(2 pi b) - (1/2) log|K + sigma^2 I|
             - (a + n/2) log(1 + beta / (2 b));
  and the predictive of a test target is Student-t with 2a + n degrees of freedom, the GP
  posterior mean, and squared scale (b + beta/2)/(a + n/2) (k** - k*^T (K + sigma^2 I)^-1 k* +
  sigma^2).
- Any other prior (``scale_mixture_inference``): the paper's importance sampling, prior draws
  s_i weighted by their Gaussian marginal likelihoods N(y | 0, s_i (K + sigma^2 I)); the
  predictive is the weighted mixture of the scaled Gaussian posteriors.

Several outputs (y of shape (n, m)) share the one scale s: n m observations in the formulas.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..predict import GaussianProcess

Tensor = torch.Tensor


def _check_positive(**values) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


@dataclass
class _Fit:
    """The Gaussian pieces every scale mixture needs: the unit-scale GP posterior, beta and
    log|K + sigma^2 I| (summed over the outputs), and the number of observations."""

    gp: GaussianProcess
    beta: float
    logdet: float
    count: int
    ridge: float

    @classmethod
    def of(cls, k_train, y_train, ridge: float) -> _Fit:
        gp = GaussianProcess(k_train, y_train, ridge=ridge)
        w = gp.cholesky.half_solve(gp.y_train)
        n, m = gp.y_train.shape
        return cls(gp, float((w * w).sum()), m * gp.cholesky.logdet(), n * m, float(ridge))

    def gaussian_log_likelihood(self, s: np.ndarray) -> np.ndarray:
        """log N(y | 0, s (K + sigma^2 I)) for each scale s."""
        return (-0.5 * self.beta / s - 0.5 * self.count * np.log(s) - 0.5 * self.logdet
                - 0.5 * self.count * math.log(2 * math.pi))

    def unit_predictive(self, k_test_train, k_test_diag, noise: bool) -> tuple[Tensor, Tensor]:
        """The unit-scale posterior mean (m, outputs) and variance (m,) of f (or of y with the
        noise)."""
        mean = self.gp.mean(k_test_train)
        var = self.gp.variance(k_test_train, k_test_diag)
        return mean, var + self.ridge if noise else var


class StudentTProcess:
    """The posterior of the inverse-gamma scale mixture of a GP (module docstring).

    Build with ``student_t_inference``. Attributes: ``a``, ``b`` (the prior), ``a_post``,
    ``b_post`` (the posterior of s), ``dof`` (2 a_post, the predictive's degrees of freedom).
    """

    def __init__(self, k_train, y_train, a: float, b: float, ridge: float):
        _check_positive(a=a, b=b)
        self.a, self.b = float(a), float(b)
        self._fit = _Fit.of(k_train, y_train, ridge)
        self.a_post = self.a + self._fit.count / 2
        self.b_post = self.b + self._fit.beta / 2
        self.dof = 2 * self.a_post

    def mean(self, k_test_train) -> Tensor:
        """The predictive mean (that of the Gaussian posterior), (m,) or (m, outputs)."""
        return self._fit.gp.mean(k_test_train)

    def scale(self, k_test_train, k_test_diag, *, noise: bool = True) -> Tensor:
        """The Student-t predictive's squared scale (m,), of y (``noise``) or of f; its
        variance is scale dof / (dof - 2)."""
        _, var = self._fit.unit_predictive(k_test_train, k_test_diag, noise)
        return var * (self.b_post / self.a_post)

    def variance(self, k_test_train, k_test_diag, *, noise: bool = True) -> Tensor:
        """The predictive variance (m,): scale dof / (dof - 2)."""
        return self.scale(k_test_train, k_test_diag, noise=noise) * (self.dof / (self.dof - 2))

    def log_marginal_likelihood(self) -> float:
        """log p(y), the multivariate t (module docstring)."""
        a, b, f = self.a, self.b, self._fit
        n = f.count
        return (math.lgamma(a + n / 2) - math.lgamma(a) - n / 2 * math.log(2 * math.pi * b)
                - 0.5 * f.logdet - (a + n / 2) * math.log1p(f.beta / (2 * b)))

    def log_predictive_density(self, k_test_train, k_test_diag, y_test) -> Tensor:
        """log p(y*_i | y) of each test target (m,) or (m, outputs), each point alone."""
        mean = self.mean(k_test_train)
        scale = self.scale(k_test_train, k_test_diag)
        y = torch.as_tensor(y_test, dtype=mean.dtype, device=mean.device).reshape(mean.shape)
        s = scale.reshape(-1, *([1] * (mean.ndim - 1)))
        nu = self.dof
        z = (y - mean) ** 2 / (nu * s)
        return (math.lgamma((nu + 1) / 2) - math.lgamma(nu / 2) - 0.5 * torch.log(nu * math.pi * s)
                - (nu + 1) / 2 * torch.log1p(z))


def student_t_inference(k_train, y_train, *, a: float = 2.0, b: float = 2.0,
                        ridge: float = 0.0) -> StudentTProcess:
    """Regression with the inverse-gamma scale mixture of the NNGP (a Student-t process).

    Parameters
    ----------
    k_train : array_like, shape (n, n)
        The kernel K(X, X) of the training inputs (the NNGP).
    y_train : array_like, shape (n,) or (n, outputs)
        The targets.
    a, b : float
        The inverse-gamma prior of the scale s (shape, scale; > 0). The prior mean of s is
        b / (a - 1) for a > 1; a large with b / a fixed is the Gaussian process of kernel
        (b / a) K.
    ridge : float
        The noise variance sigma^2 (at unit scale; the noise scales with s).

    Returns
    -------
    StudentTProcess

    Raises
    ------
    ValueError
        a or b not a finite number > 0; the checks of ``GaussianProcess``.

    Examples
    --------
    >>> k = torch.tensor([[2.0, 1.0], [1.0, 2.0]], dtype=torch.float64)
    >>> tp = infnet.gp.student_t_inference(k, torch.tensor([1.0, -1.0]), a=3.0, b=3.0)
    >>> tp.dof, round(tp.b_post, 6)  # 2 a + n; b + y^T K^-1 y / 2 = 3 + 2 / 2
    (8.0, 4.0)
    """
    return StudentTProcess(k_train, y_train, a, b, ridge)


class ScaleMixture:
    """The posterior of a scale mixture under any prior, by importance sampling (module
    docstring). Build with ``scale_mixture_inference``. Attributes: ``scales`` (the prior
    draws), ``weights`` (normalized), ``effective_samples`` (1 / sum w^2)."""

    def __init__(self, k_train, y_train, scales: np.ndarray, ridge: float):
        self._fit = _Fit.of(k_train, y_train, ridge)
        self.scales = scales
        self._log_lik = self._fit.gaussian_log_likelihood(scales)
        top = self._log_lik.max()
        w = np.exp(self._log_lik - top)
        self.weights = w / w.sum()
        self._log_weights = self._log_lik - top - np.log(w.sum())  # (no log of an underflow)
        self.effective_samples = float(1 / (self.weights ** 2).sum())
        self._log_evidence = float(top + np.log(w.mean()))

    def mean(self, k_test_train) -> Tensor:
        return self._fit.gp.mean(k_test_train)

    def variance(self, k_test_train, k_test_diag, *, noise: bool = True) -> Tensor:
        """The predictive variance (m,): E[s | y] times the unit-scale variance."""
        _, var = self._fit.unit_predictive(k_test_train, k_test_diag, noise)
        return var * float((self.weights * self.scales).sum())

    def log_marginal_likelihood(self) -> float:
        """log of the importance-sampling estimate of p(y) (the mean of the Gaussian
        likelihoods over the prior draws)."""
        return self._log_evidence

    def log_predictive_density(self, k_test_train, k_test_diag, y_test) -> Tensor:
        """log sum_i w_i N(y*; mean, s_i var) of each test target."""
        mean, var = self._fit.unit_predictive(k_test_train, k_test_diag, True)
        y = torch.as_tensor(y_test, dtype=mean.dtype, device=mean.device).reshape(mean.shape)
        v = var.reshape(-1, *([1] * (mean.ndim - 1)))
        s = torch.as_tensor(self.scales, dtype=mean.dtype, device=mean.device)
        logw = torch.as_tensor(self._log_weights, dtype=mean.dtype, device=mean.device)
        sv = s * v[..., None]  # (..., draws)
        dens = -0.5 * ((y - mean)[..., None] ** 2 / sv + torch.log(2 * math.pi * sv))
        return torch.logsumexp(dens + logw, dim=-1)


def scale_mixture_inference(k_train, y_train, prior, *, samples: int = 4096, ridge: float = 0.0,
                            seed: int | None = 0) -> ScaleMixture:
    """Regression with a scale mixture of the NNGP under any prior on s (importance sampling).

    Parameters
    ----------
    k_train, y_train, ridge
        As in ``student_t_inference``.
    prior : scipy.stats frozen distribution or callable
        The prior of s > 0: anything with ``rvs(size=..., random_state=...)`` (e.g.
        ``scipy.stats.invgamma(2, scale=2)``, ``scipy.stats.lognorm(0.5)``), or a callable
        ``(rng, size) -> array`` of draws.
    samples : int
        The number of prior draws.
    seed : int, optional
        The seed of the draws (results are reproducible given it).

    Raises
    ------
    ValueError
        samples not a positive integer; draws that are not finite and > 0.
    """
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ValueError(f"samples must be a positive integer, got {samples!r}")
    rng = np.random.default_rng(seed)
    draws = prior(rng, samples) if callable(prior) and not hasattr(prior, "rvs") else \
        prior.rvs(size=samples, random_state=rng)
    draws = np.asarray(draws, dtype=np.float64).reshape(-1)
    if draws.shape[0] != samples or not (np.isfinite(draws).all() and (draws > 0).all()):
        raise ValueError("the prior's draws of the scale s must be finite numbers > 0, "
                         f"{samples} of them")
    return ScaleMixture(k_train, y_train, draws, ridge)
