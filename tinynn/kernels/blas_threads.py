r"""Run numpy's BLAS on one thread inside a block, so that tinynn can split a pass over the cores itself.

Why: OpenBLAS runs a product on every core once M·N·K exceeds 65536·4, and its threads meet at a spinning barrier.
On cores shared with other processes that barrier is very slow: measured here on a loaded 2-core machine (load
average 7), a (3200, 64)ᵀ @ (3200, 128) product took 116 ms multi-threaded and 0.5 ms on one thread, and the
pointwise GEMM of a SeparableConv2D 16 ms vs 0.4 ms. Splitting the batch over Python threads (the numba kernels
release the GIL, and so does BLAS), each calling a single-threaded BLAS, uses both cores without the barrier: on
the idle machine two threads reached 222-310 GFLOP/s on the Conv2D GEMMs of benchmark M7 where one multi-threaded
call reached 143-261.

How: :func:`single_threaded` sets OpenBLAS's thread count to 1 through its C API (``openblas_set_num_threads``,
found with ctypes in the OpenBLAS library numpy loaded) and restores it afterwards; nested and concurrent blocks
are counted, so the count is restored when the last one ends. Where numpy's BLAS is not an OpenBLAS that can be
found (MKL, Accelerate, a static build), :func:`available` is False and callers should not split work over
threads (BLAS then threads itself).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pathlib
import threading
from collections.abc import Iterator

__all__ = ["available", "single_threaded"]

_SYMBOLS = (
    ("scipy_openblas_get_num_threads64_", "scipy_openblas_set_num_threads64_"),
    ("scipy_openblas_get_num_threads", "scipy_openblas_set_num_threads"),
    ("openblas_get_num_threads64_", "openblas_set_num_threads64_"),
    ("openblas_get_num_threads", "openblas_set_num_threads"),
)


def _numpy_openblas():
    """(get_num_threads, set_num_threads) of the OpenBLAS numpy loaded, or None."""
    import numpy as np

    try:
        maps = pathlib.Path("/proc/self/maps").read_text()
    except OSError:  # not Linux
        return None
    paths = {line.split()[-1] for line in maps.splitlines() if "openblas" in line.rsplit("/", 1)[-1].lower()}
    numpy_libs = str(pathlib.Path(np.__file__).resolve().parent.parent / "numpy.libs")
    for path in sorted(paths, key=lambda p: not p.startswith(numpy_libs)):  # numpy's own first
        if not os.path.isfile(path):
            continue
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for get_name, set_name in _SYMBOLS:
            if hasattr(lib, get_name) and hasattr(lib, set_name):
                get, set_ = getattr(lib, get_name), getattr(lib, set_name)
                get.restype, get.argtypes = ctypes.c_int, []
                set_.restype, set_.argtypes = None, [ctypes.c_int]
                return get, set_
    return None


_lock = threading.Lock()
_handles = None
_looked = False
_depth = 0
_saved = 1


def _api():
    global _handles, _looked
    if not _looked:
        with _lock:
            if not _looked:
                _handles = _numpy_openblas()
                _looked = True
    return _handles


def available() -> bool:
    """True if numpy's BLAS is an OpenBLAS whose thread count :func:`single_threaded` can set."""
    return _api() is not None


@contextlib.contextmanager
def single_threaded() -> Iterator[None]:
    """Inside the block numpy's BLAS runs every product on the calling thread (a no-op if not :func:`available`)."""
    global _depth, _saved
    api = _api()
    if api is None:
        yield
        return
    get, set_ = api
    with _lock:
        if _depth == 0:
            _saved = get()
            if _saved != 1:
                set_(1)
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _saved != 1:
                set_(_saved)
