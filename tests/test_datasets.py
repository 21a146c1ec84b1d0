"""Dataset files (IDX, CIFAR-10 python batches) and preprocessing transformers.

Every file is written here, byte by byte, in the real format (IDX: header and values packed
with struct, as LeCun et al.'s MNIST page describes; CIFAR-10: pickled dicts of Krizhevsky's
"python version", in a folder and in a tar.gz with the official member names). No test touches
the network: downloads go through a monkeypatched urllib. The real 5000 MNIST digits are read
when the environment variable INFNET_MNIST_5K names their folder.
"""

import gzip
import hashlib
import io
import os
import pickle
import struct
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.utils.estimator_checks import check_estimator

import infnet.data as data
from infnet.data import (
    Center,
    Flatten,
    Scale,
    UnitNorm,
    ZCAWhitening,
    dirichlet,
    downloads,
    load_cifar10,
    load_dataset,
    load_fashion_mnist,
    load_idx_folder,
    load_mnist,
    read_idx,
    sphere,
    standard_preprocessing,
)

STRUCT_CODES = {0x08: "B", 0x09: "b", 0x0B: "h", 0x0C: "i", 0x0D: "f", 0x0E: "d"}
NUMPY_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.int16, 0x0C: np.int32, 0x0D: np.float32,
               0x0E: np.float64}
MNIST_5K_SHA256 = {  # from /work/shared/data/README.md
    "images-idx3-ubyte.gz": "35c4442b3738be6b58df4ff21f19341f0368e1c3d24840252fb3ff06ba646387",
    "labels-idx1-ubyte.gz": "abdbe68beb8b8e1983d8086fdcb07e198f851fb0c1af91276c18f154ef0b67d8",
}


def idx_bytes(values, code=0x08) -> bytes:
    """An IDX file: 00 00, type code, ndim, big-endian int32 dims, big-endian values."""
    values = np.asarray(values)
    header = struct.pack(">BBBB", 0, 0, code, values.ndim) + struct.pack(f">{values.ndim}I", *values.shape)
    return header + struct.pack(f">{values.size}{STRUCT_CODES[code]}", *values.ravel().tolist())


def write(path: Path, raw: bytes, gz: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


def digits(n=30, seed=0, size=(28, 28)):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, *size), dtype=np.uint8), np.arange(n, dtype=np.uint8) % 10


def write_split(folder: Path, split="train", gz=True, n=30, seed=0):
    x, y = digits(n, seed)
    prefix = "train" if split == "train" else "t10k"
    suffix = ".gz" if gz else ""
    write(folder / f"{prefix}-images-idx3-ubyte{suffix}", idx_bytes(x), gz)
    write(folder / f"{prefix}-labels-idx1-ubyte{suffix}", idx_bytes(y), gz)
    return x, y


def md5(path) -> str:
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


def trust(monkeypatch, dataset, folder):
    """Take the files in folder as the official ones (their MD5 into the table)."""
    for p in folder.iterdir():
        monkeypatch.setitem(downloads.OFFICIAL_MD5[dataset], p.name, md5(p))


# ---- IDX ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("code", sorted(STRUCT_CODES))
@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_round_trip(tmp_path, code, gz):
    rng = np.random.default_rng(code)
    values = (rng.normal(size=(3, 4, 5)) * 50).astype(NUMPY_TYPES[code])
    if code == 0x08:
        values = rng.integers(0, 256, (3, 4, 5), dtype=np.uint8)
    out = read_idx(write(tmp_path / "a-idx3", idx_bytes(values, code), gz))
    assert out.dtype == values.dtype and out.dtype.isnative and out.shape == (3, 4, 5)
    np.testing.assert_array_equal(out, values)


