"""The errors of the kernel maps: what infnet raises instead of returning a wrong number."""


class KernelOverflowError(ArithmeticError):
    """An activation's kernel is infinite or undefined at the given variances: its Gaussian
    expectation diverges (growth in the tails, a singularity) or overflows float64."""


class QuadratureError(ArithmeticError):
    """A Gaussian expectation that the quadrature cannot resolve to machine precision (an
    integrand that is not smooth between the known kinks, or a tail that decays too slowly)."""


class QuadratureWarning(UserWarning):
    """A Gaussian expectation reached only the accuracy the warning states (better than 1e-8,
    not machine precision) with the largest node counts."""
