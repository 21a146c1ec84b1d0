"""Command line: ``infnet study`` (the main job), ``infnet activations``, ``infnet limit``,
``infnet kernel``."""

from __future__ import annotations

import argparse
import ast
import json
import math
import sys
from pathlib import Path

import numpy as np


def _param(text: str) -> tuple[str, object]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    try:
        parsed = ast.literal_eval(value)
    except (ValueError, SyntaxError):
        parsed = value
    return key.strip(), parsed


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


def load_array(spec: str) -> np.ndarray:
    """Data for the command line: a .npy/.npz/.csv/.txt file, or 'digits' (embedded)."""
    if spec == "digits":
        from sklearn.datasets import load_digits

        return load_digits().data.astype(np.float64)
    path = Path(spec)
    if not path.exists():
        raise SystemExit(f"error: no data file {spec!r} (give a .npy, .npz, .csv or .txt file, "
                         "or 'digits' for scikit-learn's embedded digits)")
    if path.suffix == ".npy":
        return np.load(path)
    if path.suffix == ".npz":
        with np.load(path) as z:
            if "x" in z:
                return z["x"]
            return z[list(z.keys())[0]]
    delimiter = "," if path.suffix == ".csv" else None
    return np.loadtxt(path, delimiter=delimiter, ndmin=2)


def cmd_kernel(args) -> int:
    import torch

    from . import activation, fc

    act = activation(args.activation, **dict(args.param or []))
    net = fc(act, args.depth, w_std=args.w_std, b_std=args.b_std,
             parameterization=args.parameterization, width=args.width)
    x1 = load_array(args.data)
    if args.normalize:
        x1 = x1 / np.linalg.norm(x1, axis=1, keepdims=True)
    x2 = None
    if args.data2:
        x2 = load_array(args.data2)
        if args.normalize:
            x2 = x2 / np.linalg.norm(x2, axis=1, keepdims=True)
    if args.store:
        return _kernel_store(net, x1, x2, args)
    k = net.kernel(torch.as_tensor(x1), None if x2 is None else torch.as_tensor(x2))
    kinds = ["nngp", "ntk"] if args.kind == "both" else [args.kind]
    if args.out:
        out = Path(args.out)
        arrays = {kind: getattr(k, kind).numpy() for kind in kinds}
        tmp = out.with_name(out.name + ".partial")
        if out.suffix == ".npz":
            with open(tmp, "wb") as fh:
                np.savez(fh, **arrays)
        elif out.suffix == ".npy" and len(kinds) == 1:
            with open(tmp, "wb") as fh:
                np.save(fh, arrays[kinds[0]])
        else:
            raise SystemExit("error: --out must end in .npz (or .npy with --kind nngp|ntk)")
        tmp.replace(out)  # never a half-written file under the final name
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

    if args.kind == "both":
        raise SystemExit("error: --store holds one kernel: give --kind nngp or --kind ntk")
    try:
        store = compute_kernel(net, torch.as_tensor(x1), None if x2 is None else torch.as_tensor(x2),
                               path=args.store, kind=args.kind, tile=args.tile,
                               scheduler=args.scheduler, workers=args.workers,
                               dtype=torch.float32 if args.float32 else torch.float64)
    except StoreMismatchError as err:
        raise SystemExit(f"error: {err}") from None
    print(f"kernel store {args.store}: {store.n1} x {store.n2} {args.kind}, "
          f"{len(store.tiles())} tiles of {args.tile}, complete")
    return 0


def cmd_solve(args) -> int:
    """``infnet solve STORE --labels FILE``: kernel regression by Nystrom-preconditioned CG,
    reading the kernel from the store (never the whole matrix in memory)."""
    import torch

    from .scale import KernelStore, solve

    store = KernelStore.open(args.store)
    y = load_array(args.labels) if not args.labels.endswith(".npy") else np.load(args.labels)
    y = np.asarray(y)
    if y.ndim == 1 and (y.dtype.kind in "iu" or args.one_hot):
        classes, codes = np.unique(y, return_inverse=True)
        y = np.eye(len(classes))[codes]
    alpha, info = solve(store, torch.as_tensor(y, dtype=torch.float64), ridge=args.ridge,
                        tol=args.tol, max_iter=args.max_iter, rank=args.rank)
    out = Path(args.out)
    tmp = out.with_name(out.name + ".partial")
    with open(tmp, "wb") as fh:
        np.save(fh, alpha.cpu().numpy())
    tmp.replace(out)
    print(f"wrote {out}: alpha {tuple(alpha.shape)}; {info.iterations} iterations, converged "
          f"{info.converged}, largest relative residual {float(info.final_residuals.max()):.2e}")
    return 0 if info.converged else 1


