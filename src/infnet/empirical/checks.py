"""Checks of models and inputs before an empirical NTK, and the cost census of one forward pass.

The empirical NTK Theta(x, x') = J(x) J(x')^T is a function of one deterministic map from a
sample to its outputs. Modules whose output is random (dropout in training mode) or depends on
the other samples of the batch (batch normalization with batch statistics) break that, and are
refused here with the module's name and what to do. The census measures what the cost model of
Novak, Sohl-Dickstein & Schoenholz (ICML 2022, arXiv 2206.08720) needs: the FLOPs [FP] of the
forward pass of one sample and the number of entries of its intermediate tensors.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import FlopCounterMode

Tensor = torch.Tensor


def check_module_state(model: nn.Module) -> None:
    """Refuse modules whose output is random or couples the samples of a batch (ValueError)."""
    for name, m in model.named_modules():
        where = f"module '{name or type(model).__name__}' ({type(m).__name__})"
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            if m.training:
                raise ValueError(f"{where} is in training mode: it normalizes with the statistics of "
                                 "the batch (and updates its running statistics), so outputs depend "
                                 "on the other samples and the NTK is not a kernel. Call model.eval() "
                                 "first, or remove the module.")
            if not m.track_running_stats or m.running_mean is None:
                raise ValueError(f"{where} has track_running_stats=False: it uses batch statistics "
                                 "even in eval mode, so outputs depend on the other samples. Remove it "
                                 "or use a per-sample normalization (LayerNorm, GroupNorm).")
        random = isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0
        if m.training and (random or isinstance(m, nn.RReLU)):
            raise ValueError(f"{where} is in training mode: its output is random, so the NTK is "
                             "not defined. Call model.eval() first (dropout is then the identity), "
                             "or remove the module.")


def check_inputs(x1: Tensor, x2: Tensor | None) -> None:
    """x1, x2: tensors with a leading batch axis, same dtype and device, finite (ValueError)."""
    for name, x in (("x1", x1), ("x2", x2)):
        if x is None and name == "x2":
            continue
        if not isinstance(x, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() == 0 or x.shape[0] == 0:
            raise ValueError(f"{name} must have a leading batch axis with at least one sample, "
                             f"got shape {tuple(x.shape)}")
        if x.is_floating_point() and not bool(torch.isfinite(x).all()):
            raise ValueError(f"{name} contains nan or inf")
    if x2 is not None:
        if x1.dtype != x2.dtype or x1.device != x2.device:
            raise ValueError(f"x1 and x2 must have the same dtype and device, got x1: {x1.dtype} on "
                             f"{x1.device}, x2: {x2.dtype} on {x2.device}")
        if x1.shape[1:] != x2.shape[1:]:
            raise ValueError(f"x1 and x2 must have the same shape per sample, got x1 "
                             f"{tuple(x1.shape)} and x2 {tuple(x2.shape)}")


def check_params(params: dict[str, Tensor], x: Tensor) -> None:
    """Trainable parameters exist, live on the inputs' device, and share their float dtype."""
    if not params:
        raise ValueError("the model has no parameters with requires_grad=True: the NTK sums over "
                         "trainable parameters, so there is nothing to differentiate")
    for name, p in params.items():
        if not p.is_floating_point():
            raise ValueError(f"parameter '{name}' has dtype {p.dtype}: only real floating "
                             "parameters can be differentiated")
        if p.device != x.device:
            raise ValueError(f"parameter '{name}' is on {p.device} but the inputs are on "
                             f"{x.device}: move one of them (model.to(x.device))")
        if x.is_floating_point() and p.is_floating_point() and p.dtype != x.dtype:
            raise ValueError(f"parameter '{name}' is {p.dtype} but the inputs are {x.dtype}: "
                             f"convert one of them (x.to({p.dtype}) or model.to({x.dtype}))")


@dataclass(frozen=True)
class Census:
    """One sample's forward pass: outputs O, FLOPs [FP], entries of all intermediate tensors."""

    outputs: int
    flops: int
    entries: int
    dtype: torch.dtype


