"""The infinite ensemble: mean and covariance over random initializations of infinitely wide
networks trained by gradient flow on the MSE (Lee et al. 2019, arXiv 1902.06720, eq. (16)).

At initialization f_0 ~ GP(0, K) (the NNGP); after training for time t,
f_t(x) = f_0(x) + Theta(x, X) T_t (Y - f_0(X)) (``dynamics``), a linear map of the Gaussian f_0:

    mean  Theta(x, X) T_t Y
    cov   K(x, x') - Theta(x, X) T_t K(X, x') - K(x, X) T_t Theta(X, x')
          + Theta(x, X) T_t K(X, X) T_t Theta(X, x')

with Theta the NTK (``kind="ntk"``: all layers trained) or the NNGP itself (``kind="nngp"``:
only the readout trained, Theta = K; at t = inf without ridge the covariance is the GP
posterior's).
"""

from __future__ import annotations

import math

import torch

from .dynamics import GradientDescentMSE, check_time

Tensor = torch.Tensor


class Ensemble:
    """Predictions of the trained infinite ensemble of ``network``: mean and covariance.

    ``predict(x_test, t, covariance=...)`` returns the mean and covariance over random
    initializations of the infinitely wide network after gradient flow on the MSE for time t
    (module docstring, Lee et al. 2019 eq. (16)). Training kernels are computed once and cached;
    the NNGP of the training set only when a covariance is asked for with ``kind="ntk"``.

    Parameters
    ----------
    network : Network
        Anything with ``.kernel(x1, x2=None, get=...)`` returning ``.nngp`` / ``.ntk``, e.g.
        ``infnet.fc``.
    x_train : array_like, shape (n, d)
        The training inputs.
    y_train : array_like, shape (n,) or (n, outputs)
        The training targets.
    kind : {"ntk", "nngp"}, default "ntk"
        "ntk": all layers trained; "nngp": only the readout trained (Theta = K).
    learning_rate : float, default 1.0
        The learning rate eta of the gradient flow.
    ridge : float, default 0.0
        Weight decay towards the initial parameters (>= 0).

    Raises
    ------
    ValueError
        If ``kind`` is not "ntk" or "nngp", or the kernel, targets, ``learning_rate`` or
        ``ridge`` are invalid (``GradientDescentMSE``).
    TypeError
        If ``network`` has no ``.kernel`` method.

    Examples
    --------
    >>> net = infnet.fc("relu", 2)
    >>> x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]], dtype=torch.float64)
    >>> ens = infnet.predict.Ensemble(net, x[:2], torch.tensor([1.0, -1.0], dtype=torch.float64))
    >>> mean, cov = ens.predict(x, covariance=True)
    >>> tuple(mean.shape), tuple(cov.shape)
    ((3,), (3, 3))
    >>> [round(float(v), 6) for v in mean[:2]]  # t = inf interpolates the training targets
    [1.0, -1.0]
    >>> bool(cov[2, 2] > 0), bool(abs(cov[0, 0]) < 1e-12)  # no spread left on training points
    (True, True)
    """

    def __init__(self, network, x_train, y_train, *, kind: str = "ntk", learning_rate: float = 1.0,
                 ridge: float = 0.0):
        if kind not in ("ntk", "nngp"):
            raise ValueError(f"kind must be 'ntk' (all layers trained) or 'nngp' (readout only), "
                             f"got {kind!r}")
        if not hasattr(network, "kernel"):
            raise TypeError(f"network must have a .kernel(x1, x2) method (infnet.fc, "
                            f"infnet.serial), got {type(network).__name__}")
        self.network = network
        self.kind = kind
        self.x_train = x_train
        k = network.kernel(x_train, get=kind).get(kind)
        self.flow = GradientDescentMSE(k, y_train, learning_rate=learning_rate, ridge=ridge)
        self._nngp_train: Tensor | None = k if kind == "nngp" else None

    @classmethod
    def from_flow(cls, network, x_train, flow: GradientDescentMSE, kind: str) -> Ensemble:
        """An ensemble around an already fitted flow on ``network``'s ``kind`` kernel of
        ``x_train`` (the estimators' factor is reused, not recomputed)."""
        ens = cls.__new__(cls)
        ens.network, ens.x_train, ens.flow, ens.kind = network, x_train, flow, kind
        ens._nngp_train = flow.k_train if kind == "nngp" else None
        return ens

    def _train_nngp(self) -> Tensor:
        if self._nngp_train is None:
            self._nngp_train = self.network.kernel(self.x_train, get="nngp").nngp
        return self._nngp_train

    def predict(self, x_test, t: float = math.inf, *, covariance: bool = False):
        """(mean, cov): the (m,) or (m, outputs) mean and, if asked, the (m, m) covariance
        (shared by all outputs; None otherwise) at the test inputs ``x_test`` after training
        for time ``t``."""
        t = check_time(t)
        both = self.network.kernel(x_test, self.x_train, get="both" if covariance else self.kind)
        cross = both.get(self.kind)
        mean = self.flow.predict(cross, t)
        if not covariance:
            return mean, None
        k_cross = both.nngp  # K(x, X)
        k_test = self.network.kernel(x_test, get="nngp").nngp
        a = self.flow.transfer(t, cross.T.contiguous())  # T_t Theta(X, x)
        cov = k_test - a.T @ k_cross.T - k_cross @ a + a.T @ (self._train_nngp() @ a)
        return mean, (cov + cov.T) / 2


