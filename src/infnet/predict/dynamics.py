"""Outputs of infinitely wide networks trained by gradient descent on the mean squared error, and
the Bayesian posterior of the NNGP.

Lee et al., "Wide neural networks of any depth evolve as linear models under gradient descent"
(NeurIPS 2019, arXiv 1902.06720), eqs. (9)-(16). With training kernel Theta = Theta(X, X) and
the loss L = |f(X) - Y|^2 / (2 N), N = Y.numel() (the mean over all target entries, as
``0.5 * torch.nn.functional.mse_loss`` and neural-tangents' ``predict``), gradient flow at
learning rate eta makes the infinitely wide network evolve as

    f_t(X) = f_0(X) + (I - exp(-eta Theta t / N)) (Y - f_0(X))
    f_t(x) = f_0(x) + Theta(x, X) T_t (Y - f_0(X)),   T_t = Theta^(-1) (I - exp(-eta Theta t / N)).

T_inf = Theta^(-1): at t = inf the prediction is kernel regression. Training only the readout
layer replaces Theta by the NNGP K. ``ridge`` lambda is weight decay towards the initial
parameters, a penalty lambda |theta - theta_0|^2 / (2 N) added to L: the linearized flow then has
T_t = (Theta + lambda I)^(-1) (I - exp(-eta (Theta + lambda I) t / N)) and the same formulas for
f_t, with Theta (not Theta + lambda I) outside T_t; at t = inf, kernel ridge regression.
(Diagonal regularization acts like early stopping, Lee et al. 2020, arXiv 2007.15801.)

- finite t: Theta = V diag(e) V^T once (``spectral.eigen``, cached); T_t = V diag(h_t(e)) V^T
  with h_t(e) = -expm1(-eta e t / N) / e, and h_t(0) = eta t / N (exact for singular Theta);
- t = inf: the Cholesky factor (``solve.cholesky``, cached, jitter escalation reported).
"""

from __future__ import annotations

import math

import torch

from .checks import check_kernel, check_ridge
from .solve import Cholesky, cholesky
from .spectral import Eigen, eigen

Tensor = torch.Tensor


def as_targets(y, n: int, like: Tensor, name: str = "y_train") -> tuple[Tensor, bool]:
    """Targets as an (n, outputs) tensor on the kernel's device and dtype, and whether they
    were given as a vector (so predictions are returned as vectors too)."""
    y = torch.as_tensor(y)
    if y.dtype == torch.bool or not (y.is_floating_point() or y.dtype in
                                     (torch.int8, torch.int16, torch.int32, torch.int64,
                                      torch.uint8)):
        raise ValueError(f"{name} must be numeric targets, got dtype {y.dtype}")
    vector = y.ndim == 1
    if y.ndim not in (1, 2) or y.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n},) or ({n}, outputs) to match the "
                         f"{n} training points, got shape {tuple(y.shape)}")
    y = y.to(dtype=like.dtype, device=like.device).reshape(n, -1)
    if not bool(torch.isfinite(y).all()):
        raise ValueError(f"{name} contains NaN or inf")
    return y, vector


def check_time(t) -> float:
    try:
        t = float(t)
    except (TypeError, ValueError):
        raise ValueError(f"the training time t must be a number >= 0 or inf, got {t!r}") from None
    if not t >= 0:
        raise ValueError(f"the training time t must be >= 0 or inf, got {t!r}")
    return t


