r"""numpy's own BLAS, bound for the numba kernels, and held to one thread while tinynn computes.

**Which library.** The numba kernels call ``cblas_sgemm`` / ``cblas_dgemm`` of the BLAS that numpy itself loaded
(the OpenBLAS that numpy's wheels bundle), under two symbol names registered with LLVM at import::

    tinynn_cblas_sgemm(order, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc)   (int64 sizes)
    tinynn_cblas_dgemm(...)                                                                  (the same in float64)
    tinynn_cblas_sgemv(order, trans, M, N, alpha, A, lda, x, incx, beta, y, incy)          (and dgemv: M = 1 / N = 1)

so a kernel can multiply row slices and column blocks in place (leading dimensions), transpose either operand
and accumulate (``C = α op(A) op(B) + β C``) without copies, and numba's cached machine code finds the symbols
again in every new process. Using numpy's BLAS (rather than the one scipy bundles, which numba's ``np.dot``
calls) means one library, one thread setting, and no ``scipy.linalg`` import at start-up.

Where numpy's BLAS has 32-bit sizes (``cblas_sgemm`` of a system OpenBLAS or MKL), a small numba adapter with the
int64 signature forwards to it; where no CBLAS can be found at all, an adapter computes the product with numba's
``np.dot`` (slower, same results). The gemv symbols are the same library's ``?gemv`` when it is a 64-bit-size
CBLAS, and otherwise an adapter that forwards to the gemm symbol (x and y as one-column matrices whose leading
dimensions are their increments), so cached kernels link everywhere. :func:`library` says which binding is in
use.

**Threads.** OpenBLAS runs a product on every core once M·N·K > 65536·4, and its threads meet at a spinning
barrier: on cores shared with other processes a 64×64 @ 64×256 product then took 16 ms instead of 0.03 ms
(``benchmarks/RESULTS.md``, "Kernel design measurements"). tinynn splits work over cores itself
(:mod:`tinynn.kernels.parallel`), where it knows the pieces are independent, and runs every BLAS call inside
:func:`single_threaded` — numpy's OpenBLAS set to one thread for the duration (nested and concurrent blocks
are counted; the previous setting comes back when the last one ends). :func:`can_limit_threads` is False when
the thread count cannot be set (not OpenBLAS); the kernels then leave the products whole and let BLAS thread.
"""

from __future__ import annotations

import ctypes
import functools
import glob
import os
import pathlib
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
from llvmlite import binding as _llvm

__all__ = ["SGEMM", "DGEMM", "SGEMV", "DGEMV", "can_limit_threads", "library", "single_threaded"]

#: The symbol names the kernels call (see the module docstring for the signature).
SGEMM, DGEMM = "tinynn_cblas_sgemm", "tinynn_cblas_dgemm"
SGEMV, DGEMV = "tinynn_cblas_sgemv", "tinynn_cblas_dgemv"

_ILP64 = (("scipy_cblas_sgemm64_", "scipy_cblas_dgemm64_"), ("cblas_sgemm64_", "cblas_dgemm64_"))
_LP64 = (("scipy_cblas_sgemm", "scipy_cblas_dgemm"), ("cblas_sgemm", "cblas_dgemm"))
_THREADS = (
    ("scipy_openblas_get_num_threads64_", "scipy_openblas_set_num_threads64_"),
    ("openblas_get_num_threads64_", "openblas_set_num_threads64_"),
    ("scipy_openblas_get_num_threads", "scipy_openblas_set_num_threads"),
    ("openblas_get_num_threads", "openblas_set_num_threads"),
)
_CORENAME = ("scipy_openblas_get_corename64_", "openblas_get_corename64_", "scipy_openblas_get_corename",
             "openblas_get_corename")
#: OpenBLAS's cores whose sgemm has small-matrix kernels (no packing) for m·n·k ≤ 100³
#: (``kernel/x86_64/sgemm_small_kernel_permit_skylakex.c``): its AVX-512 cores.
_SMALL_SGEMM_CORES = ("skylakex", "cooperlake", "sapphirerapids")


