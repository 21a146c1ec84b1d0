"""The errors of the kernel maps: what infnet raises instead of returning a wrong number."""


class KernelOverflowError(ArithmeticError):
    """An activation's kernel is infinite or undefined at the given variances.

    Its Gaussian expectation diverges (growth in the tails, a singularity) or overflows float64.
    """


class QuadratureError(ArithmeticError):
    """A Gaussian expectation that the quadrature cannot resolve to machine precision.

    The integrand is not smooth between the known kinks, or a tail decays too slowly.
    """


class QuadratureWarning(UserWarning):
    """A Gaussian expectation reached only the accuracy the warning states.

    That accuracy is better than 1e-8 but not machine precision, with the largest node counts.
    """