def test_gz_and_raw_files_agree(tmp_path):
    x, y = write_split(tmp_path / "gz", gz=True)
    write_split(tmp_path / "raw", gz=False)
    gz = load_mnist(tmp_path / "gz", verify=False)
    raw = load_mnist(tmp_path / "raw", verify=False)
    for a, b in zip(gz, raw, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(gz[0], x)
    np.testing.assert_array_equal(gz[1], y)
    assert gz[0].dtype == np.uint8 and gz[1].dtype == np.int64


@pytest.mark.parametrize("gz", [False, True])
def test_truncated_or_oversized_idx_is_a_value_error_naming_the_file(tmp_path, gz):
    raw = idx_bytes(digits(5)[0])
    for name, cut in (("short", raw[:-7]), ("header", raw[:9]), ("long", raw + b"\0")):
        path = write(tmp_path / f"{name}-images-idx3-ubyte", cut, gz)
        with pytest.raises(ValueError, match=f"{name}-images-idx3-ubyte.*(truncated|longer)"):
            read_idx(path)
    # a gzip stream cut short
    path = tmp_path / "cut-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(raw)[:-20])
    with pytest.raises(ValueError, match="cut-images-idx3-ubyte.gz.*gzip"):
        read_idx(path)


def test_wrong_magic_is_an_error(tmp_path):
    path = write(tmp_path / "text-images-idx3-ubyte", b"hello, this is not IDX")
    with pytest.raises(ValueError, match="text-images-idx3-ubyte is not an IDX file"):
        read_idx(path)
    # a labels file (magic 2049) where the images (2051) belong
    x, y = digits(10)
    write(tmp_path / "pair" / "images-idx3-ubyte", idx_bytes(y))
    write(tmp_path / "pair" / "labels-idx1-ubyte", idx_bytes(y))
    with pytest.raises(ValueError, match="magic number 2049, expected 2051"):
        load_idx_folder(tmp_path / "pair")
    write(tmp_path / "pair" / "images-idx3-ubyte", idx_bytes(x.astype(np.int16), 0x0B))
    with pytest.raises(ValueError, match="magic number 2819, expected 2051"):
        load_idx_folder(tmp_path / "pair")


def test_mismatching_counts_of_images_and_labels(tmp_path):
    x, y = digits(10)
    write(tmp_path / "images-idx3-ubyte.gz", idx_bytes(x), gz=True)
    write(tmp_path / "labels-idx1-ubyte", idx_bytes(y[:9]))
    with pytest.raises(ValueError, match="10 images but .* 9 labels"):
        load_idx_folder(tmp_path)


def test_idx_folder_needs_exactly_one_pair(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"\*images\*idx3\*"):
        load_idx_folder(tmp_path)
    with pytest.raises(FileNotFoundError, match="not a folder"):
        load_idx_folder(tmp_path / "nowhere")
    x, y = digits(10)
    write(tmp_path / "a-images-idx3-ubyte", idx_bytes(x))
    write(tmp_path / "b-images-idx3-ubyte", idx_bytes(x))
    write(tmp_path / "labels-idx1-ubyte", idx_bytes(y))
    with pytest.raises(ValueError, match="several"):
        load_idx_folder(tmp_path)


# ---- official names: checksums, layout, missing files, downloads --------------------------------

def test_checksum_mismatch_for_an_official_name(tmp_path):
    x, y = write_split(tmp_path / "mnist", "test")
    path = tmp_path / "mnist" / "t10k-images-idx3-ubyte.gz"
    with pytest.raises(ValueError) as err:
        load_mnist(tmp_path, "test")
    msg = str(err.value)
    assert str(path) in msg and md5(path) in msg and "9fb629c4189551a2d022fa330f9573f3" in msg
    assert "verify=False" in msg and "download=True" in msg
    got = load_mnist(tmp_path, "test", verify=False)
    np.testing.assert_array_equal(got[0], x)
    np.testing.assert_array_equal(got[1], y)


def test_gunzipped_official_name_is_checked_by_size(tmp_path):
    write_split(tmp_path, "train", gz=False)
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.*official.*60000, 28, 28"):
        load_fashion_mnist(tmp_path)
    assert load_fashion_mnist(tmp_path, verify=False)[0].shape == (30, 28, 28)


def test_official_md5_table_is_complete():
    assert set(downloads.OFFICIAL_MD5) == {"mnist", "fashion-mnist", "cifar-10"}
    for table in downloads.OFFICIAL_MD5.values():
        assert all(len(v) == 32 and int(v, 16) >= 0 for v in table.values())
    assert len(downloads.OFFICIAL_MD5["cifar-10"]) == 7
    assert downloads.OFFICIAL_MD5["mnist"].keys() == downloads.OFFICIAL_MD5["fashion-mnist"].keys()


def test_matching_checksums_load_and_layouts(tmp_path, monkeypatch):
    x, y = write_split(tmp_path / "fashion-mnist", "train")
    trust(monkeypatch, "fashion-mnist", tmp_path / "fashion-mnist")
    np.testing.assert_array_equal(load_fashion_mnist(tmp_path)[0], x)  # root/fashion-mnist/
    np.testing.assert_array_equal(load_fashion_mnist(tmp_path / "fashion-mnist")[0], x)  # directly
    monkeypatch.setenv("INFNET_DATA", str(tmp_path))
    np.testing.assert_array_equal(load_fashion_mnist()[1], y)  # the environment variable
    with pytest.raises(ValueError, match="split must be 'train' or 'test'"):
        load_fashion_mnist(split="validation")


def test_missing_files_say_what_to_place_where(tmp_path, monkeypatch):
    write(tmp_path / "mnist" / "train-images-idx3-ubyte.gz", idx_bytes(digits(5)[0]), gz=True)
    with pytest.raises(FileNotFoundError) as err:
        load_mnist(tmp_path)
    msg = str(err.value)
    assert "train-labels-idx1-ubyte.gz" in msg and str(tmp_path / "mnist") in msg
    assert "INFNET_DATA" in msg and "download=True" in msg
    with pytest.raises(FileNotFoundError, match="cifar-10-python.tar.gz"):
        load_cifar10(tmp_path, "test")
    monkeypatch.delenv("INFNET_DATA", raising=False)
    with pytest.raises(FileNotFoundError, match="INFNET_DATA.*t10k-images-idx3-ubyte.gz"):
        load_mnist(split="test")


class Dropping(io.RawIOBase):
    """A response that sends a few bytes, then loses the connection."""

    def __init__(self, folder):
        self.folder, self.sent, self.seen = folder, False, None

    def readable(self):
        return True

    def readinto(self, buffer):
        if self.sent:
            self.seen = sorted(os.listdir(self.folder))
            raise ConnectionResetError("connection reset by peer")
        self.sent = True
        buffer[:4] = b"\x1f\x8b\x08\x00"
        return 4


def test_failed_downloads_leave_no_file_and_say_so(tmp_path, monkeypatch):
    folder = tmp_path / "mnist"
    calls = []

    def offline(url, timeout=None):
        calls.append((url, timeout))
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(FileNotFoundError) as err:
        load_mnist(tmp_path, "test", download=True)
    assert "download failed" in str(err.value) and "no network" in str(err.value)
    assert "t10k-images-idx3-ubyte.gz" in str(err.value)
    assert calls and all(t is not None and t <= 30 for _, t in calls)
    # every mirror tried for the first file, then no more time spent without a network
    assert [u for u, _ in calls] == [m + "t10k-images-idx3-ubyte.gz" for m in downloads.MIRRORS["mnist"]]
    assert "t10k-labels-idx1-ubyte.gz" in str(err.value)
    assert list(folder.iterdir()) == []

    responses = []

    def dropping(url, timeout=None):
        responses.append(Dropping(folder))
        return responses[-1]

    monkeypatch.setattr(urllib.request, "urlopen", dropping)
    with pytest.raises(FileNotFoundError, match="connection reset"):
        load_mnist(tmp_path, "test", download=True)
    seen = responses[0].seen  # mid-download: only a temporary file, in the target folder
    name = os.path.basename(seen[0])  # a hidden temporary: .<stem>.<random>.tmp<suffix>
    assert len(seen) == 1 and name.startswith(".t10k-images-idx3-ubyte.") and ".tmp" in name
    assert list(folder.iterdir()) == []

    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout=None: io.BytesIO(b"not it"))
    with pytest.raises(FileNotFoundError, match="MD5"):
        load_cifar10(tmp_path, "test", download=True)
    assert list((tmp_path / "cifar-10").iterdir()) == []


