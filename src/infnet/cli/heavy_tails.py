"""``infnet heavy-tails``: scale mixtures of NNGPs (Student-t process, log-normal scale prior)
against the plain and the learned NNGP on regression with outliers and on digits of unseen
classes (``experiments.heavy_tails``). Writes heavy_tails.csv and heavy_tails.png to ``--out``;
with ``--classification``, also the variational classifiers of ``experiments.heavy_tails_classes``
(heavy_tails_classes.csv)."""

from __future__ import annotations

import csv
import io
import sys

from .args import positive_int


def add_parser(sub) -> None:
    p = sub.add_parser("heavy-tails", help="scale mixtures of NNGPs (Lee et al. 2022) against "
                       "the plain and the learned NNGP: test NLL and 90%% coverage over seeds, "
                       "and the 1-D figure")
    p.add_argument("--seeds", type=positive_int, default=10, help="random splits per task")
    p.add_argument("--out", "-o", default="heavy_tails", metavar="DIR",
                   help="folder for heavy_tails.csv and heavy_tails.png (created)")
    p.add_argument("--classification", action="store_true",
                   help="also classification by variational inference: the plain NNGP, the "
                   "inverse-gamma mixture and the NNGP at the mixture's scale, in and out of "
                   "distribution (about 12 s a seed)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress lines")
    p.set_defaults(func=cmd_heavy_tails)


def cmd_heavy_tails(args) -> int:
    from ..core.files import make_folder, write_atomic
    from ..experiments.heavy_tails import figure, run, table

    out = make_folder(args.out)
    log = None if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))
    rows = run(args.seeds, log=log)
    write_atomic(out / "heavy_tails.csv", _csv(rows))
    figure(out / "heavy_tails.png")
    print(table(rows, args.seeds))
    print(f"wrote {out / 'heavy_tails.csv'} and {out / 'heavy_tails.png'}")
    if args.classification:
        from ..experiments.heavy_tails_classes import classification_rows, classification_table

        rows = classification_rows(args.seeds, log=log)
        write_atomic(out / "heavy_tails_classes.csv", _csv(rows))
        print(f"\nclassification, {args.seeds} seeds (mean +- standard error):")
        print(classification_table(rows))
        print(f"wrote {out / 'heavy_tails_classes.csv'}")
    return 0


def _csv(rows: list[dict]) -> str:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return text.getvalue()
