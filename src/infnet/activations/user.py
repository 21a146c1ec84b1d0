"""Activations from a user's function, checked once where they are given.

A Gaussian pre-activation takes every real value, so phi must be a function of one real
variable, applied elementwise, defined (not NaN) on the whole line, and differentiable by
autograd unless its derivative is given. ``from_function`` checks each of these on probes and
says what to change; it then finds the points where phi or phi' is not smooth
(``smoothness.breakpoints``), so that the quadrature is exact without declared kinks, whether
phi jumps there (its NTK map then needs a closed form) and where |phi| or |phi'| is singular
(the orders that decide which Gaussian expectations diverge).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch

from ..numerics.smoothness import SPAN, Breakpoint, breakpoints, nan_point
from .base import Activation, KernelFn
from .checks import Singularity

Tensor = torch.Tensor

_ADVICE = ("write it with torch operations on tensors (torch.tanh, torch.where, torch.clamp), "
           "not numpy, math or Python control flow on values")


def from_function(fn: Callable[[Tensor], Tensor], *, kinks: Sequence[float] | None = None,
                  name: str | None = None, jumps: bool | None = None,
                  derivative: Callable[[Tensor], Tensor] | None = None,
                  kernel: KernelFn | None = None, formula: str = "", source: str = "user",
                  ) -> Activation:
    """An Activation from a user's torch function; it gets every generic capability.

    Parameters
    ----------
    fn : callable
        phi, mapping a float64 tensor elementwise to a tensor of its shape.
    kinks : sequence of float, optional
        Points where phi or phi' is not smooth. Found automatically on [-1000, 1000] (and
        added to those given), so they are needed only farther out.
    name : str, optional
        Defaults to the function's ``__name__``.
    jumps : bool, optional
        Whether phi itself is discontinuous; detected when not given.
    derivative : callable, optional
        phi'; autograd of ``fn`` when absent (then ``fn`` must be differentiable by torch).
    kernel : callable, optional
        ``kernel(q1, q2, c) -> (K, Kdot)`` in closed form (needed for Kdot of a phi that jumps).

    Raises
    ------
    TypeError
        ``fn`` is not callable, fails on a tensor, returns no tensor of the input's shape, is
        not elementwise, or cannot be differentiated by autograd and no derivative is given.
    ValueError
        ``fn`` returns NaN somewhere on the real line, or a kink is not a finite number.
    """
    if not callable(fn):
        raise TypeError(f"expected a callable activation, got {type(fn).__name__}")
    label = name or getattr(fn, "__name__", "custom")
    _check_values(fn, label)
    _check_elementwise(fn, label)
    given = () if kinks is None else tuple(float(k) for k in kinks)
    if any(not math.isfinite(k) for k in given):
        raise ValueError(f"kinks must be finite numbers, got {list(kinks)}")
    act = Activation(
        fn=lambda x, **_: fn(x), name=label, kinks=tuple(sorted(given)), jumps=bool(jumps),
        closed_form=(lambda q1, q2, c, **_: kernel(q1, q2, c)) if kernel else None,
        derivative_fn=(lambda x, **_: derivative(x)) if derivative else None,
        formula=formula, source=source)
    _check_derivative(act, label, given_derivative=derivative is not None)
    return _with_breakpoints(act, given, jumps)


def _call(fn, x: Tensor, label: str) -> Tensor:
    try:
        out = fn(x)
    except Exception as err:
        raise TypeError(f"activation {label!r} failed on a float64 tensor ({type(err).__name__}: "
                        f"{err}); {_ADVICE}") from err
    if not torch.is_tensor(out):
        raise TypeError(f"activation {label!r} returned {type(out).__name__}, not a torch tensor; "
                        f"{_ADVICE}")
    if out.shape != x.shape:
        raise TypeError(f"activation {label!r} maps a tensor of shape {tuple(x.shape)} to shape "
                        f"{tuple(out.shape)}: it must act elementwise, keeping the shape")
    if not torch.is_floating_point(out):
        out = out.to(torch.float64)
    return out


def _check_values(fn, label: str) -> None:
    _call(fn, torch.linspace(-3, 3, 7, dtype=torch.float64), label)
    x = nan_point(lambda v: _call(fn, torch.from_numpy(np.asarray(v, dtype=np.float64)),
                                  label).numpy())
    if x is not None:
        raise ValueError(f"activation {label!r} returns NaN at x = {x:.6g}: a Gaussian "
                         "pre-activation takes every real value, so phi must be defined on the "
                         "whole real line (e.g. log(1 + |x|) rather than log(x))")


def _check_elementwise(fn, label: str) -> None:
    """phi(x)[i] may depend on x[i] alone: the same values for a permuted, split or reshaped
    input (to 1e-13: vectorized and scalar code paths may round differently)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(48, generator=g, dtype=torch.float64) * 2
    y = _call(fn, x, label)
    perm = torch.randperm(48, generator=g)
    tries = [(_call(fn, x[perm], label), y[perm]), (_call(fn, x[:5], label), y[:5]),
             (_call(fn, x.reshape(6, 8), label).reshape(-1), y),
             (torch.cat([_call(fn, x[i:i + 1], label) for i in range(3)]), y[:3])]
    for got, want in tries:
        if not torch.allclose(got, want, rtol=1e-13, atol=1e-300, equal_nan=True):
            raise TypeError(f"activation {label!r} is not elementwise: its value at one entry "
                            "depends on the other entries of its input (e.g. x - x.mean(), "
                            "x / x.norm()); infinite-width kernels need phi applied to each "
                            "pre-activation on its own")


