"""Keep freed memory for reuse instead of handing it back to the OS after every training step.

Why: one train step of a small model allocates and frees tens of MB of NumPy arrays (activations,
gate caches, gradients). glibc's malloc returns a freed block above its *mmap threshold* to the OS at
once, and trims free memory at the top of the heap above its *trim threshold*; both thresholds adapt
to the largest block freed so far, so with several blocks of a few MB each the heap is trimmed and
grown again on every step. Each regrowth costs a page fault per 4 KiB page, which the kernel must
also zero. On the benchmark model M2 (two Conv1D, a GRU) that was a fifth of a train step (measurements:
``benchmarks/RESULTS.md``, "Kernel design measurements").

TensorFlow and PyTorch avoid the same cost with caching allocators. tinynn does it with two
``mallopt`` settings when it is imported (Linux with glibc only; elsewhere nothing changes):

* ``M_MMAP_THRESHOLD`` = 256 MiB: blocks below this come from the heap, not from fresh ``mmap``
  pages (larger ones, e.g. whole datasets, are still mapped and returned when freed);
* ``M_TRIM_THRESHOLD`` = 1 GiB: free memory at the top of the heap is kept up to this amount.

The cost: after the largest step, the process keeps up to that step's working set mapped (the peak
RSS is unchanged; the memory is simply not given back). The settings are process-wide. Set the
environment variable ``TINYNN_MALLOC_TUNING=0`` before importing tinynn to leave malloc alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

MMAP_THRESHOLD_BYTES = 256 << 20
TRIM_THRESHOLD_BYTES = 1 << 30
_M_TRIM_THRESHOLD = -1  # glibc <malloc.h>
_M_MMAP_THRESHOLD = -3

_applied = False


def _glibc():
    """The C library if it is glibc (it has ``gnu_get_libc_version`` and ``mallopt``), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    if not hasattr(libc, "gnu_get_libc_version") or not hasattr(libc, "mallopt"):
        return None
    return libc


def tune_malloc() -> bool:
    """Apply the two thresholds of the module docstring; True if glibc accepted both.

    Called once by ``import tinynn`` unless ``TINYNN_MALLOC_TUNING=0``. Both are set together: setting
    only the trim threshold would switch off glibc's adaptive mmap threshold and leave it at 128 KiB,
    which made the M2 step much slower.
    """
    global _applied
    libc = _glibc()
    if libc is None:
        return False
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.mallopt.restype = ctypes.c_int
    mmap_ok = libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
    trim_ok = mmap_ok and libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1
    _applied = mmap_ok and trim_ok
    return _applied


def malloc_tuned() -> bool:
    """Whether :func:`tune_malloc` has been applied in this process."""
    return _applied


def _tune_on_import() -> None:
    if os.environ.get("TINYNN_MALLOC_TUNING", "1").strip().lower() not in ("0", "false", "no", "off"):
        tune_malloc()