class _Entries(TorchDispatchMode):
    """Counts the entries of the new tensors produced by operations (views of inputs excluded)."""

    def __init__(self):
        super().__init__()
        self.entries = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        seen = {t.untyped_storage().data_ptr() for t in tree_leaves((args, kwargs))
                if isinstance(t, Tensor)}
        self.entries += sum(t.numel() for t in tree_leaves(out)
                            if isinstance(t, Tensor) and t.untyped_storage().data_ptr() not in seen)
        return out


def census(fn, params: dict[str, Tensor], x: Tensor) -> Census:
    """Run ``fn(params, x[:1])`` twice and beside another sample: check its output, its
    determinism and that the first sample's output does not depend on the batch; count its cost.

    Errors of the model become a ValueError naming the input shape; outputs must be one real
    floating tensor with the batch axis first (further axes are flattened into the O outputs).
    """
    probe = x[:1]
    # a second, different sample beside the first: its output must not change the first's
    other = x[1:2] if x.shape[0] > 1 else (0.5 * probe + 1 if probe.is_floating_point() else None)
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as flops, _Entries() as entries:
            out = fn(params, probe)
        with torch.no_grad():
            again = fn(params, probe)
            pair = None if other is None else fn(params, torch.cat([probe, other]))
    except Exception as e:  # the model's own error, with the shapes that caused it
        raise ValueError(f"the model failed on inputs of shape {tuple(probe.shape)} (one sample of "
                         f"x1, shape {tuple(x.shape)}): {type(e).__name__}: {e}") from e
    if not isinstance(out, Tensor):
        raise ValueError(f"the model must return one tensor of outputs, got {type(out).__name__}")
    if not out.is_floating_point():
        raise ValueError(f"the model's outputs have dtype {out.dtype}: the NTK needs real floating "
                         "outputs that depend differentiably on the parameters")
    if out.dim() == 0 or out.shape[0] != 1 or out.numel() == 0:
        raise ValueError(f"the model must map a batch of shape {tuple(probe.shape)} to outputs of "
                         f"shape (1, ...) with at least one output, got {tuple(out.shape)}")
    # rounding differs between batch sizes (BLAS and convolution kernels pick their blocking
    # by shape): a tolerance of a thousand roundings of the outputs' dtype, and at least 1e-6
    tol = max(1e-6, 1e3 * torch.finfo(out.dtype).eps)
    scale = float(out.detach().abs().nan_to_num(0.0, posinf=0.0).max())  # (NaN: raised below)
    atol = tol * scale + 1e-12
    if not torch.allclose(out, again, rtol=1e-6, atol=1e-12, equal_nan=True):
        raise ValueError("the model gave different outputs on the same input: its forward pass is "
                         "random (e.g. F.dropout with training=True, in-place randomness such as "
                         "bernoulli_). The NTK needs a deterministic model: call model.eval() or "
                         "remove the random operation.")
    if isinstance(pair, Tensor) and pair.shape[1:] == out.shape[1:] and pair.shape[0] == 2 and \
            not torch.allclose(pair[:1], out, rtol=tol, atol=atol, equal_nan=True):
        raise ValueError("the model's output for one sample changes with the other samples of "
                         "the batch (e.g. y - y.mean(0), a normalization over the batch axis): "
                         "the NTK of such a model is not a kernel of pairs of inputs. Make the "
                         "forward pass act on each sample on its own.")
    if not bool(torch.isfinite(out).all()):
        raise FloatingPointError(f"the model's outputs on the first sample of x1 have nan or inf "
                                 f"entries: {out.reshape(-1)[:8].tolist()}")
    return Census(out[0].numel(), int(flops.get_total_flops()), entries.entries, out.dtype)


def check_finite(theta: Tensor, method: str) -> Tensor:
    """Raise instead of returning a kernel with nan or inf entries."""
    if not bool(torch.isfinite(theta).all()):
        raise FloatingPointError(f"the empirical NTK (method={method!r}) has nan or inf entries: "
                                 "check that the model's outputs and parameters are finite on these "
                                 "inputs, and that the kernel does not overflow the dtype")
    return theta