def test_download_verifies_then_puts_the_file_in_place(tmp_path, monkeypatch):
    x, y = digits(12)
    payload = {"t10k-images-idx3-ubyte.gz": gzip.compress(idx_bytes(x)),
               "t10k-labels-idx1-ubyte.gz": gzip.compress(idx_bytes(y))}
    for name, raw in payload.items():
        monkeypatch.setitem(downloads.OFFICIAL_MD5["mnist"], name, hashlib.md5(raw).hexdigest())
    monkeypatch.setattr(urllib.request, "urlopen",
                        lambda url, timeout=None: io.BytesIO(payload[url.rsplit("/", 1)[1]]))
    got = load_mnist(tmp_path, "test", download=True)
    np.testing.assert_array_equal(got[0], x)
    assert sorted(os.listdir(tmp_path / "mnist")) == sorted(payload)


# ---- CIFAR-10 ----------------------------------------------------------------------------------

def cifar_batches(n=20, seed=0):
    rng = np.random.default_rng(seed)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    return {name: {b"batch_label": name.encode(), b"labels": [int(v) for v in rng.integers(0, 10, n)],
                   b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                   b"filenames": [b"img.png"] * n} for name in names}


def write_cifar_folder(folder, batches, protocol=2):
    folder.mkdir(parents=True, exist_ok=True)
    for name, batch in batches.items():
        (folder / name).write_bytes(pickle.dumps(batch, protocol=protocol))


