"""Kernel operators for iterative solvers: K touched only through products and columns.

``KernelOperator`` (protocol: ``n``, ``dtype``, ``matvec``, ``columns``, ``diagonal``); ``DenseOperator``
(a matrix); ``NetworkOperator`` (K recomputed tile by tile from a network at every product); the
tiled on-disk ``KernelStore`` has the same members. ``predict`` applies K(x_test, X) by strips.
"""

from __future__ import annotations

import warnings
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from ..core.checks import all_finite

Tensor = torch.Tensor

@runtime_checkable
class KernelOperator(Protocol):
    """What ``solve`` needs of a symmetric positive (semi-)definite n x n kernel matrix K.

    A protocol (``isinstance`` checks the members): ``n``, ``dtype``, ``matvec(V)`` (K @ V),
    ``columns(idx)`` (K[:, idx]) and ``diagonal()``. ``DenseOperator``, ``NetworkOperator``
    and a square ``KernelStore`` are kernel operators.

    Examples
    --------
    >>> k = torch.tensor([[2.0, 1.0], [1.0, 2.0]], dtype=torch.float64)
    >>> isinstance(infnet.scale.DenseOperator(k), infnet.scale.KernelOperator)
    True
    >>> isinstance(k, infnet.scale.KernelOperator)
    False
    """

    @property
    def n(self) -> int: ...

    @property
    def dtype(self) -> torch.dtype: ...

    def matvec(self, v: Tensor) -> Tensor:
        """K @ v for v of shape (n, m) (float64 from ``solve``; the operator may compute in its
        own dtype, and answer in it or in float64)."""

    def columns(self, idx: Tensor) -> Tensor:
        """K[:, idx], shape (n, len(idx))."""

    def diagonal(self) -> Tensor:
        """The diagonal of K, shape (n,)."""


class DenseOperator:
    """A kernel matrix held in memory, as a ``KernelOperator``.

    Parameters
    ----------
    k : array_like or torch.Tensor
        The (n, n) kernel matrix, n >= 1 (an integer matrix is converted to float64).

    Raises
    ------
    ValueError
        k not square (n, n) with n >= 1, or with NaN or inf entries.

    Examples
    --------
    >>> op = infnet.scale.DenseOperator(torch.tensor([[2.0, 1.0], [1.0, 2.0]], dtype=torch.float64))
    >>> op.n, op.dtype
    (2, torch.float64)
    >>> op.matvec(torch.ones(2, 1, dtype=torch.float64)).tolist(), op.diagonal().tolist()
    ([[3.0], [3.0]], [2.0, 2.0])
    >>> infnet.scale.DenseOperator(torch.zeros(2, 3))
    Traceback (most recent call last):
        ...
    ValueError: a kernel matrix must be square (n, n) with n >= 1, got shape (2, 3)
    """

    def __init__(self, k):
        k = torch.as_tensor(k)
        if k.ndim != 2 or k.shape[0] != k.shape[1] or k.shape[0] == 0:
            raise ValueError(f"a kernel matrix must be square (n, n) with n >= 1, got shape "
                             f"{tuple(k.shape)}")
        if not k.is_floating_point():
            k = k.to(torch.float64)
        if not all_finite(k):
            raise ValueError("the kernel matrix contains NaN or inf entries")
        self.k = k

    @property
    def n(self) -> int:
        return self.k.shape[0]

    @property
    def dtype(self) -> torch.dtype:
        return self.k.dtype

    def matvec(self, v: Tensor) -> Tensor:
        return self.k @ v.to(self.k)

    def columns(self, idx: Tensor) -> Tensor:
        return self.k[:, idx]

    def diagonal(self) -> Tensor:
        return self.k.diagonal().clone()


