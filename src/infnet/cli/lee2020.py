"""``infnet lee2020``: a small-scale reproduction of Lee et al. 2020, "Finite versus infinite
neural networks: an empirical study" (arXiv 2007.15801), on an IDX folder of digits: NNGP and
NTK of FC, LCN-VEC, CNN-VEC and CNN-GAP against finite networks over widths
(``experiments.lee2020``). Writes results.csv, lee2020.png and settings.json to ``--out``."""

from __future__ import annotations

import os
import sys

from .args import nonnegative_float, nonnegative_int, positive_int

#: the environment variable naming the data folder when DATA is not given
ENV_DATA = "INFNET_MNIST_5K"


def add_parser(sub) -> None:
    p = sub.add_parser("lee2020", help="finite against infinite networks (Lee et al. 2020) on an "
                       "IDX folder of digits: NNGP and NTK of FC, LCN-VEC, CNN-VEC, CNN-GAP and "
                       "finite nets over widths; table, results.csv and figure")
    p.add_argument("data", nargs="?", metavar="DATA",
                   help=f"folder holding *images*idx3* and *labels*idx1* (default: ${ENV_DATA})")
    p.add_argument("--n-train", type=positive_int, default=1000,
                   help="training images of the FC, LCN-VEC and CNN-VEC kernels")
    p.add_argument("--n-test", type=positive_int, default=1000, help="test images of those")
    p.add_argument("--n-small", type=positive_int, default=100,
                   help="training and test images of CNN-GAP's kernels and of the finite nets "
                   "(every architecture's kernels are computed on them too)")
    p.add_argument("--widths", nargs="*", type=positive_int, default=[4, 16, 64],
                   help="channels of the finite conv nets (none: no finite conv nets)")
    p.add_argument("--fc-widths", nargs="*", type=positive_int, default=[256, 1024, 4096],
                   help="hidden widths of the finite FC nets")
    p.add_argument("--seeds", type=positive_int, default=2, help="finite nets per width")
    p.add_argument("--steps", type=positive_int, default=100, help="gradient-descent steps")
    p.add_argument("--depth", type=positive_int, default=2, help="conv layers")
    p.add_argument("--fc-depth", type=positive_int, default=1, help="FC hidden layers")
    p.add_argument("--architectures", nargs="+", default=None, metavar="NAME",
                   help="a subset of fc lcn-vec cnn-vec cnn-gap")
    p.add_argument("--pool", type=positive_int, default=2,
                   help="average-pool the images POOL x POOL (1: full size; 2: 14 x 14)")
    p.add_argument("--zca", type=nonnegative_float, default=0.1,
                   help="ZCA regularization (relative to the mean eigenvalue)")
    p.add_argument("--no-zca", action="store_true", help="no ZCA rows")
    p.add_argument("--finite-zca", action="store_true", help="finite nets on ZCA images too")
    p.add_argument("--ridge", type=nonnegative_float, default=1e-4,
                   help="kernel diagonal regularizer, times the mean diagonal")
    p.add_argument("--b-std", type=nonnegative_float, default=0.1)
    p.add_argument("--no-center", action="store_true",
                   help="standard (uncentered) finite training instead of f - f_0")
    p.add_argument("--seed", type=nonnegative_int, default=0)
    p.add_argument("--threads", type=positive_int, default=None,
                   help="torch threads (default: torch's; 1 when other processes share the cores)")
    p.add_argument("--out", "-o", default="lee2020", metavar="DIR",
                   help="folder for results.csv, lee2020.png, settings.json (created)")
    p.add_argument("--quick", action="store_true",
                   help="a smoke run of seconds: 200 + 200 images, 40 in the subset, widths "
                   "4 16 (FC 256 1024), one seed, 50 steps")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress lines")
    p.set_defaults(func=cmd_lee2020)


def data_folder(given: str | None) -> str:
    """DATA, else $INFNET_MNIST_5K, else a ValueError that says to give one of them."""
    folder = given or os.environ.get(ENV_DATA)
    if not folder:
        raise ValueError(f"no data folder: pass DATA (a folder holding images-idx3-ubyte.gz "
                         f"and labels-idx1-ubyte.gz), or set the environment variable {ENV_DATA} "
                         "to it")
    return folder


def cmd_lee2020(args) -> int:
    from ..experiments.lee2020 import ARCHITECTURES, run

    folder = data_folder(args.data)
    sizes = {"n_train": args.n_train, "n_test": args.n_test, "n_small": args.n_small,
             "widths": tuple(args.widths), "fc_widths": tuple(args.fc_widths),
             "seeds": args.seeds, "steps": args.steps}
    if args.quick:
        sizes = {"n_train": 200, "n_test": 200, "n_small": 40, "widths": (4, 16),
                 "fc_widths": (256, 1024), "seeds": 1, "steps": 50}
    if args.architectures:
        bad = [a for a in args.architectures if a not in ARCHITECTURES]
        if bad:
            raise ValueError(f"--architectures: unknown {', '.join(bad)}; choose among "
                             f"{' '.join(ARCHITECTURES)}")
    log = None if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))
    result = run(folder, **sizes, depth=args.depth, fc_depth=args.fc_depth,
                 architectures=tuple(args.architectures or ARCHITECTURES), pool=args.pool,
                 zca=None if args.no_zca else args.zca, finite_zca=args.finite_zca,
                 ridge=args.ridge, b_std=args.b_std, center=not args.no_center, seed=args.seed,
                 threads=args.threads, out_dir=args.out, log=log)
    s = result.settings
    print(result.table())
    print(f"\n{s['pool']}x{s['pool']}-pooled images; kernels with ridge {s['ridge']:g} x mean "
          f"diagonal; finite nets {'centered, ' if s['center'] else ''}{s['steps']} steps at "
          f"N / lambda_max; {result.seconds:.1f} s")
    print(f"wrote {result.csv}, {result.figure} and {result.settings_path}")
    return 0
