"""``infnet predict``: train/evaluate infinitely wide networks on a data set from the command line.

For each activation and depth asked for, the NTK (or NNGP) classifier of ``infnet.NTKClassifier``
on one-hot targets is fitted on the training split and scored on the test split; one row per
model goes to a CSV file (written whole after each row, through a temporary file, so it is never
half-written) and to a table on the console.
"""

from __future__ import annotations

import csv
import math
import os
import time
from pathlib import Path

import numpy as np

COLUMNS = ["dataset", "activation", "params", "depth", "kernel", "w_std", "b_std", "ridge",
           "time", "preprocess", "n_train", "n_test", "accuracy", "mse", "jitter", "seconds"]

PREPROCESS = ("raw", "unit", "center", "zca")


def add_parser(sub) -> None:
    from .cli import _param

    p = sub.add_parser("predict", help="NTK/NNGP classifiers of infinitely wide networks on a "
                       "data set: accuracy by activation and depth, written to a CSV file")
    p.add_argument("data", nargs="?", default="digits",
                   help="digits (embedded), mnist, fashion-mnist, cifar10 (local files: --root "
                        "or $INFNET_DATA), dirichlet2, dirichlet3, or a folder with an IDX pair")
    p.add_argument("--root", help="folder holding the dataset files (default: $INFNET_DATA)")
    p.add_argument("--activations", "-a", nargs="+", default=["relu"], metavar="ACT")
    p.add_argument("--param", "-p", action="append", type=_param, metavar="NAME=VALUE",
                   help="activation parameter (applies to every activation given)")
    p.add_argument("--depths", "-L", nargs="+", default=["5"], metavar="L",
                   help="depths; 'inf' for the infinite-depth classifier")
    p.add_argument("--kernel", choices=["ntk", "nngp"], default="ntk")
    p.add_argument("--w-std", type=float, default=2**0.5)
    p.add_argument("--b-std", type=float, default=0.0)
    p.add_argument("--parameterization", choices=["ntk", "standard"], default="ntk")
    p.add_argument("--width", type=int, default=None, help="hidden width (standard param.)")
    p.add_argument("--ridge", type=float, default=0.0)
    p.add_argument("--time", default="inf", help="training time (default inf: convergence)")
    p.add_argument("--preprocess", choices=PREPROCESS, default="raw",
                   help="raw: flatten (uint8 pixels / 255); unit: + rows to unit norm; center: "
                        "+ feature mean removed, unit norm; zca: regularized ZCA whitening "
                        "(Lee et al. 2020), unit norm")
    p.add_argument("--zca", type=float, default=0.1, help="ZCA regularization (with --preprocess zca)")
    p.add_argument("--n-train", type=int, default=None, help="stratified training subset")
    p.add_argument("--n-test", type=int, default=None, help="stratified test subset")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--download", action="store_true", help="download missing official files")
    p.add_argument("--out", "-o", default="infnet-predict.csv", help="results CSV")
    p.set_defaults(func=cmd_predict)


def _preprocessor(kind: str, zca: float, uint8: bool):
    from .data import standard_preprocessing

    scale = 255.0 if uint8 else None
    if kind == "raw":
        return standard_preprocessing(center=False, unit_norm=False, max_value=scale)
    if kind == "unit":
        return standard_preprocessing(center=False, unit_norm=True, max_value=scale)
    if kind == "center":
        return standard_preprocessing(center=True, unit_norm=True, max_value=scale)
    return standard_preprocessing(zca=zca, unit_norm=True, max_value=scale)


def _depth(text: str) -> float | int:
    if text.lower() in ("inf", "infinity"):
        return math.inf
    try:
        value = int(text)
    except ValueError:
        raise SystemExit(f"error: depth must be a positive integer or 'inf', got {text!r}") from None
    if value < 1:
        raise SystemExit(f"error: depth must be >= 1, got {value}")
    return value


def _write(rows: list[dict], out: Path) -> None:
    tmp = out.with_name(out.name + ".partial")
    with open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, out)


def cmd_predict(args) -> int:
    import warnings

    from rich.console import Console
    from rich.table import Table

    from .data import load_dataset
    from .estimators import NTKClassifier
    from .predict import JitterWarning

    params = dict(args.param or [])
    depths = [_depth(d) for d in args.depths]
    try:
        t = float(args.time)
    except ValueError:
        raise SystemExit(f"error: --time must be a number or inf, got {args.time!r}") from None
    try:
        x_tr, y_tr, x_te, y_te = load_dataset(args.data, args.root, n_train=args.n_train,
                                              n_test=args.n_test, seed=args.seed,
                                              download=args.download)
    except (FileNotFoundError, ValueError) as err:
        raise SystemExit(f"error: {err}") from None
    prep = _preprocessor(args.preprocess, args.zca, x_tr.dtype == np.uint8).fit(x_tr)
    x_tr, x_te = prep.transform(x_tr), prep.transform(x_te)
    out = Path(args.out)
    rows: list[dict] = []
    console = Console()
    table = Table(title=f"{args.data}: {len(y_tr)} training, {len(y_te)} test points, "
                        f"{args.kernel.upper()}, preprocessing {args.preprocess}")
    for col in ("activation", "depth", "accuracy", "seconds"):
        table.add_column(col, justify="right" if col != "activation" else "left")
    for act in args.activations:
        for depth in depths:
            clf = NTKClassifier(act, depth, w_std=args.w_std, b_std=args.b_std,
                                parameterization=args.parameterization, width=args.width,
                                kernel=args.kernel, ridge=args.ridge, time=t,
                                activation_params=params or None)
            start = time.perf_counter()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", JitterWarning)
                try:
                    clf.fit(x_tr, y_tr)
                    scores = clf._scores(x_te)
                except (ValueError, TypeError, KeyError, FloatingPointError) as err:
                    raise SystemExit(f"error: {act} at depth {depth}: {err}") from None
            seconds = time.perf_counter() - start
            pred = clf.classes_[scores.argmax(axis=1)]
            onehot = (y_te[:, None] == clf.classes_[None, :]).astype(float)
            jitter = getattr(getattr(clf, "model_", None), "_chol", None)
            row = {"dataset": args.data, "activation": act, "params": params or "",
                   "depth": depth, "kernel": args.kernel, "w_std": args.w_std, "b_std": args.b_std,
                   "ridge": args.ridge, "time": t, "preprocess": args.preprocess,
                   "n_train": len(y_tr), "n_test": len(y_te),
                   "accuracy": float((pred == y_te).mean()),
                   "mse": float(((scores - onehot) ** 2).mean()) if not math.isinf(depth) else "",
                   "jitter": jitter.jitter if jitter is not None else 0.0,
                   "seconds": round(seconds, 3)}
            rows.append(row)
            _write(rows, out)
            for w in caught:
                console.print(f"[yellow]warning[/]: {w.message}")
            table.add_row(act, str(depth), f"{row['accuracy']:.4f}", f"{seconds:.1f}")
    console.print(table)
    console.print(f"wrote {out}")
    return 0
