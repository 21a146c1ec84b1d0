"""Very deep networks of the marginal majority class (f'(1) = 1: ReLU and every positively
homogeneous unit), in a number of table compositions that grows like log(depth).

Their correlations creep to 1 only polynomially (theta_L ~ 3 pi / L for ReLU), never become
stationary and have no Koenigs linearization, so ``deep_kernels`` would iterate them layer by
layer. Instead, the depth-2^k map of the angle,

    T_2^k : theta -> (theta_L, A_L, B_L),  S_L = cos(theta_L),  K_L = A_L + B_L K_0,

(the NTK recursion K_l = S_l + f'(S_(l-1)) K_(l-1) is affine in K_0), is tabulated as a function
of v = log(theta) + SLOPE theta on [v(THETA_MIN), v(pi)], where it is smooth: the transition
sits at theta ~ 1/L whatever L (a table in theta itself would need resolution 1/L), and the
linear term resolves theta ~ pi. Each level is the previous one composed with itself (repeated
squaring):

    theta_2L = theta_L(theta_L(t)),  A_2L = A_L(theta_L) + B_L(theta_L) A_L,  B_2L = B_L(theta_L) B_L,

starting from one layer taken from the activation's angle form (``Activation.angle_form``: the
output angle to full relative accuracy near 0, where arccos of the dual loses every digit; the
quadrature's complement keeps only ~eps / theta, too little for a table in log theta). A depth L
is the composition of the levels of its binary digits. Below THETA_MIN the maps are the identity
to ~L^2 theta ~ 1e-18.
Accuracy: each level doubles the error it inherits where the map is near the identity, so the
relative error grows like 1e-14 L (measured against 40-digit iteration of ReLU, NTK: 6e-13 at
depth 300, 1.1e-11 at 3000, 1.9e-10 at 2e4), still below plain float iteration near rho = 1
(5e-7 at depth 3000).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..numerics.table import TOLERANCE, AngleTable

Tensor = torch.Tensor

THETA_MIN = 1e-30
#: the table variable is v = log(theta) + SLOPE theta: logarithmic near theta = 0, where the
#: transition of depth L sits (theta ~ 1/L), and linear near theta = pi, where a table in log
#: theta alone needs 2^16 cubic pieces at the first levels, v 2^14
SLOPE = 1.0
_V_MIN, _V_MAX = math.log(THETA_MIN) + SLOPE * THETA_MIN, math.log(math.pi) + SLOPE * math.pi


def to_v(theta):
    """v = log(theta) + SLOPE theta (tensors)."""
    return theta.log() + SLOPE * theta


def from_v(v):
    """The theta of v: Newton's method on w = log(theta), h(w) = w + SLOPE e^w - v, convex and
    increasing, from a start right of the root (where it converges monotonically)."""
    w = torch.where(v > 1, torch.minimum(v, ((v.clamp(min=1) + 1) / SLOPE).log()), v)
    for _ in range(8):
        e = SLOPE * w.exp()
        w = w - (w + e - v) / (1 + e)
    return w.exp()


def _to_t(v: Tensor) -> Tensor:
    """v to the table variable in [0, pi]."""
    return (v - _V_MIN) * (math.pi / (_V_MAX - _V_MIN))


def _to_v(t: np.ndarray) -> np.ndarray:
    return _V_MIN + (_V_MAX - _V_MIN) * t / math.pi


class MarginalDepth:
    """Depth-L (S, K) maps of a marginal-majority dual by repeated squaring of tables in log theta."""

    def __init__(self, lim):
        self.lim = lim
        self.levels: list[AngleTable] = []

    def one_layer(self, theta: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(theta', A_1 = cos theta', B_1 = f'(cos theta)) of one normalized layer."""
        act = self.lim.activation
        one = torch.ones((), dtype=theta.dtype)
        n2 = float(act.nngp_map(one, one, one))
        q = torch.full_like(theta, n2)
        ones = torch.ones_like(theta)
        _, kdot, out = act.pair_map(ones, ones, torch.cos(theta), theta, q, q)
        return out, torch.cos(out), kdot / n2

    def _level(self, k: int) -> AngleTable:
        while len(self.levels) <= k:
            j = len(self.levels)
            if j == 0:
                def fn(t: np.ndarray) -> np.ndarray:
                    theta = from_v(torch.from_numpy(_to_v(t)))
                    out, a, b = self.one_layer(theta)
                    return torch.stack([to_v(out), a, b], dim=-1).numpy()
            else:
                prev = self.levels[j - 1]

                def fn(t: np.ndarray, prev=prev) -> np.ndarray:
                    s = torch.from_numpy(_to_v(t))
                    u1, a1, b1 = _apply(prev, s)
                    u2, a2, b2 = _apply(prev, u1)
                    return torch.stack([u2, a2 + b2 * a1, b2 * b1], dim=-1).numpy()
            # each level doubles the error it inherits where the map is near the identity
            # (small theta): ~1e-14 2^j relative, which the fit must accept
            self.levels.append(AngleTable(fn, tol=max(TOLERANCE, 2e-14 * 2.0**j)))
        return self.levels[k]

    def kernels(self, S: Tensor, K: Tensor, depth: int,
                theta: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(S_L, K_L) from (S_0, K_0) = (S, K) after ``depth`` layers; ``theta``: the angle of S
        when known more accurately than arccos(S) (near S = 1)."""
        if theta is None:
            theta = torch.atan2(((1 - S) * (1 + S)).clamp(min=0).sqrt(), S)
        small = theta < THETA_MIN
        s = to_v(theta.clamp(min=THETA_MIN))
        A = torch.zeros_like(S)
        B = torch.ones_like(S)
        k = 0
        while depth >> k:
            if (depth >> k) & 1:
                u, a, b = _apply(self._level(k), s)
                A = a + b * A
                B = b * B
                s = u
            k += 1
        S_out = torch.where(small, S, torch.cos(from_v(s)))
        K_out = torch.where(small, depth * S + K, A + B * K)
        return S_out, K_out


def _apply(table: AngleTable, s: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    u, a, b = table.evaluate_theta(_to_t(s).clamp(0.0, math.pi))
    return u, a, b
