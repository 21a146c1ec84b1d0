"""Every ```python block of the README runs, as a user would paste it, so the documentation
cannot rot. Where the README shows large data, the test runs the same block on small data
(the substitutions below, each one checked to apply) in a temporary folder."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = [textwrap.dedent(b) for b in
          re.findall(r"```python\n(.*?)^\s*```", README.read_text(), flags=re.S | re.M)]
#: large -> small, per block (the README's sizes are for a machine and minutes, not a test)
SMALL = {
    0: [("torch.randn(500, 784", "torch.randn(40, 784"), ("10**6", "10**4")],
    1: [("torch.randn(100, 32", "torch.randn(10, 32"), ("net.finite(512", "net.finite(16")],
    2: [("torch.randn(20, 3, 32, 32", "torch.randn(3, 3, 8, 8"), ("depth=8", "depth=2"),
        ("finite(128, in_features=(3, 32, 32)", "finite(4, in_features=(3, 32, 32)")],
    3: [("digits_sphere(700), test_size=200 / 700", "digits_sphere(120), test_size=40 / 120")],
    4: [("size=(100, 3)", "size=(30, 3)"), ("n_restarts_optimizer=2", "n_restarts_optimizer=0"),
        ("digits.data[:100] / 16, digits.target[:100]", "digits.data[:12] / 16, digits.target[:12]")],
    5: [("net.finite(1024", "net.finite(64"), ("width=512, n_samples=50", "width=64, n_samples=4")],
    6: [("torch.randn(5000, 784", "torch.randn(300, 20"), ("torch.randn(5000, 10", "torch.randn(300, 2"),
        ("tile=2048", "tile=128"), ("workers=2", "workers=1")],
}


def test_the_readme_has_its_blocks():
    assert len(BLOCKS) == len(SMALL)


@pytest.mark.slow
@pytest.mark.parametrize("i", range(len(SMALL)))
def test_readme_block_runs(i, tmp_path, monkeypatch):
    code = BLOCKS[i]
    for big, small in SMALL[i]:
        assert big in code, f"README block {i} no longer shows {big!r}: update SMALL"
        code = code.replace(big, small)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, f"README.md block {i}", "exec"), {"__name__": "readme"})
