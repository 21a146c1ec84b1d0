"""Tiled, resumable kernel stores (infnet.scale): kills, corruption, Dask, fingerprints,
write errors, reading by tiles."""

from __future__ import annotations

import errno
import hashlib
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest
import torch

import infnet
from infnet.core.files import array_digest, atomic_path, folder_lock, lock_holder, write_atomic
from infnet.scale import (
    CorruptTileError,
    FolderInUseError,
    KernelStore,
    StoreMismatchError,
    StoreWriteError,
    compute_kernel,
)


def relu_net():
    return infnet.fc("relu", depth=5, w_std=2**0.5)


def data(n, d=20, seed=0, unit=False):
    x = torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return x / x.norm(dim=1, keepdim=True) if unit else x


def mtimes(store, tiles):
    out = {}
    for i, j in tiles:
        for f in store._files(i, j):
            out[f.name] = f.stat().st_mtime_ns
    return out


def temporaries(path):
    return sorted(p.name for p in path.iterdir() if p.name.endswith(".tmp"))


KILL_SCRIPT = textwrap.dedent("""
    import sys, time
    import numpy as np
    import infnet
    import infnet.scale.compute as compute

    tile_fn = compute.compute_tile
    def slow_tile(*args, **kwargs):          # slow enough to be killed midway
        out = tile_fn(*args, **kwargs)
        time.sleep(0.2)
        return out
    compute.compute_tile = slow_tile
    x = np.load(sys.argv[1])
    compute.compute_kernel(infnet.fc("relu", depth=5, w_std=2**0.5), x, path=sys.argv[2],
                           tile=256, progress=False)
""")


def test_killed_computation_resumes_bit_for_bit(tmp_path):
    x = data(1500).numpy()
    np.save(tmp_path / "x.npy", x)
    path = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "2"}  # the tiles use one thread whatever this says
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(tmp_path / "x.npy"),
                             str(path)], env=env, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    try:
        while len(list(path.glob("tile_*.sha256"))) < 4:
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "the subprocess wrote no tiles in 60 s"
            time.sleep(0.02)
        # a second writer, while the first one runs: refused at once, with who holds the store
        assert lock_holder(path) == f"pid {proc.pid} on {socket.gethostname()}"
        with pytest.raises(FolderInUseError, match=f"in use: pid {proc.pid} .*this kernel store"):
            compute_kernel(relu_net(), x, path=path, tile=256, progress=False)
        assert proc.poll() is None  # (the refusal was not the first writer's end)
    finally:
        proc.kill()  # SIGKILL: no cleanup of any kind
        proc.wait()
    assert lock_holder(path) is None  # the killed writer left no lock behind
    store = KernelStore.open(path)
    before = store.verify()
    assert 4 <= len(before.done) < len(store.tiles()) == 21
    stamps = mtimes(store, before.done)

    resumed = compute_kernel(relu_net(), x, path=path, tile=256, progress=False)
    assert resumed.verify().complete and temporaries(path) == []
    assert mtimes(resumed, before.done) == stamps  # done tiles were not recomputed
    whole = compute_kernel(relu_net(), x, path=tmp_path / "whole", tile=256, progress=False)
    assert torch.equal(resumed.to_array(), whole.to_array())
    assert torch.allclose(whole.to_array(), relu_net().kernel(x).ntk, rtol=1e-12, atol=1e-12)


def test_corrupted_tile_is_detected_and_recomputed(tmp_path):
    x = data(600)
    store = compute_kernel(relu_net(), x, path=tmp_path, tile=256, progress=False)
    dense = store.to_array()
    npy, _ = store._files(0, 1)
    raw = bytearray(npy.read_bytes())
    raw[-100] ^= 0xFF  # one byte of the data section
    npy.write_bytes(bytes(raw))
    check = store.verify()
    assert check.corrupt == [(0, 1)] and not check.missing and not check.complete
    with pytest.raises(CorruptTileError, match=r"tile \(0, 1\).*corrupt"):
        store.tile(0, 1)
    with pytest.raises(CorruptTileError):
        store.to_array()
    others = [ij for ij in store.tiles() if ij != (0, 1)]
    stamps = mtimes(store, others)
    again = compute_kernel(relu_net(), x, path=tmp_path, tile=256, progress=False)
    assert again.verify().complete and mtimes(again, others) == stamps
    assert torch.equal(again.to_array(), dense)


