"""The infinitely deep network: ``fc(act, depth=math.inf)``.

The limit is that of Radhakrishnan, Belkin & Uhler (PNAS 2023; REFERENCES.md section 4): the
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

from ..limit import Limit, koenigs, limit, limit_kernel
from .network import Kernel, _angles, _as_data
from .table import AngleTable

#: the Koenigs function is tabulated on [-RHO_MAX, RHO_MAX]; beyond, f is iterated into it
RHO_MAX = 0.9

Tensor = torch.Tensor


class InfiniteDepth:
    """The infinite-depth limit of the normalized bias-free fully-connected network of ``act``."""

    def __init__(self, act):
        self.limit: Limit = limit(act)
        self._table: AngleTable | None = None

    def __repr__(self) -> str:
        return f"fc({self.limit.name}, depth=inf)  # {self.limit.kind}"

    def correlations(self, x1, x2=None, dtype=torch.float64) -> Tensor:
        """rho = x.x' / (|x| |x'|), exact near +-1 (from the chord there); only directions count."""
        x1 = _as_data(x1, "x1", dtype)
        x2 = x1 if x2 is None else _as_data(x2, "x2", dtype, device=x1.device)
        if x1.shape[1] != x2.shape[1]:
            raise ValueError(f"x1 has {x1.shape[1]} features and x2 has {x2.shape[1]}")
        n1, n2 = x1.norm(dim=1), x2.norm(dim=1)
        if bool((n1 == 0).any()) or bool((n2 == 0).any()):
            raise ValueError("a zero input has no direction: the infinite-depth network sees "
                             "only x / |x|; remove zero rows")
        theta = _angles(x1 @ x2.T, x1, x2, n1, n2)
        rho = torch.cos(theta)
        return rho.masked_fill_(theta == 0, 1.0)

    def kernel(self, x1, x2=None, *, block: int = 2048,
               dtype: torch.dtype = torch.float64) -> Kernel:
        """The normalized limit kernel (module docstring) between the rows of x1 and x2, in
        row blocks; ``nngp`` and ``ntk`` are the same tensor."""
        x1 = _as_data(x1, "x1", dtype)
        x2 = x1 if x2 is None else _as_data(x2, "x2", dtype, device=x1.device)
        out = torch.empty(x1.shape[0], x2.shape[0], dtype=dtype, device=x1.device)
        fast = self.limit.kind == "singular"
        for i in range(0, x1.shape[0], block):
            rho = self.correlations(x1[i:i + block], x2)
            out[i:i + block] = self.koenigs(rho) if fast else limit_kernel(self.limit, rho)
        return Kernel(out, out)

    def koenigs(self, rho: Tensor) -> Tensor:
        """The Koenigs function h at many correlations: a piecewise cubic table of h on
        [-RHO_MAX, RHO_MAX] (~1e-13 relative), and beyond it Schroeder's equation
        h(rho) = h(f^(k)(rho)) / c0^k with k the iterations of f that bring rho into the table
        (|f(rho)| < |rho| off the fixed points: the orbit leaves the neighbourhood of +-1)."""
        lim = self.limit
        if self._table is None:
            def fn(t: np.ndarray) -> np.ndarray:
                r = torch.from_numpy(RHO_MAX * np.cos(t))
                return koenigs(lim, r).numpy()[..., None]
            self._table = AngleTable(fn)
        out = self._table.evaluate_theta(torch.acos(rho.clamp(-RHO_MAX, RHO_MAX) / RHO_MAX))[0]
        far = rho.abs() > RHO_MAX
        if bool(far.any()):
            r = rho[far]
            scale = torch.ones_like(r)
            pinned = r.abs() >= 1.0
            live = ~pinned & (r.abs() > RHO_MAX)
            while bool(live.any()):
                r[live] = lim._dual.f(r[live])  # the dual as the limit uses it (fast for quadrature)
                scale[live] *= lim.slope0
                pinned |= live & (r.abs() >= 1.0)
                live &= ~pinned & (r.abs() > RHO_MAX)
            inner = self._table.evaluate_theta(torch.acos(r.clamp(-RHO_MAX, RHO_MAX) / RHO_MAX))[0]
            vals = inner / scale
            vals[pinned] = math.inf * torch.sign(r[pinned])
            out[far] = vals
        return out
