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
from ..activations.moments import geometric_mean
from .layers import Dense, Moments, Nonlinearity, as_layer
from .runs import Run, RunTrace, find_runs
from .table import AngleTable, TableError

Tensor = torch.Tensor

#: inputs whose squared norms agree to this relative tolerance count as equal-norm
EQUAL_NORM_RTOL = 1e-13
#: below this angle, recompute theta from the distance |x - x'| (arccos of a rounded rho is
#: off by ~1e-8 there, which kinked activations' NTKs feel linearly)
_SMALL_ANGLE_RHO = 1 - 1e-6
#: the largest amplification of relative changes of the input variances (through the network's
#: variance maps) accepted: beyond it rounding alone could put the kernel off by ~1e-10
MAX_CONDITION = 1e6
#: with fewer entries than this (closed-form activations; a 64th of it otherwise) the kernel is
#: computed entry by entry even for inputs of one norm: building the angle table costs more
TABLE_MIN_ENTRIES = 1 << 16
_CONDITION_STEP = 1e-7


class IllConditionedError(ArithmeticError):
    """The network's kernel is ill-conditioned in its inputs: its variance maps amplify the
    rounding of the input variances beyond ``MAX_CONDITION`` (e.g. inputs near, but not at, an
    unstable fixed point of the variance map)."""


