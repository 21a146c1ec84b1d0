"""Empirical NTK of any function by automatic differentiation (torch.func).

Two implementations of Theta(x, x')_{ab} = sum_p dF_a(x)/dtheta_p dF_b(x')/dtheta_p from Novak,
Sohl-Dickstein & Schoenholz, "Fast Finite Width Neural Tangent Kernel" (ICML 2022,
arXiv 2206.08720), section 3; docs/theory/finite-width.md#jacobian-contraction-and-ntk-vector-products:

- Jacobian contraction: per-sample Jacobians J(x) (O x P) by reverse mode, then
  Theta = J(x) J(x')^T summed over the parameter tensors. Cost N O [FP] + N^2 O^2 P.
- NTK-vector products: Theta(x, x') v = J(x) (J(x')^T v), a vector-Jacobian product followed by
  a Jacobian-vector product, with v over the standard basis of the outputs of x'. Cost N^2 O [FP].

``fn(params, x)`` maps a batch (N, ...) to outputs (N, ...), flattened to (N, O); ``params`` is a
dict of tensors. Each implementation exposes ``left(x1_block)``, ``right(x2_block)`` and
``contract(left, right, trace)``, which the blocked driver in ``ntk.py`` calls.
"""

from __future__ import annotations

import torch
from torch.func import jacrev, jvp, vjp, vmap

Tensor = torch.Tensor
Params = dict[str, Tensor]


def one_sample(fn):
    """``fn`` on one sample without its batch axis, outputs flattened: (O,)."""

    def f(params: Params, x: Tensor) -> Tensor:
        return fn(params, x.unsqueeze(0)).reshape(-1)

    return f


def flat(jac: Params, n: int, o: int) -> dict[str, Tensor]:
    """Jacobians (N, O, *shape) as (N, O, P_k) per parameter tensor."""
    return {k: v.reshape(n, o, -1) for k, v in jac.items()}


def contract_jacobians(j1: dict[str, Tensor], j2: dict[str, Tensor], trace: bool) -> Tensor:
    """Theta = sum_k J1_k J2_k^T (FFW-NTK eq. 2): (N1, N2, O, O), or its mean over a = b."""
    theta = None
    for k, a in j1.items():
        b = j2[k]
        if trace:
            term = torch.einsum("nap,map->nm", a, b) / a.shape[1]
        else:
            n1, o, _ = a.shape
            term = (a.reshape(n1 * o, -1) @ b.reshape(b.shape[0] * o, -1).T)
            term = term.reshape(n1, o, b.shape[0], o).permute(0, 2, 1, 3)
        theta = term if theta is None else theta + term
    return theta


class JacobianContraction:
    """Jacobian contraction: per-sample Jacobians by ``vmap(jacrev)``, then their inner products."""

    shares_features = True

    def __init__(self, fn, params: Params):
        self.fn, self.params = fn, params

    def jacobians(self, x: Tensor) -> dict[str, Tensor]:
        """dF_a(x_n)/dtheta for each parameter tensor: (N, O, P_k)."""
        jac = vmap(jacrev(one_sample(self.fn)), in_dims=(None, 0))(self.params, x)
        o = next(iter(jac.values())).shape[1]
        return flat(jac, x.shape[0], o)

    left = right = jacobians

    def contract(self, j1, j2, trace: bool) -> Tensor:
        return contract_jacobians(j1, j2, trace)


class NTKVectorProducts:
    """NTK-vector products: Theta(x1, x2) e_{m,b} = J(x1) (J(x2)^T e_{m,b}), vmapped over (m, b).

    ``right`` holds the vector-Jacobian products J(x2)^T e_{m,b} (one vjp per sample, vmapped over
    the O basis vectors of its outputs); ``contract`` pushes each through a Jacobian-vector
    product on the x1 block, so no Jacobian of x1 is ever formed.
    """

    shares_features = False

    def __init__(self, fn, params: Params):
        self.fn, self.params = fn, params

    def left(self, x: Tensor) -> Tensor:
        return x

    def right(self, x: Tensor) -> dict[str, Tensor]:
        """J(x_m)^T e_b for every sample m and output b: dict of (N2, O, *shape)."""
        f = one_sample(self.fn)

        def cotangents(xm):
            out, pullback = vjp(lambda p: f(p, xm), self.params)
            basis = torch.eye(out.shape[0], dtype=out.dtype, device=out.device)
            return vmap(pullback)(basis)[0]

        return vmap(cotangents)(x)

    def contract(self, x1: Tensor, cot: dict[str, Tensor], trace: bool) -> Tensor:
        n2, o = next(iter(cot.values())).shape[:2]
        tangents = {k: v.reshape(n2 * o, *v.shape[2:]) for k, v in cot.items()}

        def push(t):
            return jvp(lambda p: self.fn(p, x1), (self.params,), (t,))[1].reshape(x1.shape[0], o)

        theta = vmap(push)(tangents)  # (N2 O, N1, O): row (m, b), entry (n, a)
        theta = theta.reshape(n2, o, x1.shape[0], o).permute(2, 0, 3, 1)
        return theta.diagonal(dim1=2, dim2=3).mean(-1) if trace else theta
