"""The geometry of bands of rows (``network.bands``): which output rows a window maps from the
rows a band holds, and from which input rows, against a direct enumeration."""

from __future__ import annotations

import itertools

import pytest
import torch

from infnet.network.bands import Band, band_diagonal, embed_band_diagonal, set_band_diagonal
from infnet.network.shifts import Window


def as_list(idx) -> list[int]:
    return list(range(idx.start, idx.stop)) if isinstance(idx, slice) else idx.tolist()


@pytest.mark.parametrize("padding", ["SAME", "VALID", "CIRCULAR"])
@pytest.mark.parametrize("k, stride", [(1, 1), (3, 1), (3, 2), (2, 2), (5, 3), (4, 1)])
def test_band_through_a_window_by_enumeration(padding, k, stride):
    """For every window and 40 random sets of held rows: the kept output rows are exactly
    those all of whose input rows (inside the image, or wrapped) are held, and each offset's
    terms pair every kept row with the local index of its input row."""
    g = torch.Generator().manual_seed(k * 10 + stride)
    size = 11
    w = Window(size, k, stride, padding)
    if padding == "VALID" and k > size:
        pytest.skip("no output")
    for _ in range(40):
        held = torch.sort(torch.randperm(size, generator=g)[:int(torch.randint(1, size + 1, (1,),
                                                                             generator=g))]).values
        step = Band(held, size).through(w)
        rows = set(held.tolist())
        want, deps = [], {}
        for i in range(w.out):
            positions = []
            for d in range(k):
                p = stride * i + d - w.pad_lo
                if padding == "CIRCULAR":
                    p %= size
                elif not 0 <= p < size:
                    continue  # padding: zeros
                positions.append((d, p))
            if all(p in rows for _, p in positions):
                want.append(i)
                deps[i] = positions
        assert step.band.rows.tolist() == want and step.band.size == w.out
        local = {r: j for j, r in enumerate(held.tolist())}
        got = set()
        for d, term in enumerate(step.terms):
            if term is not None:
                dst, src = (as_list(t) for t in term)
                assert len(dst) == len(src)
                got |= {(d, want[a], b) for a, b in zip(dst, src, strict=True)}
        assert got == {(d, i, local[p]) for i in want for d, p in deps[i]}
        assert step.source.rows is held


def test_band_diagonals_by_enumeration():
    """The same-position entries of a banded full-layout tile, set, read and embedded, entry by
    entry: row i of the first position meets row rows[i] of the second."""
    g = torch.Generator().manual_seed(3)
    h, w = 6, 4
    rows = torch.tensor([1, 2, 4])
    band = Band(rows, h)
    t = torch.randn(2, 1, 3, w, h, w, generator=g, dtype=torch.float64)
    d = band_diagonal(t, band, 2)
    for a, i, u in itertools.product(range(2), range(3), range(w)):
        assert d[a, 0, i, u] == t[a, 0, i, u, int(rows[i]), u]
    part = band_diagonal(t, band, 2, torch.tensor([2, 0]))
    assert torch.equal(part, d[:, :, [2, 0]])
    v = torch.randn(2, 1, 3, w, generator=g, dtype=torch.float64)
    s = set_band_diagonal(t.clone(), v, band, 2)
    e = embed_band_diagonal(v, band, (h, w))
    for a, i, u, r, c in itertools.product(range(2), range(3), range(w), range(h), range(w)):
        same = r == int(rows[i]) and c == u
        assert s[a, 0, i, u, r, c] == (v[a, 0, i, u] if same else t[a, 0, i, u, r, c])
        assert e[a, 0, i, u, r, c] == (v[a, 0, i, u] if same else 0.0)
