"""The study's folder: its options checked before any work, and a resumed study refused when its
data or options differ from those its results were computed with.

options.json records the options and the fingerprint of every data set (``array_digest`` of
x_train, y_train, x_test, y_test: shape, dtype, sha256 of the contents, the kernel store's
fingerprint of data). A folder whose results.csv holds rows continues only with the same data
sets, sizes, seed and fingerprints; other activations, depths or kernels add rows. A folder
without rows (a first run that failed or was stopped before its first row) holds nothing to
mix: it is taken over. A row cut short by a killed process (the last line without its end) is
dropped, and computed again.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

from ...activations import activation
from ...core.checks import check_depth
from ...core.files import array_digest, describe_digest, write_atomic
from ...data import PAPER_ALPHAS

FIELDS = ["data", "spec", "activation", "kind", "depth", "kernel", "test_accuracy", "n_train", "n_test",
          "seconds", "note"]
OPTIONS = "options.json"
RESULTS = "results.csv"
FORMAT = 2  # options.json with data fingerprints
STUDY_ACTIVATIONS = ("optimal", "sine", "hermite")  # beside the catalog's names
DIGITS_POINTS = 1797
#: the files a study writes (``--restart`` deletes these, and nothing else)
WRITTEN = (OPTIONS, RESULTS, "report.md", "taxonomy.csv", "accuracy_vs_depth_*.png")


def check_options(datasets, activations, depths, kernels, n_train, n_test, seed) -> None:
    """ValueError, before anything is made or computed, for an option no study can run."""
    for name, value, low in (("n_train", n_train, 1), ("n_test", n_test, 1), ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    for what, given in (("datasets", datasets), ("activations", activations),
                        ("depths", depths), ("kernels", kernels)):
        if isinstance(given, (str, Path)) or not len(given):
            raise ValueError(f"{what} must be a non-empty list, got {given!r}")
    for d in depths:
        try:
            check_depth(d, infinite=True)
        except ValueError:
            raise ValueError(f"depths are integers >= 1 or inf, got {d!r}") from None
    bad = [k for k in kernels if k not in ("nngp", "ntk")]
    if bad:
        raise ValueError(f"unknown kernel {bad[0]!r}: use nngp or ntk")
    for name in datasets:
        _check_data_name(str(name), n_train + n_test)
    for spec in activations:
        if spec not in STUDY_ACTIVATIONS:
            activation(spec)  # an unknown name: the catalog's error, with close names


def _check_data_name(name: str, n: int) -> None:
    if name.startswith("dirichlet"):
        d = name[len("dirichlet"):]
        if not d.isdigit() or int(d) not in PAPER_ALPHAS:
            raise ValueError(f"unknown data {name!r}: the paper's Dirichlet settings are "
                             + ", ".join(f"dirichlet{k}" for k in sorted(PAPER_ALPHAS)))
        return
    if name == "digits":
        if n > DIGITS_POINTS:
            raise ValueError(f"digits has {DIGITS_POINTS} points, fewer than n_train + n_test = "
                             f"{n}: give at most {DIGITS_POINTS} in all")
        return
    path = Path(name)
    if path.suffix != ".npz" or not path.is_file():
        why = "no such file; " if path.suffix == ".npz" else ""
        raise ValueError(f"unknown data {name!r}: {why}use dirichlet2, dirichlet3, digits or an "
                         ".npz file with x_train, y_train, x_test, y_test")


def options_record(loaded: dict, activations, depths, kernels, n_train, n_test, seed) -> dict:
    """What options.json holds: the options, and the fingerprint of each loaded data set."""
    prints = {name: {part: array_digest(getattr(ds, part))
                     for part in ("x_train", "y_train", "x_test", "y_test")}
              for name, ds in loaded.items()}
    return {"format": FORMAT, "datasets": list(loaded), "activations": list(activations),
            "depths": ["inf" if d == math.inf else d for d in depths], "kernels": list(kernels),
            "n_train": n_train, "n_test": n_test, "seed": seed, "fingerprints": prints}


def _refuse(out: Path, why: str) -> ValueError:
    return ValueError(f"{out} holds a study with other options or data: {why}. Use another --out "
                      "folder, or --restart (restart=True) to delete its results and start again")


def _differences(old: dict, new: dict) -> list[str]:
    diffs = [f"{key} differ (study: {old.get(key)!r}; now: {new[key]!r})"
             for key in ("datasets", "n_train", "n_test", "seed") if old.get(key) != new[key]]
    if diffs:
        return diffs
    prints = old.get("fingerprints")
    if not isinstance(prints, dict):
        return ["its data have no fingerprint (made by an older infnet): they cannot be checked"]
    for name, parts in new["fingerprints"].items():
        for part, digest in parts.items():
            was = (prints.get(name) or {}).get(part)
            if was != digest:
                diffs.append(f"{name} {part} differs (study: {describe_digest(was)}; now: "
                             f"{describe_digest(digest)})")
    return diffs


def resume(out: Path, options: dict) -> list[dict]:
    """The complete rows already in ``out`` for a study of these options (ValueError if they
    were computed for other data or options); records the options. Rows cut short are
    dropped from results.csv (rewritten atomically)."""
    rows, torn = read_results(out / RESULTS)
    if rows:
        try:
            old = json.loads((out / OPTIONS).read_text())
            if not isinstance(old, dict):
                raise ValueError("not a JSON object")
        except FileNotFoundError:
            raise _refuse(out, f"{RESULTS} has rows but {OPTIONS} is missing") from None
        except ValueError as err:  # (json.JSONDecodeError, UnicodeDecodeError)
            raise _refuse(out, f"{out / OPTIONS} is unreadable ({err})") from None
        diffs = _differences(old, options)
        if diffs:
            raise _refuse(out, "; ".join(diffs))
    if torn:
        write_results(out / RESULTS, rows)
    write_atomic(out / OPTIONS, json.dumps(options, indent=1))
    return rows


def read_results(path: Path) -> tuple[list[dict], bool]:
    """(complete rows, whether some row was cut short) of a results.csv; ValueError if the file
    is not one."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return [], False
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not a results table of infnet study (not text): use another "
                         "--out, or --restart to start again") from None
    if not text:
        return [], False
    complete = text.endswith("\n")
    if not complete:  # the last row was being written when the process ended
        text = text[:text.rfind("\n") + 1]
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        header = reader.fieldnames
        rows = list(reader)
    except csv.Error as err:
        raise ValueError(f"{path} is not a readable CSV table ({err}): use another --out, or "
                         "--restart to start again") from None
    if header is not None and header != FIELDS:
        raise ValueError(f"{path} is not a results table of infnet study (its columns are "
                         f"{header}): use another --out, or --restart to start again")
    good = [r for r in rows if None not in r and None not in r.values()]
    return good, not complete or len(good) < len(rows)


def write_results(path: Path, rows: list[dict]) -> None:
    """results.csv with these rows, atomically."""
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, FIELDS)
    w.writeheader()
    w.writerows(rows)
    write_atomic(path, buf.getvalue())


def clear(out: Path) -> None:
    """Delete the files of a study in ``out`` (``WRITTEN``), nothing else."""
    for pattern in WRITTEN:
        for f in out.glob(pattern):
            f.unlink(missing_ok=True)
