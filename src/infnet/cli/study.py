"""``infnet study``, the main job (``infnet.experiments.study``)."""

from __future__ import annotations

from pathlib import Path

from .args import depth, nonnegative_int, positive_int


def add_parser(sub) -> None:
    from ..experiments.study import DEFAULT_ACTIVATIONS, DEFAULT_DATA, DEFAULT_DEPTHS

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


def cmd_study(args) -> int:
    from ..experiments.study import run_study

    out = run_study(out=Path(args.out), datasets=args.data, activations=args.activations,
                    depths=args.depths, kernels=args.kernels, n_train=args.n_train,
                    n_test=args.n_test, seed=args.seed, taxonomy=not args.no_taxonomy,
                    restart=args.restart)
    print(f"report: {out / 'report.md'}")
    return 0