class Trace:
    """The diagonal pass of a network on each input: ``sq`` = x.x/d, one record per segment
    (a layer's output variance, or a ``RunTrace``), the NNGP and NTK diagonals at the output."""

    def __init__(self, sq: Tensor, records: list, nngp: Tensor, ntk: Tensor):
        self.sq, self.records, self.nngp, self.ntk = sq, records, nngp, ntk

    def view(self, index, axis: int) -> Trace:
        """The inputs ``index``, as rows (axis 0) or columns (axis 1) of a tile."""
        def take(t):
            if isinstance(t, RunTrace):
                return t.view(index, axis)
            if t.ndim == 0:
                return t
            return t[index][:, None] if axis == 0 else t[index][None, :]
        return Trace(take(self.sq), [take(r) for r in self.records], take(self.nngp),
                     take(self.ntk))

    @property
    def explicit_layers(self) -> int:
        """Layers computed one by one on each pair (runs count their explicit blocks twice)."""
        return sum(2 * r.explicit if isinstance(r, RunTrace) else 1 for r in self.records)


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
        self._segments = find_runs(self.layers)
        self._tables: dict = {}
        self._traces: dict = {}

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
    def diagonal(self, sq: Tensor, width: int) -> tuple[Tensor, Tensor]:
        """The NNGP and NTK diagonals at the output for inputs with x.x / d = ``sq`` (tensors of
        sq's shape); raises IllConditionedError where the variance maps amplify rounding."""
        tr = self.trace(sq, width)
        return tr.nngp, tr.ntk

    def trace(self, sq: Tensor, width: int, *, check: bool = True, like: Trace | None = None
              ) -> Trace:
        """The diagonal pass (``Trace``): each input's variances through the layers, with runs of
        identical blocks kept at fixed points of their variance maps (``network.runs``).
        ``check``: compare with the pass at sq (1 + 1e-7) and raise IllConditionedError when
        relative changes are amplified beyond ``MAX_CONDITION``. ``like``: reuse that trace's
        decisions of where variances sit at fixed points."""
        m = Moments(sq, torch.zeros_like(sq), sq, sq, width)
        records = []
        for i, seg in enumerate(self._segments):
            if isinstance(seg, Run):
                r = seg.diagonal(m.nngp, m.ntk, None if like is None else like.records[i])
                records.append(r)
                m = Moments(r.q_out, r.ntk, r.q_out, r.q_out, seg.dense.width)
            else:
                m = seg.apply(m)
                records.append(m.nngp)
        tr = Trace(sq, records, m.nngp, m.ntk)
        if check:
            self._check_condition(tr, width)
        return tr

    def _check_condition(self, tr: Trace, width: int) -> None:
        h = _CONDITION_STEP
        q = tr.nngp
        ok = (q > 0) & torch.isfinite(q)
        if not bool(ok.any()):
            return
        try:
            q2 = self.trace(tr.sq * (1 + h), width, check=False, like=tr).nngp
        except (ArithmeticError, ValueError):  # the perturbed variances diverge
            q2 = torch.full_like(q, math.inf)
        cond = ((q2 - q).abs() / (h * q))[ok]
        worst = float(cond.max()) if bool(torch.isfinite(cond).all()) else math.inf
        if worst > MAX_CONDITION:
            raise IllConditionedError(
                f"the kernel of {self!r:.200} is ill-conditioned: its variance maps amplify a "
                f"relative change of the input variances by {worst:.3g} (more than "
                f"{MAX_CONDITION:.0e}), so rounding alone could put it off by ~{worst * 1e-16:.0e}. "
                "This happens near an unstable fixed point of the variance map q -> w^2 "
                "E[phi(sqrt(q) z)^2] + b^2 (or with super-linear growth). Variances within "
                "1e-13 of a fixed point are kept at it: scale the inputs so that w^2 x.x/d + b^2 "
                "sits at the fixed point, choose w_std/b_std with a stable one "
                "(infnet.propagation), or lower the depth.")

    def pairs(self, theta: Tensor, tr1: Trace, tr2: Trace, width: int) -> tuple[Tensor, Tensor]:
        """(NNGP, NTK) of pairs of inputs at angle theta with the diagonal passes of each
        (``trace``, viewed as rows and columns); the angle, not the covariance, is carried from
        layer to layer."""
        sigma = geometric_mean(tr1.sq, tr2.sq) * torch.cos(theta)
        m = Moments(sigma, torch.zeros_like(sigma), tr1.sq, tr2.sq, width, theta)
        for seg, r1, r2 in zip(self._segments, tr1.records, tr2.records, strict=True):
            m = seg.pairs(m, r1, r2) if isinstance(seg, Run) else seg.apply(m, r1, r2)
        return m.nngp, m.ntk

    def angle_kernel(self, theta, sq: float = 1.0, width: int = 1) -> tuple[Tensor, Tensor]:
        """Exact NNGP and NTK of two inputs with x.x/d = x'.x'/d = sq at angle theta; the
        function the fast path tabulates."""
        theta = torch.as_tensor(theta, dtype=torch.float64)
        tr = self._scalar_trace(float(sq), width, theta.device)
        return self.pairs(theta, tr, tr, width)

    def _scalar_trace(self, sq: float, width: int, device) -> Trace:
        """The diagonal pass of inputs with x.x/d = sq, cached (as the angle tables are)."""
        key = (sq, width, str(device))
        if key not in self._traces:
            self._traces[key] = self.trace(torch.tensor(sq, dtype=torch.float64, device=device),
                                           width)
        return self._traces[key]

    # ---- kernels on data ---------------------------------------------------------------------------
    def kernel(self, x1, x2=None, *, block: int = 512, dtype: torch.dtype = torch.float64,
               method: str = "auto", get: str = "both") -> Kernel:
        """NNGP and NTK between the rows of x1 and x2 (x2=None: x1 with itself).

        Inputs are (n, features) tensors or arrays (more axes are flattened); the result is on
        their device, in ``dtype`` (float64 by default; float32 halves the memory of the outputs,
        whose entries are still computed in float64, tile by tile, then rounded). ``method``:
        "auto" (the angle table when all inputs have one norm, else layer by layer), "table" or
        "exact". ``get``:
        "both", "nngp" or "ntk"; the other field is then None and its n1 x n2 matrix is never
        allocated (memory: one output plus O(block^2)).
        """
        if method not in ("auto", "table", "exact"):
            raise ValueError(f"method must be 'auto', 'table' or 'exact', got {method!r}")
        if get not in ("both", "nngp", "ntk"):
            raise ValueError(f"get must be 'both', 'nngp' or 'ntk', got {get!r}")
        if not (isinstance(block, int) and block >= 1):
            raise ValueError(f"block must be a positive integer, got {block!r}")
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype must be torch.float64 or torch.float32, got {dtype!r}")
        out_dtype, dtype = dtype, torch.float64  # computed in float64 whatever is stored
        symmetric = x2 is None
        x1 = _as_data(x1, "x1", dtype)
        x2 = x1 if symmetric else _as_data(x2, "x2", dtype, device=x1.device)
        if x1.shape[1] != x2.shape[1]:
            raise ValueError(f"x1 has {x1.shape[1]} features and x2 has {x2.shape[1]}: the "
                             "feature dimensions must match")
        d = x1.shape[1]
        sq1 = (x1 * x1).sum(1) / d
        sq2 = sq1 if symmetric else (x2 * x2).sum(1) / d
        for name, sq in (("x1", sq1), ("x2", sq2)):
            if not all_finite(sq):
                row = int((~torch.isfinite(sq)).nonzero()[0])
                raise ValueError(f"the squared norm of row {row} of {name} overflows float64 "
                                 "(x.x / d = inf): rescale the inputs (e.g. x / |x|)")
        equal = _common_value(torch.cat([sq1, sq2]))
        if equal is not None and method != "exact":  # one input variance: one diagonal pass
            tr1 = tr2 = self._scalar_trace(round(equal, 15), d, x1.device)  # (as the table)
        else:
            tr1 = self.trace(sq1, d)
            tr2 = tr1 if symmetric else self.trace(sq2, d)
        if method == "table" and equal is None:
            raise ValueError("method='table' needs inputs of one norm; normalize them "
                             "(x / |x|) or use method='auto'")
        table = None
        closed = all(a.is_closed_form for a in self.activations)
        small = x1.shape[0] * x2.shape[0] < (TABLE_MIN_ENTRIES if closed else TABLE_MIN_ENTRIES // 64)
        if method == "table" or (method == "auto" and equal is not None and not small):
            try:
                table = self._table(equal, d)
            except TableError as err:
                if method == "table":
                    raise
                if tr1.explicit_layers > 2 * 64 + 4:
                    warnings.warn(f"{err}; computing layer by layer instead", stacklevel=2)
        elif method == "auto" and equal is None and not closed:
            if x1.shape[0] * x2.shape[0] > 250_000:
                warnings.warn("inputs of different norms with an activation without closed form: "
                              "each pair costs a 2-D quadrature per layer (slow). Inputs of one "
                              "norm (x / |x|) take the fast path.", stacklevel=2)
        n1, n2 = x1.shape[0], x2.shape[0]
        nngp, ntk = (torch.empty(n1, n2, dtype=out_dtype, device=x1.device)
                     if get in (kind, "both") else None for kind in ("nngp", "ntk"))
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
                    k, t = self.pairs(theta, tr1.view(rows, 0), tr2.view(cols, 1), d)
                    dest[0].copy_(k)
                    dest[1].copy_(t)
                if symmetric and j != i:
                    for out, tile in ((nngp, k), (ntk, t)):
                        if out is not None:
                            out[j:j + block, i:i + block] = tile.T
        if symmetric:  # the diagonal from the exact diagonal pass
            for out, diag in ((nngp, tr1.nngp), (ntk, tr1.ntk)):
                if out is not None:
                    out.diagonal().copy_(diag.expand(n1))
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
