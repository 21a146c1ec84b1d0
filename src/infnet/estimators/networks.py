"""scikit-learn estimators of infinitely wide (and infinitely deep) fully-connected networks.

``NTKRegressor`` and ``NTKClassifier`` predict what the network of ``infnet.fc(activation,
depth, w_std=..., b_std=..., parameterization=...)`` outputs after training by gradient descent
on the MSE for a time ``time`` (inf: to convergence, kernel regression) with ``kernel="ntk"``
(all layers trained) or ``"nngp"`` (readout only); ``ridge`` is weight decay (kernel ridge
regression at t = inf). ``NNGPRegressor`` is the Bayesian posterior of the NNGP with noise
variance ``ridge`` and its predictive standard deviation. The conventions are those of
``infnet.predict`` (loss |f(X) - Y|^2 / (2 N), N = number of target entries).

The classifier regresses one-hot targets (0/1, one column per class, labels of any sortable
type mapped as scikit-learn does) and predicts the argmax. ``depth=inf`` gives the classifier
of the infinitely deep normalized bias-free network (``infnet.predict.limit_scores``).

The parameters, kernels and fitting they share are in ``base`` (``PREDICT_BLOCK``: test rows per
block; construction stores the parameters only, ``fit`` computes and factors the training kernel).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from sklearn.base import ClassifierMixin, RegressorMixin
from sklearn.preprocessing import LabelEncoder
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from .base import PREDICT_BLOCK, _InfiniteNetwork

__all__ = ["PREDICT_BLOCK", "NNGPRegressor", "NTKClassifier", "NTKRegressor"]


class NTKRegressor(RegressorMixin, _InfiniteNetwork):
    """Regression with the infinitely wide network trained by gradient descent on the MSE.

    The network ``fc(activation, depth, ...)`` is trained for ``time`` (module docstring):
    ``fit`` computes and factors the training kernel, ``predict`` gives the mean output over
    random initializations, and ``predict(X, return_std=True)`` adds the standard deviation
    over random initializations (Lee et al. 2019, eq. (16)).

    Parameters
    ----------
    activation : str, Activation or callable, default "relu"
        The activation phi, by catalog name (``infnet.list_activations()``) or as an
        ``infnet.Activation``/function (``infnet.activation(activation, **activation_params)``).
    depth : int or float("inf"), default 3
        The number of hidden layers L of ``infnet.fc``; ``float("inf")`` is the infinitely deep
        normalized bias-free network (not available for regression: ``fit`` raises).
    w_std : float, default sqrt(2)
        The weight standard deviation sigma_w.
    b_std : float or None, default 0.0
        The bias standard deviation sigma_b (None: no biases).
    parameterization : {"ntk", "standard"}, default "ntk"
        The parameterization of ``infnet.fc``.
    width : int, optional
        The hidden width for the standard parameterization, whose NTK grows with it (needed
        there); ignored by the NTK parameterization's infinite-width kernels.
    kernel : {"ntk", "nngp"}, default "ntk"
        "ntk": all layers trained; "nngp": only the readout trained.
    ridge : float, default 0.0
        Weight decay towards the initial parameters (>= 0): kernel ridge regression at t = inf.
    time : float, default inf
        The training time t of gradient flow (>= 0; inf: to convergence, kernel regression).
    learning_rate : float, default 1.0
        The learning rate eta of gradient flow (matters at finite ``time`` only).
    activation_params : dict, optional
        Keyword arguments of the activation (``infnet.activation(activation, **params)``).
    device : str or torch.device, optional
        Where the kernels are computed and factored (default: the CPU).
    architecture : str, default "fc"
        The network (``infnet.network.architecture``): "fc", or for images "cnn-vec",
        "cnn-gap", "lcn-vec", "lcn-gap", "myrtle" (depth 5, 7 or 10), "wrn".
    input_shape : tuple of int, optional
        For the convolutional architectures, the shape (C, H, W) (or (C, L)) that each row
        of X is reshaped to (X stays a 2-D array, as scikit-learn wants).

    Raises
    ------
    ValueError
        From ``fit``: ``depth=inf`` (the infinitely deep regressor predicts 0 away from the
        training points), ``kernel`` not "ntk"/"nngp", a negative ``time``, invalid ``X``/``y``
        (NaN, inf, mismatched lengths) or a training kernel that is not positive definite.

    Examples
    --------
    >>> X = np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0], [2.0, 1.0]])
    >>> y = np.array([1.0, -1.0, 0.5, 2.0])
    >>> reg = infnet.NTKRegressor("relu", depth=2).fit(X, y)
    >>> bool(np.allclose(reg.predict(X), y))  # time=inf interpolates the training targets
    True
    >>> mean, std = reg.predict(np.array([[1.0, 2.0]]), return_std=True)
    >>> round(float(mean[0]), 6), round(float(std[0]), 6)
    (1.43972, 0.296946)
    """

    def fit(self, X, y):
        X, y = validate_data(self, X, y, dtype=np.float64, multi_output=True, y_numeric=True)
        if self._infinite:
            raise ValueError("the infinitely deep regressor predicts 0 away from the training "
                             "points (its kernel tends to the identity); use a finite depth, or "
                             "NTKClassifier(depth=inf) for the limit classifier")
        self._vector_y = y.ndim == 1
        self._fit_targets(X, y.reshape(len(y), -1))
        return self

    def predict(self, X, return_std: bool = False):
        f = self.predict_outputs(X)
        f = f[:, 0] if self._vector_y else f
        if not return_std:
            return f
        return f, self._ensemble_std(X)

    def _ensemble_std(self, X) -> np.ndarray:
        """sqrt of the diagonal of eq. (16) of Lee et al. 2019 (``predict.Ensemble``)."""
        from ..predict.ensemble import Ensemble

        ens = Ensemble.from_flow(self._network(), self._tensor(self.X_fit_), self.model_,
                                 self.kernel)
        X = self._check_X(X, reset=False)
        out = np.empty(len(X))
        for i in range(0, len(X), PREDICT_BLOCK):
            _, cov = ens.predict(self._tensor(X[i:i + PREDICT_BLOCK]), self._time(), covariance=True)
            out[i:i + PREDICT_BLOCK] = cov.diagonal().clamp(min=0).sqrt().cpu().numpy()
        return out


class NTKClassifier(ClassifierMixin, _InfiniteNetwork):
    """Classification by regression of one-hot targets with the trained infinitely wide network.

    The predicted class is the argmax of the outputs (module docstring); ``decision_function``
    gives the outputs (for two classes the difference f_1 - f_0). ``depth=float("inf")``: the
    infinite-depth classifier (nearest neighbour, majority vote or singular kernel rule by the
    activation; ``infnet.predict.limit_scores``).

    Parameters
    ----------
    activation : str, Activation or callable, default "relu"
        The activation phi, by catalog name (``infnet.list_activations()``) or as an
        ``infnet.Activation``/function (``infnet.activation(activation, **activation_params)``).
    depth : int or float("inf"), default 3
        The number of hidden layers L of ``infnet.fc``; ``float("inf")`` is the infinitely deep
        normalized bias-free network (the infinite-depth classifier; only ``activation`` and
        ``activation_params`` matter then, and ``b_std`` must be 0).
    w_std : float, default sqrt(2)
        The weight standard deviation sigma_w.
    b_std : float or None, default 0.0
        The bias standard deviation sigma_b (None: no biases).
    parameterization : {"ntk", "standard"}, default "ntk"
        The parameterization of ``infnet.fc``.
    width : int, optional
        The hidden width for the standard parameterization, whose NTK grows with it (needed
        there); ignored by the NTK parameterization's infinite-width kernels.
    kernel : {"ntk", "nngp"}, default "ntk"
        "ntk": all layers trained; "nngp": only the readout trained.
    ridge : float, default 0.0
        Weight decay towards the initial parameters (>= 0): kernel ridge regression at t = inf.
    time : float, default inf
        The training time t of gradient flow (>= 0; inf: to convergence, kernel regression).
    learning_rate : float, default 1.0
        The learning rate eta of gradient flow (matters at finite ``time`` only).
    activation_params : dict, optional
        Keyword arguments of the activation (``infnet.activation(activation, **params)``).
    device : str or torch.device, optional
        Where the kernels are computed and factored (default: the CPU).
    architecture : str, default "fc"
        The network (``infnet.network.architecture``): "fc", or for images "cnn-vec",
        "cnn-gap", "lcn-vec", "lcn-gap", "myrtle" (depth 5, 7 or 10), "wrn".
    input_shape : tuple of int, optional
        For the convolutional architectures, the shape (C, H, W) (or (C, L)) that each row
        of X is reshaped to (X stays a 2-D array, as scikit-learn wants).

    Raises
    ------
    ValueError
        From ``fit``: ``kernel`` not "ntk"/"nngp", a negative ``time``, invalid ``X`` or labels
        (NaN, inf, continuous targets, mismatched lengths), or a training kernel that is not
        positive definite.

    Examples
    --------
    >>> X = np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0], [2.0, 1.0]])
    >>> clf = infnet.NTKClassifier("relu", depth=2).fit(X, ["a", "b", "a", "b"])
    >>> clf.classes_.tolist(), clf.predict(np.array([[0.0, 2.0], [3.0, 0.5]])).tolist()
    (['a', 'b'], ['a', 'b'])
    >>> deep = infnet.NTKClassifier("erf", depth=float("inf"))
    >>> deep.fit(np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]), [0, 1, 1]).predict(
    ...     np.array([[0.8, 0.6], [-0.6, -0.8]])).tolist()
    [0, 1]
    """

    def fit(self, X, y):
        X, y = validate_data(self, X, y, dtype=np.float64)
        check_classification_targets(y)
        encoder = LabelEncoder().fit(y)
        self.classes_ = encoder.classes_
        codes = encoder.transform(y)
        Y = np.zeros((len(y), len(self.classes_)))
        Y[np.arange(len(y)), codes] = 1.0
        self._fit_targets(X, Y)
        return self

    def decision_function(self, X) -> np.ndarray:
        """(m, n_classes) outputs; for two classes the (m,) difference f_1 - f_0 (positive:
        ``classes_[1]``)."""
        f = self.predict_outputs(X)
        return f[:, 1] - f[:, 0] if f.shape[1] == 2 else f

    def predict(self, X) -> np.ndarray:
        scores = self.predict_outputs(X)
        return self.classes_[scores.argmax(axis=1)]


class NNGPRegressor(RegressorMixin, _InfiniteNetwork):
    """Gaussian process regression with the NNGP of ``fc(activation, depth, ...)`` as prior.

    The posterior with the infinitely wide network as prior and observation noise variance
    ``ridge`` (Lee et al. 2018, arXiv 1711.00165). ``predict(X, return_std=True)`` /
    ``return_cov=True`` give the posterior of the noise-free function, as
    ``sklearn.gaussian_process``.

    Parameters
    ----------
    activation : str, Activation or callable, default "relu"
        The activation phi, by catalog name (``infnet.list_activations()``) or as an
        ``infnet.Activation``/function (``infnet.activation(activation, **activation_params)``).
    depth : int or float("inf"), default 3
        The number of hidden layers L of ``infnet.fc``; ``float("inf")`` is the infinitely deep
        normalized bias-free network (not available here: ``fit`` raises).
    w_std : float, default sqrt(2)
        The weight standard deviation sigma_w.
    b_std : float or None, default 0.0
        The bias standard deviation sigma_b (None: no biases).
    parameterization : {"ntk", "standard"}, default "ntk"
        The parameterization of ``infnet.fc``.
    width : int, optional
        The hidden width for the standard parameterization, whose NTK grows with it (needed
        there); ignored by the NTK parameterization's infinite-width kernels.
    ridge : float, default 0.0
        The observation noise variance (>= 0).
    activation_params : dict, optional
        Keyword arguments of the activation (``infnet.activation(activation, **params)``).
    device : str or torch.device, optional
        Where the kernels are computed and factored (default: the CPU).
    architecture : str, default "fc"
        The network (``infnet.network.architecture``): "fc", or for images "cnn-vec",
        "cnn-gap", "lcn-vec", "lcn-gap", "myrtle" (depth 5, 7 or 10), "wrn".
    input_shape : tuple of int, optional
        For the convolutional architectures, the shape (C, H, W) (or (C, L)) that each row
        of X is reshaped to (X stays a 2-D array, as scikit-learn wants).

    Raises
    ------
    ValueError
        From ``fit``: ``depth=inf`` (the infinitely deep kernel is singular on its diagonal),
        invalid ``X``/``y`` or a kernel that is not positive definite; from ``predict``:
        ``return_std`` and ``return_cov`` both True.

    Examples
    --------
    >>> X = np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0], [2.0, 1.0]])
    >>> y = np.array([1.0, -1.0, 0.5, 2.0])
    >>> gp = infnet.NNGPRegressor("relu", depth=2, ridge=1e-2).fit(X, y)
    >>> mean, std = gp.predict(np.array([[1.0, 2.0]]), return_std=True)
    >>> round(float(mean[0]), 6), round(float(std[0]), 6)
    (1.06731, 0.309461)
    >>> gp.predict(X, return_cov=True)[1].shape
    (4, 4)
    """

    _kernel_kinds = ("nngp",)
    kernel = "nngp"  # fixed: not parameters of this estimator
    time = math.inf
    learning_rate = 1.0

    def __init__(self, activation="relu", depth=3, *, w_std=2**0.5, b_std=0.0,
                 parameterization="ntk", width=None, ridge=0.0, activation_params=None,
                 device=None, architecture="fc", input_shape=None):
        self.activation = activation
        self.depth = depth
        self.w_std = w_std
        self.b_std = b_std
        self.parameterization = parameterization
        self.width = width
        self.ridge = ridge
        self.activation_params = activation_params
        self.device = device
        self.architecture = architecture
        self.input_shape = input_shape

    def fit(self, X, y):
        X, y = validate_data(self, X, y, dtype=np.float64, multi_output=True, y_numeric=True)
        if self._infinite:
            raise ValueError("the NNGP posterior needs a finite depth (the infinitely deep "
                             "kernel is singular on its diagonal)")
        self._vector_y = y.ndim == 1
        self._fit_targets(X, y.reshape(len(y), -1), posterior=True)
        return self

    def predict(self, X, return_std: bool = False, return_cov: bool = False):
        if return_std and return_cov:
            raise ValueError("return_std and return_cov cannot both be True")
        if not (return_std or return_cov):
            f = self.predict_outputs(X)
            return f[:, 0] if self._vector_y else f
        check_is_fitted(self, "X_fit_")
        X = self._check_X(X, reset=False)
        net, model = self._network(), self.model_
        coef = model.dual_coef(math.inf)
        means, spreads = [], []
        for rows, cross in self._cross_blocks(X):  # each cross-kernel block computed once
            means.append(cross @ coef)
            x = self._tensor(X[rows])
            if return_cov:
                spreads.append(cross)
            else:
                diag, _ = net.diagonal((x * x).sum(1) / x.shape[1], x.shape[1])  # K(x, x)
                spreads.append(model.variance(cross, diag).sqrt())
        f = torch.cat(means).cpu().numpy()
        f = f[:, 0] if self._vector_y else f
        if return_cov:
            k_test = net.kernel(self._tensor(X), get="nngp").nngp
            return f, model.covariance(torch.cat(spreads), k_test).cpu().numpy()
        return f, torch.cat(spreads).cpu().numpy()
