"""experiments.heavy_tails and ``infnet heavy-tails``: the scale mixtures against the NNGP."""

import csv
import functools

import numpy as np

from infnet.cli.main import main
from infnet.experiments import heavy_tails


def test_outliers_favour_the_student_t_process():
    """One split of the outliers task: the plain NNGP (noise 0.01, fixed scale) is far too
    confident (NLL ~ 60-90 in the 10-seed run), the Student-t process adapts its scale to the
    fit and is within a few tenths of the learned NNGP."""
    x, y, xs, ys = heavy_tails.outliers(0)
    assert x.shape == (40, 1) and ys.shape == (400,)
    scores = {name: p.scores() for name, p in heavy_tails.predictives(x, y, xs, ys).items()}
    assert set(scores) == set(heavy_tails.MODELS)
    nll = {name: s[0] for name, s in scores.items()}
    assert nll["Student-t"] < nll["NNGP"] / 10
    assert abs(nll["Student-t"] - nll["learned NNGP"]) < 0.5
    for _, coverage in scores.values():
        assert 0 <= coverage <= 1
    assert scores["Student-t"][1] > 0.7 > scores["NNGP"][1]


def test_command_writes_table_and_figure(tmp_path, monkeypatch, capsys):
    small = functools.partial(heavy_tails.other_digits, n_train=30, n_test=20)
    monkeypatch.setattr(heavy_tails, "other_digits", small)
    monkeypatch.setattr(heavy_tails, "outliers",
                        functools.partial(heavy_tails.outliers, n_train=20, n_test=20))
    assert main(["heavy-tails", "--seeds", "1", "--out", str(tmp_path), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "| outliers | Student-t |" in out
    rows = list(csv.DictReader(open(tmp_path / "heavy_tails.csv")))
    assert len(rows) == len(heavy_tails.TASKS) * len(heavy_tails.MODELS)
    assert all(np.isfinite(float(r["nll"])) for r in rows)
    assert (tmp_path / "heavy_tails.png").stat().st_size > 10_000


def test_command_refuses_a_bad_seed_count(capsys):
    assert main(["heavy-tails", "--seeds", "0"]) == 2
    assert "--seeds" in capsys.readouterr().err


def test_command_with_classification(tmp_path, monkeypatch, capsys):
    from infnet.experiments import heavy_tails_classes

    monkeypatch.setattr(heavy_tails, "run", lambda seeds, log=None: [
        {"task": "outliers", "model": m, "nll": 1.0, "nll_se": 0.1, "coverage90": 0.9,
         "coverage90_se": 0.01} for m in heavy_tails.MODELS])
    monkeypatch.setattr(heavy_tails, "figure", lambda path: path.write_bytes(b"png"))
    monkeypatch.setattr(heavy_tails_classes, "split", functools.partial(
        heavy_tails_classes.split, n_train=40, n_test=20))
    monkeypatch.setattr(heavy_tails_classes, "STEPS", 50)
    monkeypatch.setattr(heavy_tails_classes, "SAMPLES", 64)
    assert main(["heavy-tails", "--seeds", "2", "--classification", "--out", str(tmp_path),
                 "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "| inverse-gamma mixture |" in out
    rows = list(csv.DictReader(open(tmp_path / "heavy_tails_classes.csv")))
    assert [r["model"] for r in rows] == list(heavy_tails_classes.MODELS)
    for r in rows:
        assert 0 <= float(r["accuracy"]) <= 1 and 0 <= float(r["ece"]) <= 1
        assert 0 <= float(r["unseen_entropy"]) <= np.log(5) + 1e-12
