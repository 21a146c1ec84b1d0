"""The C heap while spatial kernels run: large temporaries reused instead of refaulted.

A tile of a spatial kernel makes and frees tensors of several MB in every layer (8 MB per
pair of 32 x 32 images in the full layout). glibc's malloc hands blocks above its mmap
threshold straight to the kernel and gives free memory at the top of its heap back once it
exceeds its trim threshold; both thresholds adapt to the program, but in the churn of a tile
they often end below the tensors' size, and every new tensor then costs a page fault per
4 KB page (1.3 million faults and 20% of the time of a 4-layer erf CNN-GAP kernel of 16
images, measured). ``large_tensors`` raises both thresholds while a kernel runs (blocks up
to 32 MB from the heap, up to 256 MB of free heap kept) and afterwards returns the free
memory (``malloc_trim``) and puts glibc's initial thresholds back.

Only glibc is touched (other C libraries keep their own policy); ``INFNET_HEAP=system`` in
the environment leaves the heap alone. The setting is process-wide, so overlapping kernels
(threads) share one: the first to enter sets it, the last to leave restores it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
from contextlib import contextmanager

#: mallopt parameters (malloc.h)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
#: while a kernel runs: blocks up to this size come from the heap (glibc's largest)
MMAP_THRESHOLD = 32 << 20
#: ... and this much free memory stays at its top
TRIM_THRESHOLD = 256 << 20
#: glibc's initial values, put back afterwards
DEFAULTS = {M_TRIM_THRESHOLD: 128 << 10, M_MMAP_THRESHOLD: 128 << 10}

_lock = threading.Lock()
_depth = 0
_libc = None


def _glibc():
    """The C library's mallopt/malloc_trim where it is glibc, else None (looked up once)."""
    global _libc
    if _libc is None:
        _libc = False
        name = ctypes.util.find_library("c")
        try:
            lib = ctypes.CDLL(name) if name else None
            if lib is not None and hasattr(lib, "gnu_get_libc_version") and \
                    hasattr(lib, "mallopt") and hasattr(lib, "malloc_trim"):
                lib.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
                lib.malloc_trim.argtypes = (ctypes.c_size_t,)
                _libc = lib
        except OSError:
            pass
    return _libc or None


def _set(libc, values: dict) -> None:
    for param, value in values.items():
        libc.mallopt(param, value)


@contextmanager
def large_tensors():
    """Raise glibc's thresholds for the duration (module docstring); nested and concurrent
    uses share one setting."""
    global _depth
    libc = None if os.environ.get("INFNET_HEAP", "") == "system" else _glibc()
    if libc is None:
        yield
        return
    with _lock:
        if _depth == 0:
            _set(libc, {M_MMAP_THRESHOLD: MMAP_THRESHOLD, M_TRIM_THRESHOLD: TRIM_THRESHOLD})
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                _set(libc, DEFAULTS)
                libc.malloc_trim(0)
