"""Layers made of other layers: branches of one input, summed (residual blocks) or
concatenated (``parallel``).

Each branch is a sequence of layers with its own parameters, so at infinite width the branches'
outputs are independent given the input and their kernels add up:

    sum:     Sigma' = sum_i w_i^2 Sigma_i,   Theta' = sum_i w_i^2 Theta_i
    concat:  the mean of the branches' kernels (equal widths; the next Dense divides by the
             total fan-in)

(neural-tangents' FanOut/FanInSum/FanInConcat; Yang 2019, arXiv 1902.04760, for the
independence of branches). An empty branch is the identity (the skip connection). The output
angle of a pair is computed without cancellation from det(sum A_i) = sum_ij D(A_i, A_j),
D(A, B) = (a11 b22 + a22 b11 - 2 a12 b12) / 2, every cross term a sum of squares.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..numerics.moments import geometric_mean, sin_of_angle
from .finite import build_layers
from .layers import Layer, Moments, as_layer, check_gaussian_inputs
from .modules import BranchModule
from .network import Network

Tensor = torch.Tensor


@dataclass(frozen=True)
class Branches(Layer):
    """Branches of one input combined by a weighted sum or a concatenation.

    At infinite width the branches' outputs are independent given the input, so their kernels
    add with the squared weights (module docstring). ``branch_sum``, ``residual`` and
    ``parallel`` build one.

    Parameters
    ----------
    branches : tuple of Network
        The branches, at least one; an empty Network is the identity (the skip connection).
    weights : tuple of float
        One weight per branch, finite and >= 0.
    combine : {"sum", "concat"}
        A weighted sum ("sum"), or a concatenation along the features ("concat", weights
        1/sqrt(k) in the kernel: its mean).

    Raises
    ------
    ValueError
        An unknown ``combine``, no branch, a number of weights other than that of branches,
        or a weight that is negative or not finite.

    Examples
    --------
    >>> Branches = infnet.network.Branches
    >>> skip, branch = infnet.Network(), infnet.Network(infnet.Dense())
    >>> block = Branches((skip, branch), (1.0, 1.0))
    >>> block.combine, len(block.branches)
    ('sum', 2)
    >>> try:
    ...     Branches((skip,), (1.0,), combine="max")
    ... except ValueError:
    ...     print("refused")
    refused
    """

    branches: tuple[Network, ...]
    weights: tuple[float, ...]
    combine: str = "sum"

    def __post_init__(self):
        if self.combine not in ("sum", "concat"):
            raise ValueError(f"combine must be 'sum' or 'concat', got {self.combine!r}")
        if len(self.branches) < 1 or len(self.weights) != len(self.branches):
            raise ValueError("give one weight per branch, and at least one branch")
        for w in self.weights:
            if not (isinstance(w, (int, float)) and math.isfinite(w) and w >= 0):
                raise ValueError(f"branch weights must be finite numbers >= 0, got {w!r}")

    def __repr__(self) -> str:
        inner = ", ".join(repr(b) if b.layers else "identity" for b in self.branches)
        return f"{self.combine}({inner}; weights={self.weights})"

    def sublayers(self) -> tuple:
        return tuple((b.layers, w) for b, w in zip(self.branches, self.weights, strict=True))

    def gaussian_out(self, gaussian_in: bool) -> bool:
        return all([check_gaussian_inputs(b.layers, gaussian_in) for b in self.branches])

    @property
    def activations(self):
        return tuple(a for b in self.branches for a in b.activations)

    def _w2(self) -> list[float]:
        return [w * w for w in self.weights]

    def diagonal(self, m: Moments, like=None):
        outs, records = [], []
        for i, b in enumerate(self.branches):
            out, rec = b.diagonal_pass(m, None if like is None else like[1][i])
            outs.append(out)
            records.append(rec)
        w2 = self._w2()
        nngp = sum(w * o.nngp for w, o in zip(w2, outs, strict=True))
        ntk = sum(w * o.ntk for w, o in zip(w2, outs, strict=True))
        width = _width(outs, self.combine)
        return Moments(nngp, ntk, nngp, nngp, width), (nngp, records, [o.nngp for o in outs])

    def pairs(self, m: Moments, rec1, rec2) -> Moments:
        outs = [b.pairs_pass(m, r1, r2) for b, r1, r2 in zip(self.branches, rec1[1], rec2[1], strict=True)]
        w2 = self._w2()
        nngp = sum(w * o.nngp for w, o in zip(w2, outs, strict=True))
        ntk = sum(w * o.ntk for w, o in zip(w2, outs, strict=True))
        theta = _sum_angle(w2, outs, rec1[2], rec2[2], nngp)
        return Moments(nngp, ntk, rec1[0], rec2[0], _width(outs, self.combine), theta)

    def finite(self, n_in, ctx, *, readout=False, next_layer=None):
        mods, widths = [], []
        for b in self.branches:
            modules, n_out = build_layers(b.layers, n_in, ctx, readout=False)
            mods.append(torch.nn.Sequential(*modules) if modules else torch.nn.Identity())
            widths.append(n_out)
        if self.combine == "sum" and len(set(widths)) > 1:
            raise ValueError(f"the branches of {self!r:.80} end in widths {widths}: a sum needs one "
                             "width (give the hidden width of the input, e.g. a Dense layer of "
                             "that width before a residual block)")
        if self.combine == "concat" and len(set(widths)) > 1:
            raise ValueError(f"the branches of parallel(...) end in widths {widths}: its kernel "
                             "(the mean of the branches') needs equal widths")
        n_out = sum(widths) if self.combine == "concat" else widths[0]
        return BranchModule(mods, self.weights, self.combine), n_out


def _width(outs: list[Moments], combine: str) -> int | None:
    widths = [o.width for o in outs]
    if any(w is None for w in widths):
        return None
    return sum(widths) if combine == "concat" else widths[0]


def _sum_angle(w2, outs: list[Moments], q1s, q2s, nngp: Tensor) -> Tensor:
    """The angle of the summed pair, atan2(sqrt(det), Sigma), det without cancellation (module
    docstring): D(A, A) = q1 q2 sin^2 theta; for A != B,
    2 D(A, B) = (sqrt(a11 b22) - sqrt(a22 b11))^2
                + 2 sqrt(a11 a22 b11 b22) [sin^2((ta - tb)/2) + sin^2((ta + tb)/2)]."""
    terms = []
    for i, (wa, a) in enumerate(zip(w2, outs, strict=True)):
        ra = geometric_mean(q1s[i], q2s[i])
        terms.append((wa * ra * sin_of_angle(a.theta)) ** 2)
        for j in range(i + 1, len(outs)):
            wb, b = w2[j], outs[j]
            rb = geometric_mean(q1s[j], q2s[j])
            spread = (torch.sqrt(q1s[i] * q2s[j]) - torch.sqrt(q2s[i] * q1s[j])) ** 2
            mix = torch.sin((a.theta - b.theta) / 2) ** 2 + torch.sin((a.theta + b.theta) / 2) ** 2
            terms.append(wa * wb * (spread + 2 * ra * rb * mix))
    det = sum(terms)
    return torch.atan2(det.clamp(min=0).sqrt(), nngp)


def _network(branch) -> Network:
    if isinstance(branch, Network):
        return Network(*branch.layers, check=False)
    if isinstance(branch, (list, tuple)):
        return Network(*branch, check=False)
    return Network(as_layer(branch), check=False)


def branch_sum(*branches, weights=None) -> Branches:
    """The weighted sum of branches of one input. Kernels add with the squared weights.

    Parameters
    ----------
    *branches : Layer, Activation, str, sequence of them, or Network
        Each branch: a layer, a sequence of layers or a Network; ``()`` or ``[]`` is the
        identity.
    weights : sequence of float, optional
        One weight per branch, finite and >= 0; default all 1.

    Returns
    -------
    Branches
        The layer (``combine="sum"``).

    Raises
    ------
    ValueError
        No branch, a number of weights other than that of branches, or a weight that is
        negative or not finite.
    TypeError
        A branch holds something that is not a layer.

    Examples
    --------
    >>> block = infnet.network.branch_sum([], [infnet.Dense()], weights=[1.0, 0.5])
    >>> block.weights
    (1.0, 0.5)
    >>> net = infnet.serial(infnet.Dense(), block, "relu", infnet.Dense())
    >>> x = torch.tensor([[1.0, 1.0], [1.0, -1.0]], dtype=torch.float64)  # x.x/d = 1
    >>> [float(v) for v in net.kernel(x).nngp.diagonal()]  # (1 + 0.5^2) / 2
    [0.625, 0.625]
    """
    nets = tuple(_network(b) for b in branches)
    weights = tuple(float(w) for w in (weights if weights is not None else [1.0] * len(nets)))
    return Branches(nets, weights, "sum")


def residual(*layers, branch_weight: float = 1.0, skip_weight: float = 1.0) -> Branches:
    """A residual block: skip_weight * x + branch_weight * branch(x).

    Parameters
    ----------
    *layers : Layer, Activation or str
        The layers of the branch (e.g. ``residual(relu, Dense(1.0))`` for the pre-activation
        block).
    branch_weight, skip_weight : float
        The weights of the branch and of the skip connection, finite and >= 0.

    Returns
    -------
    Branches
        The block (``branch_sum([], layers, weights=(skip_weight, branch_weight))``).

    Raises
    ------
    ValueError
        A weight that is negative or not finite.
    TypeError
        A layer that is not one.

    Examples
    --------
    >>> block = infnet.network.residual("relu", infnet.Dense())
    >>> net = infnet.serial(infnet.Dense(), block, infnet.Dense())
    >>> x = torch.tensor([[1.0, 1.0], [1.0, -1.0]], dtype=torch.float64)  # x.x/d = 1
    >>> [float(v) for v in net.kernel(x).nngp.diagonal()]  # skip 1 + branch 1/2
    [1.5, 1.5]
    """
    return branch_sum([], list(layers), weights=(skip_weight, branch_weight))


def parallel(*branches) -> Branches:
    """Branches of one input concatenated along the features (equal widths).

    The kernel is the mean of the branches' kernels.

    Parameters
    ----------
    *branches : Layer, Activation, str, sequence of them, or Network
        Each branch: a layer, a sequence of layers or a Network; ``()`` or ``[]`` is the
        identity.

    Returns
    -------
    Branches
        The layer (``combine="concat"``, weights 1/sqrt(k)).

    Raises
    ------
    ValueError
        No branch.
    TypeError
        A branch holds something that is not a layer.

    Examples
    --------
    >>> x = torch.tensor([[1.0, 1.0], [1.0, -1.0], [1.4, 0.2]], dtype=torch.float64)
    >>> both = infnet.serial(infnet.Dense(), infnet.network.parallel("relu", "erf"), infnet.Dense())
    >>> relu = infnet.serial(infnet.Dense(), "relu", infnet.Dense()).kernel(x)
    >>> erf = infnet.serial(infnet.Dense(), "erf", infnet.Dense()).kernel(x)
    >>> bool(torch.allclose(both.kernel(x).nngp, (relu.nngp + erf.nngp) / 2))
    True
    """
    nets = tuple(_network(b) for b in branches)
    return Branches(nets, tuple(1.0 / math.sqrt(len(nets)) for _ in nets), "concat")
