"""The empirical NTK of a PyTorch module or function: checks, choice of method, blocks.

Theta(x, x')_{ab} = sum_p dF_a(x)/dtheta_p dF_b(x')/dtheta_p over the trainable parameters
(Jacot, Gabriel & Hongler 2018), computed by one of the three implementations of Novak,
Sohl-Dickstein & Schoenholz, "Fast Finite Width Neural Tangent Kernel" (ICML 2022,
arXiv 2206.08720); docs/theory/finite-width.md#empirical-ntk. Inputs are cut into blocks so that memory
stays near
``BUDGET`` bytes whatever N is.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call

from .autodiff import JacobianContraction, NTKVectorProducts
from .checks import Census, census, check_finite, check_inputs, check_module_state, check_params
from .structured import StructuredDerivatives, check_mlp_input, mlp_layers

Tensor = torch.Tensor

BUDGET = 256 * 2**20  # bytes of Jacobian entries (or of per-layer derivatives) held per block
METHODS = ("auto", "jacobian", "ntvp", "structured")


def choose_method(c: Census, n1: int, n2: int, n_params: int, trace: bool) -> str:
    """The cheaper of Jacobian contraction and NTK-vector products by FLOPs (FFW-NTK, table 1).

    Jacobian contraction: (N1 + N2) O [FP] + N1 N2 O^2 P (O instead of O^2 when ``trace``);
    NTK-vector products: N2 O [FP] + N1 N2 O [FP]; [FP] is counted on one sample, and at least
    2P (a forward pass touches every parameter).
    """
    fp, o = max(c.flops, 2 * n_params), c.outputs
    jacobian = (n1 + n2) * o * fp + 2 * n1 * n2 * (o if trace else o * o) * n_params
    ntvp = n2 * o * fp + n1 * n2 * o * fp
    return "jacobian" if jacobian <= ntvp else "ntvp"


def block_sizes(method: str, c: Census, n1: int, n2: int, per_sample: int,
                batch_size: int | None) -> tuple[int, int]:
    """Samples per block of x1 and of x2: ``batch_size``, or what fits ``BUDGET``.

    ``per_sample``: entries held per sample (O P for a Jacobian). NTK-vector products hold the
    x2 block's vjps, and the x1 block's forward pass once per vector (N2_block O of them).
    """
    if batch_size is not None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer or None, got {batch_size!r}")
        return batch_size, batch_size
    item = torch.empty((), dtype=c.dtype).element_size()
    b2 = min(n2, max(1, BUDGET // (per_sample * item)))
    if method != "ntvp":
        return min(n1, b2), b2
    return min(n1, max(1, BUDGET // (b2 * c.outputs * max(c.entries, 1) * item))), b2


def blocked(impl, x1: Tensor, x2: Tensor | None, trace: bool, sizes: tuple[int, int],
            o: int, dtype: torch.dtype) -> Tensor:
    """Theta block by block: ``impl.contract(impl.left(x1_i), impl.right(x2_j), trace)``.

    With ``x2=None`` and square blocks, blocks below the diagonal are the transposes of those
    above (Theta(x, x')_{ab} = Theta(x', x)_{ba}). The right-hand features are kept when x2 is
    one block, recomputed per row of blocks otherwise (memory stays at two blocks).
    """
    symmetric = x2 is None and sizes[0] == sizes[1]
    rows, cols = x1.split(sizes[0]), (x1 if x2 is None else x2).split(sizes[1])
    n1, n2 = x1.shape[0], sum(c.shape[0] for c in cols)
    theta = torch.empty((n1, n2) if trace else (n1, n2, o, o), dtype=dtype, device=x1.device)
    kept = [impl.right(cols[0])] if len(cols) == 1 and not (symmetric and impl.shares_features) else None
    for i, xa in enumerate(rows):
        left, r = impl.left(xa), slice(i * sizes[0], i * sizes[0] + xa.shape[0])
        for j, xb in enumerate(cols):
            c = slice(j * sizes[1], j * sizes[1] + xb.shape[0])
            if symmetric and j < i:
                theta[r, c] = theta[c, r].transpose(0, 1) if trace else theta[c, r].permute(1, 0, 3, 2)
                continue
            if symmetric and i == j and impl.shares_features:
                right = left
            else:
                right = kept[0] if kept is not None else impl.right(xb)
            theta[r, c] = impl.contract(left, right, trace)
    return theta


def _run(fn, params, x1, x2, method, trace, batch_size, layers=None) -> Tensor:
    """Shared path of both entry points once the parameters are known."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    check_params(params, x1)
    if layers is not None:
        check_mlp_input(layers, x1)
    c = census(fn, params, x1)
    n1, n2 = x1.shape[0], (x1 if x2 is None else x2).shape[0]
    n_params = sum(p.numel() for p in params.values())
    if method == "auto":
        method = "structured" if layers is not None else choose_method(c, n1, n2, n_params, trace)
    if method == "structured":
        impl = StructuredDerivatives(layers)
        widths = sum(m.in_features + m.out_features for m in layers if isinstance(m, nn.Linear))
        per_sample = c.outputs * widths + c.entries
    else:
        impl = (JacobianContraction if method == "jacobian" else NTKVectorProducts)(fn, params)
        per_sample = c.outputs * n_params
    sizes = block_sizes(method, c, n1, n2, per_sample, batch_size)
    return check_finite(blocked(impl, x1, x2, trace, sizes, c.outputs, c.dtype), method)


