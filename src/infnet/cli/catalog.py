"""``infnet activations`` (the catalog) and ``infnet limit`` (an activation's infinite-depth
class)."""

from __future__ import annotations

import json

from .args import param, positive_int


def add_parsers(sub) -> None:
    a = sub.add_parser("activations", help="list the activation catalog")
    a.add_argument("--json", action="store_true", help="machine-readable output")
    a.add_argument("--width", type=positive_int, default=160, help="console width")
    a.set_defaults(func=cmd_activations)

    lm = sub.add_parser("limit", help="the infinite-depth class of an activation")
    lm.add_argument("name", help="catalog name")
    lm.add_argument("--param", "-p", action="append", type=param, metavar="NAME=VALUE")
    lm.add_argument("--json", action="store_true")
    lm.set_defaults(func=cmd_limit)


def cmd_activations(args) -> int:
    from ..activations import entry, list_activations

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


def cmd_limit(args) -> int:
    from ..activations import activation
    from ..depth.limit import limit

    lim = limit(activation(args.name, **dict(args.param or [])))
    if args.json:
        fields = ("kind", "dual0", "slope0", "slope1", "exponent", "fixed_point", "order",
                  "explanation")
        print(json.dumps({"activation": lim.name, **{f: getattr(lim, f) for f in fields}}))
    else:
        print(lim)
    return 0
