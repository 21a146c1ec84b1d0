"""The study's report: report.md with tables, one PNG figure per data set."""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path

from ...core.files import atomic_path, write_atomic

#: re-run figures of the paper's experiments at n_train = n_test = 2000
#: (docs/theory/infinite-depth.md#reference-experiments)
PAPER_RERUN = {"dirichlet2": {"bayes": .760, "1-nn": .661, "hilbert": .733, "optimal": .734},
               "dirichlet3": {"bayes": .954, "1-nn": .907, "hilbert": .933, "optimal": .934}}


def _read(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path) as fh:
        return list(csv.DictReader(fh))


def _depth_value(text: str) -> float:
    return math.inf if text == "inf" else float(text)


def write_report(out: Path) -> Path:
    rows = _read(out / "results.csv")
    latest = {(r["data"], r["spec"], r["depth"], r["kernel"]): r for r in rows}
    rows = list(latest.values())  # a row computed again (after a failure) replaces the old one
    lines = ["# infnet study: wide and deep networks as classifiers, depth 1 to infinity", "",
             "Normalized bias-free fully-connected networks on inputs on the unit sphere "
             "(Radhakrishnan, Belkin & Uhler, PNAS 2023). Each network of depth L is the "
             "min-norm interpolating kernel classifier of its NNGP or its NTK; depth inf is "
             "the limit classifier of the activation's class (`infnet.limit`). Accuracies are "
             "on held-out test points; a binomial standard error is sqrt(p(1-p)/n_test).", ""]
    for name in dict.fromkeys(r["data"] for r in rows):
        lines += _dataset_section(out, name, [r for r in rows if r["data"] == name])
    taxonomy = _read(out / "taxonomy.csv")
    if taxonomy:
        lines += ["## Infinite-depth class of every catalog activation", "",
                  "f = normalized dual; f(0) > 0: majority vote; f(0) = f'(0) = 0: nearest "
                  "neighbour; 0 < f'(0) < 1: singular kernel |x - z|^-exponent, exponent = "
                  "2 log(1/f'(0)) / log f'(1) (d - 1 on S^(d-1) is the Bayes-consistent Hilbert "
                  "kernel).", "",
                  "| activation | class | f(0) | f'(0) | f'(1) | exponent | note |",
                  "|---|---|---|---|---|---|---|"]
        for r in taxonomy:
            lines.append(f"| {r['activation']} | {r['kind']} | {r.get('dual0', '')} | "
                         f"{r.get('slope0', '')} | {r.get('slope1', '')} | {r.get('exponent', '')} "
                         f"| {r.get('note', '')} |")
        lines.append("")
    path = out / "report.md"
    write_atomic(path, "\n".join(lines) + "\n")
    return path


def _dataset_section(out: Path, name: str, rows: list[dict]) -> list[str]:
    base = {r["spec"]: r for r in rows if r["kind"] == "baseline"}
    nets = [r for r in rows if r["kind"] == "network"]
    n_test = int(rows[0]["n_test"]) if rows else 0
    lines = [f"## {name} ({rows[0]['n_train']} training, {n_test} test points)", ""]
    figure = _figure(out, name, nets, base)
    if figure:
        lines += [f"![accuracy against depth on {name}]({figure})", ""]
    lines += ["| baseline | test accuracy |", "|---|---|"]
    for b, r in base.items():
        lines.append(f"| {b} | {r['test_accuracy'] or r['note']} |")
    lines.append("")
    depths = sorted({r["depth"] for r in nets}, key=_depth_value)
    acts = list(dict.fromkeys(r["activation"] for r in nets))
    lines += ["Test accuracy, NNGP / NTK (empty: the kernel leaves float64 at that depth, see "
              "results.csv notes):", "",
              "| activation | " + " | ".join(depths) + " |",
              "|---|" + "---|" * len(depths)]
    for a in acts:
        cells = []
        for d in depths:
            got = {r["kernel"]: r["test_accuracy"] for r in nets
                   if r["activation"] == a and r["depth"] == d}
            cells.append(" / ".join(got.get(k, "") or "-" for k in ("nngp", "ntk")))
        lines.append(f"| {a} | " + " | ".join(cells) + " |")
    lines.append("")
    if name in PAPER_RERUN:
        lines += _comparison(name, base, nets, n_test)
    return lines


def _comparison(name, base, nets, n_test) -> list[str]:
    ref = PAPER_RERUN[name]
    ours = {k: base[k]["test_accuracy"] for k in ("bayes", "1-nn", "hilbert") if k in base}
    opt = [r for r in nets if r["spec"] == "optimal" and r["kernel"] == "nngp"
           and r["test_accuracy"]]
    if opt:
        deepest = max(opt, key=lambda r: _depth_value(r["depth"]))
        ours["optimal"] = deepest["test_accuracy"]
    lines = ["Against the re-run figures of infnet's docs/theory/infinite-depth.md (n_train = "
             "n_test = 2000, one draw; optimal = the polynomial optimal activation at the largest "
             "depth run):", "",
             "| classifier | this study | re-run | difference / standard error |", "|---|---|---|---|"]
    for k, want in ref.items():
        got = ours.get(k)
        if not got:
            continue
        p = float(got)
        se = math.sqrt(max(want * (1 - want), 1e-12) * (1 / n_test + 1 / 2000))
        lines.append(f"| {k} | {p:.3f} | {want:.3f} | {(p - want) / se:+.1f} |")
    return lines + [""]


def _figure(out: Path, name: str, nets: list[dict], base: dict) -> str | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    finite = [_depth_value(r["depth"]) for r in nets if r["depth"] != "inf"]
    if not finite:
        return None
    inf_at = max(finite) * 3
    kernels = [k for k in ("nngp", "ntk") if any(r["kernel"] == k for r in nets)]
    fig, axes = plt.subplots(1, len(kernels), figsize=(6 * len(kernels), 4.2), sharey=True,
                             squeeze=False)
    axes = axes[0]
    for ax, kernel in zip(axes, kernels, strict=True):
        for i, a in enumerate(dict.fromkeys(r["activation"] for r in nets)):
            pts = sorted((_depth_value(r["depth"]), float(r["test_accuracy"])) for r in nets
                         if r["activation"] == a and r["kernel"] == kernel and r["test_accuracy"])
            xs = [inf_at if math.isinf(d) else d for d, _ in pts]
            ax.plot(xs, [v for _, v in pts], marker="o", ms=3, color=f"C{i}", label=a)
        for j, (b, r) in enumerate(base.items()):
            if r["test_accuracy"]:
                ax.axhline(float(r["test_accuracy"]), ls="--", lw=1, color=f"C{j + 5}", label=b)
        ax.set_xscale("log")
        ticks = [d for d in (1, 10, 100, 1000, 10**4, 10**5) if d <= max(finite)] + [inf_at]
        ax.set_xticks(ticks, [str(t) for t in ticks[:-1]] + ["inf"])
        ax.set_xlabel("depth")
        ax.set_title(f"{name}: {kernel.upper()}")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test accuracy")
    axes[-1].legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    file = "accuracy_vs_depth_" + re.sub(r"[^A-Za-z0-9_.-]+", "_", name) + ".png"
    with atomic_path(out / file) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    return file