def write_cifar_archive(path, batches):
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, batch in batches.items():
            raw = pickle.dumps(batch, protocol=2)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))


def expected_cifar(batches, names):
    data_ = np.concatenate([batches[n][b"data"] for n in names])
    images = np.empty((len(data_), 32, 32, 3), np.uint8)
    for i, r, c, ch in np.ndindex(images.shape):  # pixel (r, c) of channel ch, one by one
        images[i, r, c, ch] = data_[i, 1024 * ch + 32 * r + c]
    labels = np.concatenate([batches[n][b"labels"] for n in names])
    return images, labels


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_cifar_folder_round_trip(tmp_path, protocol):
    batches = cifar_batches()
    write_cifar_folder(tmp_path / "cifar-10" / "cifar-10-batches-py", batches, protocol)
    x, y = load_cifar10(tmp_path, "test", verify=False)
    ex, ey = expected_cifar(batches, ["test_batch"])
    assert x.shape == (20, 32, 32, 3) and x.dtype == np.uint8 and y.dtype == np.int64
    np.testing.assert_array_equal(x, ex)  # HWC: pixel (r, c) of channel ch
    np.testing.assert_array_equal(y, ey)
    x, y = load_cifar10(tmp_path, "train", verify=False)
    assert x.shape == (100, 32, 32, 3)
    train = [batches[f"data_batch_{i}"] for i in range(1, 6)]
    np.testing.assert_array_equal(y, np.concatenate([b[b"labels"] for b in train]))
    np.testing.assert_array_equal(x[20:40].transpose(0, 3, 1, 2).reshape(20, -1), train[1][b"data"])


def test_cifar_archive_agrees_with_folder_and_is_verified(tmp_path, monkeypatch):
    batches = cifar_batches(seed=1)
    write_cifar_folder(tmp_path / "folder", batches)
    archive = tmp_path / "tar" / "cifar-10-python.tar.gz"
    write_cifar_archive(archive, batches)
    with pytest.raises(ValueError) as err:
        load_cifar10(tmp_path / "tar", "train")
    assert str(archive) in str(err.value) and "c58f30108f718f92721af3b95e74349a" in str(err.value)
    with pytest.raises(ValueError, match="data_batch_1.*has MD5.*c99cafc152244af753f735de768cd75f"):
        load_cifar10(tmp_path / "folder", "train")
    monkeypatch.setitem(downloads.OFFICIAL_MD5["cifar-10"], archive.name, md5(archive))
    for split in ("train", "test"):
        a, b = load_cifar10(tmp_path / "tar", split), load_cifar10(tmp_path / "folder", split, verify=False)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])


