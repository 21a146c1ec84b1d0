"""Activations and their infinite-width kernel maps.

``base`` (the Activation value and its kernel maps), ``checks`` (the moments, singular points
and divergence), ``numerical`` (the maps by quadrature), ``catalog`` (entries and the lookup
``activation(name, **params)``), the entry modules that fill the catalog (``entries``,
``entries_literature``, ``gated``), ``closed_forms`` and ``user`` (functions of your own).
"""

from ..core.errors import KernelOverflowError, QuadratureError, QuadratureWarning
from . import entries, entries_literature, gated  # noqa: F401  (importing them fills the catalog)
from .base import Activation
from .catalog import activation, entry, list_activations, register
from .user import from_function

__all__ = ["Activation", "KernelOverflowError", "QuadratureError", "QuadratureWarning",
           "activation", "entry", "from_function", "list_activations", "register"]