def empirical_ntk(model: nn.Module, x1: Tensor, x2: Tensor | None = None, *, method: str = "auto",
                  trace: bool = True, batch_size: int | None = None) -> Tensor:
    """Empirical NTK of ``model`` at its current parameters (FFW-NTK, arXiv 2206.08720).

    Theta(x, x')_{ab} = sum_p dF_a(x)/dtheta_p dF_b(x')/dtheta_p, summed over the parameters with
    ``requires_grad=True``; frozen parameters and buffers are held fixed. ``model`` maps a batch
    (N, ...) to outputs (N, ...), flattened to (N, O) (outputs of shape (N,) have O = 1). The model
    is evaluated with ``torch.func.functional_call`` on detached parameters: never modified.

    Parameters
    ----------
    model : torch.nn.Module
        The network; it maps a batch (N, ...) to outputs (N, ...).
    x1, x2 : tensor
        Inputs (N1, ...), (N2, ...) of the same dtype and device as the model;
        ``x2=None`` means x2 = x1 (and uses the symmetry).
    method : {"auto", "jacobian", "ntvp", "structured"}
        Jacobian contraction, NTK-vector products, or structured derivatives (an ``nn.Sequential``
        of ``nn.Linear`` and elementwise modules only, see ``Elementwise``). "auto": structured
        when the model is such an MLP, else the cheaper of the other two by the FLOP estimates
        of docs/theory/finite-width.md#choosing-a-method.
    trace : bool
        True: the (N1, N2) kernel summed over the O outputs and divided by O, i.e. the mean of
        Theta_{aa} over outputs (neural-tangents' ``trace_axes=(-1,)``, which averages). False:
        the full (N1, N2, O, O) kernel.
    batch_size : int, optional
        Samples per block of x1 and x2; default: blocks whose Jacobians (per-layer derivatives
        for "structured") take about 256 MiB.

    Returns
    -------
    tensor
        Theta: (N1, N2) when ``trace``, else (N1, N2, O, O), in the model's dtype.

    Raises
    ------
    TypeError
        ``model`` is not an ``nn.Module``, or an input is not a tensor.
    ValueError
        Modules that make outputs random or batch-dependent (BatchNorm or Dropout in training
        mode: call ``model.eval()``), inputs the model cannot take (the shapes are named),
        non-floating outputs, mismatched dtypes or devices, no trainable parameters, an unknown
        ``method`` (or "structured" for a model that is not an MLP), or an invalid
        ``batch_size``.
    FloatingPointError
        The kernel (or the model's outputs) has nan or inf entries.

    Examples
    --------
    >>> model = torch.nn.Sequential(torch.nn.Linear(3, 8, dtype=torch.float64), torch.nn.Tanh(),
    ...                             torch.nn.Linear(8, 2, dtype=torch.float64))
    >>> x = torch.linspace(-1, 1, 12, dtype=torch.float64).reshape(4, 3)
    >>> theta = infnet.empirical_ntk(model, x)
    >>> theta.shape, bool(torch.allclose(theta, theta.T))
    (torch.Size([4, 4]), True)
    >>> infnet.empirical_ntk(model, x, x[:3], trace=False).shape
    torch.Size([4, 3, 2, 2])
    >>> bool(torch.allclose(infnet.empirical_ntk(model, x, method="jacobian"), theta))
    True
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module (see empirical_ntk_fn for functions), "
                        f"got {type(model).__name__}")
    check_module_state(model)
    check_inputs(x1, x2)
    params = {k: p.detach() for k, p in model.named_parameters() if p.requires_grad}
    fixed = {k: p.detach() for k, p in model.named_parameters() if not p.requires_grad}
    fixed.update({k: b.detach() for k, b in model.named_buffers()})

    def fn(p, x):
        return functional_call(model, (p, fixed), (x,))

    layers = mlp_layers(model) if method in ("auto", "structured") else None
    if layers is not None and method == "auto" and (x1.dim() != 2 or not x1.is_floating_point()):
        layers = None  # Linear also maps (N, ..., d): leave such inputs to the general methods
    if method == "structured" and layers is None:
        raise ValueError(f"method='structured' needs an nn.Sequential of nn.Linear and elementwise "
                         f"modules (infnet.empirical.Elementwise wraps any elementwise function); "
                         f"got {type(model).__name__}: use method='jacobian' or 'ntvp'")
    return _run(fn, params, x1, x2, method, trace, batch_size, layers)


def empirical_ntk_fn(fn, params: dict[str, Tensor], x1: Tensor, x2: Tensor | None = None, *,
                     method: str = "auto", trace: bool = True,
                     batch_size: int | None = None) -> Tensor:
    """Empirical NTK of a function ``fn(params, x)`` (batch (N, ...) to outputs (N, ...)).

    Theta(x, x')_{ab} = sum_p dF_a(x)/dparams_p dF_b(x')/dparams_p, as in ``empirical_ntk``.

    Parameters
    ----------
    fn : callable
        ``fn(params, x)``, mapping a batch (N, ...) to outputs (N, ...).
    params : dict of str to tensor
        The tensors to differentiate (detached here).
    x1, x2 : tensor
        Inputs (N1, ...), (N2, ...); ``x2=None`` means x2 = x1 (and uses the symmetry).
    method : {"auto", "jacobian", "ntvp"}
        As in ``empirical_ntk`` ("structured" needs a module).
    trace : bool
        As in ``empirical_ntk``: the (N1, N2) mean over outputs, or the full (N1, N2, O, O).
    batch_size : int, optional
        As in ``empirical_ntk``.

    Returns
    -------
    tensor
        Theta: (N1, N2) when ``trace``, else (N1, N2, O, O).

    Raises
    ------
    ValueError
        ``method="structured"`` or an unknown method, inputs ``fn`` cannot take, mismatched
        dtypes or devices, non-floating outputs, no parameters, an invalid ``batch_size``.
    TypeError
        ``params`` is not a dict of tensors, or an input is not a tensor.
    FloatingPointError
        The kernel (or the outputs) has nan or inf entries.

    Examples
    --------
    >>> from infnet.empirical import empirical_ntk_fn
    >>> def f(p, x):
    ...     return torch.tanh(x @ p["w"])[:, None]
    >>> w = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    >>> x = torch.linspace(-1, 1, 12, dtype=torch.float64).reshape(4, 3)
    >>> theta = empirical_ntk_fn(f, {"w": w}, x)
    >>> d = 1 - torch.tanh(x @ w) ** 2  # Theta = tanh'(x.w) tanh'(x'.w) x.x'
    >>> theta.shape, bool(torch.allclose(theta, d[:, None] * d[None, :] * (x @ x.T)))
    (torch.Size([4, 4]), True)
    """
    if method == "structured":
        raise ValueError("method='structured' needs an nn.Module (an MLP); use empirical_ntk")
    if not isinstance(params, dict) or not all(isinstance(p, Tensor) for p in params.values()):
        raise TypeError("params must be a dict of tensors")
    check_inputs(x1, x2)
    params = {k: p.detach() for k, p in params.items()}
    return _run(fn, params, x1, x2, method, trace, batch_size)
