"""The outputs of the Lee et al. 2020 reproduction (``experiments.lee2020``): ``results.csv`` (one
row per architecture x model/width x preprocessing x data size), the figure ``lee2020.png``
(test accuracy against width for each architecture, the NTK and NNGP levels as horizontal
lines) and the table printed by ``infnet lee2020``. Files are written atomically
(``core.files``).

Lee et al., "Finite versus infinite neural networks: an empirical study", NeurIPS 2020, arXiv
2007.15801 (their figure 1: finite networks against their kernels, per architecture).
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from ...core.files import atomic_path, write_atomic

COLUMNS = ("architecture", "model", "width", "preprocessing", "n_train", "n_test", "image",
           "depth", "steps", "ridge", "accuracy", "accuracy_std", "mse", "mse_std", "seeds",
           "seconds", "note")
#: the line style of each kernel level in the figure
LEVELS = {"ntk": ("-", "NTK"), "nngp": ("--", "NNGP"), "ntk_t": (":", "NTK at t = steps")}


def write_csv(path, rows: list[dict]) -> None:
    """The rows under ``COLUMNS`` (floats in full precision), atomically."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: row.get(k, "") for k in COLUMNS})
    write_atomic(path, buf.getvalue())


def read_csv(path) -> list[dict]:
    """The rows of a ``results.csv`` as strings (for checks and tests)."""
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def format_table(rows: list[dict]) -> str:
    """The rows as an aligned text table: accuracy (mean +- std over seeds for finite nets),
    MSE and seconds."""
    head = ("architecture", "model", "width", "prep", "n_train", "n_test", "steps", "accuracy",
            "mse", "seconds")
    lines = [head]
    for r in rows:
        acc = f"{100 * r['accuracy']:.1f}%"
        if r["model"] == "finite":
            acc += f" +- {100 * r['accuracy_std']:.1f}"
        lines.append((r["architecture"], r["model"], str(r["width"]), r["preprocessing"],
                      str(r["n_train"]), str(r["n_test"]), str(r["steps"]), acc,
                      f"{r['mse']:.4f}", f"{r['seconds']:.1f}"))
    sizes = [max(len(line[i]) for line in lines) for i in range(len(head))]
    return "\n".join("  ".join(v.ljust(s) for v, s in zip(line, sizes, strict=True)).rstrip()
                     for line in lines)


def figure(path, rows: list[dict], architectures, *, title: str = "") -> None:
    """Test accuracy against width per architecture: the finite nets (mean +- std over seeds)
    of each preprocessing, and as horizontal lines the NTK, NNGP and NTK-at-t levels of the
    same data (bold) and of the larger data (thin), atomically to ``path`` (Agg backend); one
    legend for all panels, below them."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    fig = Figure(figsize=(4.0 * len(architectures), 4.6), layout="constrained")
    FigureCanvasAgg(fig)
    preps = sorted({r["preprocessing"] for r in rows}, key=lambda p: (p != "none", p))
    colors = {p: f"C{i}" for i, p in enumerate(preps)}
    sizes = sorted({r["n_train"] for r in rows})
    for i, arch in enumerate(architectures):
        ax = fig.add_subplot(1, len(architectures), i + 1)
        mine = [r for r in rows if r["architecture"] == arch]
        finite = [r for r in mine if r["model"] == "finite"]
        widths = sorted({r["width"] for r in finite})
        for prep in preps:
            pts = sorted((r["width"], r["accuracy"], r["accuracy_std"]) for r in finite
                         if r["preprocessing"] == prep)
            if pts:
                w, a, s = zip(*pts, strict=True)
                ax.errorbar(w, [100 * v for v in a], yerr=[100 * v for v in s], fmt="o-",
                            color=colors[prep], capsize=3)
            for r in mine:
                if r["model"] in LEVELS and r["preprocessing"] == prep \
                        and math.isfinite(r["accuracy"]):
                    bold = r["n_train"] == sizes[0]
                    ax.axhline(100 * r["accuracy"], ls=LEVELS[r["model"]][0], color=colors[prep],
                               lw=1.8 if bold else 0.9, alpha=1.0 if bold else 0.6)
        if widths:
            ax.set_xscale("log", base=2)
            ax.set_xticks(widths, [str(w) for w in widths])
        ax.set(xlabel="width (channels)" if arch != "fc" else "width", ylabel="test accuracy (%)",
               title=arch.upper())
    handles = [Line2D([], [], color=colors[p], marker="o", label=f"finite nets, {p}")
               for p in preps if any(r["model"] == "finite" and r["preprocessing"] == p
                                     for r in rows)]
    handles += [Line2D([], [], color=colors[p], lw=3, label=f"preprocessing: {p}") for p in preps]
    handles += [Line2D([], [], color="k", ls=style, label=name) for style, name in LEVELS.values()]
    handles += [Line2D([], [], color="k", lw=1.8 if n == sizes[0] else 0.9,
                       label=f"kernel on n_train = {n}") for n in sizes]
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 5), fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, dpi=120)
