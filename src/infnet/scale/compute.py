"""Tiled, resumable computation of a network's kernel into a ``KernelStore``: in this process
or on a Dask cluster (one task per tile).

The kernel is *defined* tile by tile: tile (i, j) is ``net.kernel(x1[rows_i], x2[cols_j])``
(a diagonal tile of a symmetric kernel: ``net.kernel(x1[rows_i])``, its upper triangle
mirrored so that the stored kernel is exactly symmetric), computed by ``compute_tile`` with one
torch thread on a fresh copy of the network. Every mode runs that same function, so results
are bit-for-bit the same in one process, on a local cluster or on many machines of one kind;
they may differ in the last bits from one ``net.kernel(x)`` call, which picks its path (angle
table or exact) from the norms of all inputs at once.
"""

from __future__ import annotations

import contextlib
import uuid
import warnings

import numpy as np
import torch

from ..core.files import folder_lock
from .digests import fingerprint
from .store import KernelStore, make_store_folder

#: seconds to wait for a Dask scheduler at an address before giving up
CONNECT_TIMEOUT = 5.0


def compute_tile(net, x1, x2, store: KernelStore, i: int, j: int,
                 dtype: torch.dtype = torch.float64) -> tuple[int, int]:
    """Compute tile (i, j) of ``store`` with one torch thread and write it (atomically).

    The tile is computed in float64 whatever the store's dtype (a float32 store rounds the
    float64 tile: the fast equal-norm path needs float64 norms, and the entries are then
    correctly rounded). The number of threads is restored afterwards (BLAS and OpenMP
    reductions may change in the last bit with it); the row and column blocks are copied into
    fresh (aligned) memory so that results do not depend on where the inputs lie. (The
    network's cached angle tables are built at a rounded input variance, so a tile does not
    depend on the tiles computed before it in the same process.) One tile at a time per
    process: ``torch.set_num_threads`` is global. Every mode of ``compute_kernel`` runs this
    function, one call per tile.

    Parameters
    ----------
    net : infnet.Network
        The network whose ``store.kind`` kernel is computed (``net.kernel``).
    x1 : torch.Tensor
        (n1, features) inputs of the rows.
    x2 : torch.Tensor or None
        (n2, features) inputs of the columns; None for a symmetric store (x2 = x1).
    store : KernelStore
        The store the tile belongs to and is written into.
    i, j : int
        The tile's row and column in the store's grid.
    dtype : torch.dtype, default torch.float64
        Unused: the tile is always computed in float64, then stored in the store's dtype.

    Returns
    -------
    tuple of int
        (i, j), once the tile is written.

    Raises
    ------
    StoreWriteError
        The tile's files cannot be written (unwritable folder, full disk...).
    ValueError
        The kernel has another shape than the tile.

    Examples
    --------
    >>> net = infnet.fc("relu", depth=2, w_std=2**0.5)
    >>> x = torch.randn(20, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    >>> x = x / x.norm(dim=1, keepdim=True)
    >>> fp = infnet.scale.fingerprint(net, x, kind="ntk", tile=8, dtype=torch.float64)
    >>> store = infnet.scale.KernelStore.create("K_tiles", 20, 20, fp)
    >>> infnet.scale.compute_tile(net, x, None, store, 0, 1)
    (0, 1)
    >>> store.verify().done
    [(0, 1)]
    >>> bool(torch.allclose(store.tile(0, 1), net.kernel(x[:8], x[8:16]).ntk))
    True
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        a = x1[store.rows(i)].clone()
        if store.symmetric and i == j:
            k = net.kernel(a, get=store.kind, dtype=torch.float64)
        else:
            b = (x1 if x2 is None else x2)[store.cols(j)].clone()
            k = net.kernel(a, b, get=store.kind, dtype=torch.float64)
        values = k.get(store.kind).cpu().numpy()
        if store.symmetric and i == j:  # (x x^T in BLAS is not always exactly symmetric)
            values = np.triu(values) + np.triu(values, 1).T
    finally:
        torch.set_num_threads(threads)
    store.write_tile(i, j, values)
    return i, j


def _as_input(x, name: str) -> torch.Tensor:
    x = x if torch.is_tensor(x) else torch.as_tensor(np.asarray(x, dtype=np.float64))
    if x.ndim < 2 or x.shape[0] < 1:
        raise ValueError(f"{name} must be (n, features), or (n, C, H, W) / (n, C, L) for a "
                         f"spatial network, with n >= 1; got shape {tuple(x.shape)}")
    return x.contiguous()  # (the network flattens the rows it needs flat)


def compute_kernel(net, x1, x2=None, *, path, kind: str = "ntk", tile: int = 2048,
                   scheduler=None, workers: int | None = None, progress: bool = True,
                   dtype: torch.dtype = torch.float64, overwrite: bool = False,
                   command: str | None = None) -> KernelStore:
    """Compute a network's kernel into a tiled, resumable ``KernelStore`` on disk.

    The ``kind`` ("nngp" or "ntk") kernel of ``net`` between the rows of x1 and x2 (None: x1
    with itself; only tiles j >= i are stored) in tiles of ``tile`` x ``tile``, in the folder
    ``path``. Tile (i, j) is ``compute_tile``'s, in every mode.

    Resumable: tiles already done (data and checksum agree) are skipped, others (missing,
    half-written, corrupted) computed; run it again after an interruption. A folder holding a
    store of other data, network or parameters is refused (``StoreMismatchError``) unless
    ``overwrite=True``, which deletes its tiles. One writer at a time: while a computation
    runs, the folder is locked (``infnet.core.files.folder_lock``, released when the process ends, even
    killed) and a second one is refused at once with ``FolderInUseError``.

    ``scheduler``: None computes in this process (one thread: results are identical in every
    mode); ``"local"`` starts a ``dask.distributed.LocalCluster`` of ``workers`` (default 2)
    single-threaded processes (``local_cluster``); any other string is the address of a running
    Dask scheduler (``"tcp://host:8786"``); a ``distributed.Client`` is used as it is (its
    workers should have one thread each). Each task computes
    and writes one tile itself, so workers on other machines need ``path`` on a filesystem they
    all share (NFS, Lustre...). The inputs and the network are sent once to each worker; the
    network's activations must pickle (catalog activations travel by name; your own functions
    must be importable on the workers, or lambdas that cloudpickle can copy). Scripts that use
    ``"local"`` need the ``if __name__ == "__main__":`` guard (workers are new processes). A
    scheduler address that does not answer within ``CONNECT_TIMEOUT`` seconds is a
    ``ConnectionError``.

    Parameters
    ----------
    net : infnet.Network
        The network (``net.kernel``).
    x1 : array_like or torch.Tensor
        (n1, ...) inputs, flattened to (n1, features).
    x2 : array_like or torch.Tensor, optional
        (n2, ...) inputs of the columns; None: the symmetric kernel of x1.
    path : str or os.PathLike
        The store's folder, created if needed.
    kind : {"ntk", "nngp"}, default "ntk"
        The kernel.
    tile : int, default 2048
        The tile size, a positive integer.
    scheduler : None, str or distributed.Client, optional
        None: this process; "local": a local Dask cluster; another string: a scheduler
        address; a client: used as it is (see above).
    workers : int, optional
        The number of worker processes of ``scheduler="local"`` (default 2).
    progress : bool, default True
        A rich progress bar over tiles.
    dtype : torch.dtype, default torch.float64
        The stored entries' dtype, torch.float32 or torch.float64 (tiles are computed in
        float64).
    overwrite : bool, default False
        Delete the tiles of a store made for other inputs instead of refusing it.
    command : str, optional
        The command line that makes the store, kept in its manifest.

    Returns
    -------
    KernelStore
        The complete store.

    Raises
    ------
    ValueError
        kind, tile or dtype invalid; inputs not (n, features) with n >= 1, or x1 and x2 of
        different numbers of features.
    TypeError
        scheduler of another type; a network that cannot be sent to Dask workers.
    StoreMismatchError
        The folder holds a store made for other data, network or parameters (without
        ``overwrite``).
    CorruptStoreError
        The folder's manifest is unreadable, of another format, or incomplete.
    FolderInUseError
        Another computation writes to the folder.
    StoreWriteError
        The folder or a file cannot be written (tiles already done are kept).
    ConnectionError
        No Dask scheduler answers at the address within ``CONNECT_TIMEOUT`` seconds.
    ImportError
        A scheduler without Dask installed (``pip install 'infnet[dask]'``).

    Examples
    --------
    >>> net = infnet.fc("relu", depth=2, w_std=2**0.5)
    >>> x = torch.randn(20, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    >>> x = x / x.norm(dim=1, keepdim=True)
    >>> store = infnet.scale.compute_kernel(net, x, path="K_ntk", tile=8, progress=False)
    >>> store
    KernelStore('K_ntk', ntk, 20x20, tile=8, symmetric=True)
    >>> store.verify().complete, bool(torch.allclose(store.to_array(), net.kernel(x).ntk))
    (True, True)

    Run again, it finds every tile done; for other inputs it refuses the folder:

    >>> infnet.scale.compute_kernel(net, x, path="K_ntk", tile=8, progress=False).verify().complete
    True
    >>> infnet.scale.compute_kernel(net, 2 * x, path="K_ntk", tile=8, progress=False)
    Traceback (most recent call last):
        ...
    infnet.scale.store.StoreMismatchError: the kernel store at K_ntk was made for other inputs: data x1 ...
    """
    if kind not in ("nngp", "ntk"):
        raise ValueError(f"kind must be 'nngp' or 'ntk', got {kind!r}")
    if not (isinstance(tile, int) and tile >= 1):
        raise ValueError(f"tile must be a positive integer, got {tile!r}")
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype!r}")
    if not (scheduler is None or isinstance(scheduler, str) or hasattr(scheduler, "submit")):
        raise TypeError(f"scheduler must be None, 'local', a scheduler address or a "
                        f"distributed.Client, got {scheduler!r}")
    fp = fingerprint(net, x1, x2, kind=kind, tile=tile, dtype=dtype)
    x1 = _as_input(x1, "x1")
    x2 = None if x2 is None else _as_input(x2, "x2")
    if x2 is not None and x2.shape[1:] != x1.shape[1:]:
        raise ValueError(f"x1 has inputs of shape {tuple(x1.shape[1:])} and x2 of "
                         f"{tuple(x2.shape[1:])}: they must match")
    n2 = x1.shape[0] if x2 is None else x2.shape[0]
    with folder_lock(make_store_folder(path), "this kernel store"):
        store = KernelStore.create(path, x1.shape[0], n2, fp, overwrite=overwrite, command=command)
        store.clean()
        check = store.verify()
        todo = check.missing + check.corrupt
        with _progress_bar(progress, kind, len(store.tiles()), len(check.done)) as advance:
            if scheduler is None:
                for i, j in todo:
                    compute_tile(net, x1, x2, store, i, j, dtype)
                    advance()
            elif todo:
                _run_dask(scheduler, workers, net, x1, x2, store, todo, dtype, advance)
    return store


@contextlib.contextmanager
def _progress_bar(enabled: bool, kind: str, total: int, done: int):
    """A rich progress bar over tiles; yields the function that advances it by one tile."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (TextColumn(f"{kind} tiles"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, disable=not enabled) as bar:
        task = bar.add_task(kind, total=total, completed=done)
        yield lambda: bar.advance(task)


def _require_dask():
    try:
        import distributed
    except ImportError as err:
        raise ImportError("scheduler=... needs Dask: pip install 'infnet[dask]' "
                          "(dask[distributed])") from err
    return distributed


def _check_picklable(net) -> None:
    from distributed.protocol import pickle as dask_pickle

    try:
        dask_pickle.loads(dask_pickle.dumps(net))
    except Exception as err:
        raise TypeError(
    f"the network cannot be sent to Dask workers ({type(err).__name__}: {err}). Catalog "
            "activations travel by name; a function of your own must be picklable (defined at "
            "module level in a module the workers can import). Or run with scheduler=None."
        ) from err


def local_cluster(workers: int = 2, **kwargs):
    """Start the ``dask.distributed.LocalCluster`` that ``scheduler="local"`` starts.

    ``workers`` single-threaded processes, no dashboard, and without Dask's default
    ``MALLOC_TRIM_THRESHOLD_=65536`` in the workers' environment, which halves the tile
    throughput (every large temporary is then mapped and page-faulted anew); set
    ``distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_`` to null on your own
    clusters too. Start one to reuse across calls: ``scheduler=cluster.scheduler_address``.

    Parameters
    ----------
    workers : int, default 2
        The number of worker processes (one thread each).
    **kwargs
        Other arguments of ``LocalCluster``; they override the ones above.

    Returns
    -------
    distributed.LocalCluster
        The running cluster (a context manager: ``with`` closes it).

    Raises
    ------
    ImportError
        Dask is not installed (``pip install 'infnet[dask]'``).

    Examples
    --------
    One cluster for several kernels (scripts need the ``if __name__ == "__main__":`` guard);
    the tiles are bit-for-bit those computed in one process:

    >>> net = infnet.fc("relu", depth=2, w_std=2**0.5)
    >>> x = torch.randn(20, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    >>> x = x / x.norm(dim=1, keepdim=True)
    >>> with infnet.scale.local_cluster(workers=2) as cluster:  # doctest: +SKIP
    ...     ntk = infnet.scale.compute_kernel(net, x, path="K_ntk", tile=8, progress=False,
    ...                                       scheduler=cluster.scheduler_address)
    ...     nngp = infnet.scale.compute_kernel(net, x, path="K_nngp", kind="nngp", tile=8,
    ...                                        progress=False, scheduler=cluster.scheduler_address)
    >>> serial = infnet.scale.compute_kernel(net, x, path="K_serial", tile=8, progress=False)
    >>> serial.verify().complete
    True
    """
    import dask
    from distributed import LocalCluster

    with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}):
        return LocalCluster(**{"n_workers": workers, "threads_per_worker": 1, "processes": True,
                               "dashboard_address": None, **kwargs})