def _check_derivative(act: Activation, label: str, given_derivative: bool) -> None:
    x = torch.linspace(-3, 3, 7, dtype=torch.float64)
    try:
        d = act.derivative(x)
    except Exception as err:
        what = "the given derivative" if given_derivative else "autograd"
        raise TypeError(f"{what} cannot differentiate activation {label!r} ({type(err).__name__}: "
                        f"{err}); {_ADVICE}, or give derivative=... (a torch function of x)"
                        ) from err
    if not torch.is_tensor(d) or d.shape != x.shape:
        raise TypeError(f"the derivative of activation {label!r} must map a tensor to a tensor "
                        "of its shape")


def _numpy(fn) -> Callable[[np.ndarray], np.ndarray]:
    def g(v):
        with torch.no_grad():
            return fn(torch.from_numpy(np.asarray(v, dtype=np.float64))).detach().numpy()
    return g


def _with_breakpoints(act: Activation, given: tuple[float, ...], jumps: bool | None) -> Activation:
    """act with the breakpoints of phi and phi' on [-SPAN, SPAN] added to its kinks, jumps and
    singularities recorded."""
    of_phi, _ = breakpoints(_numpy(act))
    of_derivative, _ = breakpoints(_numpy(act.derivative))
    found = sorted({b.at for b in of_phi} | {b.at for b in of_derivative})
    kinks = sorted(set(given) | {k for k in found if not _near_any(k, given)})
    if jumps is None:
        jumps = any(b.jump for b in of_phi)
    singular = _singularities(of_phi, of_derivative)
    from dataclasses import replace

    return replace(act, kinks=tuple(kinks), jumps=jumps, singular=singular)


def _near_any(x: float, points: Sequence[float]) -> bool:
    return any(abs(x - p) <= 1e-7 * max(1.0, abs(p)) for p in points)


def _singularities(of_phi: list[Breakpoint], of_derivative: list[Breakpoint]
                   ) -> tuple[Singularity, ...]:
    orders: dict[float, list[float]] = {}
    for i, points in enumerate((of_phi, of_derivative)):
        for b in points:
            if b.order < 0:
                orders.setdefault(b.at, [0.0, 0.0])[i] = b.order
    return tuple(Singularity(at, *o) for at, o in sorted(orders.items()))


__all__ = ["SPAN", "from_function"]
