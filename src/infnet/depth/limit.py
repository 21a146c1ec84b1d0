"""Infinite depth: which classifier an infinitely wide and deep network is, and its kernels.

Setting (Radhakrishnan, Belkin & Uhler, arXiv 2204.14126, PNAS 2023;
docs/theory/infinite-depth.md#classes-of-the-limit):
inputs on the unit sphere, no biases, the activation normalized so that its dual f (``act.dual``,
a power series sum_k p_k rho^k with p_k >= 0 and f(1) = 1) maps correlations layer to layer:

    NNGP  S_0 = rho,  S_l = f(S_(l-1));     NTK  K_0 = rho,  K_l = S_l + K_(l-1) f'(S_(l-1)).

As the depth grows the kernel regression classifier sign(y^T K_train^-1 K(X, x)) tends to one of:

* ``majority_vote``: f(0) > 0. Every correlation below 1 goes to the attracting fixed point rho*
  of f, the kernel becomes constant off the diagonal, and the classifier predicts the larger class.
* ``nearest_neighbor``: f(0) = f'(0) = 0, f = p_k rho^k + ... (k >= 2). Correlations go to 0 like
  B(rho)^(k^L), faster for farther pairs: the nearest training point wins.
* ``singular``: f(0) = 0 < f'(0) = c0 < 1. f^(L)(rho) / c0^L tends to the Koenigs function h
  (h(f(rho)) = c0 h(rho), h(0) = 0, h'(0) = 1), which diverges like (1 - rho)^(-beta) at rho = 1,
  beta = log(1/c0) / log(f'(1)); as |x - z|^2 = 2 (1 - x.z) the classifier is the singular kernel
  rule sign(sum_i y_i h(x_i . x)), kernel ~ |x - z|^(-2 beta) (``Limit.exponent`` = 2 beta). With
  2 beta = d - 1 on S^(d-1) it is the Bayes-consistent Hilbert kernel (``infnet.optimal_activation``).
  Precisely, h(rho) (1 - rho)^beta tends to a bounded function of log(1 - rho) with period
  log f'(1), not always to a constant: the ripple is ~5e-8 for rho/2 + rho^3/2 but +-35% for the
  sine dual with a = 13.8 (checked in 50-digit arithmetic).
* ``linear`` (a fourth kind, not in the paper's taxonomy): f(rho) = rho (f(0) = 0, f'(0) = 1, so
  every other coefficient is 0; the identity activation). Every layer passes the correlation on
  unchanged; the limit is the linear kernel x . z itself and nothing collapses.

Numerics. Classification uses f(0), f'(0), f'(1) from the activation's dual (closed form or
quadrature, ~1e-13) with the tolerance ``TOL``. Koenigs and Boettcher functions iterate f only
until the orbit is small, then use local series whose coefficients come from the Taylor series of f
at 0 (a Chebyshev fit of the dual on [-1/4, 1/4]); the same linearizations let the deep kernels
of ``infnet.deep`` jump over layers. Activations without a
closed form are evaluated through a Chebyshev interpolant of (f, f') in the angle (~1e-15
absolute), built once per ``Limit``.
"""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass, field

import numpy as np
import torch

from ..activations import Activation, KernelOverflowError, activation
from .dual import Dual, LayerMap, Schroeder

Tensor = torch.Tensor

#: f(0), f'(0) within TOL of 0 (f'(0) within TOL of 1) count as 0 (as 1): the quadrature's
#: error; duals in closed form use CLOSED_TOL (rounding only), so that e.g. the optimal dual on
#: S^63, f'(0) = 2^-31.5 = 3e-10, is singular
TOL = 1e-9
CLOSED_TOL = 1e-15
#: |f'(1) - 1| below this: the fixed point 1 of a majority-vote dual is called marginal
MARGINAL_TOL = 1e-6
KINDS = ("nearest_neighbor", "majority_vote", "singular", "linear")