class NetworkOperator:
    """The kernel of ``net`` on the rows of ``x``, recomputed tile by tile at every product.

    ``kind``: "ntk" or "nngp". ``matvec`` walks row strips of ``tile`` rows: the diagonal block
    by the symmetric kernel call, the strip to its right once, used for both K_ij V_j and
    K_ji V_i (half the entries of K per product; memory ~1.5 x tile x n numbers). Tiles and
    products are float64 (the network's exact path, and on the CPU also its fast one: rounded
    to float32, inputs of one norm no longer share it exactly and every entry goes layer by
    layer, twice slower); ``dtype`` is that of the answers (matvec, columns, diagonal) and so of
    what ``solve`` keeps, the n x rank preconditioner: float32 halves it. ``diagonal`` is the
    network's diagonal pass (``net.diagonal``), or the diagonal of the diagonal blocks.

    Parameters
    ----------
    net : infnet.Network
        A network with a ``kernel`` method (``infnet.fc``).
    x : array_like or torch.Tensor
        (n, ...) inputs, n >= 1, flattened to (n, features) in float64. Inputs of different
        norms make every tile take the exact (slower) path.
    kind : {"ntk", "nngp"}, default "ntk"
        The kernel.
    tile : int, default 2048
        The rows of a strip, a positive integer.
    dtype : torch.dtype, default torch.float64
        The dtype of the answers, torch.float32 or torch.float64.

    Raises
    ------
    ValueError
        kind, tile or dtype invalid; x not (n, features) with n >= 1, or with NaN or inf.
    TypeError
        net without a ``kernel`` method.

    Warns
    -----
    UserWarning
        Inputs of different norms with an activation without closed form and n > 500: every
        entry of every product costs a 2-D quadrature per layer (slow).

    Examples
    --------
    >>> net = infnet.fc("relu", depth=2, w_std=2**0.5)
    >>> x = torch.randn(20, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    >>> x = x / x.norm(dim=1, keepdim=True)
    >>> op = infnet.scale.NetworkOperator(net, x, tile=8)
    >>> op.n, op.dtype
    (20, torch.float64)
    >>> k = net.kernel(x).ntk
    >>> v = torch.ones(20, 2, dtype=torch.float64)
    >>> bool(torch.allclose(op.matvec(v), k @ v)), bool(torch.allclose(op.diagonal(), k.diagonal()))
    (True, True)
    >>> bool(torch.allclose(op.columns(torch.tensor([3, 11])), k[:, [3, 11]]))
    True
    """

    def __init__(self, net, x, kind: str = "ntk", tile: int = 2048, dtype: torch.dtype = torch.float64):
        if kind not in ("ntk", "nngp"):
            raise ValueError(f"kind must be 'ntk' or 'nngp', got {kind!r}")
        if isinstance(tile, bool) or not isinstance(tile, int) or tile < 1:
            raise ValueError(f"tile must be a positive integer, got {tile!r}")
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype!r}")
        if not hasattr(net, "kernel"):
            raise TypeError(f"net must be a network with a .kernel method (infnet.fc), got "
                            f"{type(net).__name__}")
        x = torch.as_tensor(x) if torch.is_tensor(x) else torch.as_tensor(np.asarray(x, dtype=np.float64))
        if x.ndim < 2 or x.shape[0] == 0:
            raise ValueError(f"x must have shape (n, features) with n >= 1, got {tuple(x.shape)}")
        x = x.to(torch.float64)  # (rows, or images of a spatial network: the network flattens)
        if not all_finite(x):
            raise ValueError("x contains NaN or inf")
        self.net, self.kind, self.tile, self._dtype = net, kind, tile, dtype
        self.x = x
        self._diag: Tensor | None = None
        self._kwargs = {}
        from ..network import Network
        from ..network.inputs import common_value

        if isinstance(net, Network) and common_value((x * x).sum(1)) is None:
            # one method for every tile: the angle table only serves inputs of one norm
            self._kwargs["method"] = "exact"
            if any(not a.is_closed_form for a in net.activations) and x.shape[0] > 500:
                warnings.warn("inputs of different norms with an activation without closed "
                              "form: every kernel entry of every product costs a 2-D quadrature "
                              "per layer (slow). Inputs of one norm (x / |x|) take the fast path.",
                              stacklevel=2)

    @property
    def n(self) -> int:
        return self.x.shape[0]

    @property
    def dtype(self) -> torch.dtype:
        return self._dtype

    def _kernel(self, a: Tensor, b: Tensor | None = None) -> Tensor:
        return self.net.kernel(a, b, dtype=torch.float64, get=self.kind, **self._kwargs).get(self.kind)

    def matvec(self, v: Tensor) -> Tensor:
        v = v.to(self.x)
        out = torch.zeros_like(v)
        n, t = self.n, self.tile
        for i in range(0, n, t):
            j = min(i + t, n)
            out[i:j] += self._kernel(self.x[i:j]) @ v[i:j]
            if j < n:
                strip = self._kernel(self.x[i:j], self.x[j:])
                out[i:j] += strip @ v[j:]
                out[j:] += strip.T @ v[i:j]
                del strip
        return out.to(self._dtype)

    def columns(self, idx: Tensor) -> Tensor:
        idx = torch.as_tensor(idx, dtype=torch.long, device=self.x.device)
        cols = self._kernel(self.x, self.x[idx])
        cols[idx, torch.arange(len(idx), device=idx.device)] = self._diagonal64()[idx]
        return cols.to(self._dtype)

    def diagonal(self) -> Tensor:
        return self._diagonal64().to(self._dtype, copy=True)

    def _diagonal64(self) -> Tensor:
        if self._diag is None:
            self._diag = self._compute_diagonal()
        return self._diag

    def _compute_diagonal(self) -> Tensor:
        n = self.x.shape[0]
        if hasattr(self.net, "diagonal") and self.x.ndim == 2:
            d = self.x.shape[1]
            nngp, ntk = self.net.diagonal((self.x * self.x).sum(1) / d, d)
            diag = ntk if self.kind == "ntk" else nngp
            return diag.expand(n).clone()
        # a network without a flat diagonal pass (fc(act, depth=inf), spatial networks): the
        # diagonal blocks
        return torch.cat([self._kernel(self.x[i:i + self.tile]).diagonal()
                          for i in range(0, n, self.tile)])


