"""``infnet study``: the infinite-depth classifier taxonomy on data, its report and its robustness.

Independent references: scikit-learn-style classifiers of ``infnet.classifiers`` run directly
(the Hilbert kernel rule |x - z|^-(d-1), 1-NN, majority vote, the Bayes rule of the Dirichlet
model), 1-NN by numpy's argmax of x . x_i, the closed-form erf dual arcsin(2 rho/3) / arcsin(2/3)
iterated in numpy (deep NNGP and NTK, min-norm interpolation by numpy's solve), c0 = f'(0) and
A = f'(1) of that dual by mpmath's numerical differentiation, and an uninterrupted study in
another folder for the resumed one. The n = 2000 tests follow the paper's setting
(Radhakrishnan, Belkin & Uhler 2023; docs/theory/infinite-depth.md#reference-experiments):
``data.dirichlet_setting(d)``,
n_train = n_test = 2000, the first n_train rows train.

The regression tests at the end pin bugs found while writing this file (now fixed).
"""

from __future__ import annotations

import csv
import importlib
import json
import math
import re
import warnings
from dataclasses import dataclass

import mpmath as mp
import numpy as np
import pytest
import torch

from infnet import data
from infnet.activations import activation, list_activations
from infnet.cli import main
from infnet.depth.deep import deep_dual
from infnet.depth.design import from_hermite, optimal_activation
from infnet.depth.limit import KINDS, limit
from infnet.depth.linearize import koenigs
from infnet.estimators.sphere import BayesDirichlet, HilbertKernel, MajorityVote, NearestNeighbor
from infnet.experiments.study import BASELINES, FIELDS, load_data, predict, run_study, taxonomy_rows

study_module = importlib.import_module("infnet.experiments.study")

F64 = torch.float64
N = 2000  # n_train = n_test, the paper's re-run setting (docs/theory/infinite-depth.md#reference-experiments)
ASIN23 = math.asin(2 / 3)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
#: agreement fractions measured by the n = 2000 tests (printed with pytest -s)
AGREEMENT: dict = {}


def erf_dual(r):
    return np.arcsin(2 * np.asarray(r) / 3) / ASIN23


def erf_slope(r):
    return (2 / 3) / np.sqrt(1 - 4 * np.asarray(r) ** 2 / 9) / ASIN23