def _candidate_paths() -> list[str]:
    """Shared libraries that may be numpy's BLAS: numpy's bundled ones first, then OpenBLAS/MKL/BLAS libraries
    already mapped into this process (numpy is imported, so its BLAS is among them)."""
    root = pathlib.Path(np.__file__).resolve().parent
    bundled = []
    for folder in (root.parent / "numpy.libs", root / ".dylibs"):
        bundled += sorted(glob.glob(str(folder / "*openblas*")))
    mapped = []
    try:
        for line in pathlib.Path("/proc/self/maps").read_text().splitlines():
            path = line.split()[-1] if len(line.split()) >= 6 else ""
            name = os.path.basename(path).lower()
            if path.startswith("/") and any(k in name for k in ("openblas", "mkl_rt", "blas")) and path not in mapped:
                mapped.append(path)
    except OSError:  # not Linux
        pass
    return list(dict.fromkeys(bundled + mapped))


def _address(lib, name: str) -> int | None:
    try:
        return ctypes.cast(getattr(lib, name), ctypes.c_void_p).value
    except AttributeError:
        return None


@functools.cache
def _bind() -> dict:
    """Find numpy's CBLAS, register the two symbols, and return what was found (see :func:`library`)."""
    found: dict = {"path": None, "sizes": None, "threads": None}
    for path in _candidate_paths():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for sizes, names in (("int64", _ILP64), ("int32", _LP64)):
            for s_name, d_name in names:
                s_addr, d_addr = _address(lib, s_name), _address(lib, d_name)
                if s_addr and d_addr:
                    found.update(path=path, sizes=sizes, s_addr=s_addr, d_addr=d_addr)
                    if sizes == "int64":  # the same library's gemv, named alike (sgemm -> sgemv)
                        found["sv_addr"] = _address(lib, s_name.replace("gemm", "gemv"))
                        found["dv_addr"] = _address(lib, d_name.replace("gemm", "gemv"))
                    break
            if found["path"]:
                break
        if found["path"]:
            for get_name, set_name in _THREADS:
                if hasattr(lib, get_name) and hasattr(lib, set_name):
                    get, set_ = getattr(lib, get_name), getattr(lib, set_name)
                    get.restype, get.argtypes = ctypes.c_int, []
                    set_.restype, set_.argtypes = None, [ctypes.c_int]
                    found["threads"] = (get, set_)
                    break
            for name in _CORENAME:
                if hasattr(lib, name):
                    fn = getattr(lib, name)
                    fn.restype, fn.argtypes = ctypes.c_char_p, []
                    found["core"] = (fn() or b"").decode(errors="replace")
                    break
            break
    if found["sizes"] == "int64":
        _llvm.add_symbol(SGEMM, found["s_addr"])
        _llvm.add_symbol(DGEMM, found["d_addr"])
    else:
        from . import cblas_adapters  # numba cfuncs with the int64 signature (compiled, cached)

        if found["sizes"] == "int32":
            _llvm.add_symbol(cblas_adapters.SGEMM_LP64, found["s_addr"])
            _llvm.add_symbol(cblas_adapters.DGEMM_LP64, found["d_addr"])
            s_fn, d_fn = cblas_adapters.lp64_adapters()
        else:
            s_fn, d_fn = cblas_adapters.numpy_dot_adapters()
        _llvm.add_symbol(SGEMM, s_fn.address)
        _llvm.add_symbol(DGEMM, d_fn.address)
    if found.get("sv_addr") and found.get("dv_addr"):
        _llvm.add_symbol(SGEMV, found["sv_addr"])
        _llvm.add_symbol(DGEMV, found["dv_addr"])
        found["gemv"] = "cblas"
    else:  # adapters that forward to the gemm symbols registered above (so cached kernels always link)
        from . import cblas_adapters

        sv_fn, dv_fn = cblas_adapters.gemv_adapters()
        _llvm.add_symbol(SGEMV, sv_fn.address)
        _llvm.add_symbol(DGEMV, dv_fn.address)
        found["gemv"] = "gemm adapter"
    return found


def library() -> dict:
    """``{'path': file or None, 'sizes': 'int64' | 'int32' | None (np.dot adapter), 'threads': bool,
    'gemv': 'cblas' | 'gemm adapter'}``."""
    found = _bind()
    return {"path": found["path"], "sizes": found["sizes"], "threads": found["threads"] is not None,
            "gemv": found["gemv"], "core": found.get("core")}


