"""Classification with a scale mixture of NNGPs by stochastic variational inference (the third
inference method of Lee, Yun, Yang & Lee, ICLR 2022, arXiv 2107.01408).

The model: C classes, n training inputs with NNGP kernel K, one latent function per class, all
sharing one variance scale s,

    s ~ InverseGamma(a, b),  f_c | s ~ N(0, s K') independently for c = 1..C,
    y_i | f ~ Categorical(softmax(f_1(x_i), ..., f_C(x_i))),

with K' = K + jitter I = L L^T (the jitter is part of the prior); ``prior=None`` is the plain
NNGP classifier (s = 1). Whitened: f_c = sqrt(s) L u_c, u_c ~ N(0, I) under the prior.

The variational family (the paper's): q(s) = InverseGamma(alpha, beta) and q(u_c) =
N(mu_c, V_c V_c^T), i.e. q(f_c | s) = N(sqrt(s) L mu_c, s L V_c V_c^T L^T), with V_c lower
triangular (``covariance="full"``: C n (n + 1) / 2 parameters, fine for n up to a few thousand)
or diagonal (``"diagonal"``: C n, cheaper, a looser bound). q(f | s) and p(f | s) scale alike
with s, so KL(q(f | s) || p(f | s)) = sum_c KL(N(mu_c, V_c V_c^T) || N(0, I)) for every s, and

    ELBO = E_q[log p(y | f)] - KL(q(f | s) || p(f | s)) - KL(q(s) || p(s)),

the last term in closed form (``inverse_gamma_kl``; 0 for the plain NNGP), the first by
reparameterized Monte Carlo: s = beta / g, g ~ Gamma(alpha, 1) (implicit reparameterization
gradients of torch's gamma sampler), u_c = mu_c + V_c eps_c. Adam maximizes it from the prior
(mu = 0, V = I, alpha = a, beta = b), its step size decaying geometrically to 1/100 of the
first, reproducibly given a seed (a ``torch.Generator``), in float64 on the CPU. alpha, beta =
exp(free parameters): in log space Adam reaches a posterior scale orders of magnitude from the
prior's (softplus, linear there, left the fits unconverged); V's diagonal = softplus(free).

The predictive: a test latent given s and u is the GP conditional f*_c = k*^T K'^-1 f_c + noise;
with a = L^-1 k* and u_c integrated over q,

    f*_c | s ~ N(sqrt(s) a^T mu_c,  s (k** - a^T a + |V_c^T a|^2)),

and class probabilities are Monte Carlo means of softmax(f*) over s ~ q(s) and f*.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..predict.solve import cholesky
from .mixtures import _check_positive

Tensor = torch.Tensor
PRIORS = ("inverse-gamma", None)
COVARIANCES = ("full", "diagonal")
FINAL_RATE = 0.01  # the last Adam step size, relative to the first
_CHUNK = 256  # predictive samples per batch (memory: chunk x m x C)


def _check_count(**values) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _labels(labels, m: int, classes: int | None, name: str) -> Tensor:
    y = np.asarray(labels.detach().cpu() if isinstance(labels, Tensor) else labels)
    if y.ndim != 1 or y.shape[0] != m:
        raise ValueError(f"{name} must be a 1-D array of {m} class indices (one per row of the "
                         f"kernel), got shape {y.shape}")
    if y.dtype.kind not in "iuf" or not np.isfinite(y).all() or (y != np.round(y)).any():
        raise ValueError(f"{name} must be integer class indices 0..C-1; pass integer labels, "
                         "not one-hot rows or scores")
    if (y < 0).any():
        raise ValueError(f"{name} must be class indices 0..C-1, got a negative label {y.min()}")
    if classes is not None and y.size and y.max() >= classes:
        raise ValueError(f"{name} has the label {int(y.max())}, not a class of 0..{classes - 1}")
    return torch.as_tensor(y.astype(np.int64))


def _ig_kl(a1: Tensor, b1: Tensor, a2: float, b2: float) -> Tensor:
    return ((a1 - a2) * torch.digamma(a1) - torch.lgamma(a1) + math.lgamma(a2)
            + a2 * (torch.log(b1) - math.log(b2)) + a1 * (b2 - b1) / b1)


def inverse_gamma_kl(a1: float, b1: float, a2: float, b2: float) -> float:
    """KL(InverseGamma(a1, b1) || InverseGamma(a2, b2)), shapes a and scales b.

    With E[log s] = log b1 - psi(a1) and E[1/s] = a1 / b1 under the first:
    (a1 - a2) psi(a1) - lgamma(a1) + lgamma(a2) + a2 (log b1 - log b2) + a1 (b2 - b1) / b1.

    Parameters
    ----------
    a1, b1, a2, b2 : float
        Shapes and scales of the two distributions (finite, > 0).

    Returns
    -------
    float
        The divergence (>= 0, zero when the two are equal).

    Raises
    ------
    ValueError
        A parameter not a finite number > 0.

    Examples
    --------
    >>> from infnet.gp.mixture_classifier import inverse_gamma_kl
    >>> inverse_gamma_kl(2.0, 3.0, 2.0, 3.0)
    0.0
    >>> round(inverse_gamma_kl(3.0, 2.0, 2.0, 2.0), 6)  # = psi(3) - log 2 + 0
    0.229637
    """
    _check_positive(a1=a1, b1=b1, a2=a2, b2=b2)
    t = torch.tensor([a1, b1], dtype=torch.float64)
    return float(_ig_kl(t[0], t[1], float(a2), float(b2)))


class ScaleMixtureClassifier:
    """The variational posterior of the scale-mixture NNGP classifier (module docstring),
    initialized at the prior; ``fit`` optimizes it (``scale_mixture_classification`` does both).
    Attributes: ``n``, ``classes``, ``labels``, ``jitter`` (all that was added to K's diagonal),
    ``elbo_trace``; properties ``alpha``, ``beta`` (q(s); None for the plain NNGP), ``kl_f``,
    ``kl_s``.

    Parameters
    ----------
    k_train, labels, a, b, prior, classes, jitter, covariance
        As in ``scale_mixture_classification``.

    Raises
    ------
    ValueError
        Bad kernel, labels, classes, a, b, prior, jitter or covariance (the message names it).

    Examples
    --------
    >>> from infnet.gp.mixture_classifier import ScaleMixtureClassifier
    >>> k = torch.tensor([[1.0, 0.1], [0.1, 1.0]], dtype=torch.float64)
    >>> clf = ScaleMixtureClassifier(k, [0, 1], a=3.0, b=3.0)
    >>> clf.classes, round(clf.alpha, 12), round(clf.beta, 12), clf.kl_f  # at the prior
    (2, 3.0, 3.0, 0.0)
    """

    def __init__(self, k_train, labels, *, a: float = 2.0, b: float = 2.0,
                 prior: str | None = "inverse-gamma", classes: int | None = None,
                 jitter: float = 1e-6, covariance: str = "full"):
        if prior not in PRIORS:
            raise ValueError(f"prior must be 'inverse-gamma' or None (the plain NNGP), got {prior!r}")
        if covariance not in COVARIANCES:
            raise ValueError(f"covariance must be 'full' or 'diagonal', got {covariance!r}")
        _check_positive(a=a, b=b)
        if classes is not None:
            _check_count(classes=classes)
        if isinstance(jitter, bool) or not isinstance(jitter, (int, float)) or \
                not (math.isfinite(jitter) and jitter >= 0):
            raise ValueError(f"jitter must be a finite number >= 0, got {jitter!r}")
        chol = cholesky(torch.as_tensor(k_train).to("cpu", torch.float64), ridge=jitter,
                        name="k_train")
        self._l = chol.factor
        self.n = n = self._l.shape[0]
        y = _labels(labels, n, None, "labels")
        self.classes = int(classes if classes is not None else y.max() + 1)
        if self.classes < 2:
            raise ValueError(f"labels must name at least 2 classes, got only {self.classes}; "
                             "pass classes=C if some classes have no training point")
        self.labels = _labels(y, n, self.classes, "labels")
        self.prior, self.a, self.b, self.covariance = prior, float(a), float(b), covariance
        self.jitter = chol.ridge + chol.jitter
        c, f64 = self.classes, torch.float64
        self._mu = torch.zeros(c, n, dtype=f64, requires_grad=True)
        self._diag = torch.full((c, n), math.log(math.expm1(1.0)), dtype=f64, requires_grad=True)
        self._params = [self._mu, self._diag]
        if covariance == "full":
            self._lower = torch.zeros(c, n, n, dtype=f64, requires_grad=True)
            self._params.append(self._lower)
        if prior is not None:
            self._q = torch.tensor([math.log(a), math.log(b)], dtype=f64, requires_grad=True)
            self._params.append(self._q)
        self.elbo_trace: list[float] = []

    def _scale(self) -> Tensor:
        """V (C, n, n) lower triangular, or its diagonal (C, n)."""
        d = torch.nn.functional.softplus(self._diag)
        return d if self.covariance == "diagonal" else \
            torch.tril(self._lower, -1) + torch.diag_embed(d)

    def _alpha_beta(self) -> Tensor:
        return torch.exp(self._q)

    @property
    def alpha(self) -> float | None:
        """The shape of q(s) (None for the plain NNGP)."""
        return None if self.prior is None else float(self._alpha_beta()[0].detach())

    @property
    def beta(self) -> float | None:
        """The scale of q(s) (None for the plain NNGP)."""
        return None if self.prior is None else float(self._alpha_beta()[1].detach())

    def variational_parameters(self) -> dict:
        """mu (C, n), V (C, n, n) lower triangular (numpy), alpha and beta (floats)."""
        v = self._scale().detach()
        return {"mu": self._mu.detach().numpy().copy(), "alpha": self.alpha, "beta": self.beta,
                "V": (torch.diag_embed(v) if v.ndim == 2 else v).numpy().copy()}

    def _kl_f(self) -> Tensor:
        v = self._scale()
        d = v if v.ndim == 2 else v.diagonal(dim1=-2, dim2=-1)
        return 0.5 * ((v * v).sum() + (self._mu * self._mu).sum() - self._mu.numel()
                      - 2 * torch.log(d).sum())

    def _kl_s(self) -> Tensor:
        if self.prior is None:
            return torch.zeros((), dtype=torch.float64)
        alpha, beta = self._alpha_beta()
        return _ig_kl(alpha, beta, self.a, self.b)

    @property
    def kl_f(self) -> float:
        """KL(q(f | s) || p(f | s)), summed over the classes (the same for every s)."""
        return float(self._kl_f().detach())

    @property
    def kl_s(self) -> float:
        """KL(q(s) || p(s)) (0 for the plain NNGP)."""
        return float(self._kl_s().detach())

    def _draw_s(self, samples: int, gen: torch.Generator) -> Tensor:
        if self.prior is None:
            return torch.ones(samples, dtype=torch.float64)
        alpha, beta = self._alpha_beta()
        # (torch's gamma sampler reads the global generator: seeded from ``gen`` in a fork)
        seed = int(torch.randint(0, 2**62, (), generator=gen))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            g = torch.distributions.Gamma(alpha, torch.ones_like(alpha)).rsample((samples,))
        return beta / g

    def _elbo_samples(self, samples: int, gen: torch.Generator) -> Tensor:
        """One ELBO estimate per Monte Carlo draw (S,)."""
        s = self._draw_s(samples, gen)
        eps = torch.randn(samples, self.classes, self.n, dtype=torch.float64, generator=gen)
        v = self._scale()
        u = self._mu + (v * eps if v.ndim == 2 else torch.einsum("cij,scj->sci", v, eps))
        logits = (s.sqrt()[:, None, None] * (u @ self._l.T)).transpose(1, 2)  # (S, n, C)
        logp = torch.log_softmax(logits, dim=-1)
        ell = logp.gather(-1, self.labels.expand(samples, -1)[..., None]).sum((1, 2))
        return ell - self._kl_f() - self._kl_s()

    def estimate_elbo(self, samples: int = 4096, seed: int | None = 0) -> tuple[float, float]:
        """A fresh Monte Carlo estimate of the ELBO at the current parameters: (estimate, its
        standard error), ``samples`` draws of (s, f) seeded by ``seed``."""
        _check_count(samples=samples)
        gen = _generator(seed)
        with torch.no_grad():
            vals = torch.cat([self._elbo_samples(min(_CHUNK, samples - i), gen)
                              for i in range(0, samples, _CHUNK)])
        se = float(vals.std() / math.sqrt(samples)) if samples > 1 else math.nan
        return float(vals.mean()), se

    def fit(self, steps: int = 1000, samples: int = 8, learning_rate: float = 0.1,
            seed: int | None = 0) -> ScaleMixtureClassifier:
        """``steps`` Adam steps on the ELBO, each with ``samples`` draws, the step size decaying
        geometrically from ``learning_rate`` to ``learning_rate / 100``; appends each step's
        estimate to ``elbo_trace``. Raises FloatingPointError if an estimate is not finite."""
        _check_count(steps=steps, samples=samples)
        _check_positive(learning_rate=learning_rate)
        gen = _generator(seed)
        opt = torch.optim.Adam(self._params, lr=learning_rate)
        decay = torch.optim.lr_scheduler.ExponentialLR(opt, FINAL_RATE ** (1 / steps))
        for step in range(steps):
            opt.zero_grad()
            elbo = self._elbo_samples(samples, gen).mean()
            if not torch.isfinite(elbo):
                raise FloatingPointError(
                    f"the ELBO became non-finite ({elbo.item()}) at step {step + 1} of {steps}: "
                    "use a larger jitter (the kernel may be ill-conditioned) or a smaller "
                    f"learning_rate (now {learning_rate:g})")
            (-elbo).backward()
            opt.step()
            decay.step()
            self.elbo_trace.append(float(elbo.detach()))
        return self

    def _log_probs(self, k_test_train, k_test_diag, samples: int, seed: int | None):
        """Chunks of log softmax(f*) draws, (chunk, m, C)."""
        _check_count(samples=samples)
        kst = torch.as_tensor(k_test_train).to("cpu", torch.float64)
        kss = torch.as_tensor(k_test_diag).to("cpu", torch.float64)
        if kst.ndim != 2 or kst.shape[1] != self.n or kss.shape != kst.shape[:1]:
            raise ValueError(f"k_test_train must have shape (m, {self.n}) (test by training "
                             "inputs) and k_test_diag (m,), got shapes "
                             f"{tuple(kst.shape)} and {tuple(kss.shape)}")
        if not (torch.isfinite(kst).all() and torch.isfinite(kss).all()):
            raise ValueError("k_test_train or k_test_diag contains NaN or inf entries")
        gen = _generator(seed)
        with torch.no_grad():
            a = torch.linalg.solve_triangular(self._l, kst.T, upper=False)  # (n, m)
            mean = (self._mu @ a).T  # (m, C)
            v = self._scale()
            spread = (v[:, :, None] * a).square().sum(1) if v.ndim == 2 else \
                (v.transpose(1, 2) @ a).square().sum(1)  # (C, m)
            var = (kss - a.square().sum(0))[:, None].clamp_min(0) + spread.T
            for i in range(0, samples, _CHUNK):
                k = min(_CHUNK, samples - i)
                s = self._draw_s(k, gen).sqrt()[:, None, None]
                eps = torch.randn(k, *mean.shape, dtype=torch.float64, generator=gen)
                yield torch.log_softmax(s * (mean + var.sqrt() * eps), dim=-1)

    def predict_proba(self, k_test_train, k_test_diag, samples: int = 2048,
                      seed: int | None = 0) -> np.ndarray:
        """Class probabilities (m, C), rows summing to 1: the mean of softmax(f*) over
        ``samples`` draws of s and f* (k_test_train (m, n), k_test_diag (m,) the test inputs'
        kernel values). Raises ValueError for shapes that disagree."""
        total = sum(lp.exp().sum(0) for lp in self._log_probs(k_test_train, k_test_diag,
                                                              samples, seed))
        return (total / samples).numpy()

    def log_predictive_density(self, k_test_train, k_test_diag, labels, samples: int = 2048,
                               seed: int | None = 0) -> np.ndarray:
        """log p(y*_i | y) of each test label (m,): log of the mean of softmax(f*)[y*_i]."""
        y = _labels(labels, torch.as_tensor(k_test_train).shape[0], self.classes, "labels")
        parts = [lp.gather(-1, y.expand(lp.shape[0], -1)[..., None])[..., 0]
                 for lp in self._log_probs(k_test_train, k_test_diag, samples, seed)]
        return (torch.logsumexp(torch.cat(parts), dim=0) - math.log(samples)).numpy()


def _generator(seed: int | None) -> torch.Generator:
    gen = torch.Generator()
    gen.seed() if seed is None else gen.manual_seed(int(seed))
    return gen


def scale_mixture_classification(k_train, labels, *, a: float = 2.0, b: float = 2.0,
                                 prior: str | None = "inverse-gamma", steps: int = 1000,
                                 samples: int = 8, learning_rate: float = 0.1,
                                 seed: int | None = 0, jitter: float = 1e-6,
                                 classes: int | None = None,
                                 covariance: str = "full") -> ScaleMixtureClassifier:
    """Classification with the inverse-gamma scale mixture of the NNGP (or the plain NNGP), by
    stochastic variational inference (module docstring).

    Parameters
    ----------
    k_train : array_like, shape (n, n)
        The NNGP kernel K(X, X) of the training inputs (finite, symmetric).
    labels : array_like, shape (n,)
        Integer classes 0..C-1.
    a, b : float
        The inverse-gamma prior of s (shape, scale; finite, > 0).
    prior : {"inverse-gamma", None}
        None: the plain NNGP (s = 1, no q(s)).
    steps, samples : int
        Adam steps (the step size decays geometrically to learning_rate / 100); Monte Carlo
        draws of (s, f) per step.
    learning_rate : float
        Adam's first step size.
    seed : int, optional
        Seed of the draws (the fit is reproducible given it); None: a fresh one.
    jitter : float
        Added to the diagonal of K in the prior (more if needed, with a ``JitterWarning``).
    classes : int, optional
        C, if some classes have no training point (default: the largest label + 1).
    covariance : {"full", "diagonal"}
        The whitened covariance factor V_c: lower triangular or diagonal.

    Returns
    -------
    ScaleMixtureClassifier
        Fitted (``elbo_trace``, ``alpha``, ``beta``, ``predict_proba``, ...).

    Raises
    ------
    ValueError
        k_train not square, symmetric and finite; labels not integers 0..C-1, one per row, of
        at least 2 classes; a, b, learning_rate not finite and > 0; steps, samples not positive
        integers.
    FloatingPointError
        The ELBO became non-finite during the optimization.

    Examples
    --------
    >>> from infnet.gp.mixture_classifier import scale_mixture_classification
    >>> k = torch.tensor([[1.0, 0.2], [0.2, 1.0]], dtype=torch.float64)
    >>> clf = scale_mixture_classification(k, [0, 1], steps=200)
    >>> p = clf.predict_proba(k, k.diagonal())
    >>> p.argmax(1).tolist(), bool(np.allclose(p.sum(1), 1.0))
    ([0, 1], True)
    """
    _check_count(steps=steps, samples=samples)  # (before the Cholesky)
    _check_positive(learning_rate=learning_rate)
    clf = ScaleMixtureClassifier(k_train, labels, a=a, b=b, prior=prior, classes=classes,
                                 jitter=jitter, covariance=covariance)
    return clf.fit(steps, samples, learning_rate, seed)