def cmd_study(args) -> int:
    from .study import run_study

    depths = [math.inf if d in ("inf", "infinity") else int(d) for d in args.depths]
    out = run_study(out=Path(args.out), datasets=args.data, activations=args.activations,
                    depths=depths, kernels=args.kernels, n_train=args.n_train,
                    n_test=args.n_test, seed=args.seed, taxonomy=not args.no_taxonomy)
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
    p = argparse.ArgumentParser(prog="infnet", description="Infinitely wide and deep networks "
                                "through their activation functions.")
    sub = p.add_subparsers(dest="command", required=True)

    a = sub.add_parser("activations", help="list the activation catalog")
    a.add_argument("--json", action="store_true", help="machine-readable output")
    a.add_argument("--width", type=int, default=160, help="console width")
    a.set_defaults(func=cmd_activations)

    k = sub.add_parser("kernel", help="NNGP/NTK of a fully-connected network on data")
    k.add_argument("data", help="a .npy/.npz/.csv/.txt file of rows, or 'digits'")
    k.add_argument("--data2", help="second set of rows (default: the data with itself)")
    k.add_argument("--activation", "-a", default="relu")
    k.add_argument("--param", "-p", action="append", type=_param, metavar="NAME=VALUE",
                   help="activation parameter, repeatable (e.g. -p beta=1.5)")
    k.add_argument("--depth", "-L", type=int, default=3)
    k.add_argument("--w-std", type=float, default=2**0.5)
    k.add_argument("--b-std", type=float, default=0.0)
    k.add_argument("--parameterization", choices=["ntk", "standard"], default="ntk")
    k.add_argument("--width", type=int, default=None, help="hidden width (standard param.)")
    k.add_argument("--kind", choices=["nngp", "ntk", "both"], default="both")
    k.add_argument("--normalize", action="store_true", help="scale rows to unit norm")
    k.add_argument("--out", "-o", help="write .npz (or .npy for one kind) instead of printing")
    k.add_argument("--store", metavar="PATH", help="compute in tiles into this folder "
                   "(resumable: run again after an interruption); needs --kind nngp|ntk")
    k.add_argument("--tile", type=int, default=2048, help="tile size with --store")
    k.add_argument("--scheduler", help="with --store: 'local' (a Dask LocalCluster on this "
                   "machine) or a Dask scheduler address (the folder must be shared)")
    k.add_argument("--workers", type=int, default=None, help="workers of --scheduler local")
    k.add_argument("--float32", action="store_true", help="store float32 tiles")
    k.set_defaults(func=cmd_kernel)

    so = sub.add_parser("solve", help="kernel regression on a kernel store (infnet kernel "
                        "--store) by Nystrom-preconditioned conjugate gradients")
    so.add_argument("store", help="folder written by infnet kernel --store")
    so.add_argument("--labels", required=True, help=".npy/.csv/.txt targets: integer labels "
                    "(one-hot encoded) or an (n, outputs) array")
    so.add_argument("--one-hot", action="store_true", help="one-hot encode 1-D float labels too")
    so.add_argument("--ridge", type=float, default=0.0)
    so.add_argument("--tol", type=float, default=1e-8, help="relative residual to reach")
    so.add_argument("--max-iter", type=int, default=1000)
    so.add_argument("--rank", type=int, default=None, help="Nystrom rank (default min(n, 1000))")
    so.add_argument("--out", "-o", default="alpha.npy", help="dual coefficients (.npy)")
    so.set_defaults(func=cmd_solve)

    from .study import DEFAULT_ACTIVATIONS, DEFAULT_DATA, DEFAULT_DEPTHS, _depth_text

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
    s.add_argument("--depths", nargs="+", default=[_depth_text(d) for d in DEFAULT_DEPTHS],
                   metavar="L", help="integers and 'inf'")
    s.add_argument("--kernels", nargs="+", choices=["nngp", "ntk"], default=["nngp", "ntk"])
    s.add_argument("--n-train", type=int, default=500)
    s.add_argument("--n-test", type=int, default=500)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--no-taxonomy", action="store_true", help="skip the catalog's taxonomy table")
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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, KeyError, TypeError, ArithmeticError) as err:
        msg = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
        print(f"error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
