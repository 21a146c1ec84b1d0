"""Activations from duals: pick the infinite-depth limit, get the activation.

A normalized dual is a power series f(rho) = sum_k p_k rho^k with p_k >= 0, sum_k p_k = 1, and
phi = sum_k a_k h_k (h_k = He_k / sqrt(k!), the normalized probabilists' Hermite polynomials) has
the dual sum_k a_k^2 rho^k / sum_k a_k^2 (Daniely et al. 2016, arXiv 1602.05897). So every such
series is the dual of phi = sum_k sqrt(p_k) h_k (the signs of the a_k are free), and the
infinite-depth class of a network is chosen by choosing the series (``infnet.limit``).

``optimal_activation(d)`` gives a network whose infinite-depth classifier is the Hilbert kernel
|x - z|^(-(d - 1)) on the sphere S^(d-1), which is Bayes-consistent (Devroye, Gyorfi & Krzyzak
1998): its dual has f'(0) = f'(1)^(-(d-1)/2) (Radhakrishnan, Belkin & Uhler, arXiv 2204.14126,
PNAS 2023; docs/theory/infinite-depth.md#hilbert-kernel-and-optimal-activations).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
import torch
from scipy.optimize import brentq

from ..activations import Activation, activation
from ..activations.closed_forms import hermite_series_kernel

Tensor = torch.Tensor

_PAPER = "Radhakrishnan, Belkin & Uhler 2023 (arXiv 2204.14126)"


# ---- Hermite series activations ------------------------------------------------------------
def _hermite_series(x: Tensor, coefficients) -> Tensor:
    """sum_k a_k h_k(x) by the recurrence h_{k+1} = (x h_k - sqrt(k) h_{k-1}) / sqrt(k + 1)
    (stable at any degree, unlike the monomial form of He_k)."""
    a = tuple(coefficients)
    out = torch.full_like(x, a[0])
    h_prev, h = torch.ones_like(x), x
    for k in range(1, len(a)):
        if a[k]:
            out = out + a[k] * h
        if k + 1 < len(a):
            h_prev, h = h, (x * h - math.sqrt(k) * h_prev) / math.sqrt(k + 1)
    return out


def _hermite_series_derivative(x: Tensor, coefficients) -> Tensor:
    """phi' = sum_k a_k sqrt(k) h_{k-1}, since h_k' = sqrt(k) h_{k-1}."""
    a = tuple(coefficients)
    if len(a) < 2:
        return torch.zeros_like(x)
    return _hermite_series(x, [a[k] * math.sqrt(k) for k in range(1, len(a))])


def _check_coefficients(coefficients, what: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in coefficients)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{what} must be a sequence of numbers, got {coefficients!r}") from err
    if not values:
        raise ValueError(f"{what} must not be empty")
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"{what} must be finite numbers, got {values}")
    while len(values) > 1 and values[-1] == 0.0:
        values = values[:-1]
    return values


def from_hermite(coefficients: Sequence[float], name: str = "hermite_series") -> Activation:
    """The activation phi = sum_k a_k h_k, h_k = He_k / sqrt(k!) (normalized probabilists' Hermite).

    Its normalized dual is sum_k a_k^2 rho^k / sum_k a_k^2. The kernel is exact at all variances
    (``hermite_series_kernel``), and the function is evaluated by the three-term recurrence.
    ``with_params`` is not available (the name is not a catalog entry); build a new one instead.

    Parameters
    ----------
    coefficients : sequence of float
        (a_0, a_1, ...), finite, not all zero (trailing zeros are dropped).
    name : str
        The activation's name.

    Returns
    -------
    Activation
        phi, with its closed-form kernel.

    Raises
    ------
    TypeError
        ``coefficients`` is not a sequence of numbers.
    ValueError
        ``coefficients`` is empty, not finite, or all zero.

    Examples
    --------
    >>> act = infnet.from_hermite([0.0, 1.0, 1.0])  # h_1 + h_2 = x + (x^2 - 1) / sqrt(2)
    >>> x = torch.tensor([0.0, 1.0], dtype=torch.float64)
    >>> [round(v, 6) for v in act(x).tolist()]
    [-0.707107, 1.0]
    >>> round(float(act.dual(0.5)), 6)  # (0.5 + 0.25) / 2
    0.375
    """
    a = _check_coefficients(coefficients, "Hermite coefficients")
    if not any(a):
        raise ValueError("Hermite coefficients are all zero: phi = 0 has no normalized dual")
    terms = " + ".join(f"{v:.6g} h_{k}" for k, v in enumerate(a) if v)
    return Activation(fn=_hermite_series, name=name, params={"coefficients": a},
                      closed_form=hermite_series_kernel, derivative_fn=_hermite_series_derivative,
                      formula=f"{terms} (h_k = He_k / sqrt(k!))",
                      source="Hermite series; dual sum_k a_k^2 rho^k / sum_k a_k^2 "
                             "(Daniely et al. 2016)")


def from_dual(coefficients: Sequence[float], name: str = "from_dual") -> Activation:
    """An activation whose normalized dual is sum_k p_k rho^k: phi = sum_k sqrt(p_k) h_k.

    ``coefficients`` = (p_0, p_1, ...), all >= 0 (a dual's power series has nonnegative
    coefficients, Schoenberg 1942), not all zero. If they do not sum to 1 they are normalized:
    the normalized dual of any multiple of phi is the same, so p / sum(p) is the dual obtained.
    The activation has unit second moment E[phi(z)^2] = 1 (so ``act.normalized()`` is itself).
    Of the 2^n sign choices of the Hermite coefficients, all positive is taken.

    Parameters
    ----------
    coefficients : sequence of float
        (p_0, p_1, ...), the power-series coefficients of the dual.
    name : str
        The activation's name.

    Returns
    -------
    Activation
        phi = sum_k sqrt(p_k / sum(p)) h_k (``from_hermite``).

    Raises
    ------
    TypeError
        ``coefficients`` is not a sequence of numbers.
    ValueError
        ``coefficients`` is empty, not finite, negative somewhere, or all zero.

    Examples
    --------
    >>> act = infnet.from_dual([0.0, 1.0, 1.0])  # normalized to rho/2 + rho^2/2
    >>> round(float(act.dual(0.5)), 6), round(float(act.variance_map(1.0)), 6)
    (0.375, 1.0)
    >>> infnet.limit(act).kind
    'singular'
    """
    p = _check_coefficients(coefficients, "dual coefficients")
    if any(v < 0 for v in p):
        raise ValueError(f"dual coefficients must be >= 0 (a normalized dual is a power series with "
                         f"nonnegative coefficients); got {p}")
    total = math.fsum(p)
    if not total > 0:
        raise ValueError("dual coefficients are all zero: no activation has the dual 0")
    return from_hermite([math.sqrt(v / total) for v in p], name=name)


# ---- the sine family -------------------------------------------------------------------------
def sine_activation(a: float, name: str | None = None) -> Activation:
    """phi(x) = sqrt(2 / (1 - e^(-2a))) sin(sqrt(a) x), whose normalized dual is sinh(a rho)/sinh(a).

    E[sin(w u) sin(w v)] = e^(-w^2) sinh(w^2 rho) for unit-variance u, v with correlation rho, so
    with w^2 = a the dual is sinh(a rho) / sinh(a) for any amplitude; the amplitude above makes
    E[phi(z)^2] = 1. The paper's 'sine_a' (Radhakrishnan, Belkin & Uhler 2023). Built from the
    catalog's ``sin`` entry (closed-form kernel), renamed, so ``with_params`` is not available.

    Parameters
    ----------
    a : float
        The family's parameter, finite and > 0 (the squared frequency).
    name : str, optional
        The activation's name; default ``f"sine_a{a:.6g}"``.

    Returns
    -------
    Activation
        phi, with its closed-form kernel.

    Raises
    ------
    ValueError
        a is not a finite number > 0.

    Examples
    --------
    >>> act = infnet.sine_activation(1.0)
    >>> act.name
    'sine_a1'
    >>> round(float(act.dual(0.5)), 6), round(float(np.sinh(0.5) / np.sinh(1.0)), 6)
    (0.443409, 0.443409)
    >>> round(float(act.variance_map(1.0)), 6)  # E[phi(z)^2]
    1.0
    """
    a = float(a)
    if not (math.isfinite(a) and a > 0):
        raise ValueError(f"the sine family needs a finite a > 0, got {a!r}")
    amplitude = math.sqrt(2.0 / -math.expm1(-2.0 * a))
    act = activation("sin", amplitude=amplitude, frequency=math.sqrt(a), phase=0.0)
    return dataclasses.replace(
        act, name=name or f"sine_a{a:.6g}",
        formula=f"sqrt(2 / (1 - exp(-2a))) sin(sqrt(a) x), a = {a:.10g}",
        source=f"dual sinh(a rho) / sinh(a); {_PAPER}")


def _log_sinh_over_a(a: float) -> float:
    """log(sinh(a) / a), stable for small and large a."""
    if a < 1e-4:
        return a * a / 6.0
    return a + math.log1p(-math.exp(-2.0 * a)) - math.log(2.0 * a)


def _log_a_coth_a(a: float) -> float:
    """log(a coth a), stable for small and large a."""
    if a < 1e-4:
        return a * a / 3.0
    return math.log(a) - math.log(math.tanh(a))


def optimal_sine_a(d: int) -> float:
    """The a > 0 of the sine family that is optimal on S^(d-1): the dual sinh(a rho)/sinh(a) has
    f'(0) = a / sinh(a) and f'(1) = a coth(a), and f'(0) = f'(1)^(-(d-1)/2) reads
    log(sinh(a) / a) = ((d-1)/2) log(a coth a) (docs/theory/infinite-depth.md#sine-family). Exists for d
    >= 3 (for
    d = 2 the left side exceeds the right for every a > 0)."""
    d = _check_dimension(d)
    if d < 3:
        raise ValueError("no member of the sine family is optimal on S^1 (d = 2): "
                         "log(sinh a / a) > (1/2) log(a coth a) for every a > 0. "
                         "Use family='polynomial' (the paper's 2d_opt dual rho/2 + rho^7/2)")
    m = (d - 1) / 2.0

    def gap(a):
        return _log_sinh_over_a(a) - m * _log_a_coth_a(a)

    # gap ~ -(d - 2) a^2 / 6 < 0 near 0 and ~ a - log(2a) - m log(a) > 0 for large a
    hi = 4.0 * d
    while gap(hi) <= 0:
        hi *= 2
    return brentq(gap, 1e-2, hi, xtol=1e-15, rtol=1e-15, maxiter=200)


# ---- optimal activations ---------------------------------------------------------------------
#: optimal duals with dual'(0) below this are refused: next to dual(1) = 1 double precision
#: cannot resolve them (the limit's class is decided with a tolerance of 1e-15)
MIN_SLOPE0 = 1e-14
_MAX_POLYNOMIAL_D = int(2 * math.log2(1 / MIN_SLOPE0)) + 1  # 2^-((d-1)/2) >= MIN_SLOPE0


def _check_dimension(d) -> int:
    if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 2:
        raise ValueError(f"d must be an integer >= 2 (inputs on the sphere S^(d-1) in R^d), got {d!r}")
    return int(d)


def optimal_dual(d: int) -> tuple[float, ...]:
    """Power-series coefficients (p_0, p_1, ...) of the polynomial optimal dual on S^(d-1).

    The rule (it reproduces the paper's code duals):
      * d >= 3: f = c rho + (1 - 2c) rho^2 + c rho^3 with c = 2^(-(d-1)/2). Then f(1) = 1,
        f'(1) = c + 2(1 - 2c) + 3c = 2 and f'(0) = c = 2^(-(d-1)/2) = f'(1)^(-(d-1)/2) exactly;
        1 - 2c >= 0 needs d >= 3. d = 3, 5, 9 give the paper's rho/2 + rho^3/2,
        rho/4 + rho^2/2 + rho^3/4 and rho/16 + 7 rho^2/8 + rho^3/16.
      * d = 2: f = rho/2 + rho^7/2 (the paper's 2d_opt): f'(0) = 1/2, f'(1) = 4, 4^(-1/2) = 1/2.
    """
    d = _check_dimension(d)
    if d == 2:
        return (0.0, 0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.5)
    c = 2.0 ** (-(d - 1) / 2.0)
    return (0.0, c, 1.0 - 2.0 * c, c)


def optimal_activation(d: int, family: str = "polynomial") -> Activation:
    """An activation whose infinite-depth network is the Hilbert kernel classifier on S^(d-1).

    Its normalized dual f has f(0) = 0 and f'(0) = f'(1)^(-(d-1)/2), so the limit kernel (the
    Koenigs function of f, ``infnet.limit``) behaves like |x - z|^(-(d - 1)) (exponent d - 1),
    the Bayes-consistent Hilbert kernel (Radhakrishnan, Belkin & Uhler 2023).

    family="polynomial": phi = sum_k sqrt(p_k) h_k with the dual of ``optimal_dual(d)`` (a
    polynomial of degree 3, or 7 for d = 2); name "optimal_polynomial_d{d}".
    family="sine": phi = sqrt(2/(1 - e^(-2a))) sin(sqrt(a) x) with a = ``optimal_sine_a(d)``
    (d >= 3); name "optimal_sine_d{d}".

    Parameters
    ----------
    d : int
        The input dimension, >= 2: inputs on the sphere S^(d-1) in R^d.
    family : {"polynomial", "sine"}
        Which activation (see above).

    Returns
    -------
    Activation
        The optimal activation; its normalized dual is exact (closed form).

    Raises
    ------
    ValueError
        d is not an integer >= 2; family is neither "polynomial" nor "sine"; "sine" with d = 2
        (no member is optimal on S^1); or a dimension so large that dual'(0) falls below what
        double precision resolves next to dual(1) = 1 (polynomial: from d = 95 on).

    Examples
    --------
    >>> act = infnet.optimal_activation(3)
    >>> act.name
    'optimal_polynomial_d3'
    >>> lim = infnet.limit(act)  # the kernel behaves like |x - z|^-(d - 1)
    >>> lim.kind, round(lim.exponent, 6)
    ('singular', 2.0)
    >>> infnet.optimal_activation(5, family="sine").name
    'optimal_sine_d5'
    """
    d = _check_dimension(d)
    if family == "polynomial":
        c0 = optimal_dual(d)[1]
        if c0 < MIN_SLOPE0:
            raise ValueError(
                f"the optimal polynomial dual on S^{d - 1} has dual'(0) = 2^-{(d - 1) / 2:g} = "
                f"{c0:.3g}: below what double precision resolves next to dual(1) = 1 (from "
                f"d = {_MAX_POLYNOMIAL_D + 1} on), so its singular limit could not be told from "
                "the nearest-neighbour class and its deep kernels underflow. Its classifier, the "
                f"Hilbert kernel rule with exponent {d - 1}, is then 1-NN in all but name: use "
                "infnet.classifiers.HilbertKernel or NearestNeighbor, or reduce the dimension "
                f"(e.g. PCA) to d <= {_MAX_POLYNOMIAL_D}")
        act = from_dual(optimal_dual(d), name=f"optimal_polynomial_d{d}")
        return dataclasses.replace(act, source=f"optimal dual on S^{d - 1}: {_PAPER}; "
                                               f"kernel ~ |x - z|^-{d - 1} (Hilbert kernel)")
    if family == "sine":
        a = optimal_sine_a(d)
        if math.exp(-_log_sinh_over_a(a)) < 1e-12:  # dual'(0) = a / sinh(a)
            raise ValueError(f"the optimal sine on S^{d - 1} has a = {a:.6g} and dual'(0) = "
                             f"a / sinh(a) = {math.exp(-_log_sinh_over_a(a)):.3g}: below what "
                             "double precision resolves next to dual(1) = 1 (its limit could not "
                             "be told from the nearest-neighbour class). Use family='polynomial'")
        return sine_activation(a, name=f"optimal_sine_d{d}")
    raise ValueError(f"family must be 'polynomial' or 'sine', got {family!r}")
