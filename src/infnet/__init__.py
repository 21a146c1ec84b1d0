"""infnet: infinitely wide and deep neural networks, seen through their activation functions."""

from .activations import (
    Activation,
    KernelOverflowError,
    QuadratureError,
    QuadratureWarning,
    activation,
    list_activations,
)
from .deep import deep_dual, deep_kernels, deep_ntk
from .design import from_dual, from_hermite, optimal_activation, sine_activation
from .limit import Limit, bottcher, koenigs, limit, limit_kernel
from .network import Dense, IllConditionedError, Kernel, Network, Nonlinearity, fc, serial

__version__ = "0.1.0"

#: names loaded on first use (they import scikit-learn): name -> module
_LAZY = {"NTKClassifier": "estimators", "NTKRegressor": "estimators",
         "NNGPRegressor": "estimators", "empirical_ntk": "empirical", "dks": "shaping",
         "tat": "shaping", "tat_leaky_relu": "shaping"}


#: submodules importable as attributes (``infnet.predict.gp_inference``) without an import
_SUBMODULES = ("classifiers", "data", "empirical", "estimators", "finite_vs_infinite",
               "phase_diagram", "predict", "propagation", "scale", "shaping")


def __getattr__(name: str):
    import importlib

    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'infnet' has no attribute {name!r}")


__all__ = ["Activation", "Dense", "IllConditionedError", "Kernel", "KernelOverflowError", "Limit",
           "NNGPRegressor", "NTKClassifier", "NTKRegressor", "Network", "Nonlinearity", "QuadratureError",
           "QuadratureWarning", "activation",
           "bottcher", "deep_dual", "deep_kernels", "deep_ntk", "dks", "empirical_ntk", "fc", "from_dual",
           "from_hermite", "koenigs", "limit", "limit_kernel", "list_activations", "optimal_activation",
           "serial", "sine_activation", "tat", "tat_leaky_relu"]