@dataclass(frozen=True)
class Limit:
    """The infinite-depth class of a normalized network (``infnet.limit``).

    With f the normalized dual of the activation: the class, the numbers that decide it, and an
    explanation in words (``str(lim)`` prints them all).

    Parameters
    ----------
    kind : str
        "majority_vote" | "nearest_neighbor" | "singular" | "linear".
    dual0 : float
        f(0).
    slope0 : float
        f'(0) (= a_1^2 = c0).
    slope1 : float
        f'(1) (= A = sum_k k a_k^2; inf for discontinuous activations, whose Kdot diverges at
        rho = 1).
    exponent : float or None
        For "singular" the kernel behaves like |x - z|^(-exponent), exponent = 2 beta =
        2 log(1/c0) / log(A) (0 when A = inf: the divergence is slower than any power); else
        None.
    fixed_point : float or None
        For "majority_vote" the attracting fixed point rho* of f (1 when f'(1) <= 1); else None.
    explanation : str
        Why the network is of this class, and what its classifier is.
    name : str
        The activation's name.
    fixed_point_slope : float or None
        For "majority_vote" f'(rho*); else None.
    order : int or None
        For "nearest_neighbor" the lowest power k in the dual (the kernel decays like
        rho^(k^L)); else None.

    Examples
    --------
    >>> lim = infnet.limit("relu")
    >>> lim.kind, lim.fixed_point, lim.marginal
    ('majority_vote', 1.0, True)
    >>> round(lim.dual0, 6), round(lim.slope0, 6), round(lim.slope1, 6)  # 1/pi, 1/2, 1
    (0.31831, 0.5, 1.0)
    >>> print(str(lim).splitlines()[0])
    infinite-depth limit of relu: majority_vote
    """

    kind: str
    dual0: float
    slope0: float
    slope1: float
    exponent: float | None
    fixed_point: float | None
    explanation: str
    name: str = "custom"
    fixed_point_slope: float | None = None
    order: int | None = None
    activation: Activation | None = field(default=None, repr=False, compare=False)
    dual: Dual | None = field(default=None, repr=False, compare=False)
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def beta(self) -> float | None:
        """beta = exponent / 2: h(rho) ~ (1 - rho)^(-beta) near rho = 1, up to a bounded
        log-periodic factor (singular class)."""
        return None if self.exponent is None else self.exponent / 2

    @property
    def marginal(self) -> bool:
        """Majority vote with the neutral fixed point rho* = 1, f'(1) = 1 (ReLU and every
        positively homogeneous activation): correlations creep to 1 only polynomially in depth."""
        return (self.kind == "majority_vote" and self.fixed_point == 1.0
                and abs(self.slope1 - 1.0) <= MARGINAL_TOL)

    def __str__(self) -> str:
        lines = [f"infinite-depth limit of {self.name}: {self.kind}",
                 f"  f(0)   = dual(0)  = {self.dual0:.6g}",
                 f"  c0     = dual'(0) = {self.slope0:.6g}",
                 f"  A      = dual'(1) = {self.slope1:.6g}"]
        if self.exponent is not None:
            shape = (f"kernel ~ |x - z|^-{self.exponent:.4g}" if self.exponent > 0 else
                     "kernel diverges more slowly than any power of 1/|x - z|")
            lines.append(f"  exponent 2 beta    = {self.exponent:.6g}   ({shape})")
        if self.fixed_point is not None:
            lines.append(f"  fixed point rho*  = {self.fixed_point:.12g}"
                         f"   (f'(rho*) = {self.fixed_point_slope:.6g})")
        if self.order is not None:
            lines.append(f"  order k           = {self.order}   (kernel ~ rho^(k^L))")
        lines += textwrap.wrap(self.explanation, 96, initial_indent="  ", subsequent_indent="  ")
        return "\n".join(lines)

    # -- shared by koenigs, limit_kernel and the deep kernels
    def schroeder(self) -> Schroeder:
        """The Koenigs linearization of the dual at 0 (singular class)."""
        if "schroeder" not in self._cache:
            self._cache["schroeder"] = Schroeder(self.dual.taylor(), self.slope0)
        return self._cache["schroeder"]

    def schroeder_at_fixed_point(self) -> Schroeder | None:
        """Koenigs linearization of f at the attracting fixed point rho* of the majority class,
        in y = rho - rho* (None unless 0 < f'(rho*) < 1 and rho* is inside (-1, 1))."""
        if "schroeder*" not in self._cache:
            lam, rho = self.fixed_point_slope, self.fixed_point
            ok = (self.kind == "majority_vote" and rho is not None and abs(rho) < 1 - 1e-3
                  and lam is not None and 1e-6 < lam < 1 - 1e-6)
            self._cache["schroeder*"] = Schroeder(self.dual.taylor_at(rho), lam) if ok else None
        return self._cache["schroeder*"]

    def memo(self, key: str, build):
        """A value computed once per Limit (``build()``), e.g. the deep kernels' tables."""
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]