def test_local_cluster_matches_single_process(tmp_path):
    pytest.importorskip("distributed")
    x = data(900, unit=True)  # one norm: the angle-table path
    single = compute_kernel(relu_net(), x, path=tmp_path / "one", tile=256, progress=False)
    dask = compute_kernel(relu_net(), x, path=tmp_path / "dask", tile=256, progress=False,
                          scheduler="local", workers=2)
    assert dask.verify().complete
    assert torch.equal(dask.to_array(), single.to_array())


def test_scheduler_address_non_symmetric_nngp(tmp_path):
    pytest.importorskip("distributed")
    from infnet.scale import local_cluster

    x1, x2 = data(700, seed=1), data(300, seed=2) * 3  # several norms: the exact path
    single = compute_kernel(relu_net(), x1, x2, path=tmp_path / "one", kind="nngp", tile=200,
                            progress=False)
    with local_cluster(2) as cluster:
        dask = compute_kernel(relu_net(), x1, x2, path=tmp_path / "dask", kind="nngp",
                              tile=200, progress=False, scheduler=cluster.scheduler_address)
    assert not dask.symmetric and len(dask.tiles()) == 4 * 2
    assert torch.equal(dask.to_array(), single.to_array())


def test_unpicklable_network_is_refused_clearly(tmp_path):
    pytest.importorskip("distributed")
    lock = threading.Lock()

    def locked_relu(x):
        with lock:
            return torch.relu(x)

    net = infnet.fc(infnet.activation(locked_relu, kinks=[0.0], name="locked"), depth=2)
    with pytest.raises(TypeError, match="cannot be sent to Dask workers.*scheduler=None"):
        compute_kernel(net, data(50), path=tmp_path, tile=32, progress=False, scheduler="local")


def test_fingerprint_mismatch_is_refused(tmp_path):
    x = data(300)
    compute_kernel(relu_net(), x, path=tmp_path, tile=128, progress=False)
    cases = [
        (dict(x1=data(300, seed=5)), r"data x1 differ"),
        (dict(net=infnet.fc("relu", depth=4, w_std=2**0.5)), r"network differs \(store: serial"),
        (dict(tile=64), r"tile differs \(store: 128; now: 64\)"),
        (dict(kind="nngp"), r"kind differs"),
        (dict(x2=data(30)), r"data x2 differ.*symmetric differs"),
    ]
    for change, message in cases:
        args = {"net": relu_net(), "x1": x, "x2": None, "tile": 128, "kind": "ntk", **change}
        with pytest.raises(StoreMismatchError, match=message) as err:
            compute_kernel(args["net"], args["x1"], args["x2"], path=tmp_path, tile=args["tile"],
                           kind=args["kind"], progress=False)
        assert "new folder" in str(err.value) and "overwrite=True" in str(err.value)

    def mine(x):
        return torch.tanh(x)

    def mine_too(x):
        return torch.sin(x)

    user = [infnet.fc(infnet.activation(f, name="mine"), depth=2) for f in (mine, mine_too)]
    small = data(8, unit=True)
    compute_kernel(user[0], small, path=tmp_path / "user", tile=4, progress=False)
    with pytest.raises(StoreMismatchError, match="same repr, different activation code"):
        compute_kernel(user[1], small, path=tmp_path / "user", tile=4, progress=False)
    fresh = compute_kernel(relu_net(), x, path=tmp_path, tile=64, progress=False, overwrite=True)
    assert fresh.verify().complete and len(list(tmp_path.glob("tile_*.npy"))) == 15


def test_unwritable_path_gives_a_clear_error(tmp_path):
    (tmp_path / "file.txt").write_text("a file, not a folder")
    with pytest.raises(StoreWriteError, match="cannot create the kernel store folder"):
        compute_kernel(relu_net(), data(100), path=tmp_path / "file.txt" / "store",
                       progress=False)
    if os.name == "posix" and os.geteuid() != 0:  # root writes into read-only folders
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(StoreWriteError, match="cannot"):
            compute_kernel(relu_net(), data(100), path=locked, progress=False)
        locked.chmod(0o700)


