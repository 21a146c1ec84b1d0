"""Safe files and folders, shared by the kernel store, the study and the command line.

- ``atomic_path`` / ``write_atomic``: a file appears under its final name whole or not at all
  (written under a temporary name in the same folder, flushed to disk with ``os.fsync``, then
  ``os.replace``; the temporary is removed on any failure, Ctrl-C included).
- ``check_writable`` / ``make_folder``: output paths checked before a long computation, so that
  its result is not lost to a missing or unwritable folder at the end.
- ``folder_lock``: one writer per folder (``fcntl.flock`` on a lock file in it); the operating
  system releases the lock when its process ends, however it ends (a killed writer never leaves
  the folder locked).
- ``array_digest`` / ``describe_digest``: shape, dtype and sha256 of an array's contents, the
  fingerprint that lets a resumed computation refuse data that changed under it.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import socket
import time
import uuid
from pathlib import Path

import numpy as np

try:  # POSIX; elsewhere folders are not locked
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

LOCK_NAME = ".infnet.lock"
#: errors of writing a file whatever its name says (full disk, quota, read-only filesystem...)
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO, errno.EACCES,
                 errno.EPERM}


class WriteError(OSError):
    """A file or folder could not be written (missing or unwritable folder, full disk...)."""


class FolderInUseError(OSError):
    """Another process holds the lock of a folder (``folder_lock``)."""


# ---- atomic files ----------------------------------------------------------------------------
def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # (Windows cannot open folders)
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _temporary(path: Path) -> Path:
    """``.<stem>.<random>.tmp<suffix>`` next to path (the suffix kept for writers that pick a
    format from it: numpy appends .npy/.npz, matplotlib reads .png/.pdf)."""
    return path.with_name(f".{path.stem}.{uuid.uuid4().hex[:12]}.tmp{path.suffix}")


def _cannot_write(path: Path, err: OSError) -> WriteError:
    return WriteError(f"cannot write {path}: {err.strerror or err}. Check that the folder exists "
                      "and is writable and that the disk has room")


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path next to ``path``; when the block ends without error the file
    written there is flushed to disk and renamed to ``path`` (``os.replace``, atomic), else it is
    removed. An ``OSError`` of the writing becomes a ``WriteError`` that names ``path``.

        with atomic_path("out.npz") as tmp:
            np.savez(tmp, k=k)
    """
    path = Path(path)
    tmp = _temporary(path)
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        if isinstance(err, OSError) and not isinstance(err, WriteError) and (
                err.errno in _WRITE_ERRNOS or err.filename is not None and Path(err.filename) in (tmp, path)):
            raise _cannot_write(path, err) from err
        raise  # (an error of the block's own, e.g. a lost connection while downloading)
    _fsync_dir(path.parent)


def write_atomic(path, data: bytes | str) -> None:
    """Write bytes (or text, UTF-8) to ``path`` atomically (``atomic_path``)."""
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data.encode() if isinstance(data, str) else data)


def check_writable(path, option: str = "--out") -> Path:
    """Raise ``WriteError`` now if no file can be written at ``path``: its folder missing, not a
    folder or not writable (tried by creating and removing a temporary file there), or ``path``
    itself a folder. ``option`` names the argument in the message."""
    path = Path(path)
    parent = path.parent
    if path.is_dir():
        raise WriteError(f"{option} {path} is a folder: give a file name")
    if not parent.exists():
        raise WriteError(f"cannot write {path}: the folder {parent} does not exist; create it or "
                         f"give another {option}")
    if not parent.is_dir():
        raise WriteError(f"cannot write {path}: {parent} is not a folder; give another {option}")
    probe = _temporary(path)
    try:
        probe.open("xb").close()
        probe.unlink()
    except OSError as err:
        raise WriteError(f"cannot write in {parent}: {err.strerror or err}; give another "
                         f"{option}") from None
    return path


def make_folder(folder, option: str = "--out") -> Path:
    """Create ``folder`` (and its parents) if needed and check that files can be written in it;
    ``WriteError`` otherwise."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise WriteError(f"cannot create the folder {folder}: a file of that name exists; give "
                         f"another {option}") from None
    except OSError as err:
        raise WriteError(f"cannot create the folder {folder}: {err.strerror or err}; give "
                         f"another {option}") from None
    check_writable(folder / "probe", option)
    return folder


# ---- one writer per folder -------------------------------------------------------------------
def lock_holder(folder) -> str | None:
    """Who holds the lock of ``folder`` now ("pid N on HOST"), or None if nobody does."""
    path = Path(folder) / LOCK_NAME
    if fcntl is None or not path.exists():
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return _holder(path)
    finally:
        os.close(fd)  # (releases a shared lock just taken)
    return None


def _holder(path: Path) -> str:
    with contextlib.suppress(OSError, ValueError):
        pid, host = path.read_text().split()[:2]
        return f"pid {int(pid)} on {host}"
    return "another process"


def _try_lock(fd: int, tries: int = 10) -> bool:
    """The exclusive lock, tried for about half a second (``lock_holder`` holds a shared lock
    for microseconds: not a writer)."""
    for attempt in range(tries):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError:  # BlockingIOError, or EACCES/EAGAIN on some filesystems
            if attempt < tries - 1:
                time.sleep(0.05)
    return False


@contextlib.contextmanager
def folder_lock(folder, what: str):
    """Hold the exclusive lock of ``folder`` (an existing folder) for the block; if another
    process holds it, ``FolderInUseError`` says who, and what to do. ``what`` names the work
    ("the kernel store", "the study") in that message. The lock file stays (removing it would
    let two processes lock two different files); the lock itself ends with the block or with
    the process."""
    folder = Path(folder)
    path = folder / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        raise WriteError(f"cannot create the lock file {path}: {err.strerror or err}; choose a "
                         "writable folder") from None
    try:
        if fcntl is not None and not _try_lock(fd):
            raise FolderInUseError(
                f"{folder} is in use: {_holder(path)} is writing {what} there. Wait for it to "
                "finish, then run again (finished work is kept), or use another folder")
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
        yield folder
    finally:
        os.close(fd)  # releases the lock


# ---- fingerprints of arrays ------------------------------------------------------------------
def array_digest(x) -> dict | None:
    """shape, dtype and sha256 of an array's bytes (C order; NumPy arrays, torch tensors and
    array-likes); None for None."""
    if x is None:
        return None
    if hasattr(x, "detach"):  # a torch tensor (without importing torch here)
        x = x.detach().cpu().numpy()
    a = np.ascontiguousarray(np.asarray(x))
    return {"shape": list(a.shape), "dtype": str(a.dtype),
            "sha256": hashlib.sha256(a.reshape(-1).view(np.uint8)).hexdigest()}


def describe_digest(d: dict | None) -> str:
    """An ``array_digest`` in words: "(60, 3) float64 sha256 0123456789ab"."""
    return "none" if d is None else f"{tuple(d['shape'])} {d['dtype']} sha256 {d['sha256'][:12]}"