def test_cifar_bad_batches(tmp_path):
    batches = cifar_batches(n=4)
    batches["test_batch"][b"labels"] = batches["test_batch"][b"labels"][:3]
    write_cifar_folder(tmp_path / "counts", batches)
    with pytest.raises(ValueError, match="test_batch holds 4 images but 3 labels"):
        load_cifar10(tmp_path / "counts", "test", verify=False)

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    (tmp_path / "evil").mkdir()
    (tmp_path / "evil" / "test_batch").write_bytes(pickle.dumps({b"data": Evil(), b"labels": []}))
    with pytest.raises(ValueError, match="not a CIFAR-10 batch.*system"):
        load_cifar10(tmp_path / "evil", "test", verify=False)
    assert not (tmp_path / "pwned").exists()

    broken = tmp_path / "broken" / "cifar-10-python.tar.gz"
    write_cifar_archive(broken, cifar_batches(n=2))
    broken.write_bytes(broken.read_bytes()[: broken.stat().st_size // 2])  # inside the batches
    with pytest.raises(ValueError, match="cifar-10-python.tar.gz"):
        load_cifar10(tmp_path / "broken", "train", verify=False)


# ---- load_dataset --------------------------------------------------------------------------------

def test_load_dataset_digits_is_the_sklearn_split():
    x, y = load_digits(return_X_y=True)
    expected = train_test_split(x, y, test_size=0.5, random_state=3, stratify=y)
    x_tr, y_tr, x_te, y_te = load_dataset("digits", seed=3)
    for got, want in zip((x_tr, x_te, y_tr, y_te), expected, strict=True):
        np.testing.assert_array_equal(got, want)
    assert y_tr.dtype == np.int64 and len(x_tr) + len(x_te) == 1797
    x_tr, y_tr, x_te, y_te = load_dataset("digits", n_train=100, n_test=50, seed=3)
    assert x_tr.shape == (100, 64) and x_te.shape == (50, 64)
    assert np.bincount(y_tr).min() >= 9 and np.bincount(y_te).min() >= 4  # stratified
    np.testing.assert_array_equal(load_dataset("digits", n_train=100, seed=3)[0], x_tr)
    with pytest.raises(ValueError, match="n_train=5000 but only 898"):
        load_dataset("digits", n_train=5000)


def test_load_dataset_folder_official_and_synthetic(tmp_path, monkeypatch):
    x, y = digits(40)
    write(tmp_path / "pair" / "images-idx3-ubyte.gz", idx_bytes(x), gz=True)
    write(tmp_path / "pair" / "labels-idx1-ubyte.gz", idx_bytes(y), gz=True)
    x_tr, y_tr, x_te, y_te = load_dataset(str(tmp_path / "pair"), seed=1)
    want = train_test_split(x, y.astype(np.int64), test_size=0.5, random_state=1, stratify=y)
    np.testing.assert_array_equal(x_tr, want[0])
    np.testing.assert_array_equal(y_te, want[3])
    assert np.bincount(y_tr).tolist() == [2] * 10

    write_split(tmp_path / "mnist", "train", n=30, seed=2)
    write_split(tmp_path / "mnist", "test", n=20, seed=3)
    with pytest.raises(ValueError, match="MD5"):
        load_dataset("mnist", tmp_path)
    trust(monkeypatch, "mnist", tmp_path / "mnist")
    x_tr, y_tr, x_te, y_te = load_dataset("MNIST", tmp_path, n_test=10)
    np.testing.assert_array_equal(x_tr, digits(30, 2)[0])
    assert x_te.shape == (10, 28, 28) and np.bincount(y_te).tolist() == [1] * 10

    x_tr, y_tr, x_te, y_te = load_dataset("dirichlet3", n_train=30, n_test=20, seed=4)
    xs, ys = dirichlet.dirichlet_sphere(50, d=3, seed=4)
    np.testing.assert_array_equal(x_tr, xs[:30])
    np.testing.assert_array_equal(y_te, ys[30:])
    assert load_dataset("dirichlet2")[0].shape == (500, 2)


def test_load_dataset_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError) as err:
        load_dataset("imagenet")
    for name in data.DATASETS:
        assert name in str(err.value)


def test_old_names_are_still_exported():
    for name in ("DirichletData", "dirichlet_setting", "dirichlet_sphere", "PAPER_ALPHAS",
                 "UNIT_NORM_RTOL", "digits_sphere", "train_test", "on_sphere", "check_labels"):
        assert getattr(data, name) is getattr(sphere, name)


@pytest.mark.skipif(not os.environ.get("INFNET_MNIST_5K"), reason="INFNET_MNIST_5K is not set")
def test_real_mnist_5k():
    folder = Path(os.environ["INFNET_MNIST_5K"])
    for name, sha in MNIST_5K_SHA256.items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == sha
    x, y = load_idx_folder(folder)
    assert x.shape == (5000, 28, 28) and x.dtype == np.uint8 and x.max() > 200
    assert np.bincount(y).tolist() == [500] * 10
    x_tr, y_tr, x_te, y_te = load_dataset(folder, seed=0)
    assert np.bincount(y_tr).tolist() == [250] * 10 and np.bincount(y_te).tolist() == [250] * 10


# ---- preprocessing -----------------------------------------------------------------------------

def mixed(n=300, d=6, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) + rng.normal(size=d) * 5


def test_zca_without_regularization_whitens_full_rank_data():
    x = mixed()
    z = ZCAWhitening(regularization=0.0).fit(x).transform(x)
    np.testing.assert_allclose(z.T @ z / len(z), np.eye(6), atol=1e-8)
    np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=1e-12)
    with pytest.raises(ValueError, match="singular.*regularization > 0"):
        ZCAWhitening(0.0).fit(np.c_[x, x[:, :1] * 2])