def test_full_disk_and_leftover_temporaries(tmp_path, monkeypatch):
    x = data(600)
    replace = os.replace

    def full_disk(src, dst):
        if "tile_00000_00001" in str(dst):
            raise OSError(errno.ENOSPC, "No space left on device")
        return replace(src, dst)

    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(StoreWriteError, match="No space left on device.*run again to resume"):
        compute_kernel(relu_net(), x, path=tmp_path, tile=256, progress=False)
    monkeypatch.setattr(os, "replace", replace)
    store = KernelStore.open(tmp_path)
    check = store.verify()
    assert check.done == [(0, 0)] and (0, 1) in check.missing
    assert temporaries(tmp_path) == []  # the half-written file was removed
    # a crash mid-write: a temporary file, and a tile whose checksum never got written
    (tmp_path / ".tile_00000_00002.npy.1a2b3c.tmp").write_bytes(b"half a tile")
    store.write_tile(0, 2, np.zeros((256, 88)))
    store._files(0, 2)[1].unlink()
    assert (0, 2) in store.verify().missing
    with pytest.raises(FileNotFoundError, match="missing"):
        store.tile(0, 2)
    done = compute_kernel(relu_net(), x, path=tmp_path, tile=256, progress=False)
    assert done.verify().complete and temporaries(tmp_path) == []
    whole = compute_kernel(relu_net(), x, path=tmp_path / "whole", tile=256, progress=False)
    assert torch.equal(done.to_array(), whole.to_array())


@pytest.mark.parametrize("symmetric", [True, False])
def test_reading_by_tiles_matches_the_dense_array(tmp_path, symmetric):
    x1, x2 = data(530, seed=3), (None if symmetric else data(410, seed=4, unit=True))
    store = compute_kernel(relu_net(), x1, x2, path=tmp_path, kind="ntk", tile=128,
                           progress=False)
    dense = store.to_array()
    assert dense.shape == (530, 530 if symmetric else 410)
    assert torch.allclose(dense, relu_net().kernel(x1, x2).ntk, rtol=1e-12, atol=1e-12)
    if symmetric:
        assert torch.equal(dense, dense.T)
    v = torch.randn(dense.shape[1], 3, dtype=torch.float64)
    assert torch.allclose(store.matvec(v), dense @ v, rtol=1e-12, atol=1e-10)
    assert torch.allclose(store.matvec(v[:, 0]), dense @ v[:, 0], rtol=1e-12, atol=1e-10)
    idx = [0, 127, 128, 400, 5, -1]
    assert torch.equal(store.columns(idx), dense[:, idx])
    assert torch.equal(store.block(slice(100, 300), slice(50, 260, 3)), dense[100:300, 50:260:3])
    assert torch.equal(store.diagonal(), dense.diagonal())
    assert torch.equal(store.tile(2, 1), dense[256:384, 128:256])
    memmap = np.lib.format.open_memmap(tmp_path / "K.npy", mode="w+", dtype=np.float64,
                                       shape=tuple(dense.shape))
    assert store.to_array(out=memmap) is memmap
    assert torch.equal(torch.from_numpy(np.load(tmp_path / "K.npy")), dense)
    assert torch.equal(KernelStore.open(tmp_path).to_array(), dense)
    assert store.dtype == torch.float64 and store.n1 == 530
    if symmetric:  # the members infnet.scale.solve needs of a kernel operator
        assert store.n == 530
    else:
        assert not hasattr(store, "n")


def test_float32_store(tmp_path):
    x = data(300, unit=True)
    store = compute_kernel(relu_net(), x, path=tmp_path, kind="nngp", tile=128, progress=False,
                           dtype=torch.float32)
    k = store.to_array()
    assert k.dtype == torch.float32 == store.dtype and torch.equal(k, k.T)
    assert torch.allclose(k, relu_net().kernel(x, get="nngp").nngp.float(), rtol=1e-6)


def test_store_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no kernel store"):
        KernelStore.open(tmp_path / "nothing")
    with pytest.raises(ValueError, match="kind must be"):
        compute_kernel(relu_net(), data(10), path=tmp_path, kind="both")
    with pytest.raises(ValueError, match="tile must be"):
        compute_kernel(relu_net(), data(10), path=tmp_path, tile=0)


def test_tiles_do_not_depend_on_the_order_they_are_computed_in(tmp_path):
    # unit-norm inputs: each tile's mean input variance differs in the last bits, and a
    # network caches its angle tables under a rounded variance: tiles must not share them
    from infnet.scale.compute import compute_tile

    x = data(900, unit=True)
    forward = compute_kernel(relu_net(), x, path=tmp_path / "forward", tile=128, progress=False)
    backward = KernelStore.create(tmp_path / "backward", 900, 900, forward.manifest["fingerprint"])

    def variance(i, j):
        rows = x[backward.rows(i)], x[backward.cols(j)]
        return float(torch.cat([(r * r).sum(1) / 20 for r in rows[:1 + (i != j)]]).mean())

    first = next(ij for ij in backward.tiles() if variance(*ij) != variance(0, 0))
    net = relu_net()  # one network for all tiles, as on a Dask worker
    for i, j in [first] + [ij for ij in backward.tiles() if ij != first]:
        compute_tile(net, x, None, backward, i, j)
    assert torch.equal(backward.to_array(), forward.to_array())


