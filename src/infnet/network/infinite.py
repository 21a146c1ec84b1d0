"""The infinitely deep network: ``fc(act, depth=math.inf)``.

The limit is that of Radhakrishnan, Belkin & Uhler (PNAS 2023;
docs/theory/infinite-depth.md#the-infinite-depth-classifier): the
normalized, bias-free network on inputs on the sphere, width to infinity first, then depth. Its
kernel, normalized so that it stays finite off the diagonal, depends on the input correlation
rho = x.x' / (|x| |x'|) only (``infnet.limit_kernel``):

- singular class: the Koenigs function h(rho) = lim f^(L)(rho) / c0^L (+inf at rho = 1);
- nearest-neighbour class: the Boettcher function B(rho) (f^(L) ~ |B|^(k^L));
- majority vote: the attracting fixed point rho* off the diagonal, 1 on it;
- linear: rho.

The infinite-depth NTK classifier equals the NNGP one (the NTK divided by L c0^L tends to the
same h), so ``ntk`` holds the same normalized limit.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..depth.limit import Limit, limit
from ..depth.linearize import koenigs, limit_kernel, step_from_one
from ..numerics.table import AngleTable
from .inputs import SMALL_ANGLE_RHO, Kernel, KernelModel, as_data

#: the Koenigs function is tabulated on [-RHO_MAX, RHO_MAX]; beyond, f is iterated into it
RHO_MAX = 0.9

Tensor = torch.Tensor


class InfiniteDepth(KernelModel):
    """The infinite-depth limit of the normalized bias-free fully-connected network of ``act``."""

    def __init__(self, act):
        self.limit: Limit = limit(act)
        self._table: AngleTable | None = None

    def __repr__(self) -> str:
        return f"fc({self.limit.name}, depth=inf)  # {self.limit.kind}"

    @property
    def activations(self) -> list:
        return [] if self.limit.activation is None else [self.limit.activation]

    def finite(self, width=None, **kwargs):
        raise TypeError("fc(act, depth=inf) has no finite network: choose a finite depth, "
                        "fc(act, depth=L).finite(width, in_features=d)")

    def correlations(self, x1, x2=None, dtype=torch.float64) -> Tensor:
        """rho = x.x' / (|x| |x'|), from the chord |x/|x| -+ x'/|x'|| within 1e-6 of +-1 (where
        the Gram entry has lost the digits of 1 -+ rho); only directions count."""
        x1, x2, n1, n2 = self._inputs(x1, x2, dtype)
        return _cosines(x1, x2, n1, n2)

    @staticmethod
    def _inputs(x1, x2, dtype):
        """Checked data (once, not per tile) and their row norms."""
        x1 = as_data(x1, "x1", dtype)
        x2 = x1 if x2 is None else as_data(x2, "x2", dtype, device=x1.device)
        if x1.shape[1] != x2.shape[1]:
            raise ValueError(f"x1 has {x1.shape[1]} features and x2 has {x2.shape[1]}")
        n1, n2 = x1.norm(dim=1), x2.norm(dim=1)
        if bool((n1 == 0).any()) or bool((n2 == 0).any()):
            raise ValueError("a zero input has no direction: the infinite-depth network sees "
                             "only x / |x|; remove zero rows")
        return x1, x2, n1, n2

    def kernel(self, x1, x2=None, *, block: int = 1024, dtype: torch.dtype = torch.float64,
               get: str = "both") -> Kernel:
        """The normalized limit kernel (module docstring) between the rows of x1 and x2, in
        block x block tiles (a symmetric kernel computes its upper tiles and mirrors them);
        ``nngp`` and ``ntk`` are the same tensor (``get`` is accepted for the interface of
        ``Network.kernel``; one matrix is computed either way)."""
        if get not in ("both", "nngp", "ntk"):
            raise ValueError(f"get must be 'both', 'nngp' or 'ntk', got {get!r}")
        symmetric = x2 is None
        x1, x2, n1, n2 = self._inputs(x1, x2, dtype)
        out = torch.empty(x1.shape[0], x2.shape[0], dtype=dtype, device=x1.device)
        power = self._monomial()
        for i in range(0, x1.shape[0], block):
            for j in range(i if symmetric else 0, x2.shape[0], block):
                rows, cols = slice(i, i + block), slice(j, j + block)
                rho = _cosines(x1[rows], x2[cols], n1[rows], n2[cols])
                if self.limit.kind == "singular":
                    k = self.koenigs(rho)
                elif power:  # f = rho^k: its Boettcher function is rho (odd k) or |rho|
                    k = rho if power % 2 else rho.abs_()
                else:
                    k = limit_kernel(self.limit, rho)
                if symmetric and j == i:  # x_i.x_j and x_j.x_i may round differently
                    k = torch.triu(k) + torch.triu(k, 1).T
                out[i:i + block, j:j + block] = k
                if symmetric and j != i:
                    out[j:j + block, i:i + block] = k.T
        return Kernel(out, out)

    def _monomial(self) -> int | None:
        """k when the dual is exactly rho^k (the Hermite h_k), else None."""
        lim = self.limit
        if lim.kind != "nearest_neighbor" or not lim.order:
            return None
        r = torch.linspace(-1, 1, 33, dtype=torch.float64)
        return lim.order if bool(((lim.dual.f(r) - r**lim.order).abs() <= 1e-15).all()) else None

    def koenigs(self, rho: Tensor) -> Tensor:
        """The Koenigs function h at many correlations: a piecewise cubic table of h on
        [-RHO_MAX, RHO_MAX] (~1e-13 relative), and beyond it Schroeder's equation
        h(rho) = h(f^(k)(rho)) / c0^k with k the iterations of f that bring rho into the table
        (|f(rho)| < |rho| off the fixed points: the orbit leaves the neighbourhood of +-1)."""
        lim = self.limit
        if self._table is None:  # Chebyshev in rho / RHO_MAX (h is analytic inside (-1, 1))
            def fn(t: np.ndarray) -> np.ndarray:
                r = torch.from_numpy(RHO_MAX * (1 - 2 * t / math.pi))
                return koenigs(lim, r).numpy()[..., None]
            self._table = AngleTable(fn)
        out = self._lookup(rho.clamp(-RHO_MAX, RHO_MAX))
        far = rho.abs() > RHO_MAX
        if bool(far.any()):
            r = rho[far]
            scale = torch.ones_like(r)
            pinned = r.abs() >= 1.0
            live = ~pinned & (r.abs() > RHO_MAX)
            while bool(live.any()):
                r[live], k = step_from_one(lim, r[live])
                scale[live] *= lim.slope0 ** k.to(r.dtype)
                pinned |= live & (r.abs() >= 1.0)
                live &= ~pinned & (r.abs() > RHO_MAX)
            inner = self._lookup(r.clamp(-RHO_MAX, RHO_MAX))
            vals = inner / scale
            vals[pinned] = math.inf * torch.sign(r[pinned])
            out[far] = vals
        return out

    def _lookup(self, rho: Tensor) -> Tensor:
        return self._table.evaluate_theta((1 - rho / RHO_MAX) * (math.pi / 2))[0]


def _cosines(x1: Tensor, x2: Tensor, n1: Tensor, n2: Tensor) -> Tensor:
    """x.x' / (|x| |x'|) for checked rows with norms n1, n2; from the chord near +-1."""
    rho = (x1 @ x2.T).div_(n1[:, None]).div_(n2[None, :]).clamp_(-1.0, 1.0)
    near = rho.abs() > SMALL_ANGLE_RHO
    if bool(near.any()):
        r, c = near.nonzero(as_tuple=True)
        sign = torch.sign(rho[r, c])
        diff = x1[r] / n1[r, None] - sign[:, None] * (x2[c] / n2[c, None])
        gap = (diff * diff).sum(1) / 2  # 1 - |rho|, without cancellation
        rho[r, c] = sign * (1 - gap)
    return rho
