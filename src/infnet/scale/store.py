"""A kernel matrix on disk, in tiles: a folder that a computation fills and resumes.

Layout of a store folder::

    manifest.json             format, n1, n2, tile, dtype, kind, symmetric, fingerprint, parts
    tile_00000_00003.npy      rows [0, tile), columns [3 tile, 4 tile) of the kernel
    tile_00000_00003.sha256   sha256 of the .npy file's bytes

Every file is written atomically (a temporary name in the same folder, flush, ``os.fsync``,
``os.replace``), the checksum after its tile, so a tile is *done* only when both exist and
agree: a process killed at any point leaves tiles that are either done or ignored (and
recomputed). Symmetric kernels (x2 = x1) store the tiles j >= i only.

The fingerprint (``fingerprint``, in ``infnet.scale.digests``; importable from here as well) is
a sha256 of the inputs (bytes, shape, dtype), of the network (``repr`` and, for activations
outside the catalog, their functions' code) and of the parameters (kind, tile, dtype); a store
made for other inputs is refused with what differs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import re
from pathlib import Path

import numpy as np
import torch

from ..core.files import WriteError, write_atomic
from .digests import _differences, fingerprint

__all__ = ["FORMAT", "MANIFEST", "CorruptStoreError", "CorruptTileError", "KernelStore",
           "StoreMismatchError", "StoreWriteError", "Verification", "fingerprint",
           "make_store_folder"]

FORMAT = 1
MANIFEST = "manifest.json"
_MANIFEST_KEYS = ("n1", "n2", "tile", "dtype", "kind", "symmetric", "fingerprint")
_TILE = re.compile(r"^tile_(\d+)_(\d+)\.(npy|sha256)$")
_TMP = re.compile(r"^\..+\.tmp(\.[A-Za-z0-9]+)?$")  # temporaries: ".<stem>.<random>.tmp<suffix>"


class StoreMismatchError(ValueError):
    """An existing store was made for other data, network or parameters."""


class StoreWriteError(WriteError):
    """A file of the store could not be written (unwritable folder, full disk...)."""


class CorruptTileError(OSError):
    """A tile's bytes disagree with its recorded checksum."""


class CorruptStoreError(ValueError):
    """A store's manifest is unreadable, of another format, or incomplete."""


def _write(path: Path, data: bytes) -> None:
    """``write_atomic``, its error said as the store's (what is kept, what to do)."""
    try:
        write_atomic(path, data)
    except WriteError as err:
        raise StoreWriteError(f"{err} ({len(data) / 2**20:.1f} MiB for this file). Tiles already "
                              "done are kept: run again to resume") from err.__cause__


