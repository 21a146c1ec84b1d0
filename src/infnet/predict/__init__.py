"""Predictions of infinitely wide networks on data.

- ``gradient_descent_mse(k_train, y_train)``: outputs of gradient descent on the MSE at any time
  t, from the NTK (all layers trained) or the NNGP (readout only); t = inf is kernel regression.
- ``gp_inference(k_train, y_train)``: the NNGP posterior (mean, covariance, marginal likelihood).
- ``Ensemble(network, x_train, y_train)``: mean and covariance over initializations.
- ``limit_scores``: the classifier of the infinitely deep network.
- ``solve``: float64 Cholesky in place with escalating, reported jitter; ``spectral``: the
  eigendecomposition; ``checks``: the checks of a kernel matrix and a ridge.

scikit-learn estimators built on these: ``infnet.NTKClassifier``, ``infnet.NTKRegressor``,
``infnet.NNGPRegressor`` (``infnet.estimators``).
"""

from __future__ import annotations

from .dynamics import GaussianProcess, GradientDescentMSE
from .ensemble import Ensemble
from .infinite import limit_scores
from .solve import Cholesky, JitterWarning, NotPositiveDefiniteError, cholesky
from .spectral import Eigen, eigen


def gradient_descent_mse(k_train, y_train, *, learning_rate: float = 1.0, ridge: float = 0.0,
                         overwrite: bool = False) -> GradientDescentMSE:
    """Train the infinitely wide network by gradient flow on the MSE.

    The network is given by its training kernel ``k_train`` (the NTK when all layers are
    trained, the NNGP when only the readout is); the result predicts at any training time t
    with ``.predict(k_test_train, t)`` and ``.predict_train(t)`` (see the ``dynamics`` module
    docstring for the conventions: loss |f(X) - Y|^2 / (2 N), N = ``y_train.numel()``).

    Parameters
    ----------
    k_train : array_like, shape (n, n)
        The symmetric training kernel Theta(X, X) (or K(X, X)).
    y_train : array_like, shape (n,) or (n, outputs)
        The targets; predictions are vectors when ``y_train`` is.
    learning_rate : float, default 1.0
        The learning rate eta of the gradient flow (finite, > 0).
    ridge : float, default 0.0
        Weight decay lambda towards the initial parameters (>= 0); at t = inf, kernel ridge
        regression.
    overwrite : bool, default False
        Let the t = inf solve factor ``k_train`` in place (CPU): memory n^2 instead of 2 n^2,
        and ``k_train`` is destroyed.

    Returns
    -------
    GradientDescentMSE
        The trained network; factorizations are computed when first needed and cached.

    Raises
    ------
    ValueError
        If ``k_train`` is not a finite symmetric square matrix, ``y_train`` does not match it,
        or ``learning_rate`` / ``ridge`` are out of range (``NotPositiveDefiniteError``, a
        ValueError, is raised by a later prediction when the kernel is not positive definite).

    Examples
    --------
    >>> k = torch.tensor([[2.0, 1.0], [1.0, 2.0]], dtype=torch.float64)
    >>> flow = infnet.predict.gradient_descent_mse(k, torch.tensor([1.0, -1.0], dtype=torch.float64))
    >>> [round(float(v), 6) for v in flow.predict_train()]  # t = inf: the targets
    [1.0, -1.0]
    >>> [round(float(v), 6) for v in flow.predict_train(1.0)]  # (1 - exp(-eta e t / N)) y, e = 1, N = 2
    [0.393469, -0.393469]
    >>> k_test_train = torch.tensor([[1.0, 0.5]], dtype=torch.float64)
    >>> round(float(flow.predict(k_test_train)[0]), 6)  # kernel regression
    0.5
    """
    return GradientDescentMSE(k_train, y_train, learning_rate=learning_rate, ridge=ridge,
                              overwrite=overwrite)


def gp_inference(k_train, y_train, *, ridge: float = 0.0, overwrite: bool = False) -> GaussianProcess:
    """Bayesian inference with the NNGP as prior: the Gaussian process posterior.

    The posterior has observation noise variance ``ridge`` and offers ``.mean(k_test_train)``,
    ``.covariance(k_test_train, k_test_test)``, ``.variance(k_test_train, k_test_diag)`` and
    ``.log_marginal_likelihood()`` (see ``GaussianProcess``).

    Parameters
    ----------
    k_train : array_like, shape (n, n)
        The symmetric NNGP kernel K(X, X) of the training inputs.
    y_train : array_like, shape (n,) or (n, outputs)
        The observed targets.
    ridge : float, default 0.0
        The observation noise variance (>= 0).
    overwrite : bool, default False
        Let the Cholesky factorization work in the memory of ``k_train`` (CPU; ``k_train`` is
        destroyed).

    Returns
    -------
    GaussianProcess
        The posterior; its Cholesky factor is computed when first needed and cached.

    Raises
    ------
    ValueError
        If ``k_train`` is not a finite symmetric square matrix, ``y_train`` does not match it, or
        ``ridge`` is negative or not finite (``NotPositiveDefiniteError``, a ValueError, is raised
        by a later solve when K + ridge I is not positive definite).

    Examples
    --------
    >>> k = torch.tensor([[2.0, 1.0], [1.0, 2.0]], dtype=torch.float64)
    >>> gp = infnet.predict.gp_inference(k, torch.tensor([1.0, -1.0], dtype=torch.float64), ridge=0.1)
    >>> k_test_train = torch.tensor([[1.0, 0.5]], dtype=torch.float64)
    >>> round(float(gp.mean(k_test_train)[0]), 6)  # 0.5 / (1 + 0.1)
    0.454545
    >>> round(float(gp.variance(k_test_train, torch.tensor([2.0], dtype=torch.float64))[0]), 6)
    1.52346
    >>> round(gp.log_marginal_likelihood(), 6)
    -3.360324
    """
    return GaussianProcess(k_train, y_train, ridge=ridge, overwrite=overwrite)


__all__ = ["Cholesky", "Eigen", "Ensemble", "GaussianProcess", "GradientDescentMSE",
           "JitterWarning", "NotPositiveDefiniteError", "cholesky", "eigen", "gp_inference",
           "gradient_descent_mse", "limit_scores"]