def predict(model, x_test, x_train, alpha, *, kind: str = "ntk", tile: int = 2048,
            dtype: torch.dtype = torch.float64) -> Tensor:
    """Predict K(x_test, x_train) @ alpha in strips of ``tile`` test rows (memory tile x n_train).

    Parameters
    ----------
    model : infnet.Network or callable
        A network (``net.kernel(a, b, get=kind)``) or a function (a, b) -> the (len a, len b)
        kernel between rows of a and b.
    x_test : array_like or torch.Tensor
        (n_test, features) inputs to predict at.
    x_train : array_like or torch.Tensor
        (n_train, features) training inputs.
    alpha : array_like or torch.Tensor
        (n_train,) or (n_train, m) coefficients, e.g. from ``solve``.
    kind : {"ntk", "nngp"}, default "ntk"
        The network's kernel (ignored for a function).
    tile : int, default 2048
        Test rows per strip, a positive integer.
    dtype : torch.dtype, default torch.float64
        The dtype the network's kernel is computed in.

    Returns
    -------
    torch.Tensor
        (n_test,) or (n_test, m), like ``alpha``.

    Raises
    ------
    ValueError
        tile not a positive integer, kind invalid, alpha and x_train of different lengths, or
        a kernel function that returns another shape.
    TypeError
        model neither a network with ``kernel`` nor a function.

    Examples
    --------
    >>> net = infnet.fc("relu", depth=2, w_std=2**0.5)
    >>> x = torch.randn(20, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    >>> x = x / x.norm(dim=1, keepdim=True)
    >>> alpha = torch.linspace(-1, 1, 20, dtype=torch.float64)
    >>> x_test = x[:5] * 0.5
    >>> f = infnet.scale.predict(net, x_test, x, alpha, tile=2)
    >>> f.shape, bool(torch.allclose(f, net.kernel(x_test, x).ntk @ alpha))
    (torch.Size([5]), True)
    >>> f = infnet.scale.predict(lambda a, b: a @ b.T, x_test, x, alpha[:, None])
    >>> f.shape, bool(torch.allclose(f, x_test @ x.T @ alpha[:, None]))
    (torch.Size([5, 1]), True)
    """
    if isinstance(tile, bool) or not isinstance(tile, int) or tile < 1:
        raise ValueError(f"tile must be a positive integer, got {tile!r}")
    if hasattr(model, "kernel"):
        if kind not in ("ntk", "nngp"):
            raise ValueError(f"kind must be 'ntk' or 'nngp', got {kind!r}")

        def fn(a, b):
            return model.kernel(a, b, dtype=dtype, get=kind).get(kind)
    elif callable(model):
        fn = model
    else:
        raise TypeError("model must be a network with .kernel or a function (a, b) -> kernel")
    x_test, x_train = (torch.as_tensor(np.asarray(v, dtype=np.float64)) if not torch.is_tensor(v)
                       else v for v in (x_test, x_train))
    alpha = torch.as_tensor(alpha)
    squeeze = alpha.ndim == 1
    alpha = alpha.reshape(alpha.shape[0], -1)
    if alpha.shape[0] != x_train.shape[0]:
        raise ValueError(f"alpha has {alpha.shape[0]} rows but x_train has {x_train.shape[0]}")
    out = []
    for i in range(0, x_test.shape[0], tile):
        k = fn(x_test[i:i + tile], x_train)
        if tuple(k.shape) != (len(x_test[i:i + tile]), x_train.shape[0]):
            raise ValueError(f"the kernel function returned shape {tuple(k.shape)} for "
                             f"{len(x_test[i:i + tile])} x {x_train.shape[0]} points")
        out.append(k @ alpha.to(k))
    out = torch.cat(out)
    return out.reshape(-1) if squeeze else out


def _check_operator(op) -> int:
    missing = [name for name in ("n", "matvec", "columns", "diagonal", "dtype") if not hasattr(op, name)]
    if missing:
        raise TypeError(f"the operator ({type(op).__name__}) lacks {', '.join(missing)}: a kernel "
                        "operator has n, dtype, matvec(V), columns(idx) and diagonal()")
    n = op.n
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"operator.n must be a positive integer, got {n!r}")
    return int(n)


def _checked(value, shape: tuple, what: str, dtype: torch.dtype) -> Tensor:
    """The operator's answer as a tensor of the expected shape without NaN or inf."""
    if not torch.is_tensor(value):
        raise TypeError(f"operator.{what} returned {type(value).__name__}, not a tensor")
    if tuple(value.shape) != tuple(shape):
        raise ValueError(f"operator.{what} returned shape {tuple(value.shape)}, expected "
                         f"{tuple(shape)}: a kernel operator's {what} must give "
                         + ("K @ V, shape (n, m)" if what == "matvec" else "K[:, idx], shape (n, len(idx))"))
    if not all_finite(value):
        raise FloatingPointError(f"operator.{what} returned NaN or inf")
    return value.to(dtype)
