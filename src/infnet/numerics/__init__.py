"""Numerics the kernels are built on: Gaussian expectations by adaptive polar quadrature
(``quadrature``, ``gauss``, ``gauss1d``), moments of pairs without cancellation (``moments``),
breakpoints of user functions (``smoothness``), Chebyshev tables in the angle (``table``) and
power series (``series``). Imports only ``infnet.core``.
"""
