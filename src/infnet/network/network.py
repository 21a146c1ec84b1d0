"""Networks: a sequence of layers, and their NNGP and NTK on data, computed in tiles.

Two evaluations, one set of layer maps:
- equal-norm inputs: the kernels are one function of the input angle, tabulated once
  (``table.AngleTable``) and evaluated per entry: cost independent of depth and activation;
- otherwise: the layers are applied to each tile of pairs, with every input's variances from
  one diagonal pass (the NNGP alone of Lipschitz units as covariances: ``covariance_pass``).
Both work on tiles of ``block`` x ``block`` entries, so memory beyond the output is O(block^2).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch

from ..activations import Activation
from ..core.checks import all_finite
from ..numerics.moments import geometric_mean
from ..numerics.table import AngleTable, TableError
from .covariance_pass import carries_covariances, nngp_by_covariances
from .finite import build
from .images import peak_memory, spatial_kernel
from .inputs import Kernel, KernelModel, angles, as_data, check_finite, common_value, round_digits
from .layers import Moments, as_layer, check_gaussian_inputs
from .runs import Run, find_runs
from .spatial import TILE_BYTES, SpatialPlan, is_spatial
from .trace import Trace, check_condition

Tensor = torch.Tensor

#: with fewer entries than this (closed-form activations; a 64th of it otherwise) the kernel is
#: computed entry by entry even for inputs of one norm: building the angle table costs more
TABLE_MIN_ENTRIES = 1 << 16


class Network(KernelModel):
    """A serial composition of layers (Dense, activations) with infinite-width kernels.

    Its NNGP and NTK on data come from ``kernel``, its finite-width ``torch.nn`` counterpart
    from ``finite``. ``infnet.serial`` and ``infnet.fc`` build one.

    Parameters
    ----------
    *layers : Layer, Activation, str or Network
        The layers in order: Layer values (``Dense``, ``LayerNorm``, branches), Activations or
        catalog names (each becomes a ``Nonlinearity``), or Networks (their layers are spliced
        in).
    check : bool
        Refuse layers whose input is not what they need (an activation after the data or
        after another activation, ``layers.check_gaussian_inputs``); branches of a larger
        network are checked by it instead.

    Raises
    ------
    ValueError
        ``check`` and a layer that needs a Gaussian input (an activation, LayerNorm) follows
        the data or another layer whose output is not Gaussian.
    TypeError
        An argument is not a layer, an Activation, a catalog name or a Network.
    KeyError
        An unknown catalog name.

    Examples
    --------
    >>> net = infnet.Network(infnet.Dense(), "relu", infnet.Dense())
    >>> len(net.layers), net.activations
    (3, [Activation(relu)])
    >>> try:
    ...     infnet.Network("relu", infnet.Dense())  # an activation of the raw data
    ... except ValueError:
    ...     print("refused")
    refused
    """

    def __init__(self, *layers, check: bool = True):
        flat = []
        for layer in layers:
            flat.extend(layer.layers if isinstance(layer, Network) else [as_layer(layer)])
        self.layers = tuple(flat)
        if check:
            check_gaussian_inputs(self.layers, gaussian_in=False)
        self._plan = None  # spatial networks: the checked head (built here, or at first use)
        if check and is_spatial(self.layers):
            self._spatial_plan()
        self._segments = find_runs(self.layers)
        self._tables: dict = {}
        self._traces: dict = {}

    def _spatial_plan(self) -> SpatialPlan | None:
        if self._plan is None and is_spatial(self.layers):
            self._plan = SpatialPlan(self.layers, lambda rest: Network(*rest, check=False))
        return self._plan

    def peak_memory(self, shape, n1: int, n2: int | None = None, *, get: str = "both",
                    memory: int | None = None) -> int:
        """Bytes that ``kernel`` needs for n1 x n2 (None: n1 x n1) inputs of spatial ``shape``
        (e.g. (32, 32)): the outputs plus one tile's work (``network.images``)."""
        plan = self._spatial_plan()
        if plan is None:
            raise TypeError("peak_memory is for networks of spatial layers (Conv, pooling)")
        return peak_memory(plan, tuple(shape), n1, n2, get=get, memory=memory or TILE_BYTES)

    def __repr__(self) -> str:
        return "serial(" + ", ".join(map(repr, self.layers)) + ")"

    def __deepcopy__(self, memo) -> Network:
        """The network itself: it is immutable (frozen layers, caches derived from them), and
        scikit-learn's clone of a kernel holding one must keep parameters that compare equal."""
        return self

    @property
    def activations(self) -> list[Activation]:
        """The activations of the network, nested layers (branches) included, in order."""
        return [act for layer in self.layers for act in layer.activations]

    def finite(self, width: int | None = None, *, in_features: int, outputs: int = 1,
               seed: int | None = None, dtype: torch.dtype = torch.float64, device=None):
        """The finite-width ``torch.nn.Sequential`` whose infinite-width limit is this network.

        Same layers, parameterization and stds (``network.finite.build``): one module per
        layer, a Dense as ``nn.Linear`` (with fixed scalings under the NTK parameterization),
        an activation as ``infnet.empirical.Elementwise``.

        Parameters
        ----------
        width : int, optional
            The output width of the hidden Dense layers (a Dense's own ``width`` wins under the
            standard parameterization, and is used under the NTK one when this is None).
        in_features : int
            The input dimension d.
        outputs : int
            The output width of the last Dense (the kernel is the same for each output).
        seed : int, optional
            Parameters are drawn on the CPU from ``torch.Generator().manual_seed(seed)``
            (None: a random seed), then moved to ``device``: one seed gives the same network on
            every device.
        dtype : torch.dtype
            A floating dtype for the parameters.
        device : torch.device or str, optional
            Where the parameters are put.

        Returns
        -------
        torch.nn.Sequential
            The finite network.

        Raises
        ------
        ValueError
            ``in_features``, ``outputs`` or ``width`` is not a positive integer, a hidden Dense
            has no width, the network has no Dense layer, or branches end in unequal widths.
        TypeError
            ``dtype`` is not a floating dtype, or a layer has no finite-width module.

        Examples
        --------
        >>> net = infnet.fc("relu", depth=2)
        >>> model = net.finite(64, in_features=3, seed=0)
        >>> len(model), model(torch.ones(5, 3, dtype=torch.float64)).shape
        (5, torch.Size([5, 1]))
        >>> again = net.finite(64, in_features=3, seed=0)
        >>> bool(torch.equal(model[0][1].weight, again[0][1].weight))  # one seed, one network
        True
        """
        return build(self, width, in_features=in_features, outputs=outputs, seed=seed,
                     dtype=dtype, device=device)

    # ---- kernel maps on moments ----------------------------------------------------------------
    def diagonal(self, sq: Tensor, width: int) -> tuple[Tensor, Tensor]:
        """The NNGP and NTK diagonals at the output for inputs with x.x / d = ``sq`` (tensors of
        sq's shape); raises IllConditionedError where the variance maps amplify rounding."""
        tr = self.trace(sq, width)
        return tr.nngp, tr.ntk

    def trace(self, sq: Tensor, width: int, *, check: bool = True, like: Trace | None = None
              ) -> Trace:
        """The diagonal pass (``Trace``): each input's variances through the layers, with runs of
        identical blocks kept at fixed points of their variance maps (``network.runs``).
        ``check``: compare with the pass at sq (1 + 1e-7) and raise IllConditionedError when
        relative changes are amplified beyond ``MAX_CONDITION``. ``like``: reuse that trace's
        decisions of where variances sit at fixed points."""
        m = Moments(sq, torch.zeros_like(sq), sq, sq, width)
        m, records = self.diagonal_pass(m, None if like is None else like.records)
        tr = Trace(sq, records, m.nngp, m.ntk)
        if check:
            check_condition(self, tr, width)
        return tr

    def pairs(self, theta: Tensor, tr1: Trace, tr2: Trace, width: int) -> tuple[Tensor, Tensor]:
        """(NNGP, NTK) of pairs of inputs at angle theta with the diagonal passes of each
        (``trace``, viewed as rows and columns); the angle, not the covariance, is carried from
        layer to layer."""
        sigma = geometric_mean(tr1.sq, tr2.sq) * torch.cos(theta)
        m = Moments(sigma, torch.zeros_like(sigma), tr1.sq, tr2.sq, width, theta)
        m = self.pairs_pass(m, tr1.records, tr2.records)
        return m.nngp, m.ntk

    def diagonal_pass(self, m: Moments, like: list | None = None) -> tuple[Moments, list]:
        """The diagonal pass of the layers from moments ``m``: the output moments and one
        record per segment (``Layer.diagonal``; a ``RunTrace`` for a run)."""
        records = []
        for i, seg in enumerate(self._segments):
            if isinstance(seg, Run):
                r = seg.diagonal(m.nngp, m.ntk, None if like is None else like[i])
                m = Moments(r.q_out, r.ntk, r.q_out, r.q_out, seg.dense.width)
            else:
                m, r = seg.diagonal(m, None if like is None else like[i])
            records.append(r)
        return m, records

    def pairs_pass(self, m: Moments, records1: list, records2: list) -> Moments:
        """The layers on pairs, with the records of the diagonal pass of each side."""
        for seg, r1, r2 in zip(self._segments, records1, records2, strict=True):
            m = seg.pairs(m, r1, r2)
        return m

    def angle_kernel(self, theta, sq: float = 1.0, width: int = 1) -> tuple[Tensor, Tensor]:
        """Exact NNGP and NTK of two inputs with x.x/d = x'.x'/d = sq at angle theta; the
        function the fast path tabulates."""
        theta = torch.as_tensor(theta, dtype=torch.float64)
        tr = self._scalar_trace(float(sq), width, theta.device)
        return self.pairs(theta, tr, tr, width)

    def _scalar_trace(self, sq: float, width: int, device) -> Trace:
        """The diagonal pass of inputs with x.x/d = sq, cached (as the angle tables are)."""
        key = (sq, width, str(device))
        if key not in self._traces:
            self._traces[key] = self.trace(torch.tensor(sq, dtype=torch.float64, device=device),
                                           width)
        return self._traces[key]

    # ---- kernels on data ---------------------------------------------------------------------------
    def kernel(self, x1, x2=None, *, block: int = 512, dtype: torch.dtype = torch.float64,
               method: str = "auto", get: str = "both", memory: int | None = None) -> Kernel:
        """NNGP and NTK between the rows of x1 and x2 (x2=None: x1 with itself).

        Computed in tiles of ``block`` x ``block`` entries, so memory beyond the output is
        O(block^2).

        Parameters
        ----------
        x1, x2 : tensor or array
            Inputs of shape (n, features) (more axes are flattened), of equal feature
            dimensions; x2=None means x1 with itself (and uses the symmetry).
        block : int
            The tile size, a positive integer.
        dtype : {torch.float64, torch.float32}
            The dtype of the result (float32 halves the memory of the outputs, whose entries
            are still computed in float64, tile by tile, then rounded).
        method : {"auto", "table", "exact"}
            "auto": the angle table when all inputs have one norm, else layer by layer;
            "table" (inputs of one norm only) or "exact" (layer by layer).
        get : {"both", "nngp", "ntk"}
            The kernels to compute; the other field is then None and its n1 x n2 matrix is
            never allocated (memory: one output plus O(block^2)).
        memory : int, optional
            Spatial networks ((n, C, H, W) or (n, C, L) inputs): the bytes a tile of pairs may
            use (default 1 GiB; ``peak_memory`` says the total); one pair over it goes in
            bands of rows (``network.banded``), MemoryError where those do not fit either.

        Returns
        -------
        Kernel
            The (n1, n2) NNGP and NTK, on the inputs' device, in ``dtype``.

        Raises
        ------
        ValueError
            An invalid ``block``, ``dtype``, ``method`` or ``get``; inputs that are empty, hold
            NaN or inf, are on different devices, have different feature dimensions or norms
            that overflow; "table" with inputs of different norms.
        TypeError
            Inputs that are not numeric, or complex.
        IllConditionedError
            The variance maps amplify the rounding of input variances past ``MAX_CONDITION``.
        KernelOverflowError
            An activation's kernel diverges or overflows at the variances reached.
        FloatingPointError
            The NNGP or NTK overflows float64.

        Examples
        --------
        >>> net = infnet.fc("relu", depth=1)
        >>> x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]], dtype=torch.float64)
        >>> k = net.kernel(x)
        >>> k.nngp.shape, k.ntk.shape, k.nngp.dtype
        (torch.Size([3, 3]), torch.Size([3, 3]), torch.float64)
        >>> round(float(k.nngp[0, 1]), 6), round(float(k.ntk[0, 0]), 6)  # 1/(4 pi), 1/2
        (0.079577, 0.5)
        >>> bool(torch.allclose(net.kernel(x, x[:2]).ntk, k.ntk[:, :2]))
        True
        >>> k = net.kernel(x, dtype=torch.float32, get="ntk")
        >>> k.ntk.dtype, k.nngp is None
        (torch.float32, True)
        """
        if method not in ("auto", "table", "exact"):
            raise ValueError(f"method must be 'auto', 'table' or 'exact', got {method!r}")
        if get not in ("both", "nngp", "ntk"):
            raise ValueError(f"get must be 'both', 'nngp' or 'ntk', got {get!r}")
        if not (isinstance(block, int) and block >= 1):
            raise ValueError(f"block must be a positive integer, got {block!r}")
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype must be torch.float64 or torch.float32, got {dtype!r}")
        if self._spatial_plan() is not None:
            return spatial_kernel(self._plan, x1, x2, block=block, dtype=dtype, get=get,
                                  memory=memory)
        out_dtype, dtype = dtype, torch.float64  # computed in float64 whatever is stored
        symmetric = x2 is None
        x1 = as_data(x1, "x1", dtype)
        x2 = x1 if symmetric else as_data(x2, "x2", dtype, device=x1.device)
        if x1.shape[1] != x2.shape[1]:
            raise ValueError(f"x1 has {x1.shape[1]} features and x2 has {x2.shape[1]}: the "
                             "feature dimensions must match")
        d = x1.shape[1]
        sq1 = (x1 * x1).sum(1) / d
        sq2 = sq1 if symmetric else (x2 * x2).sum(1) / d
        for name, sq in (("x1", sq1), ("x2", sq2)):
            if not all_finite(sq):
                row = int((~torch.isfinite(sq)).nonzero()[0])
                raise ValueError(f"the squared norm of row {row} of {name} overflows float64 "
                                 "(x.x / d = inf): rescale the inputs (e.g. x / |x|)")
        equal = common_value(torch.cat([sq1, sq2]))
        if equal is not None and method != "exact":  # one input variance: one diagonal pass
            tr1 = tr2 = self._scalar_trace(round_digits(equal), d, x1.device)  # (as the table)
        else:
            tr1 = self.trace(sq1, d)
            tr2 = tr1 if symmetric else self.trace(sq2, d)
        if method == "table" and equal is None:
            raise ValueError("method='table' needs inputs of one norm; normalize them "
                             "(x / |x|) or use method='auto'")
        table = None
        closed = all(a.is_closed_form for a in self.activations)
        small = x1.shape[0] * x2.shape[0] < (TABLE_MIN_ENTRIES if closed else TABLE_MIN_ENTRIES // 64)
        if method == "table" or (method == "auto" and equal is not None and not small):
            try:
                table = self._table(equal, d)
            except TableError as err:
                if method == "table":
                    raise
                if tr1.explicit_layers > 2 * 64 + 4:
                    warnings.warn(f"{err}; computing layer by layer instead", stacklevel=2)
        elif method == "auto" and equal is None and not closed:
            if x1.shape[0] * x2.shape[0] > 250_000:
                warnings.warn("inputs of different norms with an activation without closed form: "
                              "each pair costs a 2-D quadrature per layer (slow). Inputs of one "
                              "norm (x / |x|) take the fast path.", stacklevel=2)
        by_covariances = get == "nngp" and table is None and carries_covariances(
            self._segments, tr1, tr2)
        n1, n2 = x1.shape[0], x2.shape[0]
        nngp, ntk = (torch.empty(n1, n2, dtype=out_dtype, device=x1.device)
                     if get in (kind, "both") else None for kind in ("nngp", "ntk"))
        scratch = torch.empty(min(block, n1), min(block, n2), dtype=dtype, device=x1.device)
        for i in range(0, n1, block):
            a = x1[i:i + block]
            for j in range(i if symmetric else 0, n2, block):
                b = x2[j:j + block]
                g = a @ b.T
                dest = [scratch[:g.shape[0], :g.shape[1]] if out is None
                        else out[i:i + block, j:j + block] for out in (nngp, ntk)]
                rows, cols = slice(i, i + block), slice(j, j + block)
                if table is not None:
                    theta = angles(g, a, b, math.sqrt(d * equal), math.sqrt(d * equal))
                    k, t = table.evaluate_theta(theta, out=dest, skip=(nngp is None, ntk is None))
                elif by_covariances:  # (the NNGP alone: no angle to carry)
                    k = t = dest[0].copy_(nngp_by_covariances(
                        self._segments, g.div_(d), tr1.view(rows, 0), tr2.view(cols, 1)))
                else:
                    theta = angles(g, a, b, (sq1[rows] * d).sqrt(), (sq2[cols] * d).sqrt())
                    k, t = self.pairs(theta, tr1.view(rows, 0), tr2.view(cols, 1), d)
                    dest[0].copy_(k)
                    dest[1].copy_(t)
                if symmetric and j != i:
                    for out, tile in ((nngp, k), (ntk, t)):
                        if out is not None:
                            out[j:j + block, i:i + block] = tile.T
                elif symmetric:  # x_i.x_j and x_j.x_i may round differently: exactly symmetric
                    for tile in (v for out, v in zip((nngp, ntk), dest, strict=True) if out is not None):
                        tile.copy_(torch.triu(tile) + torch.triu(tile, 1).T)
        if symmetric:  # the diagonal from the exact diagonal pass
            for out, diag in ((nngp, tr1.nngp), (ntk, tr1.ntk)):
                if out is not None:
                    out.diagonal().copy_(diag.expand(n1))
        check_finite(nngp, ntk)
        return Kernel(nngp, ntk)

    def _table(self, sq: float, width: int) -> AngleTable:
        """The angle table at input variance sq, built at sq rounded to 15 digits (inputs of
        one norm give variances that differ in the last bits from call to call; a table at the
        rounded value makes every call's result independent of which call built it)."""
        sq = round_digits(sq)
        key = (sq, width)
        if key not in self._tables:
            def fn(theta: np.ndarray) -> np.ndarray:
                k, t = self.angle_kernel(torch.from_numpy(theta), sq, width)
                return torch.stack(torch.broadcast_tensors(k, t), dim=-1).numpy()
            self._tables[key] = AngleTable(fn)
        return self._tables[key]
