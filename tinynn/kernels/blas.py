r"""Every matrix product of the fast kernels: single-threaded BLAS calls, split over cores by tinynn itself.

Two families of callers:

* the recurrent layers (2-D products over the B·T rows of a sequence, and the per-step products of the numba
  loops): ``gemm``, ``gemm_nt``, ``gemm_tn`` (numba, callable from inside other numba kernels) and their Python
  entry points ``matmul``, ``matmul_nt``, ``matmul_tn`` (large products split in two halves on two cores);
* the convolutions (one product per group): ``grouped_matmul`` ``(G, m, k) @ (G, k, n)`` and
  ``grouped_matmul_tn`` ``(G, n, m)ᵀ @ (G, n, p)``.

Why the BLAS calls are kept single-threaded: OpenBLAS runs a GEMM on every core once M·N·K exceeds 65536·4
(``interface/gemm.c``), and its threads meet at a barrier that is very slow when the cores are shared with
other processes (measurements: ``benchmarks/RESULTS.md``, "Kernel design measurements"). tinynn splits work
over cores itself (:mod:`tinynn.kernels.parallel`), where it knows the pieces are independent.

The NumPy statement of each product is the product itself (``a @ b``, ``a @ b.T``, ``a.T @ b``): the
reference path (:mod:`tinynn.kernels.reference`) writes it that way.
"""

from __future__ import annotations

import numba
import numpy as np

from .parallel import run_parallel

__all__ = ["gemm", "gemm_nt", "gemm_tn", "grouped_matmul", "grouped_matmul_tn", "matmul", "matmul_nt", "matmul_tn"]

#: OpenBLAS's single-thread limit on M·N·K: ``gemm`` / ``gemm_nt`` split their rows into calls below it.
_SERIAL_GEMM_WORK = 65536 * 4


@numba.njit(cache=True, nogil=True)
def gemm(a, b, out):
    """``out = a @ b`` (a (M, K), b (K, N)) via BLAS, in row blocks small enough to stay single-threaded."""
    M, K = a.shape
    N = b.shape[1]
    rows = max(1, _SERIAL_GEMM_WORK // max(1, K * N))
    for r0 in range(0, M, rows):
        r1 = min(r0 + rows, M)
        np.dot(a[r0:r1], b, out[r0:r1])


@numba.njit(cache=True, nogil=True)
def gemm_nt(a, b, out):
    """``out = a @ bᵀ`` (a (M, K), b (N, K)), row blocks as ``gemm``."""
    M, K = a.shape
    N = b.shape[0]
    bt = b.T
    rows = max(1, _SERIAL_GEMM_WORK // max(1, K * N))
    for r0 in range(0, M, rows):
        r1 = min(r0 + rows, M)
        np.dot(a[r0:r1], bt, out[r0:r1])


@numba.njit(error_model="numpy", cache=True, nogil=True)
def gemm_tn(a, b, out):
    """``out = aᵀ @ b`` (a (K, M), b (K, N)) for a long summed axis K (the B·T rows of a layer).

    Not BLAS: BLAS would need K-chunks of ~64 rows to stay single-threaded, whose packing overhead made it
    slower than this loop (4 rows of a and b per pass over ``out``, which stays in L1).
    """
    K, M = a.shape
    N = b.shape[1]
    for i in range(M):
        oi = out[i]
        for j in range(N):
            oi[j] = 0
    k = 0
    while k + 4 <= K:
        a0, a1, a2, a3 = a[k], a[k + 1], a[k + 2], a[k + 3]
        b0, b1, b2, b3 = b[k], b[k + 1], b[k + 2], b[k + 3]
        for i in range(M):
            x0, x1, x2, x3 = a0[i], a1[i], a2[i], a3[i]
            oi = out[i]
            for j in range(N):
                oi[j] += x0 * b0[j] + x1 * b1[j] + x2 * b2[j] + x3 * b3[j]
        k += 4
    while k < K:
        ak, bk = a[k], b[k]
        for i in range(M):
            x = ak[i]
            oi = out[i]
            for j in range(N):
                oi[j] += x * bk[j]
        k += 1


# Products this large (multiply-adds) are split in two halves that run on two cores (kernels.parallel).
_PARALLEL_WORK = 1 << 22


def _c(a: np.ndarray, dtype) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=dtype)


def _split_rows(kernel, a, b, out, work):
    M = a.shape[0]
    if work < _PARALLEL_WORK or M < 2:
        kernel(a, b, out)
        return
    half = M // 2
    run_parallel(lambda: kernel(a[:half], b, out[:half]), lambda: kernel(a[half:], b, out[half:]))


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` for 2-D arrays (BLAS, single-threaded calls; large ones split over two cores)."""
    out = np.empty((a.shape[0], b.shape[1]), np.result_type(a, b))
    a, b = _c(a, out.dtype), _c(b, out.dtype)
    _split_rows(gemm, a, b, out, a.size * b.shape[1])
    return out


def matmul_nt(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ bᵀ`` for 2-D arrays (as :func:`matmul`)."""
    out = np.empty((a.shape[0], b.shape[0]), np.result_type(a, b))
    a, b = _c(a, out.dtype), _c(b, out.dtype)
    _split_rows(gemm_nt, a, b, out, a.size * b.shape[0])
    return out


def matmul_tn(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``aᵀ @ b`` for 2-D arrays with a long summed axis (:func:`gemm_tn`; large ones split over two cores)."""
    dtype = np.result_type(a, b)
    a, b = _c(a, dtype), _c(b, dtype)
    out = np.empty((a.shape[1], b.shape[1]), dtype)
    K = a.shape[0]
    if a.size * b.shape[1] < _PARALLEL_WORK or K < 2:
        gemm_tn(a, b, out)
        return out
    half = K // 2
    other = np.empty_like(out)
    run_parallel(lambda: gemm_tn(a[:half], b[:half], out), lambda: gemm_tn(a[half:], b[half:], other))
    out += other
    return out


def grouped_matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """(G, m, k) @ (G, k, n) -> (G, m, n): every FLOP of the convolutions goes through here (one BLAS call per
    group; a plain 2-D matmul when G = 1). ``benchmarks/bench_conv.py`` wraps this function to measure the
    GEMM share of a step."""
    if a.shape[0] == 1:
        return np.matmul(a[0], b[0], out=None if out is None else out[0])[None]
    return np.matmul(a, b, out=out)


def grouped_matmul_tn(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """aᵀ @ b for a (G, n, m) and b (G, n, p), summing over the long axis n (B·L or B·Lo): a weight gradient.

    Computed as (bᵀ @ a)ᵀ when m < p: the same product, in the orientation OpenBLAS runs fast when the cores
    are shared with other processes (the small-M-large-N one was many times slower there)."""
    if a.shape[2] < b.shape[2]:
        return grouped_matmul(b.transpose(0, 2, 1), a).transpose(0, 2, 1)
    return grouped_matmul(a.transpose(0, 2, 1), b)
