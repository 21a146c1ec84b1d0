"""Gaussian-process users' entry points: the hyperparameters of a network (``hyper``: w_std,
b_std and its activation's parameters), exact
derivatives of its kernels with respect to them (``gradients``), a scikit-learn kernel
(``sklearn_kernel``) and a GPyTorch kernel (``gpytorch_kernel``, optional extra
``infnet[gpytorch]``) that learn them by maximizing the marginal likelihood, and the
heavy-tailed scale mixtures of NNGPs (``mixtures``: Student-t processes, any scale prior;
``mixture_classifier``: classification by stochastic variational inference)."""

from .gradients import diagonal_gradients, kernel_gradients
from .hyper import activation_parameters, hyperparameters, with_hyperparameters
from .mixture_classifier import ScaleMixtureClassifier, inverse_gamma_kl, scale_mixture_classification
from .mixtures import ScaleMixture, StudentTProcess, scale_mixture_inference, student_t_inference
from .sklearn_kernel import NetworkKernel, NetworkParamKernel

__all__ = ["GPyTorchKernel", "NetworkKernel", "NetworkParamKernel", "ScaleMixture",
           "ScaleMixtureClassifier", "StudentTProcess", "activation_parameters",
           "diagonal_gradients", "hyperparameters", "inverse_gamma_kl", "kernel_gradients",
           "scale_mixture_classification", "scale_mixture_inference", "student_t_inference",
           "with_hyperparameters"]


def __getattr__(name: str):
    if name == "GPyTorchKernel":  # (imports gpytorch, an optional dependency, on first use)
        try:
            from .gpytorch_kernel import GPyTorchKernel
        except ModuleNotFoundError as err:
            if err.name not in ("gpytorch", "linear_operator"):
                raise
            raise ImportError("infnet.gp.GPyTorchKernel needs GPyTorch, an optional "
                              "dependency: pip install 'infnet[gpytorch]'") from err
        return GPyTorchKernel
    raise AttributeError(f"module 'infnet.gp' has no attribute {name!r}")
