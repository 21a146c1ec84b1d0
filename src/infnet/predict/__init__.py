"""Predictions of infinitely wide networks on data.

- ``gradient_descent_mse(k_train, y_train)``: outputs of gradient descent on the MSE at any time
  t, from the NTK (all layers trained) or the NNGP (readout only); t = inf is kernel regression.
- ``gp_inference(k_train, y_train)``: the NNGP posterior (mean, covariance, marginal likelihood).
- ``Ensemble(network, x_train, y_train)``: mean and covariance over initializations.
- ``limit_scores``: the classifier of the infinitely deep network.
- ``solve``: float64 Cholesky in place with escalating, reported jitter; eigendecomposition.

scikit-learn estimators built on these: ``infnet.NTKClassifier``, ``infnet.NTKRegressor``,
``infnet.NNGPRegressor`` (``infnet.estimators``).
"""

from __future__ import annotations

from .dynamics import GaussianProcess, GradientDescentMSE
from .ensemble import Ensemble
from .infinite import limit_scores
from .solve import Cholesky, Eigen, JitterWarning, NotPositiveDefiniteError, cholesky, eigen


def gradient_descent_mse(k_train, y_train, *, learning_rate: float = 1.0, ridge: float = 0.0,
                         overwrite: bool = False) -> GradientDescentMSE:
    """The infinitely wide network trained by gradient flow on the MSE with training kernel
    ``k_train`` (NTK, or NNGP for the readout only): ``.predict(k_test_train, t)``,
    ``.predict_train(t)`` (``dynamics`` module docstring for the conventions)."""
    return GradientDescentMSE(k_train, y_train, learning_rate=learning_rate, ridge=ridge,
                              overwrite=overwrite)


def gp_inference(k_train, y_train, *, ridge: float = 0.0, overwrite: bool = False) -> GaussianProcess:
    """The NNGP posterior with observation noise variance ``ridge``: ``.mean(k_test_train)``,
    ``.covariance(k_test_train, k_test_test)``, ``.variance(...)``,
    ``.log_marginal_likelihood()``."""
    return GaussianProcess(k_train, y_train, ridge=ridge, overwrite=overwrite)


__all__ = ["Cholesky", "Eigen", "Ensemble", "GaussianProcess", "GradientDescentMSE",
           "JitterWarning", "NotPositiveDefiniteError", "cholesky", "eigen", "gp_inference",
           "gradient_descent_mse", "limit_scores"]
