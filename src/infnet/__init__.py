"""infnet: infinitely wide and deep neural networks, seen through their activation functions."""

from .activations import Activation, KernelOverflowError, activation, list_activations
from .network import Dense, Kernel, Network, Nonlinearity, fc, serial

__version__ = "0.1.0"
__all__ = ["Activation", "Dense", "Kernel", "KernelOverflowError", "Network", "Nonlinearity",
           "activation", "fc", "list_activations", "serial"]