def rows_of(path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def without_seconds(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


def key_of(row: dict) -> tuple:
    return row["data"], row["spec"], row["depth"], row["kernel"]


def depth_text(depth) -> str:
    return "" if depth is None else "inf" if math.isinf(depth) else str(int(depth))


# ---- n = 2000: the network's classifier at large depth and at depth inf -----------------------
@dataclass
class Split:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    rho_train: torch.Tensor
    rho_test: torch.Tensor
    classes: np.ndarray
    Y: torch.Tensor


_SPLITS: dict = {}
_PREDICTIONS: dict = {}


def paper_split(d: int) -> Split:
    if d not in _SPLITS:
        x, y = data.dirichlet_setting(d).sample(2 * N, seed=0)
        x_tr, y_tr, x_te, y_te = x[:N], y[:N], x[N:], y[N:]
        a, b = torch.as_tensor(x_tr), torch.as_tensor(x_te)
        rho_tr = (a @ a.T).clamp(-1.0, 1.0)
        rho_tr.fill_diagonal_(1.0)
        classes = np.unique(y_tr)
        _SPLITS[d] = Split(x_tr, y_tr, x_te, y_te, rho_tr, (b @ a.T).clamp(-1.0, 1.0), classes,
                           predict.one_hot(y_tr, classes))
    return _SPLITS[d]


def network_predictions(split: Split, act, depths) -> dict:
    """{depth: (predicted labels, note)} of the study's predictor (``predict``), NNGP."""
    lim = limit(act)
    out = {}
    sweep = predict.DepthSweep(lim, split.rho_train, split.rho_test)
    for depth in depths:
        if math.isinf(depth):
            scores, note = predict.limit_scores(lim, split.rho_test, split.Y), "limit"
        else:
            scores, note = predict.depth_scores(sweep, split.rho_test, split.Y, depth, "nngp")
        assert scores is not None, note
        out[depth] = split.classes[scores.argmax(1).numpy()], note
    return out


def optimal_predictions(d: int, family: str) -> dict:
    key = (d, family)
    if key not in _PREDICTIONS:
        _PREDICTIONS[key] = network_predictions(paper_split(d), optimal_activation(d, family),
                                                (50, 1000, math.inf))
    return _PREDICTIONS[key]


@pytest.mark.slow
@pytest.mark.parametrize("d, family", [(3, "polynomial"), (3, "sine"), (2, "polynomial")])
def test_optimal_activation_at_large_depth_is_the_hilbert_kernel_rule(d, family):
    """The deep network of an optimal activation predicts as the Hilbert kernel rule
    |x - z|^-(d-1) on >= 99% of the test points: at depth 50 (the NNGP / c0^L interpolated by
    Cholesky: the finite-depth kernel itself), at depth 1000 and at depth inf."""
    split = paper_split(d)
    assert lim_exponent(optimal_activation(d, family)) == pytest.approx(d - 1, rel=1e-9)
    hilbert = HilbertKernel().fit(split.x_train, split.y_train)
    assert hilbert.exponent_ == d - 1
    want = hilbert.predict(split.x_test)
    got = optimal_predictions(d, family)
    assert got[50][1] == "kernel / c0^L"  # the depth-50 kernel, min-norm interpolation
    for depth, (pred, _) in got.items():
        agree = float((pred == want).mean())
        AGREEMENT[(f"optimal_{family}_d{d}", depth, "hilbert")] = agree
        print(f"optimal {family} d={d} depth {depth}: {100 * agree:.2f}% agree with Hilbert")
        assert agree >= 0.99, (depth, agree)
    # so the accuracies are within 1% of the Hilbert rule's
    acc_h = float((want == split.y_test).mean())
    for pred, _ in got.values():
        assert abs(float((pred == split.y_test).mean()) - acc_h) <= 0.01


def lim_exponent(act) -> float:
    lim = limit(act)
    assert lim.kind == "singular"
    return lim.exponent


@pytest.mark.slow
@pytest.mark.parametrize("k", [2, 3])
def test_hermite_network_at_large_depth_is_nearest_neighbour(k):
    """Dual rho^k: f^(L)(rho) = rho^(k^L), so the largest |B(rho)| = |rho| wins. With even k an
    antipodal training point (rho near -1) would count as near; the Dirichlet data lie in the
    positive orthant, so rho >= 0 and the network is exactly 1-NN, up to exact ties. Depth 30 is
    the study's log-space kernel smoother of rho^(k^30), depth 1000 and inf the limit rule."""
    split = paper_split(3)
    assert bool((split.rho_test >= 0).all())
    want = NearestNeighbor().fit(split.x_train, split.y_train).predict(split.x_test)
    by_numpy = split.y_train[(split.x_test @ split.x_train.T).argmax(1)]
    assert np.array_equal(want, by_numpy)
    top2 = np.sort(split.x_test @ split.x_train.T, axis=1)[:, -2:]
    tie = (top2[:, 1] - top2[:, 0]) < 1e-12
    got = network_predictions(split, activation("hermite", k=k), (30, 1000, math.inf))
    assert got[30][1] == "log-space kernel smoother (f^(L) below float64)"
    for depth, (pred, _) in got.items():
        agree = float((pred == want).mean())
        AGREEMENT[(f"hermite_k{k}", depth, "1-nn")] = agree
        print(f"hermite k={k} depth {depth}: {100 * agree:.2f}% agree with 1-NN "
              f"({int(tie.sum())} near-ties)")
        assert agree >= 0.99
        assert not bool((pred != want)[~tie].any()), depth  # only exact ties may differ


# ---- the infinite-depth kernel is the limit of the finite-depth ones -------------------------
@pytest.mark.parametrize("name, depths", [
    # erf: c0 = 0.9136, the error ~ c0^(2L) h^3 is 7.5e-6 at L = 80; 160 brings it to 4e-12
    ("erf", (10, 20, 40, 80, 160)),
    ("optimal_polynomial_d3", (10, 20, 40, 80)),
])
def test_deep_dual_over_c0_power_converges_to_koenigs(name, depths):
    """f^(L)(rho) / c0^L -> h(rho) (Koenigs), f iterated here in numpy from its closed form.
    Both duals are odd, so h(f^L) = c0^L h gives an error ~ c0^(2L): each doubling of L
    multiplies it by c0^(2L) (checked while it is above rounding), the last is < 1e-8."""
    if name == "erf":
        f, c0, act = erf_dual, (2 / 3) / ASIN23, activation("erf")
    else:
        f, c0, act = (lambda r: r / 2 + r**3 / 2), 0.5, optimal_activation(3, "polynomial")
    rho = np.linspace(-0.9, 0.99, 64)
    rho = rho[rho != 0]
    h = koenigs(act, torch.as_tensor(rho)).numpy()
    errors = []
    s, done = rho.copy(), 0
    for L in depths:
        for _ in range(L - done):
            s = f(s)
        done = L
        ratio = s / c0**L
        errors.append(float(np.max(np.abs(ratio - h) / np.abs(h))))
        lib = deep_dual(act, torch.as_tensor(rho), L).numpy() / c0**L  # the study's path
        assert np.max(np.abs(lib - ratio) / np.abs(ratio)) < 1e-12
    print(name, dict(zip(depths, errors, strict=True)))
    for a, b in zip(errors, errors[1:], strict=False):
        assert b < a or b < 1e-12
    assert errors[-1] < 1e-8
    for (L1, e1), (L2, e2) in zip(zip(depths, errors, strict=True),
                                   zip(depths[1:], errors[1:], strict=True), strict=False):
        if L2 == 2 * L1 and e1 < 2e-2 and e2 > 1e-11:
            assert e2 / e1 == pytest.approx(c0 ** (2 * L1), rel=0.25)


@pytest.mark.slow
def test_study_accuracy_at_depth_1000_equals_depth_inf(tmp_path):
    """run_study on the paper's 3-D data, n = 2000, optimal activation, NNGP: the accuracy at
    depths 50 and 1000 equals the accuracy at inf, which is that of the limit predictions
    computed above on the same split; the study's baselines are the classifiers run here.
    (Depth 1000 is past c0^L < 1e-250, where the study uses h itself: at that depth the
    equality holds by construction; depth 50 is the finite-depth kernel.) Both kernels: with
    the NNGP alone the report's figure failed (see the regression test below)."""
    run_study(tmp_path, datasets=("dirichlet3",), activations=("optimal",),
              depths=(50, 1000, math.inf), n_train=N, n_test=N,
              taxonomy=False, progress=False)
    rows = rows_of(tmp_path / "results.csv")
    acc = {r["depth"]: r["test_accuracy"] for r in rows if r["kernel"] == "nngp"}
    assert set(acc) == {"50", "1000", "inf"}
    assert acc["50"] == acc["1000"] == acc["inf"]
    split = paper_split(3)
    pred_inf = optimal_predictions(3, "polynomial")[math.inf][0]
    assert acc["inf"] == f"{float((pred_inf == split.y_test).mean()):.4f}"
    base = {r["spec"]: r["test_accuracy"] for r in rows if r["kind"] == "baseline"}
    hk = HilbertKernel().fit(split.x_train, split.y_train).score(split.x_test, split.y_test)
    assert base["hilbert"] == f"{hk:.4f}"
    print("dirichlet3 n=2000: optimal NNGP accuracy", acc, "hilbert", base["hilbert"])


# ---- the command ------------------------------------------------------------------------------
SMALL = ["--n-train", "60", "--n-test", "60", "--depths", "1", "2", "inf",
         "--activations", "erf", "hermite", "--data", "dirichlet2", "digits"]
N_JOBS = 2 * (len(BASELINES) + 2 * 3 * 2)  # data x (baselines + activations x depths x kernels)


@pytest.fixture(scope="module")
def taxonomy():
    return taxonomy_rows()


def direct_baselines(name: str) -> dict:
    """Baseline accuracies by the classifiers run here on load_data's split."""
    ds = load_data(name, 60, 60, seed=0)
    out = {"1-nn": NearestNeighbor(), "hilbert": HilbertKernel(), "majority": MajorityVote()}
    acc = {k: est.fit(ds.x_train, ds.y_train).score(ds.x_test, ds.y_test) for k, est in out.items()}
    nn = ds.y_train[(ds.x_test @ ds.x_train.T).argmax(1)]
    assert acc["1-nn"] == float((nn == ds.y_test).mean())
    values, counts = np.unique(ds.y_train, return_counts=True)
    assert acc["majority"] == float((ds.y_test == values[counts.argmax()]).mean())
    if name.startswith("dirichlet"):
        d = int(name[len("dirichlet"):])
        bayes = BayesDirichlet(prior=0.4, alphas=data.PAPER_ALPHAS[d], labels=(1, -1))
        acc["bayes"] = bayes.fit(ds.x_train, ds.y_train).score(ds.x_test, ds.y_test)
    return acc


def erf_network_accuracy(name: str, depth: int, kernel: str) -> float:
    """The depth-L erf network's NNGP / NTK from the closed-form dual, interpolated by numpy."""
    ds = load_data(name, 60, 60, seed=0)
    x_all = np.vstack([ds.x_train, ds.x_test])
    rho = np.clip(x_all @ ds.x_train.T, -1, 1)
    rho[np.arange(60), np.arange(60)] = 1.0
    S, K = rho, rho.copy()
    for _ in range(depth):
        S, K = erf_dual(S), erf_dual(S) + K * erf_slope(S)
    gram = S if kernel == "nngp" else K
    classes = np.unique(ds.y_train)
    Y = (ds.y_train[:, None] == classes[None, :]).astype(float)
    scores = gram[60:] @ np.linalg.solve(gram[:60], Y)
    return float((classes[scores.argmax(1)] == ds.y_test).mean())


def test_study_command_writes_report_results_figures_and_taxonomy(tmp_path, capsys, taxonomy):
    out = tmp_path / "study"
    assert main(["study", "--out", str(out), *SMALL]) == 0
    assert str(out / "report.md") in capsys.readouterr().out
    for file in ("report.md", "results.csv", "taxonomy.csv", "options.json",
                 "accuracy_vs_depth_dirichlet2.png", "accuracy_vs_depth_digits.png"):
        assert (out / file).is_file(), file
    for name in ("dirichlet2", "digits"):
        assert (out / f"accuracy_vs_depth_{name}.png").read_bytes()[:8] == PNG_MAGIC
    assert sorted(p.name for p in out.glob("*.png")) == ["accuracy_vs_depth_digits.png",
                                                         "accuracy_vs_depth_dirichlet2.png"]
    report = (out / "report.md").read_text()
    for text in ("## dirichlet2 (60 training, 60 test points)", "## digits (60 training",
                 "(accuracy_vs_depth_dirichlet2.png)", "(accuracy_vs_depth_digits.png)",
                 "## Infinite-depth class of every catalog activation", "| erf | singular |"):
        assert text in report, text

    with open(out / "results.csv") as fh:
        assert fh.readline().strip() == ",".join(FIELDS)
    rows = rows_of(out / "results.csv")
    want = {(n, b, "", "") for n in ("dirichlet2", "digits") for b in BASELINES}
    want |= {(n, a, d, k) for n in ("dirichlet2", "digits") for a in ("erf", "hermite")
             for d in ("1", "2", "inf") for k in ("nngp", "ntk")}
    keys = [key_of(r) for r in rows]
    assert len(rows) == N_JOBS == len(want) and set(keys) == want
    for r in rows:
        assert (r["n_train"], r["n_test"]) == ("60", "60")
        assert r["kind"] == ("baseline" if r["spec"] in BASELINES else "network")
        if (r["data"], r["spec"]) == ("digits", "bayes"):
            assert r["test_accuracy"] == "" and "known densities" in r["note"]
        else:
            assert 0.0 <= float(r["test_accuracy"]) <= 1.0, r
    acc = {key_of(r): r["test_accuracy"] for r in rows}
    for name in ("dirichlet2", "digits"):
        for b, value in direct_baselines(name).items():
            assert acc[(name, b, "", "")] == f"{value:.4f}", (name, b)
        # hermite (dual rho^2) at depth inf is 1-NN: data with rho >= 0
        assert acc[(name, "hermite", "inf", "nngp")] == acc[(name, "1-nn", "", "")]
        assert acc[(name, "hermite", "inf", "ntk")] == acc[(name, "1-nn", "", "")]
    # finite depth against the closed-form erf dual (digits: well-conditioned Gram matrices)
    assert acc[("digits", "erf", "1", "nngp")] == f"{erf_network_accuracy('digits', 1, 'nngp'):.4f}"
    assert acc[("digits", "erf", "2", "ntk")] == f"{erf_network_accuracy('digits', 2, 'ntk'):.4f}"

    written = {r["activation"]: r["kind"] for r in rows_of(out / "taxonomy.csv")}
    assert written == {r["activation"]: r["kind"] for r in taxonomy}


def test_taxonomy_rows_classify_every_catalog_activation(taxonomy):
    by_name = {r["activation"]: r for r in taxonomy}
    assert len(by_name) == len(taxonomy)
    assert set(by_name) == set(list_activations())
    for r in taxonomy:
        assert r["kind"] in KINDS or (r["kind"] == "none" and r["note"]), r
        if r["kind"] == "singular":  # the exponent from the row's own c0 and A
            c0, A = float(r["slope0"]), float(r["slope1"])
            want = 0.0 if math.isinf(A) else 2 * math.log(1 / c0) / math.log(A)
            assert float(r["exponent"]) == pytest.approx(want, rel=2e-3, abs=1e-4), r
        else:
            assert r["exponent"] == "", r

    relu = by_name["relu"]
    assert relu["kind"] == "majority_vote"
    assert float(relu["dual0"]) == pytest.approx(1 / math.pi, rel=1e-5)  # (sqrt(1) + 0) / pi
    assert float(relu["slope0"]) == pytest.approx(0.5, rel=1e-5)
    assert float(relu["slope1"]) == pytest.approx(1.0, rel=1e-5)

    mp.mp.dps = 30
    dual = lambda r: mp.asin(2 * r / 3) / mp.asin(mp.mpf(2) / 3)  # noqa: E731
    c0, A = float(mp.diff(dual, 0)), float(mp.diff(dual, 1))
    assert c0 == pytest.approx(0.9135827, rel=1e-6) and A == pytest.approx(1.2256993, rel=1e-6)
    erf = by_name["erf"]
    assert erf["kind"] == "singular" and float(erf["dual0"]) == 0.0
    assert float(erf["slope0"]) == pytest.approx(c0, rel=1e-5)
    assert float(erf["slope1"]) == pytest.approx(A, rel=1e-5)
    assert float(erf["exponent"]) == pytest.approx(2 * math.log(1 / c0) / math.log(A), rel=2e-4)

    hermite = by_name["hermite"]  # default k = 2: dual rho^2
    assert hermite["kind"] == "nearest_neighbor"
    assert abs(float(hermite["dual0"])) < 1e-12 and abs(float(hermite["slope0"])) < 1e-12
    assert float(hermite["slope1"]) == pytest.approx(2.0, rel=1e-5)

    identity = by_name["identity"]
    assert identity["kind"] == "linear"
    assert float(identity["slope0"]) == pytest.approx(1.0) and float(identity["slope1"]) == 1.0


# ---- resuming ---------------------------------------------------------------------------------
class CountingJobs:
    """Stands in for infnet.experiments.study._run_job: records each job, raises KeyboardInterrupt (as a
    user's Ctrl-C) when ``stop_after`` jobs have run."""

    def __init__(self, real, stop_after: int | None = None):
        self.real, self.stop_after, self.calls = real, stop_after, []

    def __call__(self, ds, kind, spec, depth, kernel, cache):
        if self.stop_after is not None and len(self.calls) >= self.stop_after:
            raise KeyboardInterrupt
        self.calls.append((ds.name, spec, depth_text(depth), kernel or ""))
        return self.real(ds, kind, spec, depth, kernel, cache)


def test_interrupted_study_continues_where_it_stopped(tmp_path, monkeypatch):
    real = study_module._run_job
    args = [*SMALL, "--no-taxonomy"]
    full = CountingJobs(real)
    monkeypatch.setattr(study_module, "_run_job", full)
    assert main(["study", "--out", str(tmp_path / "full"), *args]) == 0
    assert len(full.calls) == N_JOBS
    reference = rows_of(tmp_path / "full" / "results.csv")

    out, k = tmp_path / "resumed", 11  # stops inside the hermite jobs of dirichlet2
    monkeypatch.setattr(study_module, "_run_job", CountingJobs(real, stop_after=k))
    assert main(["study", "--out", str(out), *args]) == 130  # Ctrl-C: one line, no traceback
    with open(out / "results.csv") as fh:
        assert fh.readline().strip() == ",".join(FIELDS)
    partial = rows_of(out / "results.csv")
    assert len(partial) == k
    for r in partial:  # complete rows, nothing missing
        assert list(r) == FIELDS and None not in r.values() and r["n_train"] == "60"
        assert r["test_accuracy"] == "" or 0 <= float(r["test_accuracy"]) <= 1
    assert without_seconds(partial) == without_seconds(reference[:k])
    assert not (out / "report.md").exists()

    again = CountingJobs(real)
    monkeypatch.setattr(study_module, "_run_job", again)
    assert main(["study", "--out", str(out), *args]) == 0
    assert len(again.calls) == N_JOBS - k
    assert set(again.calls) == {key_of(r) for r in reference[k:]}
    final = rows_of(out / "results.csv")
    assert len({key_of(r) for r in final}) == len(final) == N_JOBS  # no duplicates
    assert without_seconds(final) == without_seconds(reference)
    assert (out / "report.md").is_file()


def test_finished_study_recomputes_nothing_and_other_options_are_refused(tmp_path, monkeypatch,
                                                                         capsys):
    out = tmp_path / "study"
    args = ["study", "--out", str(out), "--n-train", "40", "--n-test", "30", "--data",
            "dirichlet2", "--activations", "erf", "--depths", "1", "inf", "--no-taxonomy"]
    assert main(args) == 0
    before = (out / "results.csv").read_bytes()
    assert len(rows_of(out / "results.csv")) == len(BASELINES) + 2 * 2
    counter = CountingJobs(study_module._run_job)
    monkeypatch.setattr(study_module, "_run_job", counter)
    assert main(args) == 0
    assert counter.calls == [] and (out / "results.csv").read_bytes() == before
    capsys.readouterr()

    other = [a if a != "40" else "50" for a in args]  # --n-train 50
    assert main(other) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(out) in err and "other options" in err
    assert counter.calls == [] and (out / "results.csv").read_bytes() == before
    with pytest.raises(ValueError, match=re.escape(str(out))):
        run_study(out, datasets=("dirichlet2",), activations=("erf",), depths=(1,),
                  n_train=40, n_test=30, seed=1, taxonomy=False, progress=False)
    assert counter.calls == []


# ---- a resumed study: its data and options fingerprinted; a folder for one process -----------
TINY = ["--activations", "hermite", "--depths", "1", "inf", "--no-taxonomy"]


def test_resumed_study_refuses_changed_data_and_restart_starts_again(tmp_path, monkeypatch, capsys):
    """The .npz changed between two runs (one label, then one coordinate): refused with what
    differs; --restart recomputes everything, as a study of the new file in a fresh folder."""
    monkeypatch.chdir(tmp_path)
    a = _arrays()
    np.savez("d.npz", **a)
    assert main(["study", "--out", "st", "--data", "d.npz", *TINY]) == 0
    before = (tmp_path / "st" / "results.csv").read_bytes()
    capsys.readouterr()
    for part, change in (("y_train", (3,)), ("x_test", (5, 1))):
        changed = {k: v.copy() for k, v in a.items()}
        if part == "y_train":
            changed[part][change] = -changed[part][change]
        else:
            changed[part][change] = np.nextafter(changed[part][change], 2.0)  # one bit
        np.savez("d.npz", **changed)
        counter = CountingJobs(study_module._run_job)
        monkeypatch.setattr(study_module, "_run_job", counter)
        assert main(["study", "--out", "st", "--data", "d.npz", *TINY]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("error: st holds a study with other")
        assert f"d.npz {part} differs (study: " in err and "--restart" in err
        assert counter.calls == [] and (tmp_path / "st" / "results.csv").read_bytes() == before
    assert main(["study", "--out", "st", "--data", "d.npz", *TINY, "--restart"]) == 0
    assert len(counter.calls) == len(BASELINES) + 2 * 2
    assert main(["study", "--out", "fresh", "--data", "d.npz", *TINY]) == 0
    assert without_seconds(rows_of(tmp_path / "st" / "results.csv")) == \
        without_seconds(rows_of(tmp_path / "fresh" / "results.csv"))
    assert main(["study", "--out", "st", "--data", "d.npz", *TINY]) == 0  # same data: resumes
    assert len(counter.calls) == 2 * (len(BASELINES) + 2 * 2)  # (the fresh study's; none more)


def test_failed_or_stopped_first_run_does_not_lock_the_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    np.savez("good.npz", **_arrays())
    bad = _arrays()
    bad["x_train"][4, 1] = np.nan
    np.savez("bad.npz", **bad)
    assert main(["study", "--out", "st", "--data", "bad.npz", *TINY]) == 2  # fails on its data
    with monkeypatch.context() as m:  # Ctrl-C before the first row
        m.setattr(study_module, "_run_job", CountingJobs(study_module._run_job, stop_after=0))
        assert main(["study", "--out", "st", "--data", "good.npz", "--n-train", "30", *TINY]) == 130
    capsys.readouterr()
    # neither left a row: the folder takes another study, with other data and sizes
    assert main(["study", "--out", "st", "--data", "good.npz", "--seed", "3", *TINY]) == 0
    assert len(rows_of(tmp_path / "st" / "results.csv")) == len(BASELINES) + 2 * 2
    assert study_module.folder.read_results(tmp_path / "st" / "results.csv")[1] is False


def test_row_cut_short_by_a_kill_is_computed_again(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    np.savez("d.npz", **_arrays())
    assert main(["study", "--out", "st", "--data", "d.npz", *TINY]) == 0
    results = tmp_path / "st" / "results.csv"
    reference = rows_of(results)
    text = results.read_text()
    results.write_text(text[: text.rstrip("\n").rfind("\n") + 25])  # the last row, 24 characters
    counter = CountingJobs(study_module._run_job)
    monkeypatch.setattr(study_module, "_run_job", counter)
    assert main(["study", "--out", "st", "--data", "d.npz", *TINY]) == 0
    assert counter.calls == [key_of(reference[-1])]
    assert without_seconds(rows_of(results)) == without_seconds(reference)


@pytest.mark.parametrize("damage, phrase", [
    ("options", "options.json is unreadable"),
    ("no options", "options.json is missing"),
    ("results", "results.csv is not a results table of infnet study"),
    ("old options", "made by an older infnet"),
])
def test_damaged_study_folder_names_the_file(tmp_path, monkeypatch, capsys, damage, phrase):
    monkeypatch.chdir(tmp_path)
    np.savez("d.npz", **_arrays())
    assert main(["study", "--out", "st", "--data", "d.npz", *TINY]) == 0
    options = tmp_path / "st" / "options.json"
    if damage == "options":
        options.write_text("{broken")
    elif damage == "no options":
        options.unlink()
    elif damage == "results":
        (tmp_path / "st" / "results.csv").write_text('data,spec\n"unterminated')
    else:  # an options.json of the version without fingerprints
        old = json.loads(options.read_text())
        del old["fingerprints"]
        options.write_text(json.dumps(old))
    capsys.readouterr()
    assert main(["study", "--out", "st", "--data", "d.npz", *TINY]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and phrase in err and "--restart" in err
    assert main(["study", "--out", "st", "--data", "d.npz", *TINY, "--restart"]) == 0


def test_study_folder_has_one_writer(tmp_path, capsys):
    """The folder locked (by another descriptor, as by another process): refused at once."""
    from infnet.core.files import folder_lock

    (tmp_path / "st").mkdir()
    argv = ["study", "--out", str(tmp_path / "st"), "--data", "dirichlet2", "--n-train", "20",
            "--n-test", "20", *TINY]
    with folder_lock(tmp_path / "st", "a study"):
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "is in use: pid" in err and "a study" in err
        assert not (tmp_path / "st" / "results.csv").exists()
    assert main(argv) == 0


@pytest.mark.parametrize("options, phrase", [
    (dict(depths=(0,)), "depths are integers >= 1 or inf, got 0"),
    (dict(depths=(-1, 2)), "got -1"),
    (dict(depths=(2.5,)), "got 2.5"),
    (dict(depths=()), "depths must be a non-empty list"),
    (dict(kernels=("gp",)), "unknown kernel 'gp'"),
    (dict(n_train=0), "n_train must be an integer >= 1"),
    (dict(n_test=True), "n_test must be an integer >= 1"),
    (dict(datasets=("dirichlet4",)), "unknown data 'dirichlet4'"),
    (dict(datasets="digits"), "datasets must be a non-empty list"),
    (dict(activations=("rleu",)), "unknown activation 'rleu'"),
])
def test_run_study_checks_its_options_before_anything(tmp_path, options, phrase):
    kwargs = dict(datasets=("dirichlet2",), activations=("erf",), depths=(1,), n_train=20,
                  n_test=20, taxonomy=False, progress=False) | options
    with pytest.raises((ValueError, KeyError), match=re.escape(phrase)):
        run_study(tmp_path / "st", **kwargs)
    assert not (tmp_path / "st").exists()


# ---- bad input --------------------------------------------------------------------------------
def _arrays(n_train=20, n_test=20, d=3, seed=1):
    x, y = data.dirichlet_setting(d).sample(n_train + n_test, seed=seed)
    return dict(x_train=x[:n_train], y_train=y[:n_train], x_test=x[n_train:], y_test=y[n_train:])


def _bad(kind: str, folder) -> str:
    a = _arrays()
    if kind == "unknown name":
        return "mnist"
    if kind == "missing file":
        return str(folder / "nothere.npz")
    if kind == "missing arrays":
        del a["y_test"], a["x_test"]
    elif kind == "nan":
        a["x_train"][4, 1] = np.nan
    elif kind == "zero vector":
        a["x_test"][7] = 0.0
    elif kind == "single class":
        a["y_train"] = np.ones(20)
    elif kind == "n = 1":
        a["x_train"], a["y_train"] = a["x_train"][:1], a["y_train"][:1]
    path = folder / "bad.npz"
    np.savez(path, **a)
    if kind == "truncated":
        path.write_bytes(path.read_bytes()[:400])
    return str(path)


@pytest.mark.parametrize("kind, words", [
    ("unknown name", ["unknown data", "'mnist'", "dirichlet2", ".npz"]),
    ("missing file", ["unknown data", "nothere.npz"]),
    ("missing arrays", ["bad.npz", "lacks arrays", "x_test", "y_test"]),
    ("truncated", ["bad.npz is truncated or corrupt"]),
    ("nan", ["x_train", "row 4", "NaN"]),
    ("zero vector", ["x_test", "row 7", "zero vector"]),
    ("single class", ["single class", "two classes"]),
    ("n = 1", ["at least 2 training points", "got 1"]),
])
def test_bad_data_is_a_clear_error(tmp_path, capsys, kind, words):
    data_arg = _bad(kind, tmp_path)
    out = tmp_path / "out"
    rc = main(["study", "--out", str(out), "--data", data_arg, "--activations", "erf",
               "--depths", "1", "--no-taxonomy"])
    captured = capsys.readouterr()
    assert rc == 2
    assert captured.err.startswith("error: ") and "Traceback" not in captured.err
    for word in words:
        assert word in captured.err, (word, captured.err)
    assert not (out / "results.csv").exists() and "report:" not in captured.out
    with pytest.raises(ValueError):
        load_data(data_arg, 20, 20)


def test_rows_off_the_sphere_are_normalized_with_a_warning(tmp_path, monkeypatch):
    """The same points, once with unit rows and once with rows scaled by random factors: the
    second warns (x_train and x_test) and gives the same study. Each file is d.npz in its own
    folder, run from there (a bare file name; sub-folders: see the regression test)."""
    a = _arrays(40, 40)
    rng = np.random.default_rng(5)
    scaled = {k: v * rng.uniform(0.2, 5.0, size=(len(v), 1)) if k.startswith("x") else v
              for k, v in a.items()}
    results = []
    for folder, arrays in (("unit", a), ("scaled", scaled)):
        (tmp_path / folder).mkdir()
        np.savez(tmp_path / folder / "d.npz", **arrays)
        monkeypatch.chdir(tmp_path / folder)
        args = ["study", "--out", str(tmp_path / f"out_{folder}"), "--data", "d.npz",
                "--activations", "optimal", "hermite", "--depths", "1", "5", "inf",
                "--no-taxonomy"]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert main(args) == 0
        unit_norm = [str(w.message) for w in caught if "unit norm" in str(w.message)]
        if folder == "unit":
            assert unit_norm == []
        else:
            assert all(issubclass(w.category, UserWarning) for w in caught
                       if "unit norm" in str(w.message))
            assert any("rows of x_train do not have unit norm" in m for m in unit_norm)
            assert any("rows of x_test do not have unit norm" in m for m in unit_norm)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                ds = load_data("d.npz", 40, 40)
            names = [re.match(r"40 of 40 rows of (\w+) do not have unit norm", str(w.message))
                     for w in caught]
            assert sorted(m.group(1) for m in names if m) == ["x_test", "x_train"]
            np.testing.assert_allclose(ds.x_train, a["x_train"], rtol=0, atol=1e-15)
            np.testing.assert_allclose(ds.x_test, a["x_test"], rtol=0, atol=1e-15)
        results.append(without_seconds(rows_of(tmp_path / f"out_{folder}" / "results.csv")))
    assert len(results[0]) == len(BASELINES) + 2 * 3 * 2
    assert results[0] == results[1]


# ---- regressions: bugs found while writing these tests, fixed -------------------------------
def test_npz_in_a_folder_gets_its_figure(tmp_path):
    (tmp_path / "sub").mkdir()
    np.savez(tmp_path / "sub" / "mine.npz", **_arrays())
    out = tmp_path / "out"
    assert main(["study", "--out", str(out), "--data", str(tmp_path / "sub" / "mine.npz"),
                 "--activations", "erf", "--depths", "1", "inf", "--no-taxonomy"]) == 0
    assert len(list(out.glob("*.png"))) == 1


def test_two_npz_files_with_one_stem_are_studied_apart(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for folder, seed in (("a", 1), ("b", 2)):
        (tmp_path / folder).mkdir()
        np.savez(tmp_path / folder / "d.npz", **_arrays(seed=seed))
    spec = ["--activations", "hermite", "--depths", "inf", "--no-taxonomy"]
    assert main(["study", "--out", "both", "--data", "a/d.npz", "b/d.npz", *spec]) == 0
    assert main(["study", "--out", "alone", "--data", "b/d.npz", *spec]) == 0
    both = [r for r in without_seconds(rows_of(tmp_path / "both" / "results.csv"))
            if r["data"] == "b/d.npz"]
    assert both == without_seconds(rows_of(tmp_path / "alone" / "results.csv"))


def test_column_y_test_is_a_clear_error(tmp_path, monkeypatch, capsys):
    """A (n, 1) y_test would broadcast against the (n,) predictions: it is rejected by name."""
    monkeypatch.chdir(tmp_path)
    a = _arrays()
    np.savez(tmp_path / "column.npz", **{**a, "y_test": a["y_test"].reshape(-1, 1)})
    assert main(["study", "--out", "out", "--data", "column.npz", "--activations", "hermite",
                 "--depths", "inf", "--no-taxonomy"]) == 2
    err = capsys.readouterr().err
    assert "y_test" in err and "1-D" in err


def test_odd_hermite_limit_keeps_the_sign_of_the_kernel():
    """S^1: test point at angle 0; class 0 at angle 0.3 (rho = 0.955), class 1 at pi + 0.1
    (rho = -0.995). Dual rho^3: the depth-L kernel is rho^(3^L), negative for the class-1
    point, and every depth's min-norm interpolant (numpy, exact) predicts class 0."""
    angles = np.array([0.3, math.pi + 0.1])
    x_tr = np.stack([np.cos(angles), np.sin(angles)], 1)
    x_te = np.array([[1.0, 0.0]])
    y_tr, classes = np.array([0, 1]), np.array([0, 1])
    for L in (1, 2, 3, 4, 5):
        p = 3**L
        scores = (x_te @ x_tr.T) ** p @ np.linalg.solve((x_tr @ x_tr.T) ** p, np.eye(2))
        assert scores.argmax() == 0, L
    rho_tr = torch.as_tensor(x_tr @ x_tr.T).clamp(-1, 1)
    rho_tr.fill_diagonal_(1.0)
    rho_te = torch.as_tensor(x_te @ x_tr.T)
    Y = predict.one_hot(y_tr, classes)
    lim = limit(from_hermite([0, 0, 0, 1]))  # exactly rho^3 (see the next test)
    sweep = predict.DepthSweep(lim, rho_tr, rho_te)
    for L in (3, 5, 40, 1000):
        scores, _ = predict.depth_scores(sweep, rho_te, Y, L, "nngp")
        assert int(scores.argmax()) == 0, L
    assert int(predict.limit_scores(lim, rho_te, Y).argmax()) == 0


def test_catalog_hermite_4_at_depth_is_nearest_neighbour():
    x, y = data.dirichlet_setting(3).sample(400, seed=0)
    x_tr, y_tr, x_te = x[:200], y[:200], x[200:]
    a, b = torch.as_tensor(x_tr), torch.as_tensor(x_te)
    rho_tr = (a @ a.T).clamp(-1, 1)
    rho_tr.fill_diagonal_(1.0)
    rho_te = (b @ a.T).clamp(-1, 1)
    classes = np.unique(y_tr)
    Y = predict.one_hot(y_tr, classes)
    want = NearestNeighbor().fit(x_tr, y_tr).predict(x_te)
    lim = limit(activation("hermite", k=4))
    assert lim.kind == "nearest_neighbor"
    sweep = predict.DepthSweep(lim, rho_tr, rho_te)
    scores, _ = predict.depth_scores(sweep, rho_te, Y, 20, "nngp")
    assert float((classes[scores.argmax(1).numpy()] == want).mean()) >= 0.99


def test_study_with_one_kernel_writes_its_report(tmp_path):
    out = tmp_path / "out"
    run_study(out, datasets=("dirichlet2",), activations=("erf",), depths=(1, math.inf),
              kernels=("nngp",), n_train=30, n_test=30, taxonomy=False, progress=False)
    assert (out / "report.md").is_file() and len(list(out.glob("*.png"))) == 1