def _client(stack: contextlib.ExitStack, scheduler, workers):
    from distributed import Client

    if scheduler == "local":
        cluster = stack.enter_context(local_cluster(workers or 2))
        return stack.enter_context(Client(cluster))
    if not isinstance(scheduler, str):
        return scheduler
    try:
        return stack.enter_context(Client(scheduler, timeout=CONNECT_TIMEOUT))
    except OSError as err:  # (TimeoutError, refused connections)
        raise ConnectionError(
            f"no Dask scheduler answers at {scheduler} (gave up after {CONNECT_TIMEOUT:g} s: {err}). "
            "Check the address, start the scheduler (dask scheduler) and its workers, or compute "
            "without a scheduler (tiles already done are kept)") from None


def _run_dask(scheduler, workers, net, x1, x2, store, todo, dtype, advance) -> None:
    """One task per tile on a Dask cluster; the inputs and the network are scattered once to
    every worker (not pickled into each task)."""
    as_completed = _require_dask().as_completed
    _check_picklable(net)
    with contextlib.ExitStack() as stack:
        client = _client(stack, scheduler, workers)
        if any(n > 1 for n in client.nthreads().values()):
            warnings.warn("Dask workers with several threads run tiles concurrently while each "
                          "sets torch's (process-wide) thread count: use threads_per_worker=1 "
                          "for reproducible tiles", stacklevel=3)
        net_f, x1_f = (client.scatter(v, broadcast=True, hash=False) for v in (net, x1))
        x2_f = None if x2 is None else client.scatter(x2, broadcast=True, hash=False)
        run = uuid.uuid4().hex[:8]
        futures = [client.submit(compute_tile, net_f, x1_f, x2_f, store, i, j, dtype,
                                 pure=False, key=f"infnet-tile-{i}-{j}-{run}")
                   for i, j in todo]
        try:
            for future in as_completed(futures):
                future.result()
                advance()
        finally:
            client.cancel(futures)