@functools.cache
def small_sgemm_work() -> int:
    """m·n·k up to which numpy's BLAS runs a float32 product (no transposes) with small-matrix kernels that skip
    packing the operands: 100³ for an OpenBLAS on one of :data:`_SMALL_SGEMM_CORES`, else 0 (not known). For
    thin products (K·N of a few thousand) those kernels are the faster ones (benchmarks/RESULTS.md), so the
    convolution forwards cut their chunks to fit (:func:`tinynn.kernels.conv2d.forward_step`)."""
    core = (_bind().get("core") or "").lower()
    return 100**3 if core in _SMALL_SGEMM_CORES else 0


def small_gemm_work(dtype, product_work: int = 0) -> int:
    """The limit of :func:`small_sgemm_work` for products in ``dtype``: it in float32, else 0 (none known). The
    ``small`` of :func:`tinynn.kernels.blas.gemm_small` and the convolutions' chunks.

    ``product_work``: the multiply-adds of the whole product the caller will cut into blocks (0: not known). Above
    :func:`small_blocks_up_to` it gets 0 (one call, OpenBLAS's packed kernels)."""
    if np.dtype(dtype) != np.float32:
        return 0
    cap = small_blocks_up_to()
    return 0 if cap and product_work > cap else small_sgemm_work()


#: On Intel's AVX-512 cores (two 512-bit FMA units per core) OpenBLAS's packed sgemm outruns its small-matrix
#: kernels on products larger than this: the recurrent inference loops' per-step products at 512 units ran 1.2-1.6×
#: faster as one call, and so did one core's 2²⁴ (LSTM(256) on 128 rows, or on 64 as a Bidirectional's direction),
#: while up to 2²³ the blocks stay ahead or even (benchmarks/RESULTS.md). On AMD's Zen 4 (512-bit
#: operations on 256-bit units) the blocks won at 512 units too, so no limit there.
INTEL_SMALL_BLOCKS_UP_TO = 1 << 23


def small_blocks_up_to() -> int:
    """The product size (multiply-adds) up to which cutting a float32 product into small-kernel blocks pays: 0 for
    any size, else :data:`INTEL_SMALL_BLOCKS_UP_TO` on an Intel CPU (``vendor_id`` of /proc/cpuinfo)."""
    return INTEL_SMALL_BLOCKS_UP_TO if cpu_vendor() == "GenuineIntel" else 0


@functools.cache
def cpu_vendor() -> str:
    """The CPU's vendor string (``GenuineIntel``, ``AuthenticAMD``, ...) from /proc/cpuinfo; "" where unknown."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("vendor_id"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def can_limit_threads() -> bool:
    """True when :func:`single_threaded` can hold numpy's BLAS to one thread (an OpenBLAS)."""
    return _bind()["threads"] is not None


_BOUND: dict = {"threads": None}  # what _bind found, set at import (below)
_lock = threading.Lock()
_depth = 0
_saved = 1


def enter_single_threaded() -> None:
    """Hold numpy's BLAS to one thread until the matching :func:`exit_single_threaded` (counted, thread-safe)."""
    global _depth, _saved
    api = _BOUND["threads"]
    if api is None:
        return
    get, set_ = api
    with _lock:
        if _depth == 0:
            _saved = get()
            if _saved != 1:
                set_(1)
        _depth += 1


def exit_single_threaded() -> None:
    global _depth
    api = _BOUND["threads"]
    if api is None:
        return
    with _lock:
        _depth -= 1
        if _depth == 0 and _saved != 1:
            api[1](_saved)


@contextmanager
def single_threaded() -> Iterator[None]:
    """Inside the block numpy's BLAS runs each product on its calling thread (a no-op when it cannot be set)."""
    enter_single_threaded()
    try:
        yield
    finally:
        exit_single_threaded()


def blas_single_threaded(fn: Callable) -> Callable:
    """Decorator: run ``fn`` inside :func:`single_threaded`."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with single_threaded():
            return fn(*args, **kwargs)

    return wrapper


_BOUND = _bind()
