"""Kernel shaping: transformed activations phi_hat(x) = gamma (phi(alpha x + beta) + delta) that
keep the kernel of a deep network of them well behaved.

Deep Kernel Shaping (DKS: Martens, Ballard, Desjardins, Swirszcz, Dalibard, Sohl-Dickstein &
Schoenholz 2021, arXiv 2110.01765) and Tailored Activation Transformations (TAT: Zhang, Botev &
Martens 2022, arXiv 2203.08120); docs/theory/signal-propagation.md#kernel-shaping-maps. A network of
``depth`` = L layers
Dense(w_std=1, b_std=0) -> phi_hat, on inputs with x.x/d = 1, has the per-layer maps

    Q(q) = E[phi_hat(sqrt(q) z)^2],   C(c) = E[phi_hat(u) phi_hat(v)] / Q(1),
    (u, v) ~ N(0, [[1, c], [c, 1]]),  and its NNGP at input correlation c is C_f(c) = C^(L)(c)
    once Q(1) = 1. At unit variance (z ~ N(0, 1)), differentiating under the expectation and by
    Price's theorem (the dual of phi' is C', that of phi'' is C''):

    Q'(1) = E[phi_hat(z) phi_hat'(z) z],   C(0) = E[phi_hat(z)]^2 / Q(1),
    C'(1) = E[phi_hat'(z)^2] / Q(1),       C''(1) = E[phi_hat''(z)^2] / Q(1).

DKS (Martens et al. 2021, the four conditions of its method summary; defaults as in the
deepmind/dks reference implementation): Q(1) = 1, Q'(1) = 1, C(0) = 0 and C_f'(1) = zeta; in a
chain of L identical layers C_f'(1) = C'(1)^L (C(1) = 1: the "maximal slope function" of a chain
is x^L), so the local target is C'(1) = zeta^(1/L). TAT (Zhang et al. 2022) for smooth
activations: Q(1) = 1, Q'(1) = 1, C'(1) = 1 and C_f''(1) = tau; with unit slopes the second
derivatives add along the chain, C_f''(1) = L C''(1), so C''(1) = tau / L. TAT for leaky ReLU:
the negative slope a with C_f(0) = eta and gamma = sqrt(2 / (1 + a^2)) (so Q(1) = 1).

This module holds the solvers (``dks``, ``tat``, ``tat_leaky_relu``); the transformed activation,
its moments, ``Shaped`` and ``check`` are in ``transformed`` (re-exported here).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch
from scipy.optimize import brentq, root

from ..activations import Activation, activation
from ..core.checks import check_depth
from .transformed import (
    F64,
    Shaped,
    _elementwise,
    _local,
    _moments,
    _slope_jump,
    check,
    second_derivative,
    transform,
)

__all__ = ["CHECK_TOL", "TOL", "Shaped", "check", "dks", "leaky_relu_c_map", "second_derivative",
           "tat", "tat_leaky_relu", "transform"]

#: the solver's residuals must be below TOL; the targets re-evaluated by ``check`` below CHECK_TOL
TOL = 1e-10
CHECK_TOL = 1e-8


# ---- solving for the parameters -----------------------------------------------------------------
def _solve(residual, starts, name: str, method: str, prefer=None):
    """scipy's hybrid root finder (Powell) from each start in turn: the first root with all
    residuals below TOL for which ``prefer`` holds, else the first root found."""
    found = None
    for x0 in starts:
        try:
            sol = root(residual, np.asarray(x0, dtype=float), method="hybr",
                       options={"maxfev": 40 * (len(x0) + 1)})
        except (ValueError, ArithmeticError):
            continue
        if not (np.all(np.isfinite(sol.x)) and np.max(np.abs(residual(sol.x))) <= TOL):
            continue
        if prefer is None or prefer(sol.x):
            return sol.x
        found = sol.x if found is None else found
    if found is not None:
        return found
    raise ValueError(f"{method}: no transform gamma (phi(alpha x + beta) + delta) of {name!r} "
                     "meets the targets (scipy.optimize.root from every starting point). The "
                     "activation may lack the freedom (ReLU: alpha scales out; use "
                     "q_slope=None, or leaky ReLU), or the targets are out of its reach.")


def _guarded(residual):
    """Residuals that are large instead of raising where alpha over- or underflows."""
    def wrapped(p):
        try:
            r = residual(p)
        except (ArithmeticError, ValueError):
            return np.full(len(p), 1e6)
        return np.where(np.isfinite(r), r, 1e6)
    return wrapped


def _starts():
    """Starting points (log alpha, beta): phi at its own scale first, then wider and narrower."""
    return list(itertools.product((0.0, math.log(0.5), math.log(2.0), math.log(0.2)),
                                  (0.0, 0.5, -0.5, 1.0)))


def dks(act, depth: int, *, zeta: float = 1.5, q_slope: float | None = 1.0) -> Shaped:
    """Deep Kernel Shaping (Martens et al. 2021): shape ``act`` for a chain of ``depth`` layers.

    Finds alpha, beta, gamma, delta of phi_hat(x) = gamma (phi(alpha x + beta) + delta) with
    Q(1) = 1, Q'(1) = q_slope, C(0) = 0 (delta = -E[phi(alpha z + beta)]) and C_f'(1) = zeta for
    a chain of ``depth`` layers (local C'(1) = zeta^(1/depth)); alpha > 0, beta by
    scipy.optimize.root. ``q_slope=None`` drops Q'(1) (as DKS does for ReLU, whose alpha scales
    out): alpha = 1.

    Parameters
    ----------
    act : str or Activation
        An elementwise, continuous activation phi (a catalog name or an ``infnet.Activation``).
    depth : int
        The number of layers L (>= 1).
    zeta : float, default 1.5
        The target slope C_f'(1) of the whole network's correlation map (> 1).
    q_slope : float or None, default 1.0
        The target Q'(1); None drops this condition (alpha = 1).

    Returns
    -------
    Shaped
        phi_hat, its parameters, the targets and the achieved values.

    Raises
    ------
    ValueError
        If ``depth`` is not an integer >= 1, ``zeta`` <= 1, ``act`` is discontinuous, or no
        transform meets the targets to ``TOL``.
    TypeError
        If ``act`` is not an elementwise activation.
    KeyError
        If ``act`` is a name that is not in the catalog.
    ArithmeticError
        If the solution misses its targets by more than ``CHECK_TOL`` when re-evaluated apart
        from the solver.

    Examples
    --------
    >>> shaped = infnet.dks("softplus", 10)
    >>> round(shaped.achieved["Q(1)"], 6), round(shaped.achieved["Q'(1)"], 6)
    (1.0, 1.0)
    >>> abs(shaped.achieved["C(0)"]) < 1e-10, round(shaped.achieved["C_f'(1)"], 6)
    (True, 1.5)
    >>> free = infnet.dks("softplus", 10, q_slope=None)  # no Q'(1) condition: alpha = 1
    >>> free.params["alpha"], "Q'(1)" in free.targets
    (1.0, False)
    """
    base, depth = _elementwise(act), check_depth(depth)
    if base.jumps:
        raise ValueError(f"DKS needs a continuous phi; {base.name!r} jumps (C'(1) is infinite)")
    if not zeta > 1.0:
        raise ValueError(f"zeta must be > 1 (C is convex with C(0) = 0, C(1) = 1), got {zeta!r}")
    slope = zeta ** (1.0 / depth)

    def params(p):
        return (math.exp(float(p[0])), float(p[1])) if q_slope is not None else (1.0, float(p[0]))

    @_guarded
    def residual(p):
        m = _moments(base, *params(p), curvature=False)
        loc = _local(m, -m["m1"])
        r = [loc["C'(1)"] - slope]
        return np.array(r + ([loc["Q'(1)"] - q_slope] if q_slope is not None else []))

    starts = _starts() if q_slope is not None else [(b,) for b in (0.0, 0.5, -0.5, 1.0, -1.0)]
    alpha, beta = params(_solve(residual, starts, base.name, "DKS"))
    m = _moments(base, alpha, beta, curvature=False)
    delta = -m["m1"]
    targets = {"Q(1)": 1.0, "C(0)": 0.0, "C'(1)": slope, "C_f'(1)": zeta}
    if q_slope is not None:
        targets["Q'(1)"] = q_slope
    return _finish(base, "dks", depth, alpha, beta, delta, m, targets)


def tat(act, depth: int, *, tau: float = 0.3) -> Shaped:
    """Tailored Activation Transformation (Zhang et al. 2022) of a smooth activation.

    Finds alpha, beta, gamma, delta of phi_hat(x) = gamma (phi(alpha x + beta) + delta) with
    Q(1) = 1, Q'(1) = 1, C'(1) = 1 and C_f''(1) = tau for a chain of ``depth`` layers (local
    C''(1) = tau / depth), by scipy.optimize.root over (log alpha, beta, delta). phi' must be
    continuous (C''(1) = E[phi_hat''^2] is infinite at a kink of phi'): for leaky ReLU use
    ``tat_leaky_relu``.

    Parameters
    ----------
    act : str or Activation
        An elementwise activation phi with continuous phi' and phi'' available by autograd.
    depth : int
        The number of layers L (>= 1).
    tau : float, default 0.3
        The target curvature C_f''(1) of the whole network's correlation map (> 0).

    Returns
    -------
    Shaped
        phi_hat, its parameters, the targets and the achieved values.

    Raises
    ------
    ValueError
        If ``depth`` is not an integer >= 1, ``tau`` <= 0, phi or phi' is discontinuous, phi''
        is not available by autograd, or no transform meets the targets to ``TOL``.
    TypeError
        If ``act`` is not an elementwise activation.
    KeyError
        If ``act`` is a name that is not in the catalog.
    ArithmeticError
        If the solution misses its targets by more than ``CHECK_TOL`` when re-evaluated apart
        from the solver.

    Examples
    --------
    >>> shaped = infnet.tat("softplus", 10)
    >>> shaped.activation.name, shaped.max_error < 1e-8
    ('tat_softplus', True)
    >>> round(shaped.achieved["C'(1)"], 6), round(shaped.achieved["C_f''(1)"], 6)
    (1.0, 0.3)
    """
    base, depth = _elementwise(act), check_depth(depth)
    if not tau > 0:
        raise ValueError(f"tau must be > 0, got {tau!r}")
    _check_smooth(base)
    second_derivative(base, torch.linspace(-1, 1, 3, dtype=F64), strict=True)
    curv = tau / depth

    @_guarded
    def residual(p):
        alpha, beta, delta = math.exp(float(p[0])), float(p[1]), float(p[2])
        loc = _local(_moments(base, alpha, beta, curvature=True), delta)
        return np.array([loc["Q'(1)"] - 1.0, loc["C'(1)"] - 1.0, loc["C''(1)"] - curv])

    def stable(p):
        """The TAT reference implementation rejects alpha gamma >= 2 (seen with unstable Q maps)
        for tanh-like units, whose max phi' is 1; here, invariantly: max |phi_hat'| < 2."""
        alpha, beta, delta = math.exp(float(p[0])), float(p[1]), float(p[2])
        m = _moments(base, alpha, beta, curvature=False)
        z = torch.linspace(-6, 6, 2401, dtype=F64)
        slope = float(base.derivative(alpha * z + beta).abs().max()) * alpha
        return slope / math.sqrt(m["m2"] + 2 * delta * m["m1"] + delta**2) < 2.0

    starts = [(la, b, d) for la, b in _starts()
              for d in (0.0, -_moments(base, math.exp(la), b, curvature=False)["m1"])]
    p = _solve(residual, starts, base.name, "TAT", prefer=stable)
    alpha, beta, delta = math.exp(float(p[0])), float(p[1]), float(p[2])
    m = _moments(base, alpha, beta, curvature=True)
    targets = {"Q(1)": 1.0, "Q'(1)": 1.0, "C'(1)": 1.0, "C''(1)": curv, "C_f''(1)": tau}
    return _finish(base, "tat", depth, alpha, beta, delta, m, targets)


def leaky_relu_c_map(c, negative_slope: float):
    """C(c) of gamma leaky_relu_a, gamma^2 = 2 / (1 + a^2) (so Q(1) = 1): the piecewise-linear
    closed form of the catalog (docs/theory/signal-propagation.md#tat-for-leaky-relu),
    C(c) = [(1 - a)^2 (sqrt(1 - c^2) + (pi - arccos c) c) / pi + 2 a c] / (1 + a^2)."""
    act = _leaky(negative_slope)
    one = torch.ones((), dtype=F64)
    return act.nngp_map(one, one, torch.as_tensor(c, dtype=F64))


def tat_leaky_relu(depth: int, *, eta: float = 0.9) -> Shaped:
    """Tailored Activation Transformation (Zhang et al. 2022) for leaky ReLU.

    Finds the negative slope a in (0, 1) with C_f(0) = eta for a chain of ``depth`` layers,
    gamma = sqrt(2 / (1 + a^2)) (so Q(1) = 1); C_f(0) decreases from the ReLU chain's value
    (a = 0) to 0 (a = 1, the identity), solved by brentq. The result keeps the catalog's
    closed form.

    Parameters
    ----------
    depth : int
        The number of layers L (>= 1).
    eta : float, default 0.9
        The target C_f(0) of the whole network, in (0, 1).

    Returns
    -------
    Shaped
        The scaled leaky ReLU, with params negative_slope, alpha = 1, beta = 0, gamma and
        delta = 0.

    Raises
    ------
    ValueError
        If ``depth`` is not an integer >= 1, ``eta`` is not in (0, 1), or eta is out of reach
        (too shallow: above the ReLU chain's C_f(0)).

    Examples
    --------
    >>> shaped = infnet.tat_leaky_relu(10, eta=0.5)
    >>> round(shaped.params["negative_slope"], 6), round(shaped.params["gamma"], 6)
    (0.45005, 1.289628)
    >>> round(shaped.achieved["C_f(0)"], 6), round(shaped.achieved["Q(1)"], 6)
    (0.5, 1.0)
    """
    depth = check_depth(depth)
    if not 0.0 < eta < 1.0:
        raise ValueError(f"eta must lie in (0, 1), got {eta!r}")

    def c_f0(a: float) -> float:
        c = torch.zeros((), dtype=F64)
        for _ in range(depth):
            c = leaky_relu_c_map(c, a)
        return float(c)

    top = c_f0(0.0)
    if not eta < top:
        raise ValueError(f"TAT: a leaky-ReLU chain of depth {depth} reaches at most C_f(0) = "
                         f"{top:.6g} (ReLU); eta = {eta} needs a deeper network or a smaller eta")
    a = brentq(lambda s: c_f0(s) - eta, 0.0, 1.0, xtol=1e-15, rtol=1e-15, maxiter=200)
    act = _leaky(a)
    gamma = math.sqrt(2.0 / (1.0 + a * a))
    one = torch.ones((), dtype=F64)
    achieved = {"Q(1)": float(act.variance_map(one)), "C_f(0)": c_f0(a)}
    return Shaped(act, "tat_leaky_relu", depth,
                  {"negative_slope": a, "alpha": 1.0, "beta": 0.0, "gamma": gamma, "delta": 0.0},
                  {"Q(1)": 1.0, "C_f(0)": eta}, achieved)


# ---- helpers -------------------------------------------------------------------------------------
def _leaky(a: float) -> Activation:
    return activation("leaky_relu", alpha=float(a)).scaled(math.sqrt(2.0 / (1.0 + a * a)))



def _check_smooth(base: Activation) -> None:
    if base.jumps:
        raise ValueError(f"TAT needs a continuous phi'; {base.name!r} is discontinuous")
    k = _slope_jump(base)
    if k is not None:
        raise ValueError(f"TAT for smooth activations needs phi' continuous; {base.name!r} "
                         f"has a kink of phi' at {k} (C''(1) would be infinite): use "
                         "tat_leaky_relu for leaky ReLU, or dks")


def _finish(base, method, depth, alpha, beta, delta, m, targets) -> Shaped:
    """The Shaped result, its targets re-evaluated by ``check``; ArithmeticError if they are
    missed by more than CHECK_TOL there (the solver's quadrature and the engine disagree)."""
    gamma = 1.0 / math.sqrt(m["m2"] + 2 * delta * m["m1"] + delta * delta)
    hat = transform(base, alpha, beta, gamma, delta, name=f"{method}_{base.name}")
    shaped = Shaped(hat, method, depth, {"alpha": alpha, "beta": beta, "gamma": gamma,
                                         "delta": delta}, targets, check(hat, depth))
    if not shaped.max_error <= CHECK_TOL:
        raise ArithmeticError(f"{method} of {base.name!r}: the solution misses its targets by "
                              f"{shaped.max_error:.3g} when re-evaluated apart from the solver "
                              "(phi_hat has features finer than the quadratures resolve, or "
                              f"is nearly kinked): {shaped.achieved}")
    return shaped
