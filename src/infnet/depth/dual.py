"""The normalized dual of a repeated layer, f = K / K(1) with its slope f', fast: exact where
the layer has a closed form, else Chebyshev interpolants built once; its Taylor series at 0 (or
at a fixed point) and the Koenigs linearization (``Schroeder``) that lets deep kernels jump over
layers. Theory: docs/theory/infinite-depth.md."""

from __future__ import annotations

import numpy as np
import torch
from numpy.polynomial import chebyshev as C

from ..activations import Activation
from ..numerics.series import derivative, mul, powers, radius
from ..numerics.table import TableError, chebyshev_fit

Tensor = torch.Tensor

#: local series (Koenigs, Boettcher) are used for |x| below this (or less, see Schroeder)
DELTA_MAX = 1e-2
#: order of the local series
SERIES_ORDER = 8
_FIT_RADIUS = 0.25
_FIT_NODES = 21


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

        return cls(act.name, pair, nngp, act.is_closed_form, act, cache_key(act))

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

        key = cache_key(act)
        name = f"[{act.name}, Dense({w_std:.6g}, {b_std:.6g})] at q = {q:.12g}"
        return cls(name, pair, nngp, act.is_closed_form, None,
                   None if key is None else (key, w2, b2, q))


class Dual:
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


class Schroeder:
    """Local series of the Koenigs linearization of f at its attracting fixed point 0 with
    multiplier c = f'(0), 0 < c < 1 (Schroeder's equation h(f(x)) = c h(x)):
    h(x) = x + b_2 x^2 + ...: [x^n] of sum_m b_m f^m equals c b_n, so
    b_n (c - c^n) = sum_(m<n) b_m [x^n] f(x)^m. Also its inverse g = h^-1 and
    omega = g / g' (the NTK sum). Valid for |x| < delta (chosen from the coefficients' growth)."""

    def __init__(self, p: np.ndarray, c0: float):
        n = len(p) - 1
        p = p.copy()
        p[0], p[1] = 0.0, c0
        P = powers(p, n)
        b = np.zeros(n + 1)
        b[1] = 1.0
        for k in range(2, n + 1):
            b[k] = sum(b[m] * P[m][k] for m in range(1, k)) / (c0 - c0**k)
        g = np.zeros(n + 1)
        g[1] = 1.0
        for k in range(2, n + 1):  # h(g(u)) = u order by order
            G = powers(g, n)
            g[k] = -sum(b[m] * G[m][k] for m in range(2, k + 1))
        dg = derivative(g)
        chi = np.zeros(n + 1)  # 1 / g'
        chi[0] = 1.0
        for k in range(1, n + 1):
            chi[k] = -sum(dg[j] * chi[k - j] for j in range(1, min(k, len(dg) - 1) + 1))
        self.c0, self.h, self.g = c0, b, g
        self.dh, self.dg = derivative(b), dg
        self.chi = chi
        self.omega = mul(g, chi, n)
        self.delta = min(DELTA_MAX, radius(b) / 100, radius(g) / 100)


def cache_key(act: Activation):
    """A hashable key of an activation's kernel maps (None where its parameters are unusual)."""
    try:
        return (type(act), act.name, repr(sorted(act.params.items())), act.gain, id(act.fn),
                id(act.closed_form), id(getattr(act, "value", None)), id(getattr(act, "gate", None)))
    except Exception:  # pragma: no cover - unusual params
        return None