_LIMITS: dict = {}


def limit(act, **params) -> Limit:
    """The infinite-depth class of a normalized, bias-free network of ``act`` on the sphere.

    ``act``: an Activation, a catalog name or a function (anything ``infnet.activation`` takes,
    with its parameters as keywords). Decided from f(0), f'(0), f'(1) of the normalized dual with
    tolerance ``TOL`` (f(0) > TOL: majority vote; else f'(0) <= TOL: nearest neighbour; else
    f'(0) >= 1 - TOL: linear; else singular).

    Parameters
    ----------
    act : Activation, str, callable or Limit
        An Activation, a catalog name or a function (anything ``infnet.activation`` takes); a
        Limit without parameters is returned as it is.
    **params
        The activation's parameters, as keywords (``infnet.activation``).

    Returns
    -------
    Limit
        The class, with f(0), f'(0), f'(1) and the class's own numbers.

    Raises
    ------
    ValueError
        The activation has no valid normalized dual (E[phi^2] = 0, a kernel that is not finite
        at unit variance, or values that no dual can have).
    KeyError, TypeError
        As ``infnet.activation``: an unknown name, parameter or function.

    Examples
    --------
    >>> infnet.limit("relu").kind, infnet.limit("erf").kind, infnet.limit("identity").kind
    ('majority_vote', 'singular', 'linear')
    >>> lim = infnet.limit(infnet.from_dual([0.0, 0.0, 1.0]))  # the dual rho^2
    >>> lim.kind, lim.order
    ('nearest_neighbor', 2)
    >>> infnet.limit("leaky_relu", alpha=0.5).name
    'leaky_relu'
    """
    if isinstance(act, Limit) and not params:
        return act
    return layer_limit(LayerMap.of(activation(act, **params)))


def layer_limit(layer: LayerMap) -> Limit:
    """The infinite-depth class of the normalized dual of a repeated layer (``LayerMap``: an
    activation, or a network block at a fixed point of its variance map); cached by the layer's
    key (the keyed objects are kept alive, so that the ids in a key stay unique)."""
    key = layer.key
    if key is not None and key in _LIMITS:
        return _LIMITS[key][1]
    lim = _classify(layer)
    if key is not None:
        if len(_LIMITS) >= 32:
            _LIMITS.pop(next(iter(_LIMITS)))
        _LIMITS[key] = (layer, lim)
    return lim


def _basic_numbers(dual: Dual) -> tuple[float, float, float]:
    """f(0), f'(0), f'(1) of the normalized dual, with clear errors for invalid activations."""
    name = dual.source.name
    layer = dual.source
    try:
        K = layer.nngp(torch.tensor([0.0, 1.0], dtype=torch.float64))
    except (KernelOverflowError, NotImplementedError, ValueError) as err:
        raise ValueError(f"activation {name!r} has no finite normalized dual at unit variance, so "
                         f"it has no infinite-depth limit: {err}") from err
    n2 = float(K[1])
    if not (math.isfinite(n2) and n2 > 0):
        raise ValueError(f"activation {name!r} has E[phi(z)^2] = {n2:.3g} at unit variance: "
                         "no normalized dual, so no infinite-depth limit (phi must not vanish "
                         "almost everywhere)")
    f0 = float(K[0]) / n2
    try:
        _, Kdot = layer.pair(torch.tensor([0.0], dtype=torch.float64))
        c0 = float(Kdot[0]) / n2
    except (KernelOverflowError, NotImplementedError) as err:
        raise ValueError(f"activation {name!r}: dual'(0) = E[phi'(u) phi'(v)] / E[phi^2] at rho = 0 "
                         f"cannot be computed: {err}") from err
    try:
        _, Kdot = layer.pair(torch.ones((), dtype=torch.float64))
        A = float(Kdot) / n2
    except KernelOverflowError:
        A = math.inf  # a jump in phi: Kdot diverges at rho = 1
    for label, v in (("dual(0)", f0), ("dual'(0)", c0), ("dual'(1)", A)):
        if math.isnan(v) or (label != "dual'(1)" and not math.isfinite(v)):
            raise ValueError(f"activation {name!r}: {label} is {v}: not a valid normalized dual")
    problems = []
    if f0 < -TOL:
        problems.append(f"dual(0) = {f0:.6g} < 0")
    if c0 < -TOL:
        problems.append(f"dual'(0) = {c0:.6g} < 0")
    if f0 + c0 > 1 + TOL:
        problems.append(f"dual(0) + dual'(0) = {f0 + c0:.6g} > dual(1) = 1")
    if A < c0 - TOL:
        problems.append(f"dual'(1) = {A:.6g} < dual'(0) = {c0:.6g}")
    if problems:
        raise ValueError(f"activation {name!r} does not give a valid normalized dual (a power "
                         f"series with nonnegative coefficients summing to 1): "
                         f"{'; '.join(problems)}. Check its closed-form kernel.")
    return max(f0, 0.0), max(c0, 0.0), A