@pytest.mark.parametrize("eps", [0.01, 0.1, 1.0])
def test_zca_regularized_spectrum(eps):
    x = mixed(seed=1)
    zca = ZCAWhitening(regularization=eps).fit(x)
    z = zca.transform(x)
    lam = np.linalg.eigvalsh(np.cov(x, rowvar=False, bias=True))
    want = lam / (lam + eps * lam.sum() / 6)
    np.testing.assert_allclose(np.linalg.eigvalsh(z.T @ z / len(z)), np.sort(want), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(zca.whitening_, zca.whitening_.T)  # ZCA: the symmetric whitening
    x_new = mixed(5, seed=2)
    np.testing.assert_allclose(zca.transform(x_new), (x_new - x.mean(axis=0)) @ zca.whitening_)
    with pytest.raises(ValueError, match="regularization"):
        ZCAWhitening(-1.0).fit(x)


def test_center_scale_unit_norm():
    x = mixed()
    center = Center().fit(x)
    np.testing.assert_allclose(center.transform(x).mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(center.transform(x[:3]), x[:3] - x.mean(axis=0))  # the training mean
    u = UnitNorm().fit(x).transform(x)
    np.testing.assert_allclose(np.linalg.norm(u, axis=1), 1.0, rtol=1e-14)
    np.testing.assert_allclose(u * np.linalg.norm(x, axis=1)[:, None], x)
    with pytest.raises(ValueError, match="row 1 is the zero vector"):
        UnitNorm().fit(x).transform(np.r_[x[:1], np.zeros((1, 6))])
    img = np.arange(256, dtype=np.uint8).reshape(4, 64)
    s = Scale().fit(img).transform(img)
    assert s.dtype == np.float64 and s.min() == 0.0 and s.max() == 1.0
    np.testing.assert_array_equal(s * 255, img)
    with pytest.raises(ValueError, match="max_value"):
        Scale().fit(img.astype(float) * 4)
    f = Flatten().fit(np.zeros((2, 4, 4, 3), np.uint8)).transform(np.ones((5, 4, 4, 3), np.uint8))
    assert f.shape == (5, 48) and f.dtype == np.uint8


def test_transformers_in_a_pipeline_reject_other_feature_counts():
    images = digits(40, size=(8, 8))[0]
    pipe = standard_preprocessing(zca=0.1).fit(images[:30])
    out = pipe.transform(images[30:])
    assert out.dtype == np.float64 and out.shape == (10, 64)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-13)
    assert [n for n, _ in pipe.steps] == ["flatten", "scale", "zca", "unit_norm"]
    assert [n for n, _ in standard_preprocessing(unit_norm=False).steps] == ["flatten", "scale", "center"]
    with pytest.raises(ValueError, match="X has 49 features, but Flatten is expecting 64"):
        pipe.transform(np.zeros((3, 7, 7), np.uint8))
    x = mixed()
    for step in (Center(), UnitNorm(), ZCAWhitening(), Scale(max_value=100)):
        fitted = make_pipeline(step).fit(np.abs(x))
        with pytest.raises(ValueError, match=f"X has 5 features, but {type(step).__name__} is expecting 6"):
            fitted.transform(np.abs(x[:, :5]))
    with pytest.raises(ValueError, match="flatten images first"):
        Center().fit(np.zeros((3, 2, 2)))


@pytest.mark.filterwarnings("ignore:Skipping check")
@pytest.mark.parametrize("estimator", [Flatten(), Scale(), Center(), UnitNorm(), ZCAWhitening()],
                         ids=lambda e: type(e).__name__)
def test_sklearn_estimator_checks(estimator):
    # UnitNorm refuses zero rows on purpose; sklearn's dtype check feeds some.
    allowed = {"check_estimators_dtypes"} if isinstance(estimator, UnitNorm) else set()
    results = check_estimator(estimator, on_fail=None)
    failed = {r["check_name"]: r["exception"] for r in results if r["status"] == "failed"}
    assert set(failed) <= allowed, failed
