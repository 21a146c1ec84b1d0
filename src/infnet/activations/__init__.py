"""Activations and their infinite-width kernel maps."""

from .base import Activation
from .catalog import activation, entry, list_activations, register
from .errors import KernelOverflowError, QuadratureError
from .user import from_function

__all__ = ["Activation", "KernelOverflowError", "QuadratureError", "activation", "entry",
           "from_function", "list_activations", "register"]
