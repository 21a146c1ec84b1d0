"""Signal propagation: the variance (length) map of a layer, its slope and fixed points
(``length``), the correlation map, its fixed point and the depth scales (``correlation``), the
summary at one (w_std, b_std) (``maps``), the order-to-chaos phase diagram (``phase_diagram``),
the transformed activations of kernel shaping (``transformed``) and DKS and TAT (``shaping``)."""

from .correlation import (
    correlation_fixed_point,
    correlation_map,
    correlation_slope,
    depth_scale,
    diagonal_slope,
)
from .length import length_fixed_points, length_map, variance_slope
from .maps import Propagation, phase_of, propagation
from .phase_diagram import PhaseDiagram, chi_1_grid, critical_weight, phase_diagram, propagation_table
from .shaping import dks, tat, tat_leaky_relu
from .transformed import Shaped

__all__ = ["PhaseDiagram", "Propagation", "Shaped", "chi_1_grid", "correlation_fixed_point",
           "correlation_map", "correlation_slope", "critical_weight", "depth_scale", "diagonal_slope",
           "dks", "length_fixed_points", "length_map", "phase_diagram", "phase_of", "propagation",
           "propagation_table", "tat", "tat_leaky_relu", "variance_slope"]