class GradientDescentMSE:
    """The trained infinitely wide network (module docstring): predictions at any time t.

    ``predict(k_test_train, t)`` gives f_t(x) = f_0(x) + Theta(x, X) T_t (Y - f_0(X)) on test
    points (the mean over initializations, f_0 = 0, unless ``f0_train`` / ``f0_test`` are
    given) and ``predict_train(t)`` f_t(X); ``dual_coef(t)`` is T_t (Y - f_0(X)). Factorizations
    are computed when first needed and cached: the eigendecomposition for finite t, the Cholesky
    factor for t = inf.

    Parameters
    ----------
    k_train : array_like, shape (n, n)
        The training kernel (the NTK, or the NNGP for readout-only training); symmetric and
        finite.
    y_train : array_like, shape (n,) or (n, outputs)
        The targets; predictions are vectors when ``y_train`` is.
    learning_rate : float, default 1.0
        The learning rate eta (finite, > 0).
    ridge : float, default 0.0
        Weight decay lambda towards the initial parameters (>= 0).
    overwrite : bool, default False
        Let the t = inf solve factor ``k_train`` in place (CPU): memory n^2 instead of 2 n^2,
        and ``k_train`` is destroyed (finite times cannot be predicted afterwards).

    Raises
    ------
    ValueError
        If ``k_train`` is not a finite symmetric square matrix, ``y_train`` is not numeric, has
        the wrong shape or is not finite, or ``learning_rate`` / ``ridge`` are out of range.
        Predictions raise ValueError for a negative time t, a cross-kernel of the wrong shape,
        or (``NotPositiveDefiniteError``) a kernel that is not positive definite.

    Examples
    --------
    >>> k = torch.tensor([[2.0, 1.0], [1.0, 2.0]], dtype=torch.float64)
    >>> y = torch.tensor([1.0, -1.0], dtype=torch.float64)
    >>> flow = infnet.predict.GradientDescentMSE(k, y, learning_rate=2.0)
    >>> bool(flow.predict_train(0.0).abs().max() < 1e-12)  # nothing learned at t = 0
    True
    >>> [round(float(v), 6) for v in flow.predict_train(1.0)]  # 1 - exp(-eta t / N) = 1 - 1/e
    [0.632121, -0.632121]
    >>> k_test_train = torch.tensor([[1.0, 0.5], [0.5, 1.0]], dtype=torch.float64)
    >>> [round(float(v), 6) for v in flow.predict(k_test_train)]
    [0.5, -0.5]
    >>> tuple(flow.dual_coef().shape)  # (n, outputs)
    (2, 1)
    """

    def __init__(self, k_train, y_train, *, learning_rate: float = 1.0, ridge: float = 0.0,
                 overwrite: bool = False):
        self.k_train = check_kernel(k_train)
        self.y_train, self._vector = as_targets(y_train, self.k_train.shape[0], self.k_train)
        if not (math.isfinite(float(learning_rate)) and float(learning_rate) > 0):
            raise ValueError(f"learning_rate must be a finite number > 0, got {learning_rate!r}")
        self.learning_rate = float(learning_rate)
        self.ridge = check_ridge(ridge)
        self._overwrite = overwrite
        self._chol: Cholesky | None = None
        self._eigen: Eigen | None = None
        self._dual_cache: dict = {}

    @property
    def n(self) -> int:
        return self.y_train.shape[0]

    @property
    def jitter(self) -> float:
        """The jitter the Cholesky factorization added to the diagonal (0.0 where it needed
        none, or where no factorization was computed: finite times use the eigenbasis)."""
        return 0.0 if self._chol is None else self._chol.jitter

    @property
    def cholesky(self) -> Cholesky:
        if self._chol is None:
            self._chol = cholesky(self.k_train, self.ridge, overwrite=self._overwrite)
            if self._overwrite:
                self.k_train = None  # its memory now holds the factor
        return self._chol

    @property
    def eigen(self) -> Eigen:
        if self._eigen is None:
            if self.k_train is None:
                raise ValueError("k_train was factored in place (overwrite=True) and cannot be "
                                 "decomposed again for finite t; pass overwrite=False")
            self._eigen = eigen(self.k_train, self.ridge)
        return self._eigen

    def _scale(self, t: float) -> float:
        """eta t / N: the time in units of the kernel's eigenvalues."""
        return self.learning_rate * t / self.y_train.numel()

    def transfer(self, t: float, r: Tensor) -> Tensor:
        """T_t r = (Theta + ridge I)^(-1) (I - exp(-eta (Theta + ridge I) t / N)) r, (n, m) r."""
        if math.isinf(t):
            return self.cholesky.solve(r)
        e = self.eigen
        s = self._scale(t)
        h = torch.where(e.values > 0, -torch.expm1(-e.values * s) / e.values.clamp(min=1e-300),
                        torch.full_like(e.values, s))
        return e.vectors @ (h[:, None] * (e.vectors.T @ r))

    def decay(self, t: float, r: Tensor) -> Tensor:
        """exp(-eta (Theta + ridge I) t / N) r (0 at t = inf)."""
        if math.isinf(t):
            return torch.zeros_like(r)
        e = self.eigen
        return e.vectors @ (torch.exp(-e.values * self._scale(t))[:, None] * (e.vectors.T @ r))

    def dual_coef(self, t: float = math.inf, f0_train=None) -> Tensor:
        """T_t (Y - f_0(X)): the (n, outputs) weights of the training kernel columns."""
        t = check_time(t)
        if f0_train is None:
            if t not in self._dual_cache:
                self._dual_cache = {t: self.transfer(t, self.y_train)}  # the latest time only
            return self._dual_cache[t]
        f0, _ = as_targets(f0_train, self.n, self.y_train, "f0_train")
        return self.transfer(t, self.y_train - f0)

    def predict_train(self, t: float = math.inf, f0_train=None) -> Tensor:
        """f_t(X) = f_0(X) + Theta T_t R, R = Y - f_0(X); computed as
        (I - exp(-eta Theta_r t / N)) R - ridge T_t R, Theta_r = Theta + ridge I (no product
        with the kernel, which the in-place solve may have overwritten)."""
        t = check_time(t)
        f0 = torch.zeros_like(self.y_train) if f0_train is None else \
            as_targets(f0_train, self.n, self.y_train, "f0_train")[0]
        r = self.y_train - f0
        out = f0 + r - self.decay(t, r)
        if self.ridge:
            out = out - self.ridge * self.transfer(t, r)
        return self._shape(out)

    def predict(self, k_test_train, t: float = math.inf, f0_train=None, f0_test=None) -> Tensor:
        """f_t(x) = f_0(x) + Theta(x, X) T_t (Y - f_0(X)) for the (m, n) cross-kernel
        Theta(x, X); without f0, the mean over initializations (f_0 = 0)."""
        k = self._cross(k_test_train)
        out = k @ self.dual_coef(t, f0_train)
        if f0_test is not None:
            out = out + as_targets(f0_test, k.shape[0], out, "f0_test")[0]
        return self._shape(out)

    def _cross(self, k_test_train, name: str = "k_test_train") -> Tensor:
        k = torch.as_tensor(k_test_train).to(dtype=self.y_train.dtype, device=self.y_train.device)
        if k.ndim != 2 or k.shape[1] != self.n:
            raise ValueError(f"{name} must have shape (m, {self.n}) (test points x training "
                             f"points), got {tuple(k.shape)}")
        if not bool(torch.isfinite(k).all()):
            raise ValueError(f"{name} contains NaN or inf")
        return k

    def _shape(self, out: Tensor) -> Tensor:
        return out[:, 0] if self._vector else out


