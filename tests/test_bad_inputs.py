"""Every row of docs/bad-inputs.md, run: the exception (or result) and the phrase it promises.

The document is the contract for users; this test keeps it current. A row is a code span and
either an exception name with a quoted phrase of its message, or *returns* (a finite result).
"""

from __future__ import annotations

import math
import re
import shlex
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import infnet
from infnet import predict as P
from infnet.cli import main

DOC = Path(__file__).resolve().parents[1] / "docs" / "bad-inputs.md"
ROW = re.compile(r"^\| `(?P<code>.+?)` \| (?P<outcome>.+) \|$")
EXPECT = re.compile(r"^`(?P<error>\w+)` \"(?P<phrase>.+)\"$")


def rows():
    for line in DOC.read_text().splitlines():
        m = ROW.match(line.strip())
        if m and not re.fullmatch(r"[\w.]+", m["code"]):  # (not the table of exceptions)
            yield m["code"].replace("\\|", "|"), m["outcome"].replace("\\|", "|")


ROWS = list(rows())


def test_the_document_has_its_rows():
    assert len(ROWS) >= 60
    assert sum(code.startswith("infnet ") for code, _ in ROWS) >= 5


def names() -> dict:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 4, generator=g, dtype=torch.float64)
    x_nan, x_zero_row = x.clone(), x.clone()
    x_nan[2, 1] = math.nan
    x_zero_row[0] = 0.0
    x_unit = x / x.norm(dim=1, keepdim=True) * 2.0  # x.x / d = 1
    k_train = infnet.fc("relu", 2).kernel(x).ntk
    k_asym, k_nan = k_train.clone(), k_train.clone()
    k_asym[0, 1] += 0.1
    k_nan[1, 1] = math.nan
    y = torch.randn(6, generator=g, dtype=torch.float64)
    y_nan = y.clone()
    y_nan[0] = math.nan

    class Centered(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 2).double()

        def forward(self, v):
            out = self.lin(v)
            return out - out.mean(0)

    return {"torch": torch, "np": np, "math": math, "infnet": infnet, "P": P, "x": x,
            "x_nan": x_nan, "x_zero_row": x_zero_row, "x_unit": x_unit, "k_train": k_train,
            "k_asym": k_asym, "k_nan": k_nan, "y": y, "y_nan": y_nan, "X": x.numpy(),
            "labels": np.arange(6) % 2, "rho": torch.linspace(-1, 1, 5, dtype=torch.float64),
            "centered_model": Centered(),
            "mlp": nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1)).double(),
            "bn_model": nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 1)).double(),
            "dropout_model": nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5),
                                           nn.Linear(8, 1)).double()}


def finite(value) -> bool:
    leaves = value if isinstance(value, (tuple, list)) else [value]
    leaves = [getattr(value, f) for f in ("nngp", "ntk")] if hasattr(value, "nngp") else leaves
    return all(bool(torch.isfinite(torch.as_tensor(v, dtype=torch.float64)).all())
               for v in leaves if isinstance(v, (torch.Tensor, float, int)))


@pytest.mark.parametrize("code, outcome", [r for r in ROWS if not r[0].startswith("infnet ")],
                         ids=lambda v: v[:60])
def test_python_row(code, outcome):
    ns = names()
    expect = EXPECT.match(outcome)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if expect is None:
            assert outcome.startswith("*returns*"), outcome
            assert finite(eval(code, ns))
            return
        with pytest.raises(Exception) as info:  # noqa: PT011 - the type is checked below
            eval(code, ns)
    assert type(info.value).__name__ == expect["error"], info.value
    assert expect["phrase"] in str(info.value), (expect["phrase"], str(info.value))


@pytest.mark.parametrize("code, outcome", [r for r in ROWS if r[0].startswith("infnet ")],
                         ids=lambda v: v[:60])
def test_command_line_row(code, outcome, capsys):
    expect = EXPECT.match(outcome)
    assert expect is not None and expect["error"] == "error", outcome
    assert main(shlex.split(code)[1:]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert expect["phrase"] in err[0], (expect["phrase"], err[0])
