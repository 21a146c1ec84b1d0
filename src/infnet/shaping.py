"""Kernel shaping: transformed activations phi_hat(x) = gamma (phi(alpha x + beta) + delta) that
keep the kernel of a deep network of them well behaved.

Deep Kernel Shaping (DKS: Martens, Ballard, Desjardins, Swirszcz, Dalibard, Sohl-Dickstein &
Schoenholz 2021, arXiv 2110.01765) and Tailored Activation Transformations (TAT: Zhang, Botev &
Martens 2022, arXiv 2203.08120); REFERENCES.md section 5. A network of ``depth`` = L layers
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

Expectations are 1-D Gauss-Legendre quadrature (``gauss1d.gaussian_expectation_1d``) split at
the kinks of phi_hat and at (t - beta) / alpha, t in {-2, -1, 0, 1, 2} (phi's own scale), so they
are ~1e-15 accurate also for large alpha; phi'' comes from autograd.
"""

from __future__ import annotations

import itertools
import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.optimize import brentq, root

from .activations import Activation, activation, gauss1d

Tensor = torch.Tensor
F64 = torch.float64
#: the solver's residuals must be below TOL; the targets re-evaluated by ``check`` below CHECK_TOL
TOL = 1e-10
CHECK_TOL = 1e-8
_FEATURES = (-2.0, -1.0, 0.0, 1.0, 2.0)


@dataclass(frozen=True)
class Shaped:
    """A shaped activation: ``activation`` = phi_hat, ``params`` the fitted alpha, beta, gamma,
    delta (and negative_slope for leaky ReLU), ``targets`` the conditions and ``achieved`` the
    same quantities re-evaluated from phi_hat by the kernel engine (``check``)."""

    activation: Activation
    method: str
    depth: int
    params: dict
    targets: dict
    achieved: dict = field(default_factory=dict)

    @property
    def max_error(self) -> float:
        return max(abs(self.achieved[k] - v) for k, v in self.targets.items())


# ---- the transform -------------------------------------------------------------------------------
def _elementwise(act: Activation) -> Activation:
    act = act if isinstance(act, Activation) else activation(act)
    if act.jumps:
        return act  # elementwise, discontinuous: dks and tat refuse it, transform keeps it
    try:
        act.derivative(torch.zeros(2, dtype=F64))
    except (TypeError, NotImplementedError) as err:
        raise TypeError(f"{act.name!r} is not an elementwise activation; shaping transforms "
                        f"phi(alpha x + beta): {err}") from err
    return act


def transform(act, alpha: float, beta: float, gamma: float, delta: float,
              name: str | None = None) -> Activation:
    """phi_hat(x) = gamma (phi(alpha x + beta) + delta) as a new Activation: its function, its
    derivative gamma alpha phi'(alpha x + beta) (phi's own conventions at kinks) and the kinks
    k -> (k - beta) / alpha; its kernels come from the generic engine (phi's closed form does not
    carry over)."""
    base = _elementwise(act)
    a, b, g, d = (float(v) for v in (alpha, beta, gamma, delta))
    if not (all(math.isfinite(v) for v in (a, b, g, d)) and a != 0.0):
        raise ValueError(f"alpha must be finite and nonzero, the others finite: {a, b, g, d}")
    kinks = tuple(sorted((k - b) / a for k in base.kinks))
    return Activation(
        fn=_Affine(base, a, b, g, d), derivative_fn=_Affine(base, a, b, g, d, derivative=True),
        name=name or f"shaped_{base.name}", kinks=kinks, jumps=base.jumps,
        formula=f"{g:.6g} ({base.name}({a:.6g} x + {b:.6g}) + {d:.6g})",
        source="kernel shaping (DKS arXiv 2110.01765, TAT arXiv 2203.08120)")


