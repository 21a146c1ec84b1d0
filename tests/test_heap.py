"""core.heap: glibc's thresholds raised while a spatial kernel runs, restored after."""

import resource
import sys

import pytest
import torch

from infnet.core import heap


class FakeLibc:
    def __init__(self):
        self.calls = []

    def mallopt(self, param, value):
        self.calls.append(("mallopt", param, value))
        return 1

    def malloc_trim(self, pad):
        self.calls.append(("trim", pad))
        return 1


@pytest.fixture
def fake(monkeypatch):
    lib = FakeLibc()
    monkeypatch.setattr(heap, "_libc", lib)
    monkeypatch.delenv("INFNET_HEAP", raising=False)
    return lib


def test_set_on_first_entry_and_restored_on_last_exit(fake):
    with heap.large_tensors():
        assert fake.calls == [("mallopt", heap.M_MMAP_THRESHOLD, heap.MMAP_THRESHOLD),
                              ("mallopt", heap.M_TRIM_THRESHOLD, heap.TRIM_THRESHOLD)]
        with heap.large_tensors():  # nested: nothing more
            assert len(fake.calls) == 2
        assert len(fake.calls) == 2
    assert fake.calls[2:] == [("mallopt", p, v) for p, v in heap.DEFAULTS.items()] + [("trim", 0)]
    assert heap._depth == 0


def test_restored_when_the_body_raises(fake):
    with pytest.raises(RuntimeError), heap.large_tensors():
        raise RuntimeError("boom")
    assert fake.calls[-1] == ("trim", 0)
    assert heap._depth == 0


def test_opt_out_leaves_the_heap_alone(fake, monkeypatch):
    monkeypatch.setenv("INFNET_HEAP", "system")
    with heap.large_tensors():
        pass
    assert fake.calls == []


@pytest.mark.skipif(not sys.platform.startswith("linux") or heap._glibc() is None,
                    reason="glibc only")
def test_a_spatial_kernel_stops_refaulting_its_tensors(monkeypatch):
    """The point of the module, measured: a 4-layer erf CNN-GAP kernel of 6 images of 32 x 32
    (tensors of 8 MB a pair) with the heap left alone refaulted its temporaries (170,000 to
    600,000 pages in runs here); with the thresholds raised, 38,000 (the self pass's larger
    chunks, which stay above the mmap threshold): asserted, fewer than a third. The counts are the
    process's minor page faults around a second call (the first warms everything up)."""
    from infnet.network import cnn

    net = cnn("erf", 4, readout="gap", w_std=1.5, b_std=0.1)
    x = torch.randn(6, 3, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(0))

    def faults():
        net.kernel(x)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        net.kernel(x)
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    monkeypatch.setenv("INFNET_HEAP", "system")
    plain = faults()
    monkeypatch.delenv("INFNET_HEAP")
    tuned = faults()
    if plain < 100_000:
        pytest.skip(f"this machine's malloc did not refault ({plain} faults): nothing to show")
    assert tuned < plain / 3, (tuned, plain)
