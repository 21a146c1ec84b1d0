"""infnet: infinitely wide and deep neural networks, seen through their activation functions."""

from .activations import Activation, KernelOverflowError, activation, list_activations
from .deep import deep_dual, deep_kernels, deep_ntk
from .design import from_dual, from_hermite, optimal_activation, sine_activation
from .limit import Limit, bottcher, koenigs, limit, limit_kernel
from .network import Dense, Kernel, Network, Nonlinearity, fc, serial

__version__ = "0.1.0"
__all__ = ["Activation", "Dense", "Kernel", "KernelOverflowError", "Limit", "Network",
           "Nonlinearity", "activation", "bottcher", "deep_dual", "deep_kernels", "deep_ntk", "fc",
           "from_dual", "from_hermite", "koenigs", "limit", "limit_kernel", "list_activations",
           "optimal_activation", "serial", "sine_activation"]
