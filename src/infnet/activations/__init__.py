"""Activations and their infinite-width kernel maps."""

from .base import Activation
from .catalog import activation, entry, list_activations, register
from .errors import KernelOverflowError, QuadratureError, QuadratureWarning
from .user import from_function

__all__ = ["Activation", "KernelOverflowError", "QuadratureError", "QuadratureWarning",
           "activation", "entry", "from_function", "list_activations", "register"]
