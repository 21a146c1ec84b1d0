"""Kernel regression without the kernel in memory: Nystrom-preconditioned conjugate gradients.

``solve(op, Y, ridge=mu)`` returns alpha = (K + mu I)^(-1) Y for every column of Y, touching K
only through a ``KernelOperator``: ``matvec(V)`` (K @ V), ``columns(idx)`` (K[:, idx]),
``diagonal()``, ``n`` and ``dtype``. ``NetworkOperator`` recomputes K tile by tile from a network
at every product (memory O(tile * n + n * m), never n^2); the tiled on-disk ``KernelStore`` of
``infnet.scale`` has the same members; ``DenseOperator`` wraps a matrix (tests, small problems).

The iteration (Hestenes & Stiefel 1952; Saad, *Iterative Methods for Sparse Linear Systems*,
Alg. 9.1) is a block of independent preconditioned CGs, one per output, sharing each product
with K: for each column, step a = (r.z) / (p.A p), x += a p, r -= a A p, z = P^(-1) r,
p = z + (r'.z') / (r.z) p, with A = K + mu I. A column stops when its relative residual
|r| / |y| < tol; the recursive residual drifts from the true one, so at the end the true
residual y - A x is computed with one more product and the columns still above tol restart from
it (at most ``_RESTARTS`` times). ``info.converged`` is about the true residual.

The preconditioner: ``nystrom`` (randomized Nystrom, Frangella, Tropp & Udell 2021).

Zero or tiny ridge: CG still converges for a positive definite K (the NTK of distinct points
usually is), at a rate set by sqrt(lambda_(r+1) / lambda_min), which can be slow; a ridge of
~1e-6 x mean(diag K) changes predictions little and bounds the iteration count. A singular K
(duplicated inputs) with mu = 0 has no solution for a general Y: CG then stalls or raises.

Float32 (``NetworkOperator(dtype=torch.float32)``, or a float32 store): the operator's answers
and U are float32; the CG vectors (n x m) stay float64 and are what ``matvec`` receives (a
float32 store then accumulates in float64). The true residual cannot go much below the
rounding of the float32 entries or answers, ~1e-7 x |K alpha| / |y|: use tol >= 1e-5. If the
recursive residual meets tol but the true one never does, ``solve`` warns and says so.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ..core.checks import all_finite
from ..predict.solve import NotPositiveDefiniteError, check_ridge
from .nystrom import default_rank, nystrom
from .operators import KernelOperator, _check_operator, _checked

Tensor = torch.Tensor

#: times the columns whose true residual is still above tol restart from it
_RESTARTS = 5
#: CG vectors in this dtype whatever the operator's
_WORK = torch.float64


class ConvergenceWarning(UserWarning):
    """CG stopped at max_iter (or after its restarts) with some outputs above tol."""


@dataclass
class SolveInfo:
    """What ``solve`` did: iterations, residuals, convergence, preconditioner, times.

    Parameters
    ----------
    iterations : int
        CG iterations run.
    converged : bool
        Every output met tol (true residual).
    converged_outputs : torch.Tensor
        (m,) bool, by output.
    iterations_per_output : torch.Tensor
        (m,): ``iterations_per_output[j]`` is the iteration at which output j met tol (-1:
        never).
    residuals : torch.Tensor
        (iterations + 1, m): ``residuals[k, j]`` is output j's relative residual |r| / |y|
        after k iterations (the recursive residual; constant once the output stopped).
    final_residuals : torch.Tensor
        (m,): the true ones |y - (K + mu I) x| / |y| at the end.
    matvecs : int
        Products with K.
    rank : int
        Of the preconditioner (0: none).
    mean_diagonal : float
        Of K: the scale for a relative ridge.
    setup_time : float
        Seconds to build the preconditioner.
    time : float
        Seconds in all.

    Examples
    --------
    >>> net = infnet.fc("relu", depth=2, w_std=2**0.5)
    >>> x = torch.randn(20, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    >>> x = x / x.norm(dim=1, keepdim=True)
    >>> k = net.kernel(x).ntk
    >>> y = torch.stack([x[:, 0], x[:, 1]], dim=1)
    >>> _, info = infnet.scale.solve(infnet.scale.DenseOperator(k), y, ridge=1e-3, rank=5,
    ...                              progress=False)
    >>> info.converged, info.rank, info.converged_outputs.tolist()
    (True, 5, [True, True])
    >>> info.residuals.shape[1], bool((info.final_residuals < 1e-8).all())
    (2, True)
    """

    iterations: int
    converged: bool
    converged_outputs: Tensor
    iterations_per_output: Tensor
    residuals: Tensor
    final_residuals: Tensor
    matvecs: int
    rank: int            # of the preconditioner (0: none)
    mean_diagonal: float  # of K: the scale for a relative ridge
    setup_time: float     # seconds to build the preconditioner
    time: float


def solve(op: KernelOperator, Y, *, ridge: float = 0.0, tol: float = 1e-8, max_iter: int = 1000,
          rank: int | None = None, preconditioner: str = "nystrom", sketch: str = "columns",
          seed: int = 0, progress: bool = True) -> tuple[Tensor, SolveInfo]:
    """Solve alpha = (K + ridge I)^(-1) Y by Nystrom-preconditioned CG (module docstring).

    K is touched only through the operator's products, columns and diagonal. Hitting
    ``max_iter`` warns (``ConvergenceWarning``) and returns the last iterate.

    Parameters
    ----------
    op : KernelOperator
        K (``DenseOperator``, ``NetworkOperator``, a square ``KernelStore``...).
    Y : array_like or torch.Tensor
        (n,) or (n, m) real targets.
    ridge : float, default 0.0
        mu >= 0, finite; ~1e-6 x mean(diag K) (``info.mean_diagonal``) changes predictions
        little and bounds the iteration count.
    tol : float, default 1e-8
        Stop an output when |r| / |y| < tol (true residual, checked at the end); in (0, 1).
    max_iter : int, default 1000
        The most CG iterations.
    rank : int, optional
        The Nystrom rank (default ``default_rank(n)``).
    preconditioner : {"nystrom", "none"}, default "nystrom"
        The preconditioner.
    sketch : {"columns", "gaussian"}, default "columns"
        The Nystrom test matrix.
    seed : int, default 0
        Seed of the Nystrom sketch.
    progress : bool, default True
        A rich progress line on stderr with the residuals.

    Returns
    -------
    alpha : torch.Tensor
        Of Y's shape, float64.
    info : SolveInfo
        Iterations, residuals, convergence.

    Raises
    ------
    ValueError
        ridge, tol, max_iter, preconditioner, sketch or rank invalid; Y not (n,) or (n, m)
        with n the operator's, or with NaN or inf; ``op.n`` not a positive integer; an
        operator's answer of the wrong shape.
    TypeError
        An operator that lacks a member, an answer that is not a tensor, or complex Y.
    FloatingPointError
        An operator's answer with NaN or inf.
    infnet.predict.solve.NotPositiveDefiniteError
        A diagonal that is not positive, or p^T (K + ridge I) p <= 0 during CG: not a kernel
        matrix, or singular with ridge = 0.

    Warns
    -----
    ConvergenceWarning
        Some outputs did not reach tol within ``max_iter`` (or after the restarts).

    Examples
    --------
    >>> net = infnet.fc("relu", depth=2, w_std=2**0.5)
    >>> x = torch.randn(20, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    >>> x = x / x.norm(dim=1, keepdim=True)
    >>> k = net.kernel(x).ntk
    >>> y = x[:, 0].clone()
    >>> alpha, info = infnet.scale.solve(infnet.scale.DenseOperator(k), y, ridge=1e-3, rank=5,
    ...                                  progress=False)
    >>> alpha.shape, info.converged
    (torch.Size([20]), True)
    >>> bool(torch.allclose(alpha, torch.linalg.solve(k + 1e-3 * torch.eye(20, dtype=torch.float64), y)))
    True

    The same without the kernel in memory, recomputed tile by tile at every product:

    >>> op = infnet.scale.NetworkOperator(net, x, tile=8)
    >>> alpha2, _ = infnet.scale.solve(op, y, ridge=1e-3, rank=5, progress=False)
    >>> bool(torch.allclose(alpha2, alpha, atol=1e-6))
    True
    """
    start = time.perf_counter()
    n = _check_operator(op)
    y, squeeze = _check_targets(Y, n)
    ridge = check_ridge(ridge)
    if not (isinstance(tol, (int, float)) and 0 < tol < 1):
        raise ValueError(f"tol must be a number in (0, 1), got {tol!r}")
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"max_iter must be a positive integer, got {max_iter!r}")
    if preconditioner not in ("nystrom", "none"):
        raise ValueError(f"preconditioner must be 'nystrom' or 'none', got {preconditioner!r}")
    if sketch not in ("columns", "gaussian"):
        raise ValueError(f"sketch must be 'columns' or 'gaussian', got {sketch!r}")
    rank = default_rank(n) if rank is None else rank
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise ValueError(f"rank must be a positive integer, got {rank!r}")

    diag = _checked(op.diagonal(), (n,), "diagonal", _WORK)
    if float(diag.min()) < 0 or float(diag.max()) == 0:
        raise NotPositiveDefiniteError(f"the operator's diagonal ranges over [{float(diag.min()):.3g}, "
                                       f"{float(diag.max()):.3g}]: a kernel matrix has a "
                                       "positive diagonal")
    y = y.to(diag.device)
    run = _Run(op, y, ridge, tol, max_iter, progress)
    with run.bar:
        precond = None
        if preconditioner == "nystrom":
            run.status(f"Nystrom preconditioner, rank {min(rank, n)} ({sketch})")
            precond = nystrom(op, rank, mu=ridge, sketch=sketch, seed=seed, device=diag.device)
            run.matvecs += sketch == "gaussian"
        setup = time.perf_counter() - start
        run.iterate(precond.apply if precond is not None else torch.clone)
    x = run.x.reshape(-1) if squeeze else run.x
    info = SolveInfo(iterations=run.iteration, converged=bool(run.done.all()),
                     converged_outputs=run.done.clone(), iterations_per_output=run.stopped_at,
                     residuals=torch.stack(run.history), final_residuals=run.true_residual,
                     matvecs=run.matvecs, rank=precond.rank if precond is not None else 0,
                     mean_diagonal=float(diag.mean()), setup_time=setup,
                     time=time.perf_counter() - start)
    if not info.converged:
        bad = (~run.done).nonzero().flatten().tolist()
        if run.stagnated:
            hint = (f"; the recursive residual met tol {_RESTARTS} times but not the true one: "
                    f"the operator's {str(op.dtype).replace('torch.', '')} products are not "
                    "accurate enough for this tol (loosen it, or use a larger ridge)")
        elif op.dtype == torch.float32 and tol < 1e-5:
            hint = " (float32 kernel: its products round at ~1e-7; use tol >= 1e-5)"
        else:
            hint = "; raise max_iter or rank, or use a ridge"
        warnings.warn(f"CG did not reach tol = {tol:g} for outputs {bad[:10]}"
                      f"{' ...' if len(bad) > 10 else ''} after {run.iteration} iterations: "
                      f"largest relative residual {float(run.true_residual.max()):.2e}{hint}",
                      ConvergenceWarning, stacklevel=2)
    return x, info


class _Run:
    """The state of one block CG: iterate, residuals, directions, per-output bookkeeping."""

    def __init__(self, op, y: Tensor, ridge: float, tol: float, max_iter: int, progress: bool):
        self.op, self.y, self.ridge, self.tol, self.max_iter = op, y, ridge, tol, max_iter
        m = y.shape[1]
        self.ynorm = y.norm(dim=0)
        self.x = torch.zeros_like(y)
        self.r = y.clone()
        self.p = torch.zeros_like(y)
        self.rz = torch.zeros(m, dtype=_WORK, device=y.device)
        self.done = self.ynorm == 0  # y = 0: alpha = 0
        self.res = torch.where(self.done, 0.0, 1.0).to(_WORK)
        self.history = [self.res.clone()]
        self.stopped_at = torch.where(self.done, 0, -1)
        self.true_residual = self.res.clone()
        self.iteration = self.matvecs = 0
        self.stagnated = False  # the true residual stayed above tol through all restarts
        self.bar = _progress(progress)
        self.task = self.bar.add_task("CG", total=1.0, status="")

    def status(self, text: str) -> None:
        self.bar.update(self.task, status=text)

    def product(self, v: Tensor) -> Tensor:
        """(K + ridge I) v in the working dtype, the operator's answer checked."""
        self.matvecs += 1
        kv = _checked(self.op.matvec(v), tuple(v.shape), "matvec", _WORK)
        return kv.add_(v, alpha=self.ridge) if self.ridge else kv

    def iterate(self, apply: Callable[[Tensor], Tensor]) -> None:
        for _ in range(_RESTARTS + 1):
            active = (~self.done).nonzero().flatten()
            if len(active):
                self._start(active, apply)
                self._cg(apply)
            self._verify()
            if bool(self.done.all()) or self.iteration >= self.max_iter:
                return
        self.stagnated = True

    def _start(self, active: Tensor, apply) -> None:
        z = apply(self.r[:, active])
        self.p[:, active] = z
        self.rz[active] = (self.r[:, active] * z).sum(0)

    def _cg(self, apply) -> None:
        active = (~self.done).nonzero().flatten()
        while len(active) and self.iteration < self.max_iter:
            self.iteration += 1
            p = self.p[:, active]
            ap = self.product(p)
            pap = (p * ap).sum(0)
            if bool((pap <= 0).any()):
                raise NotPositiveDefiniteError(
                    f"p^T (K + ridge I) p = {float(pap.min()):.3g} <= 0 at CG iteration "
                    f"{self.iteration}: the operator is not positive definite (not a kernel "
                    "matrix, or singular with ridge = 0: use a ridge)")
            step = self.rz[active] / pap
            self.x[:, active] += step * p
            r = self.r[:, active] - step * ap
            self.r[:, active] = r
            self.res[active] = r.norm(dim=0) / self.ynorm[active]
            self.history.append(self.res.clone())
            met = self.res[active] < self.tol
            self.done[active[met]] = True
            self.stopped_at[active[met]] = self.iteration
            active, r = active[~met], r[:, ~met]
            if len(active):
                z = apply(r)
                rz = (r * z).sum(0)
                self.p[:, active] = z + (rz / self.rz[active]) * self.p[:, active]
                self.rz[active] = rz
            self._report(active)

    def _verify(self) -> None:
        """True residuals y - (K + ridge I) x; outputs above tol are reopened from them."""
        self.status("checking the true residual")
        r = self.y - self.product(self.x)
        self.true_residual = torch.where(self.ynorm > 0, r.norm(dim=0) / self.ynorm.clamp(min=1e-300),
                                         0.0)
        failed = self.true_residual >= self.tol
        self.r[:, failed] = r[:, failed]
        self.res[failed] = self.true_residual[failed]
        self.done = ~failed
        self.stopped_at[failed] = -1
        self._report((~self.done).nonzero().flatten())

    def _report(self, active: Tensor) -> None:
        worst = float(self.res[active].max()) if len(active) else float(self.res.max())
        fraction = min(1.0, max(0.0, math.log(max(worst, 1e-300)) / math.log(self.tol)))
        self.bar.update(self.task, completed=fraction,
                        status=f"iteration {self.iteration}, {int(self.done.sum())}/"
                               f"{len(self.done)} outputs done, largest residual {worst:.2e}")


def _progress(enabled: bool):
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                    TextColumn("{task.fields[status]}"), console=Console(stderr=True),
                    disable=not enabled)


def _check_targets(Y, n: int) -> tuple[Tensor, bool]:
    y = torch.as_tensor(Y) if torch.is_tensor(Y) else torch.as_tensor(np.asarray(Y, dtype=np.float64))
    if y.ndim not in (1, 2):
        raise ValueError(f"Y must have shape (n,) or (n, outputs), got {tuple(y.shape)}")
    if y.shape[0] != n:
        raise ValueError(f"Y has {y.shape[0]} rows but the kernel is {n} x {n}: one target row "
                         "per training point")
    if y.is_complex():
        raise TypeError("Y is complex; kernel regression needs real targets")
    y = y.to(_WORK)
    if not all_finite(y):
        raise ValueError("Y contains NaN or inf")
    squeeze = y.ndim == 1
    return y.reshape(n, -1).clone(), squeeze
