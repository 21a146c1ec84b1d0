"""``infnet kernel --store`` and ``infnet solve`` when the store or the labels are not what they
should be: incomplete, damaged or locked stores say what to run; labels mean the same in every
file type. References: numpy's dense solve of the same kernel."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import infnet
from infnet.cli import main
from infnet.core.files import folder_lock
from infnet.scale import KernelStore

N, TILE = 30, 12


@pytest.fixture
def problem(tmp_path, monkeypatch):
    """x (30 points), integer labels, and the argv that makes their erf NTK store."""
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(2)
    x = rng.normal(size=(N, 5))
    labels = np.arange(N) % 3
    np.save("x.npy", x)
    argv = ["kernel", "x.npy", "-a", "erf", "-L", "2", "--kind", "ntk", "--store", "K",
            "--tile", str(TILE)]
    return x, labels, argv


def dense_alpha(x, targets, ridge):
    K = infnet.fc("erf", 2, w_std=2**0.5).kernel(torch.as_tensor(x)).ntk.numpy()
    return np.linalg.solve(K + ridge * np.eye(len(x)), targets)


def error_line(capsys) -> str:
    """The one error line, last on stderr (a progress bar may precede it)."""
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and err.strip().splitlines()[-1] == errors[0], err
    assert "Traceback" not in err
    return errors[0]


def solve(labels_file, out, *extra):
    return main(["solve", "K", "--labels", labels_file, "--ridge", "1e-2", "--tol", "1e-12",
                 "-o", out, *extra])


def test_integer_labels_are_one_hot_in_every_file_type(problem, capsys):
    x, labels, argv = problem
    assert main(argv) == 0
    np.save("y.npy", labels)
    np.savez("y.npz", y=labels)
    np.savetxt("y.csv", labels, fmt="%d")
    np.savetxt("y.txt", labels.reshape(-1, 1), fmt="%d")
    np.savetxt("yf.csv", labels.astype(float), fmt="%.1f")  # 0.0, 1.0: float targets
    want = dense_alpha(x, np.eye(3)[labels], 1e-2)
    for name in ("y.npy", "y.npz", "y.csv", "y.txt"):
        assert solve(name, f"a_{name}.npy") == 0, capsys.readouterr().err
        np.testing.assert_allclose(np.load(f"a_{name}.npy"), want, rtol=1e-7, atol=1e-9)
    assert solve("yf.csv", "a_float.npy") == 0
    np.testing.assert_allclose(np.load("a_float.npy"), dense_alpha(x, labels * 1.0, 1e-2),
                               rtol=1e-7, atol=1e-9)
    assert solve("yf.csv", "a_onehot.npy", "--one-hot") == 0
    np.testing.assert_allclose(np.load("a_onehot.npy"), want, rtol=1e-7, atol=1e-9)


def test_labels_of_another_length_or_kind_name_the_file(problem, capsys):
    x, labels, argv = problem
    assert main(argv) == 0
    capsys.readouterr()
    np.save("short.npy", labels[:20])
    assert solve("short.npy", "a.npy") == 2
    line = error_line(capsys)
    assert "short.npy holds 20 labels" in line and "30 x 30" in line
    Path("words.csv").write_text("cat\ndog\n")
    assert solve("words.csv", "a.npy") == 2
    assert "words.csv" in error_line(capsys)
    assert solve("nothere.npy", "a.npy") == 2
    assert "no labels file 'nothere.npy'" in error_line(capsys)
    assert solve("short.npy", "a.txt") == 2
    assert ".npy" in error_line(capsys)


def test_store_without_manifest_or_with_a_bad_one_says_what_to_run(problem, capsys):
    _, labels, argv = problem
    np.save("y.npy", labels)
    assert solve("y.npy", "a.npy") == 1
    line = error_line(capsys)
    assert "no kernel store at K" in line and "infnet kernel DATA --kind ntk --store K" in line
    assert main(argv) == 0
    (KernelStore.open("K").path / "manifest.json").unlink()
    capsys.readouterr()
    assert solve("y.npy", "a.npy") == 1
    assert "the tiles there cannot be used without it" in error_line(capsys)
    for text in ('{"format": 1, "n1": ', "[1, 2]", json.dumps({"format": 1, "n1": 3})):
        Path("K/manifest.json").write_text(text)
        assert solve("y.npy", "a.npy") == 2
        assert "K/manifest.json" in error_line(capsys)
        assert main(argv) == 2  # the writer refuses it too, and says how to start again
        assert "K/manifest.json" in error_line(capsys)
    assert main([*argv, "--overwrite"]) == 0
    assert KernelStore.open("K").verify().complete


def test_missing_or_corrupt_tile_names_the_command_that_completes_it(problem, capsys):
    x, labels, argv = problem
    np.save("y.npy", labels)
    assert main(argv) == 0
    store = KernelStore.open("K")
    assert store.manifest["command"] == "infnet " + " ".join(argv)
    npy, _ = store._files(0, 1)
    npy.unlink()
    capsys.readouterr()
    assert solve("y.npy", "a.npy") == 1
    line = error_line(capsys)
    assert "K is incomplete: 1 of 6 tiles missing (first (0, 1))" in line
    assert f"`infnet {' '.join(argv)}`" in line
    assert main(argv) == 0  # the command it names completes the store
    npy.write_bytes(npy.read_bytes()[:-8] + b"\0" * 8)  # damaged in place: found while solving
    capsys.readouterr()
    assert solve("y.npy", "a.npy") == 1
    line = error_line(capsys)
    assert "tile (0, 1) of K is corrupt" in line and f"`infnet {' '.join(argv)}`" in line
    assert not Path("a.npy").exists() and not [p for p in Path().iterdir() if ".tmp" in p.name]
    assert main(argv) == 0 and solve("y.npy", "a.npy") == 0
    np.testing.assert_allclose(np.load("a.npy"), dense_alpha(x, np.eye(3)[labels], 1e-2),
                               rtol=1e-7, atol=1e-9)


def test_a_store_being_written_is_refused_to_a_second_writer(problem, capsys):
    """The lock held (here by this process, on another descriptor: flock locks conflict between
    descriptors as between processes; tests/test_scale_store.py holds it from a real process):
    a second writer is refused at once, solve says that the store is being computed."""
    _, labels, argv = problem
    np.save("y.npy", labels)
    assert main(argv) == 0
    KernelStore.open("K")._files(1, 2)[0].unlink()
    capsys.readouterr()
    with folder_lock("K", "this kernel store"):
        assert main(argv) == 1
        line = error_line(capsys)
        assert "K is in use: pid" in line and "is writing this kernel store there" in line
        assert solve("y.npy", "a.npy") == 1
        assert "is computing it now: wait for it to finish" in error_line(capsys)
    assert main(argv) == 0 and solve("y.npy", "a.npy") == 0
