"""``infnet kernel`` (NNGP/NTK of a fully-connected network on data, printed, written or
computed in tiles into a store) and ``infnet solve`` (kernel regression on a store)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .args import finite_depth, param, positive_int, std


def add_parsers(sub) -> None:
    k = sub.add_parser("kernel", help="NNGP/NTK of a fully-connected network on data")
    k.add_argument("data", help="a .npy/.npz/.csv/.txt file of rows, or 'digits'")
    k.add_argument("--data2", help="second set of rows (default: the data with itself)")
    k.add_argument("--activation", "-a", default="relu")
    k.add_argument("--param", "-p", action="append", type=param, metavar="NAME=VALUE",
                   help="activation parameter, repeatable (e.g. -p beta=1.5)")
    k.add_argument("--depth", "-L", type=finite_depth, default=3)
    k.add_argument("--w-std", type=std, default=2**0.5)
    k.add_argument("--b-std", type=std, default=0.0)
    k.add_argument("--parameterization", choices=["ntk", "standard"], default="ntk")
    k.add_argument("--width", type=int, default=None, help="hidden width (standard param.)")
    k.add_argument("--kind", choices=["nngp", "ntk", "both"], default="both")
    k.add_argument("--normalize", action="store_true", help="scale rows to unit norm")
    k.add_argument("--out", "-o", help="write .npz (or .npy for one kind) instead of printing")
    k.add_argument("--store", metavar="PATH", help="compute in tiles into this folder "
                   "(resumable: run again after an interruption); needs --kind nngp|ntk")
    k.add_argument("--tile", type=positive_int, default=2048, help="tile size with --store")
    k.add_argument("--scheduler", help="with --store: 'local' (a Dask LocalCluster on this "
                   "machine) or a Dask scheduler address (the folder must be shared)")
    k.add_argument("--workers", type=positive_int, default=None,
                   help="workers of --scheduler local")
    k.add_argument("--float32", action="store_true", help="store float32 tiles")
    k.add_argument("--overwrite", action="store_true", help="with --store: delete a store made "
                   "for other data, network or options and start again")
    k.set_defaults(func=cmd_kernel)

    so = sub.add_parser("solve", help="kernel regression on a kernel store (infnet kernel "
                        "--store) by Nystrom-preconditioned conjugate gradients")
    so.add_argument("store", help="folder written by infnet kernel --store")
    so.add_argument("--labels", required=True, help=".npy/.npz/.csv/.txt targets: integer labels "
                    "(one-hot encoded, whatever the file type) or an (n, outputs) array")
    so.add_argument("--one-hot", action="store_true", help="one-hot encode 1-D float labels too")
    so.add_argument("--ridge", type=float, default=0.0)
    so.add_argument("--tol", type=float, default=1e-8, help="relative residual to reach")
    so.add_argument("--max-iter", type=int, default=1000)
    so.add_argument("--rank", type=int, default=None, help="Nystrom rank (default min(n, 1000))")
    so.add_argument("--out", "-o", default="alpha.npy", help="dual coefficients (.npy)")
    so.set_defaults(func=cmd_solve)


def cmd_kernel(args) -> int:
    import torch

    from .. import activation, fc
    from ..core.files import atomic_path, check_writable
    from ..data import read_array, unit_rows

    kinds = ["nngp", "ntk"] if args.kind == "both" else [args.kind]
    if args.store and (args.kind == "both" or args.out):
        raise ValueError("--store holds one kernel in its folder: give --kind nngp or --kind ntk, "
                         "and no --out")
    if args.out:  # checked before computing
        out = Path(args.out)
        if not (out.suffix == ".npz" or out.suffix == ".npy" and len(kinds) == 1):
            raise ValueError("--out must end in .npz (or .npy with --kind nngp|ntk)")
        check_writable(out)
    act = activation(args.activation, **dict(args.param or []))
    x1 = read_array(args.data)
    x2 = None if not args.data2 else read_array(args.data2)
    if args.normalize:
        x1 = unit_rows(x1, args.data)
        x2 = None if x2 is None else unit_rows(x2, args.data2)
    net = fc(act, args.depth, w_std=args.w_std, b_std=args.b_std,
             parameterization=args.parameterization, width=args.width)
    if args.store:
        return _kernel_store(net, x1, x2, args)
    k = net.kernel(torch.as_tensor(x1), None if x2 is None else torch.as_tensor(x2))
    if args.out:
        arrays = {kind: getattr(k, kind).numpy() for kind in kinds}
        with atomic_path(out) as tmp:
            if out.suffix == ".npz":
                np.savez(tmp, **arrays)
            else:
                np.save(tmp, arrays[kinds[0]])
        print(f"wrote {out} ({', '.join(f'{k_}: {a.shape}' for k_, a in arrays.items())})")
    else:
        np.set_printoptions(precision=6, suppress=False, linewidth=120, threshold=200)
        for kind in kinds:
            print(f"{kind} ({tuple(getattr(k, kind).shape)}):")
            print(getattr(k, kind).numpy())
    return 0


def _kernel_store(net, x1, x2, args) -> int:
    """``infnet kernel --store PATH``: the tiled, resumable kernel on disk (``infnet.scale``)."""
    import torch

    from ..scale import StoreMismatchError, compute_kernel

    try:
        store = compute_kernel(net, torch.as_tensor(x1), None if x2 is None else torch.as_tensor(x2),
                               path=args.store, kind=args.kind, tile=args.tile,
                               scheduler=args.scheduler, workers=args.workers,
                               dtype=torch.float32 if args.float32 else torch.float64,
                               overwrite=args.overwrite, command=args.command_line)
    except StoreMismatchError as err:
        raise StoreMismatchError(str(err).replace("overwrite=True", "--overwrite")) from None
    print(f"kernel store {args.store}: {store.n1} x {store.n2} {args.kind}, "
          f"{len(store.tiles())} tiles of {args.tile}, complete")
    return 0


def _how_to_complete(store) -> str:
    from ..core.files import lock_holder

    holder = lock_holder(store.path)
    if holder:
        return f"{holder} is computing it now: wait for it to finish, then run solve again"
    command = store.manifest.get("command")
    how = (f"`{command}`" if command else
           f"the `infnet kernel DATA ... --store {store.path}` command that made it")
    return f"complete it by running {how} again (it computes only the missing and corrupt tiles)"


def _open_store(path: str):
    from ..scale import KernelStore

    try:
        store = KernelStore.open(path)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{err}: make one with `infnet kernel DATA --kind ntk --store "
                                f"{path}` (or --kind nngp)") from None
    if store.n1 != store.n2:
        raise ValueError(f"the kernel store {path} is {store.n1} x {store.n2} (made with --data2): "
                         "solve needs the square kernel of the training data")
    missing = store.missing()
    if missing:
        raise FileNotFoundError(f"the kernel store {path} is incomplete: {len(missing)} of "
                                f"{len(store.tiles())} tiles missing (first {missing[0]}); "
                                + _how_to_complete(store))
    return store


def cmd_solve(args) -> int:
    """``infnet solve STORE --labels FILE``: kernel regression by Nystrom-preconditioned CG,
    reading the kernel from the store (never the whole matrix in memory)."""
    import torch

    from ..core.files import atomic_path, check_writable
    from ..data import read_labels
    from ..scale import CorruptTileError, solve

    out = check_writable(args.out)
    if out.suffix != ".npy":
        raise ValueError(f"--out {out}: the dual coefficients are written as .npy")
    store = _open_store(args.store)
    y = read_labels(args.labels)
    if len(y) != store.n:
        raise ValueError(f"labels file {args.labels} holds {len(y)} labels (rows) but the kernel "
                         f"store {args.store} is {store.n} x {store.n}: one label per training point")
    if y.ndim == 1 and (y.dtype.kind in "iu" or args.one_hot):
        classes, codes = np.unique(y, return_inverse=True)
        y = np.eye(len(classes))[codes]
    try:
        alpha, info = solve(store, torch.as_tensor(y, dtype=torch.float64), ridge=args.ridge,
                            tol=args.tol, max_iter=args.max_iter, rank=args.rank)
    except (FileNotFoundError, CorruptTileError) as err:  # a tile lost or damaged meanwhile
        what = str(err).split(": run compute_kernel")[0]
        raise CorruptTileError(f"{what}; {_how_to_complete(store)}") from None
    with atomic_path(out) as tmp:
        np.save(tmp, alpha.cpu().numpy())
    print(f"wrote {out}: alpha {tuple(alpha.shape)}; {info.iterations} iterations, converged "
          f"{info.converged}, largest relative residual {float(info.final_residuals.max()):.2e}")
    return 0 if info.converged else 1
