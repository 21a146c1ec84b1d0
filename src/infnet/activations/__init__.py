"""Activations and their infinite-width kernel maps."""

from .base import Activation, KernelOverflowError, from_function
from .catalog import activation, entry, list_activations, register

__all__ = ["Activation", "KernelOverflowError", "activation", "entry", "from_function",
           "list_activations", "register"]