def make_store_folder(path) -> Path:
    """The store's folder, created if needed (``StoreWriteError`` if it cannot be)."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise StoreWriteError(f"cannot create the kernel store folder {path}: "
                              f"{err.strerror or err}; choose a writable path") from err
    return path


# ---- the store ---------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Verification:
    """The tiles (i, j) of a store by state, as ``KernelStore.verify`` finds them.

    Parameters
    ----------
    done : list of tuple of int
        The tiles whose data and checksum agree.
    missing : list of tuple of int
        The tiles with either file absent.
    corrupt : list of tuple of int
        The tiles whose checksum disagrees with their data.

    Attributes
    ----------
    complete : bool
        All tiles done (none missing or corrupt).

    Examples
    --------
    >>> check = infnet.scale.Verification(done=[(0, 0)], missing=[(0, 1)], corrupt=[])
    >>> check.complete
    False
    >>> infnet.scale.Verification(done=[(0, 0), (0, 1)], missing=[], corrupt=[]).complete
    True
    """

    done: list
    missing: list
    corrupt: list
    complete = property(lambda self: not self.missing and not self.corrupt)


class KernelStore:
    """A kernel matrix stored in tiles in a folder.

    ``KernelStore.open(path)`` reads one, ``compute_kernel`` makes one (``KernelStore.create``
    its empty folder). Read access by tiles (``tile``), blocks (``block``, ``columns``,
    ``diagonal``, ``to_array``) and matrix products (``matvec``); a square store is a
    ``KernelOperator`` for ``solve``. ``verify`` checks every tile against its checksum.

    Parameters
    ----------
    path : str or os.PathLike
        The store's folder.
    manifest : dict
        Its manifest (n1, n2, tile, dtype, kind, symmetric, fingerprint), as ``open`` reads
        it from ``manifest.json``.

    Attributes
    ----------
    n1, n2 : int
        The kernel's shape; ``n`` is n for a square store.
    tile_size : int
        The tile size.
    dtype : torch.dtype
        The dtype of the entries.
    kind : str
        "ntk" or "nngp".
    symmetric : bool
        x2 = x1: only the tiles j >= i are stored.
    grid : tuple of int
        The number of tile rows and columns.

    Raises
    ------
    KeyError
        The manifest lacks a key (``open`` checks it first: ``CorruptStoreError``).

    Examples
    --------
    >>> net = infnet.fc("relu", depth=2, w_std=2**0.5)
    >>> x = torch.randn(20, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    >>> x = x / x.norm(dim=1, keepdim=True)
    >>> _ = infnet.scale.compute_kernel(net, x, path="K_ntk", tile=8, progress=False)
    >>> store = infnet.scale.KernelStore.open("K_ntk")
    >>> store.n, store.grid, store.tiles()
    (20, (3, 3), [(0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2)])
    >>> store.block(slice(0, 3), [5, 17]).shape, store.diagonal().shape
    (torch.Size([3, 2]), torch.Size([20]))
    >>> v = torch.ones(20, 2, dtype=torch.float64)
    >>> bool(torch.allclose(store.matvec(v), net.kernel(x).ntk @ v))
    True
    >>> infnet.scale.KernelStore.open("nowhere")
    Traceback (most recent call last):
        ...
    FileNotFoundError: no kernel store at nowhere (no manifest.json)
    """

    def __init__(self, path, manifest: dict):
        self.path = Path(path)
        self.manifest = manifest
        self.n1, self.n2 = manifest["n1"], manifest["n2"]
        self.tile_size = manifest["tile"]
        self._np_dtype = np.dtype(manifest["dtype"])
        self.dtype = getattr(torch, manifest["dtype"])  #: torch dtype of the entries
        self.kind = manifest["kind"]
        self.symmetric = manifest["symmetric"]
        self.grid = (-(-self.n1 // self.tile_size), -(-self.n2 // self.tile_size))

    @property
    def n(self) -> int:
        """n for an n x n store (what ``infnet.scale.solve`` needs of a kernel operator)."""
        if self.n1 != self.n2:
            raise AttributeError(f"a {self.n1} x {self.n2} store has no single n; see n1, n2")
        return self.n1

    def __repr__(self) -> str:
        return (f"KernelStore({str(self.path)!r}, {self.kind}, {self.n1}x{self.n2}, "
                f"tile={self.tile_size}, symmetric={self.symmetric})")

    # ---- opening -------------------------------------------------------------------------------
    @classmethod
    def open(cls, path) -> KernelStore:
        """An existing store, from its manifest."""
        path = Path(path)
        file = path / MANIFEST
        if not file.is_file():
            tiles = path.is_dir() and any(_TILE.match(f.name) for f in path.iterdir())
            raise FileNotFoundError(f"no kernel store at {path} (no {MANIFEST}"
                                    + ("; the tiles there cannot be used without it)" if tiles
                                       else ")"))
        try:
            manifest = json.loads(file.read_text())
            if not isinstance(manifest, dict):
                raise ValueError(f"a {type(manifest).__name__}, not an object")
        except (ValueError, UnicodeDecodeError) as err:
            raise CorruptStoreError(f"{file} is not a readable manifest ({err}): delete the "
                                    "store (or overwrite it) and compute it again") from None
        if manifest.get("format") != FORMAT:
            raise CorruptStoreError(f"{file} has format {manifest.get('format')!r}; this version "
                                    f"of infnet reads format {FORMAT}")
        lacking = [k for k in _MANIFEST_KEYS if k not in manifest]
        if lacking:
            raise CorruptStoreError(f"{file} lacks {', '.join(lacking)}: delete the store and "
                                    "compute it again")
        return cls(path, manifest)

    def missing(self) -> list[tuple[int, int]]:
        """The tiles whose data or checksum file is absent (one listing of the folder, no reads;
        ``verify`` also checks the contents)."""
        names = set(os.listdir(self.path))
        return [(i, j) for i, j in self.tiles()
                if not all(f.name in names for f in self._files(i, j))]

    @classmethod
    def create(cls, path, n1: int, n2: int, fp: dict, *, overwrite: bool = False,
               command: str | None = None) -> KernelStore:
        """The store at ``path`` for fingerprint ``fp`` (``fingerprint``): the existing one if
        its fingerprint agrees, a new one if there is none (or ``overwrite``: the old store's
        files are deleted); otherwise ``StoreMismatchError`` says what differs. ``command``: the
        command line that makes the store, kept in a new manifest (messages about an incomplete
        store quote it)."""
        path = Path(path)
        if (path / MANIFEST).exists() and not overwrite:
            store = cls.open(path)
            if store.manifest["fingerprint"]["sha256"] == fp["sha256"]:
                return store
            raise StoreMismatchError(
                f"the kernel store at {path} was made for other inputs: "
                + "; ".join(_differences(store.manifest["fingerprint"], fp))
                + ". Use a new folder, or overwrite=True to delete its tiles and start again.")
        make_store_folder(path)
        cls._remove(path, everything=True)  # tiles without their manifest cannot be trusted
        p = fp["params"]
        manifest = {"format": FORMAT, "n1": int(n1), "n2": int(n2), "tile": p["tile"],
                    "dtype": p["dtype"], "kind": p["kind"], "symmetric": p["symmetric"],
                    "fingerprint": fp, **({"command": command} if command else {})}
        _write(path / MANIFEST, json.dumps(manifest, indent=1).encode())
        return cls(path, manifest)

    @staticmethod
    def _remove(path: Path, everything: bool) -> int:
        names = [f for f in path.iterdir() if _TMP.match(f.name) or everything
                 and (_TILE.match(f.name) or f.name == MANIFEST)]
        for f in names:
            f.unlink(missing_ok=True)
        return len(names)

    def clean(self) -> int:
        """Delete temporary files left by interrupted writes; returns how many. (Not while a
        computation writes to this store.)"""
        return self._remove(self.path, everything=False)

    # ---- tiles ---------------------------------------------------------------------------------
    def tiles(self) -> list[tuple[int, int]]:
        """All tiles (i, j) the store holds (j >= i only when symmetric)."""
        g1, g2 = self.grid
        return [(i, j) for i in range(g1) for j in range(i if self.symmetric else 0, g2)]

    def rows(self, i: int) -> slice:
        """The rows of tile row i."""
        return slice(i * self.tile_size, min((i + 1) * self.tile_size, self.n1))

    def cols(self, j: int) -> slice:
        """The columns of tile column j."""
        return slice(j * self.tile_size, min((j + 1) * self.tile_size, self.n2))

    def _files(self, i: int, j: int) -> tuple[Path, Path]:
        stem = self.path / f"tile_{i:05d}_{j:05d}"
        return stem.with_suffix(".npy"), stem.with_suffix(".sha256")

    def write_tile(self, i: int, j: int, values) -> None:
        """Write tile (i, j) (array of its shape): data, then checksum, each atomically."""
        values = np.ascontiguousarray(values, dtype=self._np_dtype)
        r, c = self.rows(i), self.cols(j)
        shape = (r.stop - r.start, c.stop - c.start)
        if values.shape != shape:
            raise ValueError(f"tile ({i}, {j}) has shape {shape}, got {values.shape}")
        buf = io.BytesIO()
        np.save(buf, values, allow_pickle=False)
        npy, sha = self._files(i, j)
        _write(npy, buf.getvalue())
        _write(sha, hashlib.sha256(buf.getvalue()).hexdigest().encode())

    def _state(self, i: int, j: int) -> tuple[str, bytes | None]:
        npy, sha = self._files(i, j)
        try:
            expected = sha.read_text().strip()
            data = npy.read_bytes()
        except FileNotFoundError:
            return "missing", None
        return ("done", data) if hashlib.sha256(data).hexdigest() == expected else ("corrupt", None)

    def verify(self) -> Verification:
        """Check every tile's bytes against its checksum (reads the whole store)."""
        states = {"done": [], "missing": [], "corrupt": []}
        for ij in self.tiles():
            states[self._state(*ij)[0]].append(ij)
        return Verification(**states)

    def tile(self, i: int, j: int) -> torch.Tensor:
        """Tile (i, j) of the kernel (the transpose of tile (j, i) below a symmetric store's
        diagonal), checked against its checksum (``CorruptTileError``)."""
        if self.symmetric and j < i:
            return self.tile(j, i).T
        if not (0 <= i < self.grid[0] and 0 <= j < self.grid[1]):
            raise IndexError(f"tile ({i}, {j}) is outside the grid {self.grid}")
        state, data = self._state(i, j)
        if state != "done":
            raise (FileNotFoundError if state == "missing" else CorruptTileError)(
                f"tile ({i}, {j}) of {self.path} is {state}: run compute_kernel again to "
                "(re)compute it")
        return torch.from_numpy(np.load(io.BytesIO(data), allow_pickle=False))

    # ---- reading -------------------------------------------------------------------------------
    def block(self, rows=slice(None), cols=slice(None)) -> torch.Tensor:
        """K[rows][:, cols] for slices or integer index arrays, reading only the tiles hit."""
        r = np.arange(self.n1)[rows] if isinstance(rows, slice) else np.asarray(rows, dtype=np.int64)
        c = np.arange(self.n2)[cols] if isinstance(cols, slice) else np.asarray(cols, dtype=np.int64)
        r, c = np.where(r < 0, r + self.n1, r), np.where(c < 0, c + self.n2, c)
        out = np.empty((len(r), len(c)), dtype=self._np_dtype)
        t = self.tile_size
        for i in np.unique(r // t):
            ri = np.flatnonzero(r // t == i)
            for j in np.unique(c // t):
                cj = np.flatnonzero(c // t == j)
                values = self.tile(int(i), int(j)).numpy()
                out[np.ix_(ri, cj)] = values[np.ix_(r[ri] - i * t, c[cj] - j * t)]
        return torch.from_numpy(out)

    def columns(self, idx) -> torch.Tensor:
        """K[:, idx] (e.g. the landmark columns of a Nystrom preconditioner)."""
        return self.block(slice(None), idx)

    def diagonal(self) -> torch.Tensor:
        """The diagonal K[k, k], k < min(n1, n2), from the diagonal tiles."""
        parts = [self.tile(i, i).numpy().diagonal() for i in range(min(self.grid))]
        return torch.from_numpy(np.concatenate(parts)[:min(self.n1, self.n2)].copy())

    def to_array(self, out=None):
        """The whole (n1, n2) kernel as a torch tensor, or written into ``out`` (a NumPy array
        or memmap, or a torch tensor, of that shape), which is returned."""
        target = torch.from_numpy(np.empty((self.n1, self.n2), self._np_dtype)) if out is None else out
        if tuple(target.shape) != (self.n1, self.n2):
            raise ValueError(f"out has shape {tuple(target.shape)}, expected {(self.n1, self.n2)}")
        dest = target.numpy() if torch.is_tensor(target) else target
        for i, j in self.tiles():
            values = self.tile(i, j).numpy()
            dest[self.rows(i), self.cols(j)] = values
            if self.symmetric and i != j:
                dest[self.cols(j), self.rows(i)] = values.T
        if isinstance(dest, np.memmap):
            dest.flush()
        return target

    def matvec(self, v) -> torch.Tensor:
        """K @ v by tiles, v of shape (n2,) or (n2, m); memory O(tile^2 + n m)."""
        v = v.detach().cpu().numpy() if torch.is_tensor(v) else np.asarray(v)
        if v.shape[0] != self.n2:
            raise ValueError(f"v has {v.shape[0]} rows, the kernel {self.n2} columns")
        out = np.zeros((self.n1,) + v.shape[1:], dtype=np.result_type(self._np_dtype, v.dtype))
        for i, j in self.tiles():
            values = self.tile(i, j).numpy()
            out[self.rows(i)] += values @ v[self.cols(j)]
            if self.symmetric and i != j:
                out[self.cols(j)] += values.T @ v[self.rows(i)]
        return torch.from_numpy(out)
