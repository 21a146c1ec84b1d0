"""``infnet predict``: train/evaluate infinitely wide networks on a data set from the command line.

For each activation and depth asked for, the NTK (or NNGP) classifier of ``infnet.NTKClassifier``
on one-hot targets is fitted on the training split and scored on the test split; one row per
model goes to a CSV file (written whole after each row, atomically, so it is never
half-written; its folder is checked before anything is computed) and to a table on the console.
"""

from __future__ import annotations

import csv
import math
import time
from pathlib import Path

import numpy as np

from ..network.architectures import ARCHITECTURES
from .args import depth as depth_type
from .args import nonnegative_float, nonnegative_int, param, positive_int, std

COLUMNS = ["dataset", "architecture", "activation", "params", "depth", "kernel", "w_std", "b_std", "ridge",
           "time", "preprocess", "n_train", "n_test", "accuracy", "mse", "jitter", "seconds"]

PREPROCESS = ("raw", "unit", "center", "zca")


def add_parser(sub) -> None:
    p = sub.add_parser("predict", help="NTK/NNGP classifiers of infinitely wide networks on a "
                       "data set: accuracy by activation and depth, written to a CSV file")
    p.add_argument("data", nargs="?", default="digits",
                   help="digits (embedded), mnist, fashion-mnist, cifar10 (local files: --root "
                        "or $INFNET_DATA), dirichlet2, dirichlet3, or a folder with an IDX pair")
    p.add_argument("--root", help="folder holding the dataset files (default: $INFNET_DATA)")
    p.add_argument("--activations", "-a", nargs="+", default=["relu"], metavar="ACT")
    p.add_argument("--param", "-p", action="append", type=param, metavar="NAME=VALUE",
                   help="activation parameter (applies to every activation given)")
    p.add_argument("--depths", "-L", nargs="+", type=depth_type, default=[5], metavar="L",
                   help="depths; 'inf' for the infinite-depth classifier")
    p.add_argument("--architecture", choices=ARCHITECTURES, default="fc",
                   help="fc, or for images: cnn-vec, cnn-gap, lcn-vec, lcn-gap (depth = "
                        "convolutional layers), myrtle (depth 5, 7 or 10), wrn (depth = blocks "
                        "per group); images enter as (C, H, W)")
    p.add_argument("--kernel", choices=["ntk", "nngp"], default="ntk")
    p.add_argument("--w-std", type=std, default=2**0.5)
    p.add_argument("--b-std", type=std, default=0.0)
    p.add_argument("--parameterization", choices=["ntk", "standard"], default="ntk")
    p.add_argument("--width", type=positive_int, default=None,
                   help="hidden width (standard param.)")
    p.add_argument("--ridge", type=nonnegative_float, default=0.0)
    p.add_argument("--time", type=_time, default=math.inf,
                   help="training time (default inf: convergence)")
    p.add_argument("--preprocess", choices=PREPROCESS, default="raw",
                   help="raw: flatten (uint8 pixels / 255); unit: + rows to unit norm; center: "
                        "+ feature mean removed, unit norm; zca: regularized ZCA whitening "
                        "(Lee et al. 2020), unit norm")
    p.add_argument("--zca", type=nonnegative_float, default=0.1,
                   help="ZCA regularization (with --preprocess zca)")
    p.add_argument("--n-train", type=positive_int, default=None, help="stratified training subset")
    p.add_argument("--n-test", type=positive_int, default=None, help="stratified test subset")
    p.add_argument("--seed", type=nonnegative_int, default=0)
    p.add_argument("--download", action="store_true", help="download missing official files")
    p.add_argument("--out", "-o", default="infnet-predict.csv", help="results CSV")
    p.set_defaults(func=cmd_predict)


def _preprocessor(kind: str, zca: float, uint8: bool):
    from ..data import standard_preprocessing

    scale = 255.0 if uint8 else None
    if kind == "raw":
        return standard_preprocessing(center=False, unit_norm=False, max_value=scale)
    if kind == "unit":
        return standard_preprocessing(center=False, unit_norm=True, max_value=scale)
    if kind == "center":
        return standard_preprocessing(center=True, unit_norm=True, max_value=scale)
    return standard_preprocessing(zca=zca, unit_norm=True, max_value=scale)