def _classify(layer: LayerMap) -> Limit:
    dual = Dual(layer)
    f0, c0, A = _basic_numbers(dual)
    common = dict(dual0=f0, slope0=c0, slope1=A, name=layer.name, activation=layer.activation,
                  dual=dual)
    tol = CLOSED_TOL if layer.exact else TOL
    if f0 > tol:
        rho_star, lam = _fixed_point(dual, f0, A)
        return Limit(kind="majority_vote", exponent=None, fixed_point=rho_star,
                     fixed_point_slope=lam, explanation=_explain_majority(f0, A, rho_star, lam),
                     **common)
    if c0 <= tol:
        order = _order(dual)
        return Limit(kind="nearest_neighbor", exponent=None, fixed_point=None, order=order,
                     explanation=_explain_nn(f0, c0, order), **common)
    if c0 >= 1 - TOL:
        return Limit(kind="linear", exponent=None, fixed_point=None,
                     explanation=(f"dual(0) = {f0:.3g} and dual'(0) = {c0:.6g}: the dual is "
                                  "rho itself (its coefficients are nonnegative and sum to 1), so "
                                  "every layer passes the correlation on unchanged. The infinite-"
                                  "depth kernel is the linear kernel x . z (NTK (L + 1) x . z) "
                                  "and the classifier is linear kernel regression; none of the "
                                  "three limit classes applies."), **common)
    exponent = 0.0 if math.isinf(A) else 2 * math.log(1 / c0) / math.log(A)
    return Limit(kind="singular", exponent=exponent, fixed_point=None,
                 explanation=_explain_singular(c0, A, exponent), **common)


def _fixed_point(dual: Dual, f0: float, A: float) -> tuple[float, float]:
    """The attracting fixed point rho* of f in [0, 1] and f'(rho*).

    g = f - id is convex on [0, 1] with g(0) = f(0) > 0 and g(1) = 0: if f'(1) <= 1 then g > 0 on
    [0, 1) and rho* = 1; else g < 0 exactly on (rho*, 1). Every rho in [-1, 1) is attracted to
    rho* (on [-1, 0], f(rho) - rho >= f(0) + |rho| (1 - sum of odd coefficients) > 0, and f is
    increasing on [0, 1]). A grid 1 - 2^-j brackets rho*, then Newton's method from the left
    (monotone for a convex g) refines it.
    """
    if A <= 1.0 + 1e-12:
        return 1.0, A
    e = 2.0 ** -np.arange(0, 53)
    grid = torch.as_tensor(np.concatenate([[0.0], 1.0 - e[1:]]), dtype=torch.float64)
    g = (dual.f_exact(grid) - grid).numpy()
    neg = np.nonzero(g < -4 * np.finfo(float).eps)[0]
    if neg.size == 0:  # rho* within ~1e-16 of 1
        return 1.0, A
    x = float(grid[neg[0] - 1])
    for _ in range(60):
        fx, dfx = dual.f_df_exact(torch.tensor(x, dtype=torch.float64))
        gx, dgx = float(fx) - x, float(dfx) - 1.0
        if gx <= 0 or dgx >= 0:
            break
        step = -gx / dgx
        x += step
        if step <= 2e-16 * max(abs(x), 1e-300):
            break
    lam = float(dual.df_exact(torch.tensor(min(x, 1.0), dtype=torch.float64)))
    return min(x, 1.0), lam


