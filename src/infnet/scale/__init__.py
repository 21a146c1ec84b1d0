"""Kernels beyond one machine's memory: tiled, resumable kernel stores on disk, computed in
one process or on a Dask cluster.

    from infnet.scale import compute_kernel, KernelStore
    store = compute_kernel(net, x, path="K_ntk", tile=2048, scheduler="local", workers=8)
    store = KernelStore.open("K_ntk")          # later, elsewhere
    store.matvec(v); store.columns(idx); store.diagonal(); store.block(rows, cols)
    alpha, info = solve(store, Y, ridge=1e-6, tol=1e-8)   # Nystrom-preconditioned CG
    alpha, info = solve(NetworkOperator(net, x), Y)       # tiles recomputed, never stored

``store`` (tiles on disk, manifest, the store's errors), ``digests`` (the fingerprint of a store:
data, network code, parameters), ``compute`` (single process or Dask), ``operators`` (K through
products and columns), ``nystrom`` (the preconditioner), ``solve``. Atomic files, one writer per
folder and array fingerprints, shared with the study and the command line, are in
``infnet.core.files``.
"""

from ..core.files import FolderInUseError, WriteError
from .compute import CONNECT_TIMEOUT, compute_kernel, compute_tile, local_cluster
from .digests import fingerprint
from .nystrom import NystromPreconditioner, default_rank, nystrom
from .operators import DenseOperator, KernelOperator, NetworkOperator, predict
from .solve import ConvergenceWarning, SolveInfo, solve
from .store import (
           CorruptStoreError,
           CorruptTileError,
           KernelStore,
           StoreMismatchError,
           StoreWriteError,
           Verification,
)

__all__ = ["CONNECT_TIMEOUT", "ConvergenceWarning", "CorruptStoreError", "CorruptTileError",
           "DenseOperator", "FolderInUseError", "KernelOperator",
           "KernelStore", "NetworkOperator", "NystromPreconditioner", "SolveInfo",
           "StoreMismatchError", "StoreWriteError", "Verification", "compute_kernel",
           "WriteError", "compute_tile", "default_rank", "fingerprint", "local_cluster", "nystrom",
           "predict", "solve"]