def _as_images(x_tr, x_te, name):
    """The inputs in torch's channels-first layout and the shape (C, H, W) of one image:
    grayscale (n, H, W) sets get one channel, CIFAR's (n, H, W, 3) is transposed, and the 64
    features of the embedded digits are 8 x 8 images."""
    if x_tr.ndim == 4:
        x_tr, x_te = (np.ascontiguousarray(x.transpose(0, 3, 1, 2)) for x in (x_tr, x_te))
        return x_tr, x_te, tuple(x_tr.shape[1:])
    if x_tr.ndim == 3:
        return x_tr, x_te, (1, *x_tr.shape[1:])
    if x_tr.ndim == 2 and x_tr.shape[1] == 64 and str(name).lower() == "digits":
        return x_tr, x_te, (1, 8, 8)
    raise ValueError(f"a convolutional architecture needs images, but {name} holds points of "
                     f"shape {x_tr.shape[1:]}: use --architecture fc")


def _time(text: str) -> float:
    import argparse

    try:
        t = float(text)
    except ValueError:
        t = math.nan
    if not t >= 0:
        raise argparse.ArgumentTypeError(f"a training time is a number >= 0 or inf, got {text!r}")
    return t


def _write(rows: list[dict], out: Path) -> None:
    from ..core.files import atomic_path

    with atomic_path(out) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def cmd_predict(args) -> int:
    import warnings

    from rich.console import Console
    from rich.table import Table

    from ..activations import activation
    from ..core.files import check_writable
    from ..data import load_dataset
    from ..estimators.networks import NTKClassifier
    from ..predict import JitterWarning

    params = dict(args.param or [])
    depths, t = args.depths, args.time
    out = check_writable(args.out)  # before any computation
    for act in args.activations:  # an unknown name or a bad parameter: before any computation
        activation(act, **params)
    x_tr, y_tr, x_te, y_te = load_dataset(args.data, args.root, n_train=args.n_train,
                                          n_test=args.n_test, seed=args.seed,
                                          download=args.download)
    input_shape = None
    if args.architecture != "fc":
        x_tr, x_te, input_shape = _as_images(x_tr, x_te, args.data)
    prep = _preprocessor(args.preprocess, args.zca, x_tr.dtype == np.uint8).fit(x_tr)
    x_tr, x_te = prep.transform(x_tr), prep.transform(x_te)
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
                                activation_params=params or None,
                                architecture=args.architecture, input_shape=input_shape)
            start = time.perf_counter()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", JitterWarning)
                try:
                    clf.fit(x_tr, y_tr)
                    scores = clf.predict_outputs(x_te)
                except (ValueError, TypeError, KeyError, ArithmeticError) as err:
                    raise ValueError(f"{act} at depth {depth}: {err}") from None
            seconds = time.perf_counter() - start
            pred = clf.classes_[scores.argmax(axis=1)]
            onehot = (y_te[:, None] == clf.classes_[None, :]).astype(float)
            model = getattr(clf, "model_", None)  # (none for depth = inf)
            row = {"dataset": args.data, "architecture": args.architecture, "activation": act,
                   "params": params or "",
                   "depth": depth, "kernel": args.kernel, "w_std": args.w_std, "b_std": args.b_std,
                   "ridge": args.ridge, "time": t, "preprocess": args.preprocess,
                   "n_train": len(y_tr), "n_test": len(y_te),
                   "accuracy": float((pred == y_te).mean()),
                   "mse": float(((scores - onehot) ** 2).mean()) if not math.isinf(depth) else "",
                   "jitter": model.jitter if model is not None else 0.0,
                   "seconds": round(seconds, 3)}
            rows.append(row)
            _write(rows, out)
            for w in caught:
                console.print(f"[yellow]warning[/]: {w.message}")
            table.add_row(act, str(depth), f"{row['accuracy']:.4f}", f"{seconds:.1f}")
    console.print(table)
    console.print(f"wrote {out}")
    return 0