@dataclass(frozen=True)
class _Affine:
    """x -> g (phi(a x + b) + d), or its derivative g a phi'(a x + b) (picklable, unlike a
    closure, when phi is)."""

    base: Activation
    a: float
    b: float
    g: float
    d: float
    derivative: bool = False

    def __call__(self, x: Tensor, **_) -> Tensor:
        if self.derivative:
            return (self.g * self.a) * self.base.derivative(self.a * x + self.b)
        return self.g * (self.base(self.a * x + self.b) + self.d)


def second_derivative(act: Activation, x: Tensor, strict: bool = False) -> Tensor:
    """phi''(x) by autograd: 0 where phi' has no graph (piecewise linear), or with ``strict`` a
    ValueError (phi' given without a graph, as for mittag_leffler)."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(act(x).sum(), x, create_graph=True)
        if not g.requires_grad:
            if strict:
                raise ValueError(f"phi'' of {act.name!r} is not available by autograd (its "
                                 "derivative has no graph), so C''(1) cannot be evaluated")
            return torch.zeros_like(x)
        (h,) = torch.autograd.grad(g.sum(), x, allow_unused=True)
    return torch.zeros_like(x) if h is None else h.detach()


# ---- unit-variance moments -----------------------------------------------------------------------
def _moments(base: Activation, a: float, b: float, curvature: bool) -> dict:
    """E over z ~ N(0, 1) of y = phi(a z + b) and its z-derivatives y' = a phi', y'' = a^2 phi''."""
    one = torch.ones(1, dtype=F64)
    breaks = [(k - b) / a for k in base.kinks] + [(t - b) / a for t in _FEATURES]

    def e(fn):
        return float(gauss1d.gaussian_expectation_1d(fn, one, breaks))

    def y(z):
        return base(a * z + b)

    def dy(z):
        return a * base.derivative(a * z + b)

    m = {"m1": e(y), "m2": e(lambda z: y(z) ** 2), "yyz": e(lambda z: y(z) * dy(z) * z),
         "yz": e(lambda z: dy(z) * z), "d2": e(lambda z: dy(z) ** 2)}
    if curvature:
        m["c2"] = e(lambda z: (a * a * second_derivative(base, a * z + b, strict=True)) ** 2)
    return m


def _local(m: dict, delta: float) -> dict:
    """Q(1), Q'(1), C(0), C'(1) [, C''(1)] of gamma (y + delta) with gamma^2 = 1 / E[(y + delta)^2]
    (so Q(1) = 1)."""
    var = m["m2"] + 2 * delta * m["m1"] + delta * delta
    g2 = 1.0 / var
    out = {"Q(1)": 1.0, "Q'(1)": g2 * (m["yyz"] + delta * m["yz"]),
           "C(0)": g2 * (m["m1"] + delta) ** 2, "C'(1)": g2 * m["d2"]}
    if "c2" in m:
        out["C''(1)"] = g2 * m["c2"]
    return out


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
    """Deep Kernel Shaping (Martens et al. 2021): alpha, beta, gamma, delta with Q(1) = 1,
    Q'(1) = q_slope, C(0) = 0 (delta = -E[phi(alpha z + beta)]) and C_f'(1) = zeta for a chain of
    ``depth`` layers (local C'(1) = zeta^(1/depth)); alpha > 0, beta by scipy.optimize.root.
    ``q_slope=None`` drops Q'(1) (as DKS does for ReLU, whose alpha scales out): alpha = 1.
    Raises ValueError when no transform meets the targets to TOL."""
    base, depth = _elementwise(act), _check_depth(depth)
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
    """TAT for smooth activations (Zhang et al. 2022): alpha, beta, gamma, delta with Q(1) = 1,
    Q'(1) = 1, C'(1) = 1 and C_f''(1) = tau for a chain of ``depth`` layers (local
    C''(1) = tau / depth), by scipy.optimize.root over (log alpha, beta, delta). phi' must be
    continuous (C''(1) = E[phi_hat''^2] is infinite at a kink of phi'): for leaky ReLU use
    ``tat_leaky_relu``."""
    base, depth = _elementwise(act), _check_depth(depth)
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
    closed form of the catalog (REFERENCES.md section 2),
    C(c) = [(1 - a)^2 (sqrt(1 - c^2) + (pi - arccos c) c) / pi + 2 a c] / (1 + a^2)."""
    act = _leaky(negative_slope)
    one = torch.ones((), dtype=F64)
    return act.nngp_map(one, one, torch.as_tensor(c, dtype=F64))


def tat_leaky_relu(depth: int, *, eta: float = 0.9) -> Shaped:
    """TAT for leaky ReLU (Zhang et al. 2022): the negative slope a in (0, 1) with
    C_f(0) = eta for a chain of ``depth`` layers, gamma = sqrt(2 / (1 + a^2)); C_f(0) decreases
    from the ReLU chain's value (a = 0) to 0 (a = 1, the identity), solved by brentq. The result
    keeps the catalog's closed form. Raises ValueError when eta is out of reach (too shallow)."""
    depth = _check_depth(depth)
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


def _check_depth(depth) -> int:
    if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)) or depth < 1:
        raise ValueError(f"depth must be an integer >= 1, got {depth!r}")
    return int(depth)


