"""Empirical neural tangent kernels of finite PyTorch networks (torch.func).

    from infnet.empirical import empirical_ntk, Elementwise
    theta = empirical_ntk(model, x1, x2)               # (N1, N2): mean over the O outputs
    theta = empirical_ntk(model, x1, trace=False)      # (N1, N1, O, O)

Three implementations (Novak, Sohl-Dickstein & Schoenholz, "Fast Finite Width Neural Tangent
Kernel", ICML 2022, arXiv 2206.08720): Jacobian contraction and NTK-vector products for any
module (``autodiff``), structured derivatives for MLPs (``structured``); ``ntk`` chooses and
cuts the inputs into blocks.
"""

from .ntk import empirical_ntk, empirical_ntk_fn
from .structured import ELEMENTWISE, Elementwise

__all__ = ["ELEMENTWISE", "Elementwise", "empirical_ntk", "empirical_ntk_fn"]
