r"""Every matrix product of the fast kernels: one single-threaded BLAS call per piece, pieces spread over the cores.

Inside numba (the recurrent loops call it at every step)::

    gemm(a, b, out, trans_a, trans_b, beta)      out = op(a) @ op(b) + β·out,   op(x) = xᵀ if trans_x else x

calls numpy's own BLAS (:mod:`tinynn.kernels.cblas`) once, whatever the sizes: a, b and out may be row slices
or column blocks of larger C-contiguous arrays (their row strides are passed as leading dimensions), a
transposed operand is not copied, and β = 1 adds the product into ``out`` (a step's input projection, a
running gradient). The only requirement is a unit stride along each row. A product with one row or one column
(M = 1 or N = 1: a recurrent step at batch 1, a Dense(1) head) goes to BLAS's ``?gemv`` instead, with the one
row or column of an operand passed as a vector whose increment is its row stride: OpenBLAS's ``?gemm`` packs the
whole other operand even then, and took 3-5× as long as ``?gemv`` on AVX2 machines (benchmarks/RESULTS.md).

From Python, ``matmul`` (a @ b), ``matmul_nt`` (a @ bᵀ) and ``matmul_tn`` (aᵀ @ b, the weight gradients, whose
summed axis is the B·T rows of a layer) split a large product into pieces — row blocks of the output, column
blocks for a wide ``matmul_tn``, or, for a ``matmul_tn`` whose summed axis is long next to its output, ranges of
that axis whose partial sums are added in range order (``SUMMED_SPLIT_MIN``) — and run them on the cores
(:mod:`tinynn.kernels.parallel`), each piece one BLAS call on one thread (``cblas.single_threaded``: OpenBLAS's
own threads meet at a barrier that is very slow on shared cores). ``grouped_matmul`` / ``grouped_matmul_tn``
do the same for the convolutions' (G, m, k) @ (G, k, n) products, one group after another.

The NumPy statement of each product is the product itself (``a @ b``, ``a @ b.T``, ``a.T @ b``): the reference
path (:mod:`tinynn.kernels.reference`) writes it that way.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import types
from numba.extending import overload

from . import cblas
from .jitcache import load_without_refresh
from .parallel import even_ranges, in_piece, kernel_scope, num_threads, share

__all__ = ["gemm", "gemm_small", "grouped_matmul", "grouped_matmul_tn", "matmul", "matmul_nt", "matmul_tn"]

_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112


def _signature(dtype):
    p, n = types.CPointer(dtype), types.int64
    return types.void(types.int32, types.int32, types.int32, n, n, n, dtype, p, n, p, n, dtype, p, n)


_SGEMM = types.ExternalFunction(cblas.SGEMM, _signature(types.float32))
_DGEMM = types.ExternalFunction(cblas.DGEMM, _signature(types.float64))


def _gemv_signature(dtype):
    p, n = types.CPointer(dtype), types.int64
    return types.void(types.int32, types.int32, n, n, dtype, p, n, p, n, dtype, p, n)


_SGEMV = types.ExternalFunction(cblas.SGEMV, _gemv_signature(types.float32))
_DGEMV = types.ExternalFunction(cblas.DGEMV, _gemv_signature(types.float64))


def _cblas_gemm(ta, tb, M, N, K, a, lda, b, ldb, beta, c, ldc):
    """CBLAS ?gemm, row-major, α = 1 (numba only: resolved by dtype below)."""
    raise NotImplementedError


@overload(_cblas_gemm)
def _cblas_gemm_impl(ta, tb, M, N, K, a, lda, b, ldb, beta, c, ldc):
    if c.dtype == types.float32:
        fn, cast = _SGEMM, np.float32
    elif c.dtype == types.float64:
        fn, cast = _DGEMM, np.float64
    else:
        return None

    def impl(ta, tb, M, N, K, a, lda, b, ldb, beta, c, ldc):
        fn(np.int32(_ROW_MAJOR), np.int32(ta), np.int32(tb), M, N, K, cast(1.0), a.ctypes, lda, b.ctypes, ldb,
           cast(beta), c.ctypes, ldc)

    return impl


def _cblas_gemv(t, m, n, a, lda, x, incx, beta, y, incy):
    """CBLAS ?gemv, row-major, α = 1: y = op(A) x + β y with A (m, n) at ``a`` (numba only, by dtype below)."""
    raise NotImplementedError


@overload(_cblas_gemv)
def _cblas_gemv_impl(t, m, n, a, lda, x, incx, beta, y, incy):
    if y.dtype == types.float32:
        fn, cast = _SGEMV, np.float32
    elif y.dtype == types.float64:
        fn, cast = _DGEMV, np.float64
    else:
        return None

    def impl(t, m, n, a, lda, x, incx, beta, y, incy):
        fn(np.int32(_ROW_MAJOR), np.int32(t), m, n, cast(1.0), a.ctypes, lda, x.ctypes, incx, cast(beta), y.ctypes,
           incy)

    return impl


@numba.njit(inline="always")
def _leading_dimension(x):
    """The row stride of a 2-D operand in elements (BLAS's ld); -1 if its rows are not unit-stride."""
    rows, cols = x.shape
    if cols > 1 and x.strides[1] != x.itemsize:
        return -1
    ld = x.strides[0] // x.itemsize if rows > 1 else cols
    return max(ld, cols, 1) if rows <= 1 or ld >= cols else -1


@numba.njit(error_model="numpy", cache=True, nogil=True)
def gemm(a, b, out, trans_a, trans_b, beta):
    """``out = op(a) @ op(b) + β·out`` in one BLAS call (module docstring); raises on shapes that do not fit.

    (Inlining it into the recurrent loops, ``inline="always"``, saved its own compiles but made the loops'
    compile slower by more: benchmarks/RESULTS.md.)"""
    if trans_a:
        K, M = a.shape
    else:
        M, K = a.shape
    if trans_b:
        N, K2 = b.shape
    else:
        K2, N = b.shape
    if K2 != K or out.shape[0] != M or out.shape[1] != N:
        raise ValueError("blas.gemm: operand shapes do not fit")
    if M == 0 or N == 0:
        return
    if K == 0:  # an empty sum: out = β·out
        for i in range(M):
            row = out[i]
            for j in range(N):
                row[j] = row[j] * beta if beta != 0 else 0
        return
    lda, ldb, ldc = _leading_dimension(a), _leading_dimension(b), _leading_dimension(out)
    if lda < 0 or ldb < 0 or ldc < 0:
        raise ValueError("blas.gemm: every row must be unit-stride")
    if M == 1 or N == 1:
        if beta == 0:  # y = 0 first: BLAS's own β = 0 may leave a NaN of the uninitialised output (0·NaN)
            for i in range(M):
                row = out[i]
                for j in range(N):
                    row[j] = 0
        if M == 1:  # out[0, :] = op(b)ᵀ x, x = op(a)'s one row (a column of a when trans_a: stride lda)
            incx = lda if trans_a else 1
            if trans_b:  # b (N, K): y = b x
                _cblas_gemv(_NO_TRANS, N, K, b, ldb, a, incx, beta, out, 1)
            else:  # b (K, N): y = bᵀ x
                _cblas_gemv(_TRANS, K, N, b, ldb, a, incx, beta, out, 1)
        else:  # out[:, 0] (stride ldc) = op(a) x, x = op(b)'s one column (a column of b unless trans_b)
            incx = 1 if trans_b else ldb
            if trans_a:  # a (K, M): y = aᵀ x
                _cblas_gemv(_TRANS, K, M, a, lda, b, incx, beta, out, ldc)
            else:  # a (M, K): y = a x
                _cblas_gemv(_NO_TRANS, M, K, a, lda, b, incx, beta, out, ldc)
        return
    _cblas_gemm(_TRANS if trans_a else _NO_TRANS, _TRANS if trans_b else _NO_TRANS, M, N, K, a, lda, b, ldb, beta,
                out, ldc)


#: :func:`gemm_small` cuts ``out``'s columns into blocks of at least this many, else its rows into blocks of at least
#: ``_SMALL_MIN_ROWS``: thinner blocks ran slower than one product (benchmarks/RESULTS.md).
_SMALL_MIN_COLS = 64
_SMALL_MIN_ROWS = 8
#: ... and when neither fits, a product with a small output and a long summed axis (a weight gradient aᵀ b: M·N up
#: to about 2,200, K of thousands) into ranges of at least this many of K, added into ``out`` one after the other:
#: on one core of an Intel Xeon OpenBLAS's packed kernels ran (27 × K) @ (K × 32) at 19-31 GMAC/s and its
#: small-matrix kernels on ranges of ≤ 1,024 at 36-42, (32 × K) @ (K × 64) 26 against 42; from 64 × 64 on the ranges
#: ran no faster or slower (benchmarks/RESULTS.md).
_SMALL_MIN_SUMMED = 448
WHOLE, COLUMNS, ROWS, SUMMED = 0, 1, 2, 3


@numba.njit(error_model="numpy", cache=True, nogil=True)
def small_blocks(M, N, K, small, trans_b):
    """How :func:`gemm_small` cuts an (M, N) = (M, K) @ (K, N) product: ``(WHOLE, M)`` (one call), ``(COLUMNS,
    step)`` (blocks of ``step`` columns, the last one shorter), ``(ROWS, step)`` (blocks of ``step`` rows) or
    ``(SUMMED, step)`` (ranges of ``step`` of K). Columns when blocks of ≤ ``small`` multiply-adds keep at least
    ``_SMALL_MIN_COLS`` of them, else rows when they keep at least ``_SMALL_MIN_ROWS`` and b is not read transposed
    (a @ bᵀ in row blocks ran 1.1-4× slower than whole), else ranges of K when they keep at least
    ``_SMALL_MIN_SUMMED`` of it; even blocks, in multiples of 16 columns or 8 rows, ranges in multiples of 16."""
    if small <= 0 or M * N * K <= small or M <= 1 or N <= 1:
        return WHOLE, M
    fit = small // (M * K)
    if fit >= _SMALL_MIN_COLS:
        step = fit // 16 * 16
        blocks = (N + step - 1) // step
        return COLUMNS, ((N + blocks - 1) // blocks + 15) // 16 * 16
    fit = small // (N * K)
    if fit >= _SMALL_MIN_ROWS and not trans_b:
        step = fit // 16 * 16 if fit >= 16 else _SMALL_MIN_ROWS
        blocks = (M + step - 1) // step
        return ROWS, ((M + blocks - 1) // blocks + 7) // 8 * 8
    fit = small // (M * N)
    if fit >= _SMALL_MIN_SUMMED:
        return SUMMED, fit // 16 * 16
    return WHOLE, M


@numba.njit(inline="always")
def gemm_small(a, b, out, trans_a, trans_b, beta, small):
    """``out = op(a) @ op(b) + β·out`` as :func:`gemm`, in blocks of at most ``small`` multiply-adds each when the
    whole product has more (:func:`small_blocks`; ``small`` ≤ 0: one call). A block is ``out``'s columns j0:j1 with
    ``op(b)``'s, or ``out``'s rows i0:i1 with ``op(a)``'s (every element of ``out`` is still one whole sum over K),
    or, for a small ``out`` and a long K (a weight gradient), a range k0:k1 of K, the ranges' products added into
    ``out`` in order.
    With ``small`` = :func:`tinynn.kernels.cblas.small_sgemm_work` numpy's OpenBLAS runs each block with its
    small-matrix kernels, which skip packing the operands: the recurrent loops' per-step products (a few dozen rows
    by a few hundred columns) ran 1.1-1.9× faster so (benchmarks/RESULTS.md).

    Inlined into the caller only to hand ``_gemm_blocks`` strided views and runtime booleans, whatever the caller's
    layouts and literals: one compiled specialisation per dtype serves every loop."""
    _gemm_blocks(a[:, :], b[:, :], out[:, :], small >= -1 and trans_a, small >= -1 and trans_b, beta, small)


@numba.njit(error_model="numpy", cache=True, nogil=True)
def _gemm_blocks(a, b, out, trans_a, trans_b, beta, small):
    """:func:`gemm_small` itself (:func:`_gemm_piece` runs the Python entry points' pieces through it). Its products
    get strided views, so that they share one ``gemm`` specialisation whatever the layouts it was called with."""
    M, N = out.shape
    K = a.shape[0] if trans_a else a.shape[1]
    how, step = small_blocks(M, N, K, small, trans_b)
    a, b, out = a[:, :], b[:, :], out[:, :]
    if how == COLUMNS:
        for j0 in range(0, N, step):
            j1 = min(N, j0 + step)
            gemm(a, b[j0:j1] if trans_b else b[:, j0:j1], out[:, j0:j1], trans_a, trans_b, beta)
    elif how == ROWS:
        for i0 in range(0, M, step):
            i1 = min(M, i0 + step)
            gemm(a[:, i0:i1] if trans_a else a[i0:i1], b, out[i0:i1], trans_a, trans_b, beta)
    elif how == SUMMED:  # out = β·out + the ranges' products, added in range order
        for k0 in range(0, K, step):
            k1 = min(K, k0 + step)
            gemm(a[k0:k1] if trans_a else a[:, k0:k1], b[:, k0:k1] if trans_b else b[k0:k1], out, trans_a, trans_b,
                 beta if k0 == 0 else 1.0)  # fmt: skip
    else:
        gemm(a, b, out, trans_a, trans_b, beta)


#: Which part of a product :func:`_gemm_piece` runs: rows i0:i1 of ``out``, its columns i0:i1, or the range i0:i1 of
#: the summed axis K (the whole of ``out``).
OUT_ROWS, OUT_COLUMNS, SUMMED_RANGE = 0, 1, 2


@numba.njit(error_model="numpy", cache=True, nogil=True)
def _gemm_piece(a, b, out, trans_a, trans_b, beta, small, part, i0, i1):
    """One piece of ``out = op(a) @ op(b) + β·out`` (:func:`gemm_small` on it), cut here from the whole arrays:

        OUT_ROWS      out[i0:i1]     = op(a)[i0:i1] @ op(b)
        OUT_COLUMNS   out[:, i0:i1]  = op(a) @ op(b)[:, i0:i1]
        SUMMED_RANGE  out            = op(a)[:, i0:i1] @ op(b)[i0:i1]

    The Python entry points hand every piece over this way rather than as a slice: numba compiles one
    specialisation per layout of its arguments, and a slice's layout ('C' for the whole array, 'A' for a column
    block) depends on the batch size and the thread count. A layer's warm-up (:mod:`tinynn.kernels.warmup`) runs on
    one sample, in one piece; cutting the pieces inside numba, the full batch's pieces find the warm-up's
    specialisation instead of compiling another one in the middle of a train step."""
    if part == OUT_ROWS:
        a_part = a[:, i0:i1] if trans_a else a[i0:i1]
        gemm_small(a_part, b, out[i0:i1], trans_a, trans_b, beta, small)
    elif part == OUT_COLUMNS:
        b_part = b[i0:i1] if trans_b else b[:, i0:i1]
        gemm_small(a, b_part, out[:, i0:i1], trans_a, trans_b, beta, small)
    else:
        a_part = a[i0:i1] if trans_a else a[:, i0:i1]
        b_part = b[:, i0:i1] if trans_b else b[i0:i1]
        gemm_small(a_part, b_part, out, trans_a, trans_b, beta, small)


# --------------------------------------------------------------------------- Python entry points
#: Products with at least this many multiply-adds are split over the cores. A parallel region costs some tens of
#: µs (waking the other thread, handing the GIL back and forth), about what a product of 2^22 multiply-adds takes
#: on one core; below 2^23 the split measured no faster (benchmarks/RESULTS.md).
_PARALLEL_WORK = 1 << 23
#: The size from which a layer's products go through these entry points (and its fused bias + activation tail)
#: rather than through NumPy's own calls.
PARALLEL_WORK = 1 << 21
#: Below this many multiply-adds a product is one ``np.matmul`` call (the same BLAS, less call overhead).
_NUMPY_WORK = 1 << 18
#: Pieces per thread for a split product: one (each piece pulled costs a GIL hand-off; with 2 per thread, meant to
#: let a core that another process slows down hand work to the other, Dense's train step was slower even on the
#: shared machine: benchmarks/RESULTS.md).
_PIECES_PER_THREAD = 1


def _rows_unit_stride(x: np.ndarray, dtype) -> np.ndarray:
    """``x`` itself when BLAS can read it as it is (dtype, unit stride along rows), else a C-contiguous copy."""
    if x.dtype == dtype and (x.shape[-1] <= 1 or x.strides[-1] == x.itemsize) and x.strides[0] >= 0:
        return x
    return np.ascontiguousarray(x, dtype=dtype)


def _split(length: int, work: float, run_block) -> None:
    """``run_block(i0, i1)`` over blocks of ``range(length)``, pulled by the cores (one block when small, when
    already inside a parallel piece, or when BLAS cannot be held to one thread and threads itself)."""
    with kernel_scope():
        if work < _PARALLEL_WORK or in_piece() or not cblas.can_limit_threads() or length < 2:
            run_block(0, length)
            return
        share(lambda _, i0, i1: run_block(i0, i1), even_ranges(length, num_threads() * _PIECES_PER_THREAD), work)


#: aᵀ @ b (a weight gradient) splits its summed axis K over the cores, one range each, when K is at least this and at
#: least ``SUMMED_SPLIT_RATIO`` · max(M, N): each core then runs the whole M × N output at its full width over half
#: the rows, and adding the partial sums is cheap next to the products (M·N numbers per extra core against M·N·K/2
#: multiply-adds). Below that, blocks of the output (no partial sums) measured faster (benchmarks/RESULTS.md).
SUMMED_SPLIT_MIN = 3072
SUMMED_SPLIT_RATIO = 4


def _summed_split(a, b, out, trans_b: bool, work: float) -> bool:
    """``out = aᵀ op(b)`` with a's rows (the summed axis) cut into ranges pulled by the cores: range 0's product
    written into ``out``, each other range's into a buffer of its own, then added to ``out`` in range order, so the
    bits depend only on the ranges (the thread count), not on which core ran which range. False (nothing done) when
    the product is too short or too wide for that, or does not split (one core, inside a parallel piece)."""
    K, (M, N) = a.shape[0], out.shape
    if (K < max(SUMMED_SPLIT_MIN, SUMMED_SPLIT_RATIO * max(M, N)) or work < _PARALLEL_WORK or in_piece()
            or not cblas.can_limit_threads()):  # fmt: skip
        return False
    ranges = even_ranges(K, num_threads() * _PIECES_PER_THREAD)
    if len(ranges) < 2:
        return False
    parts = np.empty((len(ranges) - 1, M, N), out.dtype)
    index = {k0: i for i, (k0, _) in enumerate(ranges)}

    def rows(_, k0, k1):
        i = index[k0]
        _gemm_piece(a, b, out if i == 0 else parts[i - 1], True, trans_b, 0.0, 0, SUMMED_RANGE, k0, k1)

    with kernel_scope():
        share(rows, ranges, work)
        for part in parts:
            out += part
    return True


def _product(a, b, out, trans_a: bool, trans_b: bool, epilogue=None) -> np.ndarray:
    dtype = np.result_type(a, b)
    a, b = _rows_unit_stride(a, dtype), _rows_unit_stride(b, dtype)
    M = a.shape[1] if trans_a else a.shape[0]
    K = a.shape[0] if trans_a else a.shape[1]
    N = b.shape[0] if trans_b else b.shape[1]
    if out is None:
        out = np.empty((M, N), dtype)
    work = float(M) * N * K
    if work < _NUMPY_WORK and epilogue is None:  # small: NumPy's call costs less than a numba dispatch
        with kernel_scope():
            return np.matmul(a.T if trans_a else a, b.T if trans_b else b, out=out)
    if trans_a and epilogue is None and _summed_split(a, b, out, trans_b, work):
        return out
    if not trans_a or N < 2 * M or epilogue is not None:  # row blocks of the output (op(a)'s rows)
        small = cblas.small_gemm_work(dtype)

        def rows(i0, i1):
            _gemm_piece(a, b, out, trans_a, trans_b, 0.0, small, OUT_ROWS, i0, i1)
            if epilogue is not None:
                epilogue(i0, i1)

        _split(M, work, rows)
    else:  # column blocks: aᵀ @ b with a long summed axis, no partial sums to add
        _split(N, work, lambda j0, j1: _gemm_piece(a, b, out, trans_a, trans_b, 0.0, 0, OUT_COLUMNS, j0, j1))
    return out


def matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None, epilogue=None) -> np.ndarray:
    """``a @ b`` for 2-D arrays (single-threaded BLAS calls; large products split over the cores).

    ``epilogue(i0, i1)``, when given, runs right after the rows i0:i1 of the product are written, on the same
    core, while they are still in its cache (a layer's bias and activation)."""
    return _product(a, b, out, False, False, epilogue)


def matmul_nt(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``a @ bᵀ`` for 2-D arrays, without copying b."""
    return _product(a, b, out, False, True)


def matmul_tn(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``aᵀ @ b`` for 2-D arrays (a long summed axis: the weight gradients), without copying a."""
    return _product(a, b, out, True, False)


def grouped_matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """(G, m, k) @ (G, k, n) -> (G, m, n), one :func:`matmul` per group (into ``out`` when given)."""
    G = a.shape[0]
    if out is None:
        out = np.empty((G, a.shape[1], b.shape[2]), np.result_type(a, b))
    for g in range(G):
        _product(a[g], b[g], out[g], False, False)
    return out


def grouped_matmul_tn(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None,
                      accumulate: bool = False) -> np.ndarray:  # fmt: skip
    """aᵀ @ b for a (G, n, m) and b (G, n, p), summing over the long axis n (B·L or B·Lo): a weight gradient.

    ``accumulate``: ``out += aᵀ @ b`` (β = 1, one BLAS call per group on this thread: a running gradient summed
    chunk by chunk) instead of ``out = aᵀ @ b``."""
    G = a.shape[0]
    if out is None:
        out = np.empty((G, a.shape[2], b.shape[2]), np.result_type(a, b))
    for g in range(G):
        if accumulate:  # with a small output, in ranges of the summed axis for the small-matrix kernels
            with kernel_scope():
                _gemm_blocks(_rows_unit_stride(a[g], out.dtype), _rows_unit_stride(b[g], out.dtype), out[g], True,
                             False, 1.0, cblas.small_gemm_work(out.dtype))  # fmt: skip
        else:
            _product(a[g], b[g], out[g], True, False)
    return out


load_without_refresh(globals())  # cached kernels load without refreshing numba (tinynn.kernels.jitcache)
