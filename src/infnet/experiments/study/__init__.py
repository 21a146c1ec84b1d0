"""``infnet study``, the main job: what depth does to the kernels of many activations.

For each data set (the paper's Dirichlet settings on S^1 and S^2, scikit-learn's digits on
S^63, or a user's array) and each activation, the normalized bias-free network of depth L
(Radhakrishnan, Belkin & Uhler 2023) is used as a classifier (min-norm interpolation with its
NNGP and its NTK) for L from 1 to 1000 and in the limit L = inf, next to the Bayes classifier
(Dirichlet data: known densities), 1-NN, the Hilbert kernel rule and the majority vote. The
report folder holds report.md, figures (PNG), results.csv (every number) and taxonomy.csv (the
infinite-depth class of every catalog activation). Rows are appended as they are computed, so an
interrupted study continues where it stopped when run again with the same options; a folder
whose rows were computed from other data or options is refused (``study.folder``), and one
process at a time works in a folder (``scale.folders.folder_lock``).
"""

from __future__ import annotations

import csv
import io
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ... import data
from ...activations import activation, list_activations
from ...core.files import folder_lock, make_folder, write_atomic
from ...depth import design
from ...depth.limit import limit
from ...estimators import sphere as classifiers
from . import folder, predict
from .folder import FIELDS, RESULTS

DEFAULT_DATA = ("dirichlet2", "dirichlet3", "digits")
DEFAULT_ACTIVATIONS = ("relu", "erf", "sine", "hermite", "optimal")
DEFAULT_DEPTHS = (1, 2, 3, 5, 10, 20, 50, 100, 200, 500, 1000, math.inf)

BASELINES = ("bayes", "1-nn", "hilbert", "majority")


@dataclass(frozen=True)
class DataSet:
    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    dirichlet: data.DirichletData | None = None

    @property
    def dim(self) -> int:
        return self.x_train.shape[1]


def load_data(name: str, n_train: int, n_test: int, seed: int = 0) -> DataSet:
    """'dirichlet2', 'dirichlet3' (any 'dirichletD' with the paper's alphas for D = 2, 3, 5, 9),
    'digits', or a path to a .npz file with x_train, y_train, x_test, y_test arrays."""
    if name.startswith("dirichlet"):
        d = int(name[len("dirichlet"):] or 3)
        setting = data.dirichlet_setting(d)
        x, y = setting.sample(n_train + n_test, seed=seed)  # the paper's split: first n_train
        return DataSet(name, x[:n_train], y[:n_train], x[n_train:], y[n_train:], setting)
    if name == "digits":
        x, y = data.digits_sphere(n=min(n_train + n_test, 1797), seed=seed)
        x_tr, x_te, y_tr, y_te = data.train_test(x, y, test_size=n_test / (n_train + n_test),
                                                 seed=seed)
        return DataSet(name, x_tr, y_tr, x_te, y_te)
    path = Path(name)
    if path.suffix == ".npz" and path.exists():
        f = data.read_npz(path, ("x_train", "y_train", "x_test", "y_test"))
        x_tr = data.on_sphere(f["x_train"], name="x_train")
        x_te = data.on_sphere(f["x_test"], name="x_test")
        y_tr, y_te = data.check_labels(f["y_train"], len(x_tr)), np.asarray(f["y_test"])
        if y_te.ndim != 1 or len(y_te) != len(x_te):
            raise ValueError(f"{path}: y_test must be a 1-D array of {len(x_te)} labels (one per "
                             f"row of x_test), got shape {y_te.shape}")
        if x_te.shape[1] != x_tr.shape[1]:
            raise ValueError(f"{path}: x_test has {x_te.shape[1]} features and x_train "
                             f"{x_tr.shape[1]}")
        return DataSet(name, x_tr, y_tr, x_te, y_te)  # the name as given: unique per file
    raise ValueError(f"unknown data {name!r}: use dirichlet2, dirichlet3, digits or an .npz file "
                     "with x_train, y_train, x_test, y_test")


