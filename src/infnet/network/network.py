"""Networks: a sequence of layers, and their NNGP and NTK on data, computed in tiles.

Two evaluations, one set of layer maps:
- equal-norm inputs: the kernels are one function of the input angle, tabulated once
  (``table.AngleTable``) and evaluated per entry: cost independent of depth and activation;
- otherwise: the layers are applied to each tile of pairs, with every input's variances from
  one diagonal pass.
Both work on tiles of ``block`` x ``block`` entries, so memory beyond the output is O(block^2).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from ..activations import Activation, activation
from ..activations.base import all_finite
from .layers import Dense, Moments, Nonlinearity, as_layer
from .table import AngleTable, TableError

Tensor = torch.Tensor

#: inputs whose squared norms agree to this relative tolerance count as equal-norm
EQUAL_NORM_RTOL = 1e-13
#: below this angle, recompute theta from the distance |x - x'| (arccos of a rounded rho is
#: off by ~1e-8 there, which kinked activations' NTKs feel linearly)
_SMALL_ANGLE_RHO = 1 - 1e-6


@dataclass(frozen=True)
class Kernel:
    """The NNGP and NTK of a network on pairs of inputs: (n1, n2) tensors (None: not asked
    for, ``Network.kernel(get=...)``)."""

    nngp: Tensor | None
    ntk: Tensor | None

    def get(self, kind: str) -> Tensor:
        """``nngp`` or ``ntk`` by name, with a clear error for anything else or a kernel that
        was not computed."""
        if kind not in ("nngp", "ntk"):
            raise ValueError(f"kernel kind must be 'nngp' or 'ntk', got {kind!r}")
        value = getattr(self, kind)
        if value is None:
            raise ValueError(f"the {kind} was not computed: call kernel(..., get={kind!r})")
        return value


class Network:
    """A serial composition of layers (Dense, activations) with infinite-width kernels."""

    def __init__(self, *layers):
        self.layers = tuple(as_layer(layer) for layer in layers)
        self._tables: dict = {}

    def __repr__(self) -> str:
        return "serial(" + ", ".join(map(repr, self.layers)) + ")"

    @property
    def activations(self) -> list[Activation]:
        return [layer.act for layer in self.layers if isinstance(layer, Nonlinearity)]

    def finite(self, width: int | None = None, *, in_features: int, outputs: int = 1,
               seed: int | None = None, dtype: torch.dtype = torch.float64, device=None):
        """The finite-width ``torch.nn.Sequential`` whose infinite-width limit is this network's
        kernel (same layers, parameterization, stds; ``network.finite.build``): hidden Dense
        layers of ``width`` (a Dense's own ``width`` wins under the standard parameterization),
        inputs of ``in_features``, ``outputs`` outputs, parameters drawn from ``seed``."""
        from .finite import build

        return build(self, width, in_features=in_features, outputs=outputs, seed=seed,
                     dtype=dtype, device=device)

    # ---- kernel maps on moments ----------------------------------------------------------------
    def diagonal(self, sq: Tensor, width: int) -> tuple[list[Tensor], Tensor]:
        """Variances of each input before every layer, and the NTK diagonal at the output.

        ``sq`` is x.x / d per input. Returns ([q_0, ..., q_L], ntk) with q_L the NNGP diagonal.
        """
        m = Moments(sq, torch.zeros_like(sq), sq, sq, width)
        qs = [sq]
        for layer in self.layers:
            m = layer.apply(m)
            qs.append(m.nngp)
        return qs, m.ntk

    def pairs(self, theta: Tensor, qs1: list[Tensor], qs2: list[Tensor],
              width: int) -> tuple[Tensor, Tensor]:
        """(NNGP, NTK) of pairs of inputs at angle theta with the per-layer variances of each
        (``diagonal``); the angle, not the covariance, is carried from layer to layer."""
        sigma = (qs1[0] * qs2[0]).sqrt() * torch.cos(theta)
        m = Moments(sigma, torch.zeros_like(sigma), qs1[0], qs2[0], width, theta)
        for layer, q1, q2 in zip(self.layers, qs1[1:], qs2[1:], strict=True):
            m = layer.apply(m, q1, q2)
        return m.nngp, m.ntk

    def angle_kernel(self, theta, sq: float = 1.0, width: int = 1) -> tuple[Tensor, Tensor]:
        """Exact (layer by layer) NNGP and NTK of two inputs with x.x/d = x'.x'/d = sq at angle
        theta; the function the fast path tabulates."""
        theta = torch.as_tensor(theta, dtype=torch.float64)
        qs, _ = self.diagonal(torch.tensor(float(sq), dtype=torch.float64), width)
        return self.pairs(theta, qs, qs, width)

    # ---- kernels on data ---------------------------------------------------------------------------
    def kernel(self, x1, x2=None, *, block: int = 512, dtype: torch.dtype = torch.float64,
               method: str = "auto", get: str = "both") -> Kernel:
        """NNGP and NTK between the rows of x1 and x2 (x2=None: x1 with itself).

        Inputs are (n, features) tensors or arrays (more axes are flattened); the result is on
        their device, in ``dtype`` (float64 by default). ``method``: "auto" (the angle table
        when all inputs have one norm, else layer by layer), "table" or "exact". ``get``:
        "both", "nngp" or "ntk"; the other field is then None and its n1 x n2 matrix is never
        allocated (memory: one output plus O(block^2)).
        """
        if method not in ("auto", "table", "exact"):
            raise ValueError(f"method must be 'auto', 'table' or 'exact', got {method!r}")
        if get not in ("both", "nngp", "ntk"):
            raise ValueError(f"get must be 'both', 'nngp' or 'ntk', got {get!r}")
        if not (isinstance(block, int) and block >= 1):
            raise ValueError(f"block must be a positive integer, got {block!r}")
        symmetric = x2 is None
        x1 = _as_data(x1, "x1", dtype)
        x2 = x1 if symmetric else _as_data(x2, "x2", dtype, device=x1.device)
        if x1.shape[1] != x2.shape[1]:
            raise ValueError(f"x1 has {x1.shape[1]} features and x2 has {x2.shape[1]}: the "
                             "feature dimensions must match")
        d = x1.shape[1]
        sq1 = (x1 * x1).sum(1) / d
        sq2 = sq1 if symmetric else (x2 * x2).sum(1) / d
        equal = _common_value(torch.cat([sq1, sq2]))
        if equal is not None and method != "exact":  # one input variance: one diagonal pass
            qs, ntk_diag = self.diagonal(torch.tensor(equal, dtype=dtype, device=x1.device), d)
            qs1 = [q.expand(x1.shape[0]) for q in qs]
            qs2 = [q.expand(x2.shape[0]) for q in qs]
            ntk1 = ntk_diag.expand(x1.shape[0])
        else:
            qs1, ntk1 = self.diagonal(sq1, d)
            qs2 = qs1 if symmetric else self.diagonal(sq2, d)[0]
        if method == "table" and equal is None:
            raise ValueError("method='table' needs inputs of one norm; normalize them "
                             "(x / |x|) or use method='auto'")
        table = None
        if method != "exact" and equal is not None:
            try:
                table = self._table(equal, d)
            except TableError as err:
                if method == "table":
                    raise
                warnings.warn(f"{err}; computing layer by layer instead", stacklevel=2)
        elif method == "auto" and any(not a.is_closed_form for a in self.activations):
            if x1.shape[0] * x2.shape[0] > 250_000:
                warnings.warn("inputs of different norms with an activation without closed form: "
                              "each pair costs a 2-D quadrature per layer (slow). Inputs of one "
                              "norm (x / |x|) take the fast path.", stacklevel=2)
        n1, n2 = x1.shape[0], x2.shape[0]
        nngp, ntk = (torch.empty(n1, n2, dtype=dtype, device=x1.device) if get in (kind, "both")
                     else None for kind in ("nngp", "ntk"))
        scratch = torch.empty(min(block, n1), min(block, n2), dtype=dtype, device=x1.device)
        for i in range(0, n1, block):
            a = x1[i:i + block]
            for j in range(i if symmetric else 0, n2, block):
                b = x2[j:j + block]
                g = a @ b.T
                dest = [scratch[:g.shape[0], :g.shape[1]] if out is None
                        else out[i:i + block, j:j + block] for out in (nngp, ntk)]
                rows, cols = slice(i, i + block), slice(j, j + block)
                if table is not None:
                    theta = _angles(g, a, b, math.sqrt(d * equal), math.sqrt(d * equal))
                    k, t = table.evaluate_theta(theta, out=dest)
                else:
                    theta = _angles(g, a, b, (sq1[rows] * d).sqrt(), (sq2[cols] * d).sqrt())
                    k, t = self.pairs(theta, [q[rows, None] for q in qs1],
                                      [q[None, cols] for q in qs2], d)
                    dest[0].copy_(k)
                    dest[1].copy_(t)
                if symmetric and j != i:
                    for out, tile in ((nngp, k), (ntk, t)):
                        if out is not None:
                            out[j:j + block, i:i + block] = tile.T
        if symmetric:  # the diagonal from the exact diagonal pass
            for out, diag in ((nngp, qs1[-1]), (ntk, ntk1)):
                if out is not None:
                    out.diagonal().copy_(diag)
        _check_finite(nngp, ntk)
        return Kernel(nngp, ntk)

    def _table(self, sq: float, width: int) -> AngleTable:
        """The angle table at input variance sq, built at sq rounded to 15 digits (inputs of
        one norm give variances that differ in the last bits from call to call; a table at the
        rounded value makes every call's result independent of which call built it)."""
        sq = round(sq, 15)
        key = (sq, width)
        if key not in self._tables:
            def fn(theta: np.ndarray) -> np.ndarray:
                k, t = self.angle_kernel(torch.from_numpy(theta), sq, width)
                return torch.stack(torch.broadcast_tensors(k, t), dim=-1).numpy()
            self._tables[key] = AngleTable(fn)
        return self._tables[key]


def _angles(g: Tensor, a: Tensor, b: Tensor, norm_a, norm_b) -> Tensor:
    """The angles between the rows of a and b, from their Gram matrix g (overwritten) and their
    norms (numbers, or one per row): arccos(g / (|a| |b|)); near rho = 1 (rho = -1) from the
    chord |a/|a| - b/|b|| (|a/|a| + b/|b||), where arccos of a rounded rho is off by ~1e-8.
    A zero row is at angle pi/2 to everything."""
    scalar = not torch.is_tensor(norm_a)
    if scalar:
        rho = g.div_(norm_a * norm_b)
    else:
        norm_a, norm_b = norm_a.clamp(min=1e-300), norm_b.clamp(min=1e-300)
        rho = g.div_(norm_a[:, None]).div_(norm_b[None, :])
    rho.clamp_(-1.0, 1.0)
    lo, hi = torch.aminmax(rho)
    if float(hi) <= _SMALL_ANGLE_RHO and float(lo) >= -_SMALL_ANGLE_RHO:
        return rho.acos_()
    near = rho.abs() > _SMALL_ANGLE_RHO
    r, c = near.nonzero(as_tuple=True)
    opposite = rho[r, c] < 0
    sign = 1.0 - 2.0 * opposite.to(a.dtype)  # a - b near rho = 1, a + b near rho = -1
    if scalar:
        diff = (a[r] - sign[:, None] * b[c]) / norm_a
    else:
        diff = a[r] / norm_a[r, None] - sign[:, None] * b[c] / norm_b[c, None]
    half_chord = ((diff * diff).sum(1) / 4).sqrt().clamp_(max=1.0)
    small = 2 * torch.asin(half_chord)
    theta = rho.acos_()
    theta[r, c] = torch.where(opposite, torch.pi - small, small)
    return theta


def _common_value(sq: Tensor) -> float | None:
    lo, hi = float(sq.min()), float(sq.max())
    if hi <= 0:
        return None
    return float(sq.mean()) if hi - lo <= EQUAL_NORM_RTOL * hi else None


def _as_data(x, name: str, dtype: torch.dtype, device=None) -> Tensor:
    if not torch.is_tensor(x):
        try:
            x = torch.as_tensor(np.asarray(x, dtype=np.float64))
        except (TypeError, ValueError) as err:
            raise TypeError(f"{name} must be a numeric array or tensor: {err}") from err
    if device is not None and x.device != device:
        raise ValueError(f"{name} is on {x.device} but x1 is on {device}: put both on one device")
    if x.ndim < 2:
        raise ValueError(f"{name} must have shape (n, features); got shape {tuple(x.shape)} "
                         "(one point: x.reshape(1, -1))")
    if x.ndim > 2:
        x = x.reshape(x.shape[0], -1)
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{name} is empty: shape {tuple(x.shape)}")
    if x.is_complex():
        raise TypeError(f"{name} is complex; kernels need real inputs")
    x = x.to(dtype)
    if not all_finite(x):
        bad = ~torch.isfinite(x)
        row = int(bad.any(dim=1).nonzero()[0])
        raise ValueError(f"{name} contains NaN or inf (first in row {row}); clean or impute the "
                         "data first")
    return x


def _check_finite(nngp: Tensor | None, ntk: Tensor | None) -> None:
    for name, k in (("NNGP", nngp), ("NTK", ntk)):
        if k is not None and not all_finite(k):
            raise FloatingPointError(f"the {name} overflowed (non-finite entries): the variances "
                                     "grow too fast with depth; lower w_std/b_std or the depth")


def serial(*layers) -> Network:
    """Compose layers (Dense, Activation values or catalog names, or Networks) into a Network."""
    flat = []
    for layer in layers:
        flat.extend(layer.layers if isinstance(layer, Network) else [layer])
    return Network(*flat)


def fc(act, depth: int, *, w_std: float = 1.0, b_std: float | None = 0.0,
       parameterization: str = "ntk", width: int | None = None) -> Network:
    """A fully-connected network: depth x [Dense, act], then a Dense readout.

    ``act`` is an Activation or a catalog name. For the standard parameterization give the
    hidden ``width`` (the NTK grows with it). ``depth=math.inf``: the infinite-depth limit of
    the normalized bias-free network (``network.infinite.InfiniteDepth``); for very deep finite
    networks of that kind, ``infnet.deep_kernels`` costs a number of layers that does not grow
    with depth.
    """
    if isinstance(depth, float) and math.isinf(depth) and depth > 0:
        if (b_std or 0.0) != 0.0:
            raise ValueError("the infinite-depth limit is that of the bias-free network on the "
                             "sphere (Radhakrishnan, Belkin & Uhler 2023): use b_std=0")
        from .infinite import InfiniteDepth

        return InfiniteDepth(act)  # w_std does not matter: the activation is normalized
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth must be an integer >= 1, got {depth!r}")
    act = activation(act) if not isinstance(act, Activation) else act
    hidden = Dense(w_std, b_std, parameterization, width)
    return Network(*([hidden, act] * depth), Dense(w_std, b_std, parameterization, 1))