# ---- the shared helpers: one writer per folder, atomic files, fingerprints of arrays ----------
WRITER_SCRIPT = textwrap.dedent("""
    import os, sys, time
    import numpy as np
    import infnet
    import infnet.scale.compute as compute
    from infnet.scale import compute_kernel, FolderInUseError

    tile_fn = compute.compute_tile
    def slow_tile(*args, **kwargs):          # the first writer is still busy when the second starts
        out = tile_fn(*args, **kwargs)
        time.sleep(0.2)
        return out
    compute.compute_tile = slow_tile
    x = np.load(sys.argv[1])
    print("ready", flush=True)
    while not os.path.exists(sys.argv[3]):   # both start together
        time.sleep(0.005)
    try:
        compute_kernel(infnet.fc("relu", depth=5, w_std=2**0.5), x, path=sys.argv[2], tile=64,
                       progress=False)
    except FolderInUseError as err:
        print("REFUSED", err)
        sys.exit(3)
""")


def test_two_writer_processes_one_computes_the_other_is_refused(tmp_path):
    """Two `compute_kernel` processes started together on one folder: one writes the store, the
    other is refused with FolderInUseError (never an I/O error); the store is then complete and
    equal to one written alone."""
    x = data(400).numpy()
    np.save(tmp_path / "x.npy", x)
    store = tmp_path / "K"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", WRITER_SCRIPT, str(tmp_path / "x.npy"),
                               str(store), str(go)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for p in procs:
        assert p.stdout.readline() == "ready\n", p.communicate()
    go.touch()
    results = [(p.wait(timeout=300), *p.communicate()) for p in procs]
    assert sorted(r[0] for r in results) == [0, 3], results  # (28 tiles of 0.2 s: >= 5.6 s)
    for code, out, err in results:
        assert "Traceback" not in err, err
        if code == 3:
            pid = procs[results.index((code, out, err))].pid
            assert out.startswith(f"REFUSED {store} is in use: pid ") and f"pid {pid}" not in out
    alone = compute_kernel(relu_net(), x, path=tmp_path / "alone", tile=64, progress=False)
    assert KernelStore.open(store).verify().complete
    assert torch.equal(KernelStore.open(store).to_array(), alone.to_array())


def test_folder_lock_is_exclusive_and_released(tmp_path):
    with folder_lock(tmp_path, "the work"):
        assert lock_holder(tmp_path) == f"pid {os.getpid()} on {socket.gethostname()}"
        with pytest.raises(FolderInUseError, match=f"{tmp_path} is in use: pid {os.getpid()}"):
            with folder_lock(tmp_path, "the work"):
                pass
    assert lock_holder(tmp_path) is None
    with folder_lock(tmp_path, "the work"):  # released: taken again
        pass
    with pytest.raises(OSError, match="cannot create the lock file"):
        with folder_lock(tmp_path / "absent", "the work"):
            pass


def test_atomic_files_appear_whole_or_not_at_all(tmp_path):
    target = tmp_path / "k.npz"
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".npz" and tmp.name.startswith(".k.")
        np.savez(tmp, a=np.arange(3))
        assert not target.exists()
    with np.load(target) as z:
        assert z["a"].tolist() == [0, 1, 2]
    for failure in (RuntimeError("writer failed"), KeyboardInterrupt()):
        with pytest.raises(type(failure)):
            with atomic_path(target) as tmp:
                tmp.write_bytes(b"half")
                raise failure
        assert sorted(p.name for p in tmp_path.iterdir()) == ["k.npz"]  # old file kept, no temporary
    write_atomic(tmp_path / "t.txt", "text")
    assert (tmp_path / "t.txt").read_text() == "text"


def test_array_digest_is_the_sha256_of_the_contents():
    a = np.arange(12, dtype=np.float64).reshape(3, 4)
    want = hashlib.sha256(a.tobytes(order="C")).hexdigest()
    assert array_digest(a) == {"shape": [3, 4], "dtype": "float64", "sha256": want}
    assert array_digest(torch.as_tensor(a)) == array_digest(a)
    assert array_digest(np.asfortranarray(a)) == array_digest(a)  # contents, not layout
    b = a.copy()
    b[2, 3] = np.nextafter(b[2, 3], 20)  # one bit of one entry
    assert array_digest(b)["sha256"] != want