class GaussianProcess(GradientDescentMSE):
    """The NNGP posterior: Gaussian process regression with the infinitely wide network as prior.

    Bayesian inference with Gaussian observation noise of variance ``ridge`` (Neal 1996, Lee et
    al. 2018, arXiv 1711.00165): mean K(x, X) (K + ridge I)^-1 Y and covariance
    K(x, x') - K(x, X) (K + ridge I)^-1 K(X, x'), computed as K(x, x') - W^T W with
    W = L^-1 K(X, x') from the Cholesky factor L. Methods: ``mean(k_test_train)``,
    ``covariance(k_test_train, k_test_test)`` (m, m), ``variance(k_test_train, k_test_diag)``
    (m,), clipped at 0, and ``log_marginal_likelihood()`` = log N(Y; 0, K + ridge I), summed
    over the outputs.

    Parameters
    ----------
    k_train : array_like, shape (n, n)
        The NNGP kernel K(X, X) of the training inputs; symmetric and finite.
    y_train : array_like, shape (n,) or (n, outputs)
        The observed targets.
    learning_rate : float, default 1.0
        Inherited from ``GradientDescentMSE``; it does not enter the posterior (t = inf).
    ridge : float, default 0.0
        The observation noise variance (>= 0).
    overwrite : bool, default False
        Let the Cholesky factorization work in the memory of ``k_train`` (CPU; ``k_train`` is
        destroyed).

    Raises
    ------
    ValueError
        If ``k_train``, ``y_train``, ``learning_rate`` or ``ridge`` are invalid (as
        ``GradientDescentMSE``), or a test kernel given to a method has the wrong shape;
        ``NotPositiveDefiniteError`` (a ValueError) when K + ridge I is not positive definite.

    Examples
    --------
    >>> k = torch.tensor([[2.0, 1.0], [1.0, 2.0]], dtype=torch.float64)
    >>> y = torch.tensor([1.0, -1.0], dtype=torch.float64)
    >>> gp = infnet.predict.GaussianProcess(k, y)
    >>> k_test_train = torch.tensor([[2.0, 1.0], [1.0, 0.5]], dtype=torch.float64)
    >>> [round(float(v), 6) for v in gp.mean(k_test_train)]  # the first test point is X[0]
    [1.0, 0.5]
    >>> k_test_test = torch.tensor([[2.0, 1.0], [1.0, 2.0]], dtype=torch.float64)
    >>> cov = gp.covariance(k_test_train, k_test_test)
    >>> bool(abs(cov[0, 0]) < 1e-12), round(float(cov[1, 1]), 6)  # no uncertainty left at X[0]
    (True, 1.5)
    >>> round(gp.log_marginal_likelihood(), 6)
    -3.387183
    """

    def mean(self, k_test_train) -> Tensor:
        """K(x, X) (K + ridge I)^-1 Y for the (m, n) cross-kernel K(x, X)."""
        return self.predict(k_test_train, math.inf)

    def covariance(self, k_test_train, k_test_test) -> Tensor:
        """(m, m) posterior covariance (shared by all outputs)."""
        k = self._cross(k_test_train)
        kss = torch.as_tensor(k_test_test).to(k)
        if kss.shape != (k.shape[0], k.shape[0]):
            raise ValueError(f"k_test_test must have shape {(k.shape[0], k.shape[0])}, got "
                             f"{tuple(kss.shape)}")
        w = self.cholesky.half_solve(k.T.contiguous())
        return kss - w.T @ w

    def variance(self, k_test_train, k_test_diag) -> Tensor:
        """(m,) posterior variances from the prior variances K(x, x), clipped at 0 (rounding)."""
        k = self._cross(k_test_train)
        diag = torch.as_tensor(k_test_diag).to(k).reshape(-1)
        if diag.shape[0] != k.shape[0]:
            raise ValueError(f"k_test_diag must have {k.shape[0]} entries, got {diag.shape[0]}")
        w = self.cholesky.half_solve(k.T.contiguous())
        return (diag - (w * w).sum(0)).clamp(min=0)

    def log_marginal_likelihood(self) -> float:
        """log N(Y; 0, K + ridge I), summed over the outputs (model selection)."""
        chol = self.cholesky
        y = self.y_train
        w = chol.half_solve(y)
        n, m = y.shape
        return float(-0.5 * (w * w).sum() - 0.5 * m * chol.logdet() - 0.5 * n * m * math.log(2 * math.pi))