def resolve_activation(spec: str, d: int):
    """A study activation: a catalog name, 'optimal' (the polynomial optimal dual on S^(d-1)),
    'sine' (the optimal sine_a on S^(d-1), d >= 3) or 'hermite' (h_2: the 1-NN class)."""
    if spec == "optimal":
        return design.optimal_activation(d, "polynomial")
    if spec == "sine":
        return design.optimal_activation(d, "sine")
    if spec == "hermite":
        return activation("hermite", k=2)
    return activation(spec)


def _label(spec: str, act) -> str:
    return act.name if spec in ("optimal", "sine") else spec


def taxonomy_rows() -> list[dict]:
    """The infinite-depth class of every catalog activation (``infnet.limit``)."""
    rows = []
    for name in list_activations():
        try:
            lim = limit(name)
        except (ValueError, ArithmeticError) as err:
            rows.append({"activation": name, "kind": "none", "note": str(err).split(":")[0]})
            continue
        rows.append({"activation": name, "kind": lim.kind, "dual0": f"{lim.dual0:.6g}",
                     "slope0": f"{lim.slope0:.6g}", "slope1": f"{lim.slope1:.6g}",
                     "exponent": "" if lim.exponent is None else f"{lim.exponent:.4g}",
                     "note": ""})
    return rows


def baseline_scores(name: str, ds: DataSet):
    est = {"1-nn": classifiers.NearestNeighbor(), "majority": classifiers.MajorityVote(),
           "hilbert": classifiers.HilbertKernel()}.get(name)
    if name == "bayes":
        if ds.dirichlet is None:
            return None
        est = classifiers.BayesDirichlet(prior=ds.dirichlet.prior, alphas=ds.dirichlet.alphas,
                                         labels=ds.dirichlet.labels)
    return float(est.fit(ds.x_train, ds.y_train).score(ds.x_test, ds.y_test))


def run_study(out: Path, datasets=DEFAULT_DATA, activations=DEFAULT_ACTIVATIONS,
              depths=DEFAULT_DEPTHS, kernels=("nngp", "ntk"), n_train: int = 500,
              n_test: int = 500, seed: int = 0, taxonomy: bool = True, progress: bool = True,
              restart: bool = False) -> Path:
    """Run (or continue) the study in the folder ``out``; returns ``out``.

    Options are checked before anything is made (ValueError); the folder is locked for this
    process (``FolderInUseError`` if another one works there); a folder holding results of
    other data (fingerprints of the arrays) or options is refused with what differs, unless
    ``restart``, which deletes the study's files in it first."""
    folder.check_options(datasets, activations, depths, kernels, n_train, n_test, seed)
    datasets = [str(d) for d in datasets]
    out = make_folder(out)
    with folder_lock(out, "a study"):
        if restart:
            folder.clear(out)
        loaded = {name: load_data(name, n_train, n_test, seed) for name in datasets}
        options = folder.options_record(loaded, activations, depths, kernels, n_train, n_test,
                                        seed)
        done = {(r["data"], r["spec"], r["depth"], r["kernel"])
                for r in folder.resume(out, options) if not r["note"].startswith("failed:")}
        if taxonomy and not (out / "taxonomy.csv").exists():
            _write_csv(out / "taxonomy.csv", taxonomy_rows())
        _run_jobs(out, loaded, activations, depths, kernels, done, progress)
        from .report import write_report

        write_report(out)
    return out


