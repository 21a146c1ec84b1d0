"""infnet: infinitely wide and deep neural networks, seen through their activation functions."""

from .activations import Activation, KernelOverflowError, activation, list_activations

__version__ = "0.1.0"
__all__ = ["Activation", "KernelOverflowError", "activation", "list_activations"]
