"""Depth: iterating a layer's dual map. The infinite-depth class of an activation (``limit``),
the linearizations that jump over layers (``linearize``: Koenigs and Boettcher functions), deep
kernels at any depth (``deep``, ``marginal``) and activations designed from their dual
(``design``). Imports activations and numerics; the networks of ``infnet.network`` use it to
skip layers.
"""

from .deep import deep_dual, deep_kernels, deep_ntk
from .design import from_dual, from_hermite, optimal_activation, sine_activation
from .limit import Limit, limit
from .linearize import bottcher, koenigs, limit_kernel

__all__ = ["Limit", "bottcher", "deep_dual", "deep_kernels", "deep_ntk", "from_dual", "from_hermite",
           "koenigs", "limit", "limit_kernel", "optimal_activation", "sine_activation"]
