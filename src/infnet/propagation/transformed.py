"""Transformed activations phi_hat(x) = gamma (phi(alpha x + beta) + delta), the machinery under
kernel shaping: ``transform`` (phi_hat as an Activation), its second derivative, its unit-variance
moments, ``Shaped`` (a shaped activation and its conditions) and ``check`` (the conditions
re-evaluated apart from the solver).

Martens et al. 2021 (arXiv 2110.01765); Zhang et al. 2022 (arXiv 2203.08120);
docs/theory/signal-propagation.md#kernel-shaping-maps. A network of Dense(w_std=1, b_std=0) ->
phi_hat, on inputs with x.x/d = 1, has the per-layer maps Q(q) = E[phi_hat(sqrt(q) z)^2] and
C(c) = E[phi_hat(u) phi_hat(v)] / Q(1), (u, v) ~ N(0, [[1, c], [c, 1]]); at unit variance

    Q'(1) = E[phi_hat(z) phi_hat'(z) z],   C(0) = E[phi_hat(z)]^2 / Q(1),
    C'(1) = E[phi_hat'(z)^2] / Q(1),       C''(1) = E[phi_hat''(z)^2] / Q(1).

Expectations are 1-D Gauss-Legendre quadrature (``gauss1d.gaussian_expectation_1d``) split at
the kinks of phi_hat and at (t - beta) / alpha, t in {-2, -1, 0, 1, 2} (phi's own scale), so they
are ~1e-15 accurate also for large alpha; phi'' comes from autograd. The solvers (DKS, TAT) are
in ``shaping``.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import torch

from ..activations import Activation, activation
from ..numerics import gauss1d

Tensor = torch.Tensor
F64 = torch.float64
_FEATURES = (-2.0, -1.0, 0.0, 1.0, 2.0)


@dataclass(frozen=True)
class Shaped:
    """A shaped activation phi_hat(x) = gamma (phi(alpha x + beta) + delta) and its conditions.

    Returned by ``dks``, ``tat`` and ``tat_leaky_relu``; ``max_error`` is the largest
    |achieved - target| over the targets.

    Parameters
    ----------
    activation : Activation
        phi_hat, usable in any network (``infnet.fc(shaped.activation, depth)``).
    method : str
        "dks", "tat" or "tat_leaky_relu".
    depth : int
        The number of layers L the activation was shaped for.
    params : dict
        The fitted alpha, beta, gamma, delta (and negative_slope for leaky ReLU).
    targets : dict
        The conditions, e.g. {"Q(1)": 1.0, "C'(1)": ...}.
    achieved : dict, default {}
        The same quantities re-evaluated from phi_hat by the kernel engine (``check``).

    Examples
    --------
    >>> shaped = infnet.dks("softplus", 10)
    >>> shaped.method, shaped.depth, shaped.activation.name, sorted(shaped.params)
    ('dks', 10, 'dks_softplus', ['alpha', 'beta', 'delta', 'gamma'])
    >>> shaped.max_error < 1e-8, round(shaped.achieved["C_f'(1)"], 6)
    (True, 1.5)
    """

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



def _slope_jump(act: Activation) -> float | None:
    """The first kink where phi' jumps (compared at k -+ 1e-7), None if phi' is continuous."""
    for k in act.kinks:
        d = act.derivative(torch.tensor([k - 1e-7, k + 1e-7], dtype=F64))
        if abs(float(d[1] - d[0])) > 1e-5 * max(1.0, float(d.abs().max())):
            return k
    return None



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
