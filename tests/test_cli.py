"""The command line: catalog listing, kernel files, clear errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import infnet
from infnet.cli import main


def test_activations_lists_the_catalog(capsys):
    assert main(["activations", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    names = {r["name"] for r in rows}
    assert len(rows) >= 40 and names == set(infnet.list_activations())
    by_name = {r["name"]: r for r in rows}
    assert by_name["relu"]["closed_form"] is True
    assert by_name["swish"]["closed_form"] is False
    assert "Ramachandran" in by_name["swish"]["source"]
    assert main(["activations"]) == 0  # the rich table renders
    assert "gelu" in capsys.readouterr().out


def test_kernel_writes_the_arc_cosine_kernel(tmp_path):
    """A depth-1 ReLU network, checked against the arc-cosine formula written out here."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(7, 5))
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "k.npz"
    assert main(["kernel", str(tmp_path / "x.npy"), "-a", "relu", "-L", "1", "--w-std", "1.5",
                 "--b-std", "0.2", "-o", str(out)]) == 0
    with np.load(out) as z:
        nngp, ntk = z["nngp"], z["ntk"]
    w2, b2, d = 2.25, 0.04, 5
    s0 = w2 * x @ x.T / d + b2
    q = np.diag(s0)
    rho = np.clip(s0 / np.sqrt(q[:, None] * q[None, :]), -1, 1)
    th = np.arccos(rho)
    k = np.sqrt(q[:, None] * q[None, :]) * (np.sin(th) + (math.pi - th) * np.cos(th)) / (2 * math.pi)
    kdot = (math.pi - th) / (2 * math.pi)
    s1 = w2 * k + b2
    t1 = w2 * kdot * s0 + s1
    np.testing.assert_allclose(nngp, s1, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(ntk, t1, rtol=1e-12, atol=1e-14)
    assert not (tmp_path / "k.npz.partial").exists()


def test_kernel_with_parameters_matches_library(tmp_path, capsys):
    x = np.random.default_rng(1).normal(size=(4, 3))
    np.savetxt(tmp_path / "x.csv", x, delimiter=",")
    assert main(["kernel", str(tmp_path / "x.csv"), "-a", "swish", "-p", "beta=1.5", "-L", "2",
                 "--kind", "nngp", "-o", str(tmp_path / "k.npy")]) == 0
    got = np.load(tmp_path / "k.npy")
    want = infnet.fc(infnet.activation("swish", beta=1.5), 2, w_std=2**0.5).kernel(
        torch.as_tensor(x)).nngp.numpy()
    np.testing.assert_allclose(got, want, rtol=1e-13)


@pytest.mark.parametrize(("argv", "phrase"), [
    (["kernel", "digits", "-a", "rleu"], "relu"),
    (["kernel", "digits", "-a", "swish", "-p", "gamma=2"], "beta"),
    (["kernel", "digits", "-L", "0"], "depth"),
    (["kernel", "digits", "--w-std", "-1"], "--w-std"),
])
def test_kernel_bad_input_is_a_clear_error(argv, phrase, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and phrase in err and err.count("\n") == 1


def test_missing_data_file_names_it(tmp_path, capsys):
    assert main(["kernel", str(tmp_path / "absent.npy")]) == 2
    assert "no data file" in capsys.readouterr().err


def test_predict_on_digits_writes_the_accuracy_of_the_estimator(tmp_path, capsys):
    """`infnet predict` = NTKClassifier on the stratified 50/50 digits split (checked here
    through the estimator directly), one CSV row per activation and depth."""
    import csv

    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    out = tmp_path / "res.csv"
    assert main(["predict", "digits", "-a", "relu", "erf", "-L", "2", "inf",
                 "-o", str(out)]) == 0
    rows = list(csv.DictReader(open(out)))
    assert [(r["activation"], r["depth"]) for r in rows] == [("relu", "2"), ("relu", "inf"),
                                                             ("erf", "2"), ("erf", "inf")]
    X, y = load_digits(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.5, random_state=0, stratify=y)
    ref = infnet.NTKClassifier("relu", 2).fit(Xtr, ytr).score(Xte, yte)
    assert float(rows[0]["accuracy"]) == pytest.approx(ref, abs=1e-12)
    assert not list(tmp_path.glob("*.partial"))
    assert "accuracy" in capsys.readouterr().out


def test_predict_reads_an_idx_folder(tmp_path):
    """A folder with an IDX pair (the real binary format, written here) is a data set."""
    import csv
    import gzip
    import struct

    g = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 20).astype(np.uint8)
    images = (g.random((60, 6, 6)) * 60 + labels[:, None, None] * 60).astype(np.uint8)
    (tmp_path / "set").mkdir()
    with gzip.open(tmp_path / "set" / "images-idx3-ubyte.gz", "wb") as fh:
        fh.write(struct.pack(">HBB3I", 0, 8, 3, 60, 6, 6) + images.tobytes())
    with gzip.open(tmp_path / "set" / "labels-idx1-ubyte.gz", "wb") as fh:
        fh.write(struct.pack(">HBBI", 0, 8, 1, 60) + labels.tobytes())
    out = tmp_path / "r.csv"
    assert main(["predict", str(tmp_path / "set"), "-L", "3", "--preprocess", "center",
                 "-o", str(out)]) == 0
    row = next(csv.DictReader(open(out)))
    assert row["n_train"] == "30" and row["n_test"] == "30"
    assert float(row["accuracy"]) > 0.9  # three well separated brightness classes


@pytest.mark.parametrize("argv, phrase", [
    (["predict", "nosuchset"], "unknown data set"),
    (["predict", "digits", "-L", "0"], "a depth is an integer >= 1"),
    (["predict", "mnist", "--root", "/nonexistent-folder"], "train-images-idx3-ubyte"),
])
def test_predict_bad_input_is_a_clear_error(argv, phrase, capsys, tmp_path):
    assert main([*argv, "-o", str(tmp_path / "p.csv")]) != 0
    err = capsys.readouterr().err
    assert err.startswith("error:") and phrase in err and err.count("\n") == 1


def test_propagation_command_relu_is_critical_at_he_init(tmp_path, capsys):
    assert main(["propagation", "relu", "--w-std", str(2**0.5), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["phase"] == "critical" and out["chi_1"] == pytest.approx(1.0, abs=1e-12)
    png = tmp_path / "phase.png"
    assert main(["propagation", "erf", "--phase-diagram", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # erf (catalog scaling): chi_1 = w^2 (4/pi) / sqrt(1 + 4 q*) = 1 at b = 0, q* -> 0: w^2 = pi/4
    assert "b^2 = 0: w^2 = 0.785" in capsys.readouterr().out
    assert main(["propagation"]) == 2
    assert "activation name" in capsys.readouterr().err


def test_finite_command_writes_figure_and_numbers(tmp_path):
    png = tmp_path / "fvi.png"
    assert main(["finite", "-a", "relu", "--widths", "32", "256", "--seeds", "2", "--steps",
                 "5", "--n-train", "20", "--n-test", "10", "-o", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    numbers = json.loads(png.with_suffix(".json").read_text())
    assert set(numbers) == {"relu"}
    assert not list(tmp_path.glob("*.partial*"))


def test_kernel_store_and_solve_match_the_dense_computation(tmp_path, capsys):
    """`infnet kernel --store` writes the tiled kernel (a second run finds it complete and
    recomputes nothing); `infnet solve` reads it and reaches the direct solve's coefficients."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x, y = x[:300] / np.linalg.norm(x[:300], axis=1, keepdims=True), y[:300]
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    store = tmp_path / "K"
    argv = ["kernel", str(tmp_path / "x.npy"), "-a", "erf", "-L", "3", "--kind", "ntk",
            "--store", str(store), "--tile", "128"]
    assert main(argv) == 0
    stamps = {p.name: p.stat().st_mtime_ns for p in store.glob("tile_*.npy")}
    assert len(stamps) == 6  # 3 x 3 tiles, upper triangle
    assert main(argv) == 0
    assert {p.name: p.stat().st_mtime_ns for p in store.glob("tile_*.npy")} == stamps
    K = infnet.fc("erf", 3, w_std=2**0.5).kernel(torch.as_tensor(x)).ntk
    from infnet.scale import KernelStore

    assert torch.allclose(torch.as_tensor(KernelStore.open(store).to_array()), K, rtol=1e-12,
                          atol=1e-14)
    out = tmp_path / "alpha.npy"
    assert main(["solve", str(store), "--labels", str(tmp_path / "y.npy"), "--ridge", "1e-3",
                 "--tol", "1e-10", "-o", str(out)]) == 0
    Y = np.eye(10)[y]
    direct = np.linalg.solve(K.numpy() + 1e-3 * np.eye(300), Y)
    np.testing.assert_allclose(np.load(out), direct, rtol=1e-7, atol=1e-9 * np.abs(direct).max())
    capsys.readouterr()
    assert main(["kernel", str(tmp_path / "x.npy"), "-a", "relu", "-L", "3", "--kind", "ntk",
                 "--store", str(store), "--tile", "128"]) == 2  # another network, same folder
    err = capsys.readouterr().err
    assert "network differs" in err and "--overwrite" in err and err.count("\n") == 1
