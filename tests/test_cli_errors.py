"""The command line's error contract: a user's mistake or a fault of the environment, in any
subcommand, ends with exactly one ``error: ...`` line on stderr (no traceback) and a non-zero
status; output paths are checked before anything is computed (the computing functions are
replaced here by ones that fail the test if they are reached).

Each case is run in this process (``main([...])``); one subprocess checks that a real process
prints nothing else. A bug of infnet (an exception of another kind) is not hidden.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import time

import numpy as np
import pytest

import infnet
from infnet.cli import main

SRC = os.path.dirname(os.path.dirname(infnet.__file__))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Data files, good and broken, in a folder of their own."""
    d = tmp_path_factory.mktemp("files")
    x = np.random.default_rng(0).normal(size=(20, 4))
    np.save(d / "x.npy", x)
    np.savez(d / "x.npz", x=x)
    raw = (d / "x.npy").read_bytes()
    (d / "trunc.npy").write_bytes(raw[:100])
    (d / "garbage.npy").write_bytes(b"not an array at all")
    zipped = (d / "x.npz").read_bytes()
    (d / "trunc.npz").write_bytes(zipped[: len(zipped) // 2])
    (d / "garbage.npz").write_bytes(b"not a zip archive")
    np.save(d / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    (d / "bad.csv").write_text("1,2,3\n4,abc,6\n")
    (d / "ragged.csv").write_text("1,2,3\n4,5\n")
    (d / "empty.csv").write_text("")
    (d / "x.dat").write_text("1 2 3\n")
    (d / "afile").write_text("a file, not a folder")
    zero = x.copy()
    zero[3] = 0.0
    np.save(d / "zero.npy", zero)
    np.save(d / "y.npy", np.arange(20) % 3)
    np.save(d / "y_short.npy", np.arange(10) % 3)
    (d / "folder").mkdir()
    (d / "folder.npz").mkdir()
    return d


@pytest.fixture
def no_compute(monkeypatch):
    """The functions that compute, replaced: a case that reaches one fails."""
    def reached(*args, **kwargs):
        raise AssertionError("computation started before the bad input was found")

    monkeypatch.setattr(infnet, "fc", reached)
    monkeypatch.setattr(importlib.import_module("infnet.estimators.networks"), "NTKClassifier", reached)
    monkeypatch.setattr(importlib.import_module("infnet.experiments.finite_vs_infinite"), "deviation_figure",
                        reached)
    monkeypatch.setattr(importlib.import_module("infnet.propagation.maps"), "propagation", reached)
    monkeypatch.setattr(importlib.import_module("infnet.scale"), "solve", reached)
    monkeypatch.setattr(importlib.import_module("infnet.scale"), "compute_kernel", reached)
    study = importlib.import_module("infnet.experiments.study")
    monkeypatch.setattr(study, "load_data", reached)


def one_error_line(capsys, phrase=None) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    if phrase is not None:
        assert phrase in lines[0], (phrase, lines[0])
    return lines[0]


# (arguments with {d} for the files' folder, a phrase of the message); every one fails before
# computing anything
BEFORE_COMPUTING = [
    # output paths
    ("kernel {d}/x.npy -o {d}/missing/k.npz", "the folder {d}/missing does not exist"),
    ("kernel {d}/x.npy -o {d}/afile/k.npz", "is not a folder"),
    ("kernel {d}/x.npy -o {d}/folder.npz", "is a folder"),
    ("kernel {d}/x.npy -o {d}/k.txt", "must end in .npz"),
    ("solve {d}/store --labels {d}/y.npy -o {d}/missing/a.npy", "does not exist"),
    ("predict digits -o {d}/missing/p.csv", "does not exist"),
    ("finite -o {d}/missing/f.png", "does not exist"),
    ("finite -o {d}/f.xyz", "matplotlib writes"),
    ("propagation relu --phase-diagram {d}/missing/p.png", "does not exist"),
    ("propagation relu --phase-diagram {d}/p.xyz", "matplotlib writes"),
    ("study --out {d}/afile/st --data dirichlet2", "cannot create the folder"),
    # data files (the message names the file)
    ("kernel {d}/missing.npy", "no data file"),
    ("kernel {d}/folder", "is a folder"),
    ("kernel {d}/x.dat", "unknown format '.dat'"),
    ("kernel {d}/trunc.npy", "trunc.npy is truncated or corrupt"),
    ("kernel {d}/garbage.npy", "garbage.npy is not a .npy file"),
    ("kernel {d}/obj.npy", "obj.npy holds Python objects"),
    ("kernel {d}/trunc.npz", "trunc.npz is truncated or corrupt"),
    ("kernel {d}/garbage.npz", "garbage.npz is not a .npz file"),
    ("kernel {d}/bad.csv", "bad.csv"),
    ("kernel {d}/ragged.csv", "ragged.csv"),
    ("kernel {d}/empty.csv", "empty.csv holds no rows"),
    ("kernel {d}/x.npy --data2 {d}/trunc.npy", "trunc.npy"),
    # numbers
    ("kernel {d}/x.npy --w-std 1e300", "overflows float64"),
    ("kernel {d}/x.npy --w-std nan", "--w-std"),
    ("kernel {d}/x.npy --b-std -1", "--b-std"),
    ("kernel {d}/x.npy --store {d}/K --kind ntk --tile 0", "--tile"),
    ("kernel {d}/x.npy --store {d}/K --kind ntk --workers 0", "--workers"),
    ("kernel {d}/x.npy --store {d}/K", "give --kind nngp or --kind ntk"),
    ("study --depths 0", "a depth is an integer >= 1"),
    ("study --depths -1", "a depth is an integer >= 1"),
    ("study --depths 2 five", "'five'"),
    ("study --n-train 0", "--n-train"),
    ("study --n-test -3", "--n-test"),
    ("study --seed -1", "--seed"),
    ("study --kernels nngp gp", "invalid choice: 'gp'"),
    ("study --out {d}/st --data nosuch", "unknown data 'nosuch'"),
    ("study --out {d}/st --data {d}/nothere.npz", "no such file"),
    ("study --out {d}/st --data dirichlet7", "Dirichlet settings are dirichlet2"),
    ("study --out {d}/st --data digits --n-train 1500 --n-test 500", "1797"),
    ("study --out {d}/st --activations relu rleu", "unknown activation 'rleu'"),
    ("predict digits -L 0", "a depth is an integer >= 1"),
    ("predict digits --w-std 1e300", "overflows float64"),
    ("predict digits --time -1", "training time"),
    ("predict digits --n-train 0", "--n-train"),
    ("predict digits --ridge nan", "--ridge"),
    ("finite --widths 8 -8", "--widths"),
    ("finite --depth 0", "--depth"),
    ("finite --n-train 5", "each at least 10"),
    ("propagation relu --w-std nan", "--w-std"),
    ("activations --width 0", "--width"),
    # activations and their parameters
    ("kernel {d}/x.npy -a nosuch", "unknown activation 'nosuch'"),
    ("kernel {d}/x.npy -a swish -p beta", "expected NAME=VALUE"),
    ("kernel {d}/x.npy -a swish -p =3", "expected NAME=VALUE"),
    ("limit nosuch", "unknown activation"),
    ("limit swish -p beta", "expected NAME=VALUE"),
    ("propagation nosuch", "unknown activation"),
    ("predict digits -a nosuch", "unknown activation"),
    ("predict digits -a swish -p gamma=2", "gamma"),
    ("finite -a nosuch", "unknown activation"),
    # the command itself
    ("", "the following arguments are required"),
    ("nosuch", "invalid choice: 'nosuch'"),
]


@pytest.mark.parametrize("argv, phrase", BEFORE_COMPUTING)
def test_bad_input_is_one_error_line_before_any_computation(argv, phrase, files, no_compute,
                                                            capsys, monkeypatch):
    monkeypatch.chdir(files)
    status = main([a.format(d=files) for a in argv.split()])
    assert status != 0
    one_error_line(capsys, phrase.format(d=files))


@pytest.mark.parametrize("value", ["abc", "nan", "-1"])
def test_activation_parameter_values_reach_the_activation(value, files, capsys):
    """-p NAME=VALUE passes the value on (numbers, nan and inf as floats); whatever the
    activation says of it is one line."""
    import math

    from infnet.cli.args import param as _param

    name, parsed = _param(f"beta={value}")
    assert name == "beta"
    want = {"abc": "abc", "-1": -1}
    assert math.isnan(parsed) if value == "nan" else parsed == want[value]
    status = main(["kernel", str(files / "x.npy"), "-a", "swish", "-p", f"beta={value}",
                   "-L", "1"])
    if status != 0:
        one_error_line(capsys)


def test_zero_row_with_normalize_names_the_row(files, capsys):
    assert main(["kernel", str(files / "zero.npy"), "--normalize"]) == 2
    one_error_line(capsys, "row 3 of")


def test_interrupt_is_one_line(monkeypatch, files, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(infnet, "fc", interrupted)
    assert main(["kernel", str(files / "x.npy")]) == 130
    one_error_line(capsys, "interrupted")


def test_full_disk_at_the_end_is_one_line_and_leaves_no_file(monkeypatch, files, capsys):
    import errno

    replace = os.replace

    def full(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    out = files / "full.npz"
    assert main(["kernel", str(files / "x.npy"), "-L", "1", "-o", str(out)]) == 1
    monkeypatch.setattr(os, "replace", replace)
    one_error_line(capsys, f"cannot write {out}: No space left on device")
    assert not out.exists() and not [p for p in files.iterdir() if ".tmp" in p.name]


def test_unreachable_scheduler_gives_up_within_seconds(files, capsys, tmp_path):
    pytest.importorskip("distributed")
    from infnet.scale import CONNECT_TIMEOUT

    start = time.monotonic()
    assert main(["kernel", str(files / "x.npy"), "--kind", "ntk", "--store", str(tmp_path / "K"),
                 "--scheduler", "tcp://127.0.0.1:1"]) == 1
    assert time.monotonic() - start < CONNECT_TIMEOUT + 10
    one_error_line(capsys, "no Dask scheduler answers at tcp://127.0.0.1:1")


def test_a_real_process_prints_one_line(files):
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-m", "infnet.cli", "kernel", str(files / "trunc.npz")],
                         capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr.splitlines() == [f"error: {files / 'trunc.npz'} is truncated or corrupt "
                                       "(File is not a zip file); write it again"]


@pytest.mark.parametrize("bug", [AttributeError("a bug"), IndexError("a bug"),
                                 ImportError("cannot import name 'x'", name="infnet.depth.limit")])
def test_a_bug_of_infnet_is_not_hidden(bug, monkeypatch):
    """An exception that is no user mistake leaves main as it is (Python prints its traceback)."""
    import infnet.cli.catalog as cli

    def broken(args):
        raise bug

    monkeypatch.setattr(cli, "cmd_limit", broken)
    with pytest.raises(type(bug), match="a bug|cannot import"):
        main(["limit", "relu"])
