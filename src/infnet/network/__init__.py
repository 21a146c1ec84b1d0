"""Networks of layers and their infinite-width kernels."""

from .layers import Dense, Moments, Nonlinearity
from .network import IllConditionedError, Kernel, Network, fc, serial
from .table import AngleTable

__all__ = ["AngleTable", "Dense", "IllConditionedError", "Kernel", "Moments", "Network", "Nonlinearity",
           "fc", "serial"]