def _slope_jump(act: Activation) -> float | None:
    """The first kink where phi' jumps (compared at k -+ 1e-7), None if phi' is continuous."""
    for k in act.kinks:
        d = act.derivative(torch.tensor([k - 1e-7, k + 1e-7], dtype=F64))
        if abs(float(d[1] - d[0])) > 1e-5 * max(1.0, float(d.abs().max())):
            return k
    return None


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


def check(act: Activation, depth: int) -> dict:
    """Q(1), Q'(1), C(0), C'(1), C''(1) of an activation re-evaluated apart from the solver: Q(1),
    C'(1) and C(0) by the kernel engine's 2-D polar quadrature (``act.kernel`` at c = 1 and 0,
    adaptive), Q'(1) and C''(1) = E[phi''^2] / Q(1) by 1-D quadrature split at the kinks
    (node counts verified, as the engine's); and the chain's C_f'(1) = C'(1)^L, C_f''(1) = C''(1) sum_j
    C'(1)^(L-1+j), j < L (= L C''(1) when C'(1) = 1); C''(1) = inf where phi' jumps. Warns
    when the engine's own 1-D diagonal (``act.diagonal_kernel``, what a network's diagonal pass
    uses) misses Q(1) by > 1e-12: a transform steep on the scale of its fixed nodes."""
    one = torch.ones((), dtype=F64)
    q1, kdot1 = (float(t) for t in act.kernel(one, one, one))
    k0 = float(act.kernel(one, one, torch.zeros((), dtype=F64))[0])
    c2 = float(gauss1d.gaussian_expectation_1d(
        lambda x: second_derivative(act, x) ** 2, one.reshape(1), act.kinks)) / q1
    q_slope = float(gauss1d.gaussian_expectation_1d(
        lambda x: x * act(x) * act.derivative(x), one.reshape(1), act.kinks))
    if _slope_jump(act) is not None:
        c2 = math.inf  # phi'' holds a Dirac mass
    diag = float(act.diagonal_kernel(one)[0])
    if abs(diag - q1) > 1e-12:
        warnings.warn(f"{act.name}: the engine's 1-D diagonal quadrature gives Q(1) = {diag!r} "
                      f"(2-D: {q1!r}); network diagonals inherit that error", stacklevel=3)
    s = kdot1 / q1
    chain = sum(s ** (depth - 1 + j) for j in range(depth))
    return {"Q(1)": q1, "Q'(1)": q_slope, "C(0)": k0 / q1, "C'(1)": s, "C''(1)": c2,
            "C_f'(1)": s**depth, "C_f''(1)": c2 * chain}