def _run_jobs(out: Path, loaded: dict, activations, depths, kernels, done, progress) -> None:
    """The jobs not ``done``, each row appended to results.csv as soon as it is computed (a
    failed row is tried again next time: the newer row wins in the report)."""
    from rich.progress import Progress

    path = out / RESULTS
    jobs = []
    for name in loaded:
        jobs += [(name, "baseline", b, None, None) for b in BASELINES]
        for spec in activations:
            jobs += [(name, "network", spec, depth, k) for depth in depths for k in kernels]
    todo = [j for j in jobs if _key(j) not in done]
    with Progress(disable=not progress) as bar:
        task = bar.add_task("study", total=len(todo))
        cache: dict = {}
        for job in todo:
            name, kind, spec, depth, kernel = job
            bar.update(task, description=f"{name} {spec} {'' if depth is None else depth}")
            row = _run_job(loaded[name], kind, spec, depth, kernel, cache)
            with open(path, "a", newline="") as fh:  # (a row cut short by a kill: dropped)
                w = csv.DictWriter(fh, FIELDS)
                if fh.tell() == 0:
                    w.writeheader()
                ds = loaded[name]
                w.writerow({**row, "data": name, "spec": spec, "kind": kind,
                            "n_train": len(ds.y_train), "n_test": len(ds.y_test)})
            bar.advance(task)


def _run_job(ds: DataSet, kind, spec, depth, kernel, cache) -> dict:
    t0 = time.perf_counter()
    if kind == "baseline":
        acc = baseline_scores(spec, ds)
        note = "" if acc is not None else "needs known densities (Dirichlet data)"
        return {"activation": spec, "depth": "", "kernel": "", "note": note,
                "test_accuracy": "" if acc is None else f"{acc:.4f}",
                "seconds": f"{time.perf_counter() - t0:.3f}"}
    key = (ds.name, spec)
    if key not in cache:
        try:
            act = resolve_activation(spec, ds.dim)
            lim = limit(act)
        except ValueError as err:
            cache[key] = [spec, None, str(err), None]
        else:
            cache[key] = [_label(spec, act), lim, "", None]
        cache.setdefault((ds.name, "rho"), _correlations(ds))
    label, lim, error, _ = cache[key]
    if lim is None:
        return {"activation": label, "depth": depth_text(depth), "kernel": kernel,
                "test_accuracy": "", "seconds": "0", "note": error.split(".")[0]}
    rho_tr, rho_te, classes = cache[(ds.name, "rho")]
    Y = predict.one_hot(ds.y_train, classes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            scores, note = _scores(lim, cache[key], rho_tr, rho_te, Y, depth, kernel)
        except (ValueError, ArithmeticError) as err:  # recorded, the study goes on
            scores, note = None, f"failed: {err}"
    acc = "" if scores is None else \
        f"{float((classes[scores.argmax(1).numpy()] == ds.y_test).mean()):.4f}"
    return {"activation": label, "depth": depth_text(depth), "kernel": kernel,
            "test_accuracy": acc, "seconds": f"{time.perf_counter() - t0:.3f}", "note": note}


def _scores(lim, entry, rho_tr, rho_te, Y, depth, kernel):
    if math.isinf(depth):
        return predict.limit_scores(lim, rho_te, Y), f"limit: {lim.kind}"
    if entry[3] is None:
        entry[3] = predict.DepthSweep(lim, rho_tr, rho_te)
    return predict.depth_scores(entry[3], rho_te, Y, int(depth), kernel)


def _correlations(ds: DataSet):
    x_tr, x_te = torch.as_tensor(ds.x_train), torch.as_tensor(ds.x_test)
    rho_tr = (x_tr @ x_tr.T).clamp_(-1.0, 1.0)
    rho_tr.fill_diagonal_(1.0)
    return rho_tr, (x_te @ x_tr.T).clamp_(-1.0, 1.0), np.unique(ds.y_train)


def depth_text(depth) -> str:
    return "inf" if depth is not None and math.isinf(depth) else str(depth)


def _key(job) -> tuple:
    name, kind, spec, depth, kernel = job
    return (name, spec, "" if depth is None else depth_text(depth), kernel or "")


def _write_csv(path: Path, rows: list[dict]) -> None:
    fields = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fields)
    w.writeheader()
    w.writerows(rows)
    write_atomic(path, buf.getvalue())
