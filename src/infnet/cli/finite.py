"""``infnet finite`` (finite against infinite width, with its figure) and ``infnet propagation``
(signal propagation: q*, chi_1, depth scales, the phase diagram, the catalog's table)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from .args import nonnegative_int, param, positive_int, std

CLASSES, DIGITS = 10, 1797  # scikit-learn's digits: classes, points


def add_parsers(sub) -> None:
    f = sub.add_parser("finite", help="finite networks trained by gradient descent against the "
                       "infinite-width predictions, over widths: table and figure")
    f.add_argument("--activations", "-a", nargs="+", default=["relu", "erf"], metavar="ACT")
    f.add_argument("--widths", nargs="+", type=positive_int, default=[64, 256, 1024, 4096])
    f.add_argument("--depth", "-L", type=positive_int, default=1)
    f.add_argument("--seeds", type=positive_int, default=4, help="networks per width")
    f.add_argument("--steps", nargs="+", type=positive_int, default=[20, 100],
                   help="gradient-descent steps at which outputs are compared")
    f.add_argument("--n-train", type=positive_int, default=100, help=f"digits points, >= {CLASSES}")
    f.add_argument("--n-test", type=positive_int, default=50, help=f"digits points, >= {CLASSES}")
    f.add_argument("--seed", type=nonnegative_int, default=0)
    f.add_argument("--out", "-o", default="infnet-finite.png", help="figure (PNG, PDF, SVG)")
    f.set_defaults(func=cmd_finite)

    p = sub.add_parser("propagation", help="signal propagation of an activation: q*, chi_1, "
                       "phase, depth scales; --phase-diagram writes the figure; --all tabulates "
                       "the catalog")
    p.add_argument("name", nargs="?", help="catalog name (omit with --all)")
    p.add_argument("--param", "-p", action="append", type=param, metavar="NAME=VALUE")
    p.add_argument("--w-std", type=std, default=1.0)
    p.add_argument("--b-std", type=std, default=0.0)
    p.add_argument("--phase-diagram", metavar="PNG", help="write chi_1 over (w^2, b^2) here")
    p.add_argument("--all", action="store_true", help="every catalog activation at (w, b)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_propagation)


def _finite_numbers(x) -> object:
    """JSON-friendly: inf and nan as strings."""
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    if isinstance(x, dict):
        return {k: _finite_numbers(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite_numbers(v) for v in x]
    return x


def _check_figure(path: str, option: str) -> Path:
    """A figure path matplotlib can write, in a writable folder (checked before computing)."""
    from matplotlib.figure import Figure

    from ..core.files import check_writable

    out = check_writable(path, option)
    kinds = Figure().canvas.get_supported_filetypes()
    if out.suffix[1:].lower() not in kinds:
        raise ValueError(f"{option} {out}: matplotlib writes {', '.join('.' + k for k in kinds)}, "
                         f"not {out.suffix or 'a file without suffix'}")
    return out


def cmd_finite(args) -> int:
    from ..activations import activation
    from ..core.files import atomic_path, write_atomic
    from ..experiments.finite_vs_infinite import deviation_figure

    if min(args.n_train, args.n_test) < CLASSES or args.n_train + args.n_test > DIGITS:
        raise ValueError(f"--n-train and --n-test split digits stratified over its {CLASSES} "
                         f"classes: each at least {CLASSES}, together at most {DIGITS}; got "
                         f"{args.n_train} and {args.n_test}")
    out = _check_figure(args.out, "--out")
    table = out.with_suffix(".json")
    for name in args.activations:  # an unknown name: before any computation
        activation(name)
    with atomic_path(out) as tmp:
        numbers = deviation_figure(tmp, activations=tuple(args.activations), depth=args.depth,
                                   widths=tuple(args.widths), n_seeds=args.seeds,
                                   steps=tuple(args.steps), n_train=args.n_train,
                                   n_test=args.n_test, seed=args.seed)
    write_atomic(table, json.dumps(_finite_numbers(numbers), indent=1, default=str))
    print(f"wrote {out} and {table}")
    return 0


def cmd_propagation(args) -> int:
    from dataclasses import asdict

    from ..activations import activation
    from ..propagation.maps import propagation
    from ..propagation.phase_diagram import format_table, phase_diagram, propagation_table

    if args.all:
        rows = propagation_table(w_std=args.w_std, b_std=args.b_std)
        print(json.dumps(_finite_numbers(rows), indent=1) if args.json else format_table(rows))
        return 0
    if not args.name:
        raise ValueError("give an activation name, or --all for the whole catalog")
    act = activation(args.name, **dict(args.param or []))
    figure = _check_figure(args.phase_diagram, "--phase-diagram") if args.phase_diagram else None
    result = propagation(act, args.w_std, args.b_std)
    if args.json:
        print(json.dumps(_finite_numbers(asdict(result)), indent=1, default=str))
    else:
        for key, value in asdict(result).items():
            print(f"{key:>10}: {value}")
    if figure:
        from ..core.files import atomic_path

        with atomic_path(figure) as tmp:
            d = phase_diagram(act, path=tmp)
        ok = [f"b^2 = {b:g}: w^2 = {w:.6g}" for b, w in zip(d.b_var, d.critical_w_var, strict=True)
              if math.isfinite(w)]
        print(f"wrote {args.phase_diagram}; critical line: " + ("; ".join(ok) or "none in range"))
    return 0
