"""infnet: infinitely wide and deep neural networks, seen through their activation functions."""

from .activations import (
    Activation,
    KernelOverflowError,
    QuadratureError,
    QuadratureWarning,
    activation,
    list_activations,
)
from .depth.deep import deep_dual, deep_kernels, deep_ntk
from .depth.design import from_dual, from_hermite, optimal_activation, sine_activation
from .depth.limit import Limit, limit
from .depth.linearize import bottcher, koenigs, limit_kernel
from .network import (
    AvgPool,
    Conv,
    Dense,
    Flatten,
    GlobalAvgPool,
    IllConditionedError,
    Kernel,
    Network,
    Nonlinearity,
    fc,
    serial,
)

__version__ = "0.1.0"

#: names loaded on first use (they import scikit-learn): name -> module
_LAZY = {"NTKClassifier": "estimators.networks", "NTKRegressor": "estimators.networks",
         "NNGPRegressor": "estimators.networks", "empirical_ntk": "empirical",
         "dks": "propagation.shaping", "tat": "propagation.shaping",
         "tat_leaky_relu": "propagation.shaping"}


#: the packages, bottom to top (each imports only packages before it; tests/test_layering.py),
#: importable as attributes (``infnet.predict.gp_inference``) without an import
_SUBMODULES = ("core", "numerics", "activations", "depth", "empirical", "network", "data",
               "predict", "gp", "estimators", "propagation", "scale", "experiments", "cli")


def __getattr__(name: str):
    import importlib

    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'infnet' has no attribute {name!r}")


__all__ = ["Activation", "AvgPool", "Conv", "Dense", "Flatten", "GlobalAvgPool",
           "IllConditionedError", "Kernel", "KernelOverflowError", "Limit", "NNGPRegressor",
           "NTKClassifier", "NTKRegressor", "Network", "Nonlinearity", "QuadratureError",
           "QuadratureWarning", "activation", "bottcher", "deep_dual", "deep_kernels", "deep_ntk",
           "dks", "empirical_ntk", "fc", "from_dual", "from_hermite", "koenigs", "limit",
           "limit_kernel", "list_activations", "optimal_activation", "serial", "sine_activation",
           "tat", "tat_leaky_relu"]
