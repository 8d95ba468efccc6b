r"""Stand-ins for ``tinynn_cblas_?gemm`` where numpy's BLAS is not a 64-bit-size CBLAS (:mod:`tinynn.kernels.cblas`).

Both take the int64 signature the kernels are compiled against (row-major only, which is all tinynn uses)::

    gemm(order, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc):   C = α op(A) op(B) + β C

* ``lp64_adapters``: forward to a CBLAS with 32-bit sizes (registered as ``tinynn_cblas_?gemm_lp64``);
* ``numpy_dot_adapters``: no CBLAS found: view the operands (``numba.carray`` with their leading dimensions),
  multiply with numba's ``np.dot`` (scipy's BLAS), and combine with β C.

Imported only when needed, so the usual case compiles neither.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import types

from .jitcache import load_without_refresh

SGEMM_LP64, DGEMM_LP64 = "tinynn_cblas_sgemm_lp64", "tinynn_cblas_dgemm_lp64"
ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112


def _signature(dtype, size):
    p = types.CPointer(dtype)
    return types.void(types.int32, types.int32, types.int32, size, size, size, dtype, p, size, p, size, dtype, p, size)


_S_LP64 = types.ExternalFunction(SGEMM_LP64, _signature(types.float32, types.int32))
_D_LP64 = types.ExternalFunction(DGEMM_LP64, _signature(types.float64, types.int32))


def lp64_adapters():
    """(sgemm, dgemm) cfuncs with int64 sizes that call the 32-bit-size CBLAS."""

    @numba.cfunc(_signature(types.float32, types.int64), cache=True)
    def sgemm(order, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc):  # pragma: no cover - compiled
        _S_LP64(order, ta, tb, np.int32(M), np.int32(N), np.int32(K), alpha, A, np.int32(lda), B, np.int32(ldb),
                beta, C, np.int32(ldc))

    @numba.cfunc(_signature(types.float64, types.int64), cache=True)
    def dgemm(order, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc):  # pragma: no cover - compiled
        _D_LP64(order, ta, tb, np.int32(M), np.int32(N), np.int32(K), alpha, A, np.int32(lda), B, np.int32(ldb),
                beta, C, np.int32(ldc))

    return sgemm, dgemm


@numba.njit(cache=True)
def _operand(P, trans, rows, cols, ld):  # pragma: no cover - compiled
    """op(X) of a row-major operand at P: X is (rows, cols) (op = identity) or (cols, rows) (op = transpose)."""
    if trans == TRANS:
        return np.ascontiguousarray(numba.carray(P, (cols, ld))[:, :rows].T)
    return np.ascontiguousarray(numba.carray(P, (rows, ld))[:, :cols])


@numba.njit(cache=True)
def _dot_gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc):  # pragma: no cover - compiled
    if M == 0 or N == 0:
        return
    c = numba.carray(C, (M, ldc))[:, :N]
    if K == 0:
        prod = np.zeros((M, N), c.dtype)
    else:
        prod = np.dot(_operand(A, ta, M, K, lda), _operand(B, tb, K, N, ldb))
    for i in range(M):
        for j in range(N):
            c[i, j] = alpha * prod[i, j] + (beta * c[i, j] if beta != 0 else 0)


def numpy_dot_adapters():
    """(sgemm, dgemm) cfuncs that compute the product with numba's ``np.dot``."""

    @numba.cfunc(_signature(types.float32, types.int64), cache=True)
    def sgemm(order, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc):  # pragma: no cover - compiled
        _dot_gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc)

    @numba.cfunc(_signature(types.float64, types.int64), cache=True)
    def dgemm(order, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc):  # pragma: no cover - compiled
        _dot_gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc)

    return sgemm, dgemm


# --------------------------------------------------------------------------- gemv through gemm
#: The gemm symbols of :mod:`tinynn.kernels.cblas` (registered before the gemv adapters are compiled).
_SGEMM_NAME, _DGEMM_NAME = "tinynn_cblas_sgemm", "tinynn_cblas_dgemm"


def _gemv_signature(dtype):
    p, n = types.CPointer(dtype), types.int64
    return types.void(types.int32, types.int32, n, n, dtype, p, n, p, n, dtype, p, n)


_S_GEMM = types.ExternalFunction(_SGEMM_NAME, _signature(types.float32, types.int64))
_D_GEMM = types.ExternalFunction(_DGEMM_NAME, _signature(types.float64, types.int64))


def gemv_adapters():
    """(sgemv, dgemv) cfuncs with the int64 CBLAS ``?gemv`` signature, computed by the registered gemm symbol.

    ``y = α op(A) x + β y`` with A (m, n) row-major is the gemm ``Y = α op(A) X + β Y`` with X an (op(A)'s
    columns, 1) matrix of leading dimension incx and Y an (op(A)'s rows, 1) matrix of leading dimension incy."""

    @numba.cfunc(_gemv_signature(types.float32), cache=True)
    def sgemv(order, ta, m, n, alpha, A, lda, X, incx, beta, Y, incy):  # pragma: no cover - compiled
        rows, cols = (n, m) if ta == TRANS else (m, n)
        _S_GEMM(order, ta, np.int32(NO_TRANS), rows, np.int64(1), cols, alpha, A, lda, X, incx, beta, Y, incy)

    @numba.cfunc(_gemv_signature(types.float64), cache=True)
    def dgemv(order, ta, m, n, alpha, A, lda, X, incx, beta, Y, incy):  # pragma: no cover - compiled
        rows, cols = (n, m) if ta == TRANS else (m, n)
        _D_GEMM(order, ta, np.int32(NO_TRANS), rows, np.int64(1), cols, alpha, A, lda, X, incx, beta, Y, incy)

    return sgemv, dgemv


load_without_refresh(globals())  # cached kernels load without refreshing numba (tinynn.kernels.jitcache)
