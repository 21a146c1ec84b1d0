"""Command line: ``infnet study`` (the main job), ``infnet activations``, ``infnet limit``,
``infnet kernel``, ``infnet solve``; ``cli_predict`` and ``cli_finite`` add the others.

Every user mistake and fault of the environment ends in one ``error: ...`` line (``main``);
numbers are checked when the arguments are parsed, output paths before any computation."""

from __future__ import annotations

import argparse
import ast
import json
import math
import shlex
import sys
from pathlib import Path

import numpy as np


class _Parser(argparse.ArgumentParser):
    """argparse, its usage errors said in one line (``error: ...``) like every other error."""

    def error(self, message):
        self.exit(2, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def _param(text: str) -> tuple[str, object]:
    """NAME=VALUE: the value a Python literal (1.5, 2, True, 'a'), nan or inf, else the text
    (the activation's own checks say what it accepts)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE (e.g. beta=1.5), got {text!r}")
    try:
        parsed = ast.literal_eval(value.strip())
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        try:
            parsed = float(value)
        except ValueError:
            parsed = value
    return key.strip(), parsed


def _number(text: str, cast):
    try:
        return cast(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected {'an integer' if cast is int else 'a number'}, got {text!r}") from None


def integer(low: int):
    """An argparse type: an integer >= low."""
    def check(text: str) -> int:
        value = _number(text, int)
        if value < low:
            raise argparse.ArgumentTypeError(f"must be an integer >= {low}, got {value}")
        return value
    return check


positive_int, nonnegative_int = integer(1), integer(0)


def nonnegative_float(text: str) -> float:
    """An argparse type: a finite number >= 0."""
    value = _number(text, float)
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return value


def std(text: str) -> float:
    """An argparse type: a standard deviation, finite, >= 0, whose square (the variance the
    kernels use) is finite too."""
    value = nonnegative_float(text)
    if not math.isfinite(value * value):
        raise argparse.ArgumentTypeError(f"{text} squared (the variance) overflows float64; give "
                                         "a standard deviation below 1e154")
    return value


def depth(text: str) -> int | float:
    """An argparse type: a depth, an integer >= 1 or 'inf'."""
    if text.strip().lower() in ("inf", "infinity"):
        return math.inf
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"a depth is an integer >= 1 or 'inf', got {text!r}")
    return value


def cmd_activations(args) -> int:
    from .activations import entry, list_activations

    rows = []
    for name in list_activations():
        e = entry(name)
        act_closed = e.closed_form is not None
        params = ", ".join(f"{k}={v}" for k, v in e.defaults.items())
        rows.append({"name": name, "formula": e.formula, "parameters": params,
                     "closed_form": act_closed if e.closed_when is None else "some parameters",
                     "source": e.source})
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"infnet activation catalog ({len(rows)} entries)")
    for col in ("name", "formula", "parameters", "closed form", "source"):
        table.add_column(col, overflow="fold")
    for r in rows:
        cf = r["closed_form"]
        table.add_row(r["name"], r["formula"], r["parameters"],
                      "yes" if cf is True else ("no" if cf is False else cf), r["source"])
    Console(width=args.width).print(table)
    return 0


def cmd_kernel(args) -> int:
    import torch

    from . import activation, fc
    from .data import read_array, unit_rows
    from .scale.folders import atomic_path, check_writable

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

    from .scale import StoreMismatchError, compute_kernel

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
    from .scale.folders import lock_holder

    holder = lock_holder(store.path)
    if holder:
        return f"{holder} is computing it now: wait for it to finish, then run solve again"
    command = store.manifest.get("command")
    how = (f"`{command}`" if command else
           f"the `infnet kernel DATA ... --store {store.path}` command that made it")
    return f"complete it by running {how} again (it computes only the missing and corrupt tiles)"


def _open_store(path: str):
    from .scale import KernelStore

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

    from .data import read_labels
    from .scale import CorruptTileError, solve
    from .scale.folders import atomic_path, check_writable

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


def cmd_study(args) -> int:
    from .study import run_study

    out = run_study(out=Path(args.out), datasets=args.data, activations=args.activations,
                    depths=args.depths, kernels=args.kernels, n_train=args.n_train,
                    n_test=args.n_test, seed=args.seed, taxonomy=not args.no_taxonomy,
                    restart=args.restart)
    print(f"report: {out / 'report.md'}")
    return 0


def cmd_limit(args) -> int:
    from .activations import activation
    from .limit import limit

    lim = limit(activation(args.name, **dict(args.param or [])))
    if args.json:
        fields = ("kind", "dual0", "slope0", "slope1", "exponent", "fixed_point", "order",
                  "explanation")
        print(json.dumps({"activation": lim.name, **{f: getattr(lim, f) for f in fields}}))
    else:
        print(lim)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="infnet", description="Infinitely wide and deep networks through their "
                "activation functions.")
    sub = p.add_subparsers(dest="command", required=True)

    a = sub.add_parser("activations", help="list the activation catalog")
    a.add_argument("--json", action="store_true", help="machine-readable output")
    a.add_argument("--width", type=positive_int, default=160, help="console width")
    a.set_defaults(func=cmd_activations)

    k = sub.add_parser("kernel", help="NNGP/NTK of a fully-connected network on data")
    k.add_argument("data", help="a .npy/.npz/.csv/.txt file of rows, or 'digits'")
    k.add_argument("--data2", help="second set of rows (default: the data with itself)")
    k.add_argument("--activation", "-a", default="relu")
    k.add_argument("--param", "-p", action="append", type=_param, metavar="NAME=VALUE",
                   help="activation parameter, repeatable (e.g. -p beta=1.5)")
    k.add_argument("--depth", "-L", type=int, default=3)
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

    from .study import DEFAULT_ACTIVATIONS, DEFAULT_DATA, DEFAULT_DEPTHS

    s = sub.add_parser("study", help="the main job: classifiers of deep and infinitely deep "
                       "networks on embedded data, against depth, with baselines")
    s.add_argument("--out", "-o", default="infnet-study", help="report folder (re-running "
                   "continues an interrupted study)")
    s.add_argument("--data", nargs="+", default=list(DEFAULT_DATA), metavar="DATA",
                   help="dirichlet2, dirichlet3 (the paper's settings), digits, or .npz files "
                   "with x_train, y_train, x_test, y_test")
    s.add_argument("--activations", nargs="+", default=list(DEFAULT_ACTIVATIONS), metavar="ACT",
                   help="catalog names, 'optimal' (polynomial optimal dual for the data's "
                   "dimension), 'sine' (optimal sine_a), 'hermite' (h_2)")
    s.add_argument("--depths", nargs="+", type=depth, default=list(DEFAULT_DEPTHS),
                   metavar="L", help="integers >= 1 and 'inf'")
    s.add_argument("--kernels", nargs="+", choices=["nngp", "ntk"], default=["nngp", "ntk"])
    s.add_argument("--n-train", type=positive_int, default=500)
    s.add_argument("--n-test", type=positive_int, default=500)
    s.add_argument("--seed", type=nonnegative_int, default=0)
    s.add_argument("--no-taxonomy", action="store_true", help="skip the catalog's taxonomy table")
    s.add_argument("--restart", action="store_true", help="delete the results of an earlier "
                   "study in --out (made with other data or options) and start again")
    s.set_defaults(func=cmd_study)

    lm = sub.add_parser("limit", help="the infinite-depth class of an activation")
    lm.add_argument("name", help="catalog name")
    lm.add_argument("--param", "-p", action="append", type=_param, metavar="NAME=VALUE")
    lm.add_argument("--json", action="store_true")
    lm.set_defaults(func=cmd_limit)

    from .cli_finite import add_parsers as add_finite
    from .cli_predict import add_parser as add_predict

    add_predict(sub)
    add_finite(sub)
    return p


def _os_message(err: OSError) -> str:
    """An environment fault in words: infnet's own OSErrors carry their message; the system's
    name the file and the reason ("missing.npy: No such file or directory")."""
    if err.filename is None:
        return str(err) if err.strerror is None else f"{err.strerror} ({type(err).__name__})"
    return f"{err.filename}{f' -> {err.filename2}' if err.filename2 else ''}: {err.strerror or err}"


def main(argv: list[str] | None = None) -> int:
    """The ``infnet`` command. A user's mistake or a fault of the environment (files, network,
    memory) is one ``error: ...`` line and a non-zero status; other exceptions are bugs."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as done:  # --help (0), or a usage error already said (2)
        return done.code
    args.command_line = "infnet " + shlex.join(argv)
    message, status = None, 2
    try:
        return args.func(args)
    except KeyboardInterrupt:
        message, status = ("interrupted (a study or a kernel store continues where it stopped "
                           "when the same command is run again)"), 130
    except (ValueError, KeyError, TypeError, ArithmeticError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
    except OSError as err:  # files, folders, disks, connections
        message, status = _os_message(err), 1
    except MemoryError:
        message, status = ("out of memory: use fewer points, or a kernel store in tiles "
                           "(infnet kernel --store) for large data"), 1
    except ImportError as err:
        if (err.name or "").startswith("infnet"):
            raise
        message, status = str(err), 1
    print(f"error: {message}", file=sys.stderr)
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