def _order(dual: Dual) -> int | None:
    """The lowest k >= 2 with p_k > 1e-8 in the Taylor series (None beyond SERIES_ORDER)."""
    p = dual.taylor()
    for k in range(2, len(p)):
        if p[k] > 1e-8:
            return k
    return None


def _explain_majority(f0, A, rho_star, lam) -> str:
    head = (f"dual(0) = {f0:.3g} > 0: every pair of distinct inputs is driven to the same "
            f"correlation rho* = {rho_star:.6g}, the attracting fixed point of the dual. ")
    if rho_star < 1:
        how = (f"Since dual'(1) = {A:.4g} > 1 the fixed point 1 repels and rho* < 1 attracts "
               f"with dual'(rho*) = {lam:.4g}: off-diagonal entries converge like {lam:.3g}^L. ")
    elif abs(A - 1) <= MARGINAL_TOL:
        how = ("Since dual'(1) = 1 the fixed point 1 is marginal (neutral): correlations creep "
               "to 1 only polynomially in depth (for ReLU 1 - rho_L ~ 1/L^2; the paper needs "
               "depth > 5e4 for 100 samples). ")
    else:
        how = (f"Since dual'(1) = {A:.6g} < 1 the fixed point 1 attracts: 1 - rho_L ~ "
               f"{A:.6g}^L. ")
    return head + how + ("The infinite-depth kernel is constant off the diagonal, so the "
                         "classifier is a majority vote: it predicts the larger training class "
                         "everywhere.")


def _explain_nn(f0, c0, order) -> str:
    k = "k" if order is None else str(order)
    return (f"dual(0) = {f0:.3g} and dual'(0) = {c0:.3g}: the dual has no constant or linear term "
            f"and starts at rho^{k}, so correlations below 1 go to 0 like B(rho)^({k}^L), "
            "doubly exponentially and faster for farther pairs. The "
            "nearest training point (largest |B(x_i . x)|, B the Boettcher function; for "
            "nonnegative correlations the largest x_i . x) dominates the kernel sum: the "
            "classifier is 1-nearest-neighbour.")


def _explain_singular(c0, A, exponent) -> str:
    text = (f"dual(0) = 0 and 0 < dual'(0) = c0 = {c0:.6g} < 1: dual^L(rho) / c0^L converges to "
            "the Koenigs function h (h(dual(rho)) = c0 h(rho)), and the classifier is "
            "sign(sum_i y_i h(x_i . x)). ")
    if math.isinf(A):
        return text + ("dual'(1) = inf (phi jumps), so near rho = 1 the dual moves away from 1 "
                       "faster than any linear map: h diverges more slowly than any power of "
                       "1/|x - z| (for sign, like a power of log(1/|x - z|)); exponent 0. The "
                       "kernel is singular but too weak to be Bayes-consistent.")
    d = exponent + 1
    hilbert = (f" This is the Bayes-consistent Hilbert kernel on S^{round(d) - 1} (d = {round(d)})."
               if abs(d - round(d)) < 1e-9 and round(d) >= 2 else
               " (The Bayes-consistent Hilbert kernel on S^(d-1) has exponent d - 1.)")
    return text + (f"Near rho = 1, h ~ (1 - rho)^(-beta) (times a bounded log-periodic factor) "
                   f"with beta = log(1/c0)/log(dual'(1)) = "
                   f"log({1 / c0:.4g})/log({A:.4g}) = {exponent / 2:.6g}; since |x - z|^2 = "
                   f"2(1 - x.z) the kernel is singular like |x - z|^-{exponent:.6g}.") + hilbert


def as_limit(act_or_limit) -> Limit:
    """A Limit as it is, anything else through ``limit``."""
    return act_or_limit if isinstance(act_or_limit, Limit) else limit(act_or_limit)
