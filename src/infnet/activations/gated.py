"""Gated linear units: the product of two activations of independent pre-activations.

GLU(x) = value(a) * gate(b) with x = [a, b] split on the last axis (Dauphin et al. 2017;
Shazeer 2020, arXiv 2002.05202). The two halves come from independent weights, so at infinite
width K = K_value K_gate, and the NTK passes through as
Theta_out = (Kdot_value K_gate + K_value Kdot_gate) Theta_in (docs/theory/closed-forms.md#gated-units).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from .base import Activation
from .catalog import activation, register
from .checks import _check_moments

Tensor = torch.Tensor


@dataclass(frozen=True)
class Gated(Activation):
    value: Activation | None = None
    gate: Activation | None = None

    def __call__(self, x: Tensor) -> Tensor:
        if x.shape[-1] % 2:
            raise ValueError(f"{self.name} splits the last axis in two halves; got size "
                             f"{x.shape[-1]}, which is odd")
        a, b = x.chunk(2, dim=-1)
        return self.value(a) * self.gate(b)

    def scaled(self, gain: float) -> Gated:
        return replace(self, value=self.value.scaled(gain))

    def derivative(self, x: Tensor) -> Tensor:
        raise TypeError(f"{self.name} is a function of two pre-activations, not elementwise: "
                        "it has no scalar derivative")

    def kernel(self, q1, q2, c, *, check: bool = True):  # (always checked)
        q1, q2, c = _check_moments(q1, q2, c)
        kv, kdv = self.value.kernel(q1, q2, c)
        kg, kdg = self.gate.kernel(q1, q2, c)
        return self._checked(kv * kg, kdv * kg + kv * kdg, q1, q2)

    def numerical_kernel(self, q1, q2, c, nodes_angle=None, nodes_radius=None):
        kv, kdv = self.value.numerical_kernel(q1, q2, c, nodes_angle, nodes_radius)
        kg, kdg = self.gate.numerical_kernel(q1, q2, c, nodes_angle, nodes_radius)
        return kv * kg, kdv * kg + kv * kdg

    def pair_map(self, q1, q2, c, theta, q1_out, q2_out):
        """Each branch on the pairs (with its own output angle), then K = K_v K_g and
        rho' = rho_v rho_g, whose complements are sums of nonnegative terms:
        1 -+ rho' = 2 [s_v c_g + c_v s_g], 2 [c_v c_g + s_v s_g], s = sin^2(theta/2), c = cos^2."""
        parts = [branch.pair_map(q1, q2, c, theta, branch.variance_map(q1),
                                 branch.variance_map(q2)) for branch in (self.value, self.gate)]
        (kv, kdv, tv), (kg, kdg, tg) = parts
        K, Kdot = self._checked(kv * kg, kdv * kg + kv * kdg, *torch.broadcast_tensors(q1, q2))
        sv, cv = torch.sin(tv / 2) ** 2, torch.cos(tv / 2) ** 2
        sg, cg = torch.sin(tg / 2) ** 2, torch.cos(tg / 2) ** 2
        out = 2 * torch.atan2((sv * cg + cv * sg).sqrt(), (cv * cg + sv * sg).sqrt())
        return K, Kdot, out

    def nngp_map(self, q1, q2, c):
        return self.value.nngp_map(q1, q2, c) * self.gate.nngp_map(q1, q2, c)

    def variance_map(self, q):
        return self.value.variance_map(q) * self.gate.variance_map(q)

    def diagonal_kernel(self, q):
        kv, kdv = self.value.diagonal_kernel(q)
        kg, kdg = self.gate.diagonal_kernel(q)
        return kv * kg, kdv * kg + kv * kdg

    @property
    def is_closed_form(self) -> bool:
        return self.value.is_closed_form and self.gate.is_closed_form


def _gated_factory(value: str, gate: str):
    def build(entry, params):
        v = activation(value)
        g = activation(gate, **params)
        return Gated(fn=lambda x, **_: x, name=entry.name, params=params,
                     kinks=tuple(sorted(set(v.kinks) | set(g.kinks))), formula=entry.formula,
                     source=entry.source, value=v, gate=g)
    return build


_SHAZEER = "Shazeer 2020, GLU variants improve transformer (arXiv 2002.05202)"
for _name, _value, _gate, _formula, _src, _defaults in [
    ("glu", "identity", "sigmoid", "a * sigmoid(b), x = [a, b]", "Dauphin et al. 2017", {}),
    ("bilinear", "identity", "identity", "a * b", _SHAZEER, {}),
    ("reglu", "identity", "relu", "a * relu(b)", _SHAZEER, {}),
    ("geglu", "identity", "gelu", "a * gelu(b)", _SHAZEER, {}),
    ("swiglu", "identity", "swish", "a * swish_beta(b)", _SHAZEER, {"beta": 1.0}),
]:
    register(_name, lambda x: x, formula=_formula, source=_src, defaults=_defaults,
             factory=_gated_factory(_value, _gate))
