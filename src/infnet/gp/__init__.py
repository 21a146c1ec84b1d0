"""Gaussian-process users' entry points: the hyperparameters of a network (``hyper``), exact
derivatives of its kernels with respect to them (``gradients``), and a scikit-learn kernel
(``sklearn_kernel``) that learns them by maximizing the marginal likelihood."""

from .gradients import kernel_gradients
from .hyper import hyperparameters, with_hyperparameters
from .sklearn_kernel import NetworkKernel

__all__ = ["NetworkKernel", "hyperparameters", "kernel_gradients", "with_hyperparameters"]
