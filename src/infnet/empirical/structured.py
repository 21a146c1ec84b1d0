"""Structured derivatives: the empirical NTK of an MLP without forming any Jacobian.

Novak, Sohl-Dickstein & Schoenholz, "Fast Finite Width Neural Tangent Kernel" (ICML 2022,
arXiv 2206.08720), section 4: for a dense layer y = W x + b, dF/dW_ij = g_i x_j with g = dF/dy, so
the layer's share of the NTK factors into a small matrix product and an inner product of inputs:

    Theta(x, x')_{ab} = sum_l (g_l(x) g_l(x')^T)_{ab} (x_l(x) . x_l(x') + [layer l has a bias])

where x_l is the input of layer l and g_l (O x width) the derivative of the O outputs with respect
to its output, backpropagated through the chain rule: g_L = I at the readout, through a dense
layer g <- g W, through an elementwise activation g <- g * phi'(z). The cost is about N O P for
the g's (one backward pass per output) and N^2 O^2 width for the products, against the
N^2 O^2 P of Jacobian contraction.

Applies to a (nested) ``nn.Sequential`` of ``nn.Linear`` and elementwise modules: the torch
activations listed in ``ELEMENTWISE``, ``Elementwise`` (any elementwise callable, such as an infnet
activation, as a module), or any parameter-free module with a class attribute ``elementwise =
True``. phi' comes from ``torch.func.vjp`` of the module with a vector of ones, so any elementwise
function works.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import vjp

Tensor = torch.Tensor

ELEMENTWISE = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish,
               nn.Sigmoid, nn.Tanh, nn.Softplus, nn.Softsign, nn.Hardtanh, nn.Hardsigmoid,
               nn.Hardswish, nn.Hardshrink, nn.Softshrink, nn.Tanhshrink, nn.LogSigmoid,
               nn.Threshold, nn.Identity, nn.RReLU, nn.Dropout, nn.AlphaDropout)


class Elementwise(nn.Module):
    """An elementwise function as a module, e.g. ``Elementwise(infnet.activation("swish"))``.

    Marked ``elementwise``, so the structured derivatives of ``empirical_ntk`` apply to MLPs
    made with it (what ``Network.finite`` builds for activations).

    Parameters
    ----------
    fn : callable
        An elementwise torch function, such as an infnet Activation.

    Examples
    --------
    >>> from infnet.empirical import Elementwise
    >>> module = Elementwise(infnet.activation("relu"))
    >>> print(module)
    Elementwise(relu)
    >>> module(torch.tensor([-1.0, 2.0], dtype=torch.float64)).tolist()
    [0.0, 2.0]
    """

    elementwise = True

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x: Tensor) -> Tensor:
        return self.fn(x)

    def extra_repr(self) -> str:
        return getattr(self.fn, "name", getattr(self.fn, "__name__", repr(self.fn)))


def _is_linear(m: nn.Module) -> bool:
    return isinstance(m, nn.Linear) and type(m).forward is nn.Linear.forward


def _is_elementwise(m: nn.Module) -> bool:
    marked = type(m) in ELEMENTWISE or getattr(type(m), "elementwise", False) is True
    return marked and next(m.parameters(), None) is None and next(m.buffers(), None) is None


def _hooked(m: nn.Module) -> bool:
    return bool(m._forward_hooks or m._forward_pre_hooks)


def mlp_layers(model: nn.Module) -> list[nn.Module] | None:
    """The layers of ``model`` if it is a (nested) Sequential of Linear and elementwise modules
    (without forward hooks, which the structured pass would skip)."""
    if _hooked(model):
        return None
    if _is_linear(model):
        return [model]
    if type(model) is not nn.Sequential:
        return None
    layers = []
    for m in model.children():
        inner = mlp_layers(m) if type(m) is nn.Sequential else [m]
        if inner is None or not all((_is_linear(c) or _is_elementwise(c)) and not _hooked(c)
                                    for c in inner):
            return None
        layers += inner
    return layers if any(_is_linear(m) for m in layers) else None


def check_mlp_input(layers: list[nn.Module], x: Tensor) -> None:
    """Inputs (N, d) with d the in_features of the first Linear (ValueError naming both)."""
    first = next(m for m in layers if _is_linear(m))
    if x.dim() != 2 or x.shape[1] != first.in_features:
        raise ValueError(f"inputs of shape {tuple(x.shape)} do not fit the MLP: its first Linear "
                         f"layer {first} expects inputs of shape (N, {first.in_features})")


def _trainable(p: Tensor | None) -> bool:
    return p is not None and p.requires_grad


def value_and_derivative(m: nn.Module, z: Tensor) -> tuple[Tensor, Tensor]:
    """phi(z) and phi'(z) of an elementwise module: the vjp with ones is the Jacobian's diagonal."""
    y, pullback = vjp(lambda t: m(t.clone()), z)  # clone: in-place modules (ReLU(inplace=True))
    if y.shape != z.shape:
        raise ValueError(f"module {m} is not elementwise: it maps shape {tuple(z.shape)} to "
                         f"{tuple(y.shape)}")
    return y.detach(), pullback(torch.ones_like(y))[0].detach()


class StructuredDerivatives:
    """Structured derivatives of an MLP: per dense layer, its inputs x_l and the derivatives g_l."""

    shares_features = True

    def __init__(self, layers: list[nn.Module]):
        self.layers = layers
        trainable = [i for i, m in enumerate(layers)
                     if _is_linear(m) and (_trainable(m.weight) or _trainable(m.bias))]
        self.first = trainable[0] if trainable else len(layers)

    def features(self, x: Tensor) -> list[tuple[Tensor, Tensor, bool, bool]]:
        """[(x_l, g_l, weight trainable, bias trainable)] for the trainable dense layers."""
        saved, h = [], x
        with torch.no_grad():
            for m in self.layers:
                if _is_linear(m):
                    saved.append(h)
                    h = F.linear(h, m.weight, m.bias)
                else:
                    h, dphi = value_and_derivative(m, h)
                    saved.append(dphi)
            n, o = h.shape
            g = torch.eye(o, dtype=h.dtype, device=h.device).expand(n, o, o)
            pieces = []
            for i in range(len(self.layers) - 1, self.first - 1, -1):
                m = self.layers[i]
                if not _is_linear(m):
                    g = g * saved[i].unsqueeze(1)
                    continue
                if _trainable(m.weight) or _trainable(m.bias):
                    pieces.append((saved[i], g, _trainable(m.weight), _trainable(m.bias)))
                if i > self.first:
                    g = g @ m.weight
        return pieces

    left = right = features

    def contract(self, f1, f2, trace: bool) -> Tensor:
        """sum_l (g_l g_l'^T) (x_l . x_l' + bias), or its mean over a = b when ``trace``."""
        theta = None
        for (x1, g1, weight, bias), (x2, g2, _, _) in zip(f1, f2, strict=True):
            (n1, o, _), n2 = g1.shape, g2.shape[0]
            inputs = x1 @ x2.T if weight else torch.zeros((n1, n2), dtype=g1.dtype, device=g1.device)
            if bias:
                inputs = inputs + 1.0
            if trace:
                term = (g1.reshape(n1, -1) @ g2.reshape(n2, -1).T) * inputs / o
            else:
                gg = (g1.reshape(n1 * o, -1) @ g2.reshape(n2 * o, -1).T).reshape(n1, o, n2, o)
                term = gg.permute(0, 2, 1, 3) * inputs[:, :, None, None]
            theta = term if theta is None else theta + term
        return theta
