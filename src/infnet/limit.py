"""Infinite depth: which classifier an infinitely wide and deep network is, and its kernels.

Setting (Radhakrishnan, Belkin & Uhler, arXiv 2204.14126, PNAS 2023; REFERENCES.md section 4):
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
from numpy.polynomial import chebyshev as C

from .activations import Activation, KernelOverflowError, activation
from .activations.base import _as_rho

Tensor = torch.Tensor

#: f(0), f'(0) within TOL of 0 (f'(0) within TOL of 1) count as 0 (as 1): the quadrature's
#: error; duals in closed form use CLOSED_TOL (rounding only), so that e.g. the optimal dual on
#: S^63, f'(0) = 2^-31.5 = 3e-10, is singular
TOL = 1e-9
CLOSED_TOL = 1e-15
#: |f'(1) - 1| below this: the fixed point 1 of a majority-vote dual is called marginal
MARGINAL_TOL = 1e-6
#: local series (Koenigs, Boettcher) are used for |x| below this (or less, see _Schroeder)
DELTA_MAX = 1e-2
#: order of the local series
SERIES_ORDER = 8
#: iterations allowed to bring an orbit into the local region
MAX_STEPS = 100_000
_FIT_RADIUS = 0.25
_FIT_NODES = 21
KINDS = ("nearest_neighbor", "majority_vote", "singular", "linear")


# ---- the dual, fast ----------------------------------------------------------------------------
class LayerMap:
    """The unnormalized kernel maps of one repeated layer as functions of the correlation of its
    (unit-normalized) inputs: ``pair(rho) -> (K, Kdot)`` and ``nngp(rho) -> K``, whose
    normalized dual is f = K / K(1), f' = Kdot / K(1).

    For an activation phi (``LayerMap.of``): K = E[phi(u) phi(v)], Kdot = E[phi'(u) phi'(v)] at
    unit variances. For the block [phi, Dense(w, b)] of a network whose pre-activation variance
    sits at a fixed point q = w^2 E[phi(sqrt(q) z)^2] + b^2 (``LayerMap.block``):
    K(rho) = w^2 E[phi(u) phi(v)] + b^2 and Kdot(rho) = q w^2 E[phi'(u) phi'(v)] at variances q and
    covariance q rho, so that f is the block's correlation map and f' its slope (Price's theorem).
    """

    def __init__(self, name: str, pair, nngp, exact: bool, activation: Activation | None = None,
                 key=None):
        self.name, self.pair, self.nngp, self.exact = name, pair, nngp, bool(exact)
        self.activation = activation  # the unit itself when the map is an activation's dual
        self.key = key

    @classmethod
    def of(cls, act: Activation) -> LayerMap:
        def pair(x):
            one = torch.ones((), dtype=x.dtype, device=x.device)
            return act.kernel(one, one, x)

        def nngp(x):
            one = torch.ones((), dtype=x.dtype, device=x.device)
            return act.nngp_map(one, one, x)

        return cls(act.name, pair, nngp, act.is_closed_form, act, _cache_key(act))

    @classmethod
    def block(cls, act: Activation, w_std: float, b_std: float, q: float) -> LayerMap:
        w2, b2, q = float(w_std) ** 2, float(b_std) ** 2, float(q)

        def pair(x):
            qq = torch.full((), q, dtype=x.dtype, device=x.device)
            K, Kdot = act.kernel(qq, qq, q * x)
            return w2 * K + b2, (q * w2) * Kdot

        def nngp(x):
            qq = torch.full((), q, dtype=x.dtype, device=x.device)
            return w2 * act.nngp_map(qq, qq, q * x) + b2

        key = _cache_key(act)
        name = f"[{act.name}, Dense({w_std:.6g}, {b_std:.6g})] at q = {q:.12g}"
        return cls(name, pair, nngp, act.is_closed_form, None,
                   None if key is None else (key, w2, b2, q))


class _Dual:
    """The normalized dual f of a layer map (``LayerMap``) and its slope f', evaluated exactly
    where the map has a closed form, else through interpolants built once (lazily):
    a Chebyshev series in theta = arccos(rho) on [0, pi] for (f, f'), and near 0 the Chebyshev
    interpolant of f on [-1/4, 1/4] (absolute accuracy ~1e-16 there, so relative accuracy holds
    down to the local series)."""

    def __init__(self, source: LayerMap | Activation):
        self.source = source if isinstance(source, LayerMap) else LayerMap.of(source)
        self.exact = self.source.exact
        self._norm2: float | None = None
        self._global: np.ndarray | None = None
        self._local: np.ndarray | None = None

    # -- exact calls (the same numbers as act.dual and act.dual_derivative, one kernel call)
    @property
    def norm2(self) -> float:
        if self._norm2 is None:
            self._norm2 = float(self.source.nngp(torch.ones((), dtype=torch.float64)))
        return self._norm2

    def f_exact(self, x: Tensor) -> Tensor:
        return self.source.nngp(x) / self.norm2

    def df_exact(self, x: Tensor) -> Tensor:
        return self.f_df_exact(x)[1]

    def f_df_exact(self, x: Tensor) -> tuple[Tensor, Tensor]:
        K, Kdot = self.source.pair(x)
        return K / self.norm2, Kdot / self.norm2

    # -- fast calls
    def f(self, x: Tensor) -> Tensor:
        if self.exact:
            return self.f_exact(x)
        return self._interpolated(x, 0)

    def df(self, x: Tensor) -> Tensor:
        if self.exact:
            return self.df_exact(x)
        return self._interpolated(x, 1)

    def f_df(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self.exact:
            return self.f_df_exact(x)
        return self._interpolated(x, 0), self._interpolated(x, 1)

    def local_coefficients(self) -> np.ndarray:
        """Chebyshev coefficients of f(r t), t in [-1, 1], r = 1/4 (exact samples)."""
        if self._local is None:
            n = _FIT_NODES
            t = np.cos(np.pi * (np.arange(n) + 0.5) / n)
            v = self.f_exact(torch.as_tensor(_FIT_RADIUS * t, dtype=torch.float64)).numpy()
            self._local = C.chebfit(t, v, n - 1)
        return self._local

    def taylor(self) -> np.ndarray:
        """Taylor coefficients p_0..p_SERIES_ORDER of f at 0 (from the local interpolant; the
        error grows like ~20^j 1e-16, harmless where the series are used, |x| <= 1e-2)."""
        mono = C.cheb2poly(self.local_coefficients())[:SERIES_ORDER + 1]
        return mono / _FIT_RADIUS ** np.arange(len(mono))

    def taylor_at(self, center: float) -> np.ndarray:
        """Taylor coefficients of y -> f(center + y) - f(center) at 0 (Chebyshev fit of the exact
        dual on [center - r, center + r], r = min(1/4, (1 - |center|) / 2))."""
        r = min(_FIT_RADIUS, (1 - abs(center)) / 2)
        n = _FIT_NODES
        t = np.cos(np.pi * (np.arange(n) + 0.5) / n)
        v = self.f_exact(torch.as_tensor(center + r * t, dtype=torch.float64)).numpy()
        mono = C.cheb2poly(C.chebfit(t, v, n - 1))[:SERIES_ORDER + 1]
        mono = mono / r ** np.arange(len(mono))
        mono[0] = 0.0
        return mono

    def _global_coefficients(self) -> np.ndarray | None:
        if self._global is None:
            from .network.table import TableError, chebyshev_fit

            def sample(theta: np.ndarray) -> np.ndarray:
                K, Kdot = self.f_df_exact(torch.as_tensor(np.cos(theta), dtype=torch.float64))
                return torch.stack(torch.broadcast_tensors(K, Kdot), dim=-1).numpy()

            try:
                self._global = chebyshev_fit(sample)
            except TableError:  # not smooth enough in theta: stay exact (slow)
                self._global = np.empty(0)
        return self._global if self._global.size else None

    def _interpolated(self, x: Tensor, which: int) -> Tensor:
        coef = self._global_coefficients()
        if coef is None:
            return self.f_exact(x) if which == 0 else self.df_exact(x)
        xn = x.detach().cpu().numpy()
        theta = np.arccos(np.clip(xn, -1.0, 1.0))
        out = C.chebval(1 - 2 * theta / np.pi, coef[:, which])
        if which == 0:
            near = np.abs(xn) <= _FIT_RADIUS
            if near.any():
                out = np.where(near, C.chebval(xn / _FIT_RADIUS, self.local_coefficients()), out)
            out = np.where(xn == 1.0, 1.0, out)  # f(1) = 1 exactly, as for the exact dual
        return torch.as_tensor(out, dtype=x.dtype, device=x.device)


# ---- power series helpers --------------------------------------------------------------------
def _mul(a: np.ndarray, b: np.ndarray, n: int) -> np.ndarray:
    return np.convolve(a, b)[:n + 1]


def _powers(p: np.ndarray, n: int) -> list[np.ndarray]:
    """p^0, p^1, ..., p^n truncated at degree n."""
    out = [np.eye(1, n + 1)[0]]
    for _ in range(n):
        out.append(_mul(out[-1], p, n))
    return out


def _horner(coef: np.ndarray, x: Tensor) -> Tensor:
    acc = torch.zeros_like(x)
    for c in coef[::-1]:
        acc = acc * x + float(c)
    return acc


def _derivative(coef: np.ndarray) -> np.ndarray:
    return coef[1:] * np.arange(1, len(coef))


def _radius(coef: np.ndarray) -> float:
    """A lower estimate of the radius of convergence from coefficients 2..n."""
    r = math.inf
    for j in range(2, len(coef)):
        if coef[j] != 0:
            r = min(r, abs(coef[j]) ** (-1.0 / (j - 1)))
    return r


class _Schroeder:
    """Local series of the Koenigs linearization of f at its attracting fixed point 0 with
    multiplier c = f'(0), 0 < c < 1 (Schroeder's equation h(f(x)) = c h(x)):
    h(x) = x + b_2 x^2 + ...: [x^n] of sum_m b_m f^m equals c b_n, so
    b_n (c - c^n) = sum_(m<n) b_m [x^n] f(x)^m. Also its inverse g = h^-1 and
    omega = g / g' (the NTK sum). Valid for |x| < delta (chosen from the coefficients' growth)."""

    def __init__(self, p: np.ndarray, c0: float):
        n = len(p) - 1
        p = p.copy()
        p[0], p[1] = 0.0, c0
        P = _powers(p, n)
        b = np.zeros(n + 1)
        b[1] = 1.0
        for k in range(2, n + 1):
            b[k] = sum(b[m] * P[m][k] for m in range(1, k)) / (c0 - c0**k)
        g = np.zeros(n + 1)
        g[1] = 1.0
        for k in range(2, n + 1):  # h(g(u)) = u order by order
            G = _powers(g, n)
            g[k] = -sum(b[m] * G[m][k] for m in range(2, k + 1))
        dg = _derivative(g)
        chi = np.zeros(n + 1)  # 1 / g'
        chi[0] = 1.0
        for k in range(1, n + 1):
            chi[k] = -sum(dg[j] * chi[k - j] for j in range(1, min(k, len(dg) - 1) + 1))
        self.c0, self.h, self.g = c0, b, g
        self.dh, self.dg = _derivative(b), dg
        self.chi = chi
        self.omega = _mul(g, chi, n)
        self.delta = min(DELTA_MAX, _radius(b) / 100, _radius(g) / 100)


# ---- the result -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Limit:
    """The infinite-depth class of a normalized network (``infnet.limit``).

    kind: "majority_vote" | "nearest_neighbor" | "singular" | "linear".
    dual0 = f(0); slope0 = f'(0) (= a_1^2 = c0); slope1 = f'(1) (= A = sum_k k a_k^2; inf for
    discontinuous activations, whose Kdot diverges at rho = 1).
    exponent: for "singular" the kernel behaves like |x - z|^(-exponent), exponent = 2 beta =
    2 log(1/c0) / log(A) (0 when A = inf: the divergence is slower than any power); else None.
    fixed_point: for "majority_vote" the attracting fixed point rho* of f (1 when f'(1) <= 1),
    and fixed_point_slope = f'(rho*); else None. order: for "nearest_neighbor" the lowest power k
    in the dual (the kernel decays like rho^(k^L)); else None.
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
    _dual: _Dual | None = field(default=None, repr=False, compare=False)
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

    # -- internals shared by koenigs, limit_kernel and the deep kernels
    def _schroeder(self) -> _Schroeder:
        if "schroeder" not in self._cache:
            self._cache["schroeder"] = _Schroeder(self._dual.taylor(), self.slope0)
        return self._cache["schroeder"]

    def _schroeder_at_fixed_point(self) -> _Schroeder | None:
        """Koenigs linearization of f at the attracting fixed point rho* of the majority class,
        in y = rho - rho* (None unless 0 < f'(rho*) < 1 and rho* is inside (-1, 1))."""
        if "schroeder*" not in self._cache:
            lam, rho = self.fixed_point_slope, self.fixed_point
            ok = (self.kind == "majority_vote" and rho is not None and abs(rho) < 1 - 1e-3
                  and lam is not None and 1e-6 < lam < 1 - 1e-6)
            self._cache["schroeder*"] = _Schroeder(self._dual.taylor_at(rho), lam) if ok else None
        return self._cache["schroeder*"]


_LIMITS: dict = {}


def limit(act, **params) -> Limit:
    """The infinite-depth class of a normalized, bias-free network of ``act`` on the sphere.

    ``act``: an Activation, a catalog name or a function (anything ``infnet.activation`` takes,
    with its parameters as keywords). Decided from f(0), f'(0), f'(1) of the normalized dual with
    tolerance ``TOL`` (f(0) > TOL: majority vote; else f'(0) <= TOL: nearest neighbour; else
    f'(0) >= 1 - TOL: linear; else singular). Raises ValueError when the activation has no valid
    normalized dual (E[phi^2] = 0, a kernel that is not finite at unit variance, or values that
    no dual can have).
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


def _cache_key(act: Activation):
    try:
        return (type(act), act.name, repr(sorted(act.params.items())), act.gain, id(act.fn),
                id(act.closed_form), id(getattr(act, "value", None)), id(getattr(act, "gate", None)))
    except Exception:  # pragma: no cover - unusual params
        return None


def _basic_numbers(dual: _Dual) -> tuple[float, float, float]:
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
    dual = _Dual(layer)
    f0, c0, A = _basic_numbers(dual)
    common = dict(dual0=f0, slope0=c0, slope1=A, name=layer.name, activation=layer.activation,
                  _dual=dual)
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


def _fixed_point(dual: _Dual, f0: float, A: float) -> tuple[float, float]:
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


def _order(dual: _Dual) -> int | None:
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


# ---- Koenigs, Boettcher, limit kernel --------------------------------------------------------
def _as_limit(act_or_limit) -> Limit:
    return act_or_limit if isinstance(act_or_limit, Limit) else limit(act_or_limit)


def step_from_one(lim: Limit, x: Tensor) -> tuple[Tensor, Tensor]:
    """(f^(k)(x), k): one layer (k = 1), except within 1e-12 of the repelling fixed point 1 (or
    -1 of an odd dual), where float64 cannot hold the orbit (f(1 - eps) rounds back to 1 - eps):
    there the k layers that take 1 - |x| above 1e-12 by the linearization
    1 - f(x) = f'(1) (1 - x) at once (relative error O(1 - x) for smooth duals; the input's own
    conditioning there is eps / (1 - x))."""
    near = ((1.0 - x.abs()) < 1e-12) & (x.abs() < 1.0)
    k = torch.ones_like(x, dtype=torch.int64)
    if not (bool(near.any()) and math.isfinite(lim.slope1) and lim.slope1 > 1.0):
        return lim._dual.f(x), k
    fx = torch.empty_like(x)
    fx[~near] = lim._dual.f(x[~near])
    xs = x[near]
    gap = 1.0 - xs.abs()
    steps = torch.ceil(torch.log(1e-12 / gap) / math.log(lim.slope1)).clamp(min=1)
    fx[near] = torch.sign(xs) * (1.0 - gap * lim.slope1**steps)
    k[near] = steps.to(torch.int64)
    return fx, k


def _to_local(lim: Limit, x: Tensor, delta: float) -> tuple[Tensor, Tensor, Tensor]:
    """Iterate f on x until |x| < delta; returns (x_n, n, pinned) with pinned the entries that
    reached a fixed point +-1 (1 always is one; -1 when f(-1) = -1, an odd dual)."""
    x = x.clone()
    n = torch.zeros_like(x, dtype=torch.int64)
    pinned = x == 1.0
    idx = torch.nonzero(~pinned & (x.abs() >= delta)).flatten()
    steps = 0
    while idx.numel():
        old = x[idx]
        fx, k = step_from_one(lim, old)
        x[idx] = fx
        n[idx] += k
        pin = (fx == 1.0) | ((fx == -1.0) & (old == -1.0))
        pinned[idx[pin]] = True
        idx = idx[~pin & (fx.abs() >= delta)]
        steps += 1
        if steps > MAX_STEPS:
            raise ValueError(f"{lim.name}: the orbit of the dual did not reach |rho| < {delta:.1e} "
                             f"in {MAX_STEPS} layers (dual'(0) = {lim.slope0:.12g} too close "
                             "to 1?)")
    return x, n, pinned


def koenigs(act_or_limit, rho) -> Tensor:
    """The Koenigs function h(rho) = lim_L f^(L)(rho) / c0^L of the dual f (singular class).

    h solves Schroeder's equation h(f(rho)) = c0 h(rho), h(0) = 0, h'(0) = 1 (c0 = f'(0)); it is
    the infinite-depth NNGP kernel, up to the factor c0^L, as a function of the input correlation.
    Near rho = 1, h(rho) ~ P(log(1 - rho)) (1 - rho)^(-beta), P bounded with period log f'(1).
    Evaluated by iterating f until |rho_n| < delta (~1e-2), then the local series
    h(x) = x + b_2 x^2 + ... (coefficients from the Taylor series of f at 0): h(rho) = h(rho_n) /
    c0^n, ~1e-13 relative for closed-form duals (the conditioning of f near rho = 1 aside).
    rho = 1 gives +inf (and -1 gives -inf when f(-1) = -1, an odd dual). Raises ValueError for
    the other classes, which have no Koenigs function.
    """
    lim = _as_limit(act_or_limit)
    if lim.kind != "singular":
        raise ValueError(f"{lim.name} is of class {lim.kind!r}: the Koenigs function exists only "
                         "for the singular class (dual(0) = 0 < dual'(0) < 1)")
    sch = lim._schroeder()
    rho = _as_rho(rho)
    x, n, pinned = _to_local(lim, rho.reshape(-1), sch.delta)
    h = _horner(sch.h, x) * torch.exp(-n.to(x.dtype) * math.log(sch.c0))
    h = torch.where(pinned, torch.sign(x) * math.inf, h)
    return h.reshape(rho.shape)


def bottcher(act_or_limit, rho) -> Tensor:
    """The Boettcher function of a nearest-neighbour dual f = p_k rho^k + ... (k >= 2):
    B(rho) = lim_L s_L |p_k^(1/(k-1)) f^(L)(rho)|^(1/k^L), s_L = sign f^(L)(rho), so that
    f^(L)(rho) ~ s p_k^(-1/(k-1)) |B(rho)|^(k^L) (B(f(rho)) = +-B(rho)^k, B(1) = 1, B(rho) = rho
    for f = rho^k with k odd). |B| is increasing on [0, 1]: the largest |B(x_i . x)| is the
    training point that wins the infinite-depth kernel sum. Evaluated by iterating f until
    |rho_n| < 1e-2, then the local map in logarithms until the corrections vanish."""
    lim = _as_limit(act_or_limit)
    if lim.kind != "nearest_neighbor":
        raise ValueError(f"{lim.name} is of class {lim.kind!r}: the Boettcher function belongs to "
                         "the nearest-neighbour class (dual(0) = dual'(0) = 0)")
    k = lim.order
    if k is None:
        raise ValueError(f"{lim.name}: the lowest power of the dual is above {SERIES_ORDER}; "
                         "its Boettcher function is not available")
    p = lim._dual.taylor()
    p[:k] = 0.0
    rho = _as_rho(rho)
    x, n, pinned = _to_local(lim, rho.reshape(-1), DELTA_MAX)
    lead = math.log(p[k]) / (k - 1)
    sign = torch.sign(x)
    live = ~pinned & (x != 0)
    logy = torch.where(live, torch.log(x.abs().clamp(min=1e-320)) + lead, torch.zeros_like(x))
    scale = torch.pow(float(k), -n.to(x.dtype))  # k^-n
    log_b = logy * scale
    ratio = p[k + 1:] / p[k]
    for _ in range(64):  # y_(n+1) = y_n^k (1 + r(x_n)), r = sum_(j>k) (p_j/p_k) x^(j-k)
        xs = torch.where(live, sign * torch.exp(logy - lead), torch.zeros_like(x))
        r = _horner(np.concatenate([[0.0], ratio]), xs)
        scale = scale / k
        log_b = log_b + torch.log1p(r) * scale
        sign = sign ** k * torch.sign(1 + r)
        logy = k * logy + torch.log1p(r)
        if bool((r.abs() < 1e-18).all()):
            break
    b = torch.where(live, sign * torch.exp(log_b), torch.zeros_like(x))
    b = torch.where(pinned, x, b)
    return b.reshape(rho.shape)


def limit_kernel(act_or_limit, rho) -> Tensor:
    """The infinite-depth NNGP kernel as a function of the input correlation, normalized so that
    it is finite and keeps what decides the classifier:

    * singular: the Koenigs function h (``koenigs``); the classifier is sign(sum_i y_i h(x_i . x)).
    * majority_vote: the limit correlation, rho* for rho < 1 and 1 at rho = 1 (constant off the
      diagonal; with rho* = 1, e.g. ReLU, all ones: the limit Gram matrix is singular and the
      majority vote comes from how it is approached).
    * nearest_neighbor: the Boettcher function B (``bottcher``); f^(L) ~ s |B|^(k^L), so the
      argmax of |B(x_i . x)| picks the nearest neighbour (monotone in rho on [0, 1]).
    * linear: rho itself.
    """
    lim = _as_limit(act_or_limit)
    if lim.kind == "singular":
        return koenigs(lim, rho)
    if lim.kind == "nearest_neighbor":
        return bottcher(lim, rho)
    rho = _as_rho(rho)
    if lim.kind == "linear":
        return rho.clone()
    return torch.where(rho == 1.0, torch.ones_like(rho), torch.full_like(rho, lim.fixed_point))
