r"""The bias-and-activation tail of a layer, forward and backward, each in one pass over memory.

Symbols: z (N, F) the pre-activations without bias (the rows are B·Lo positions, C-contiguous), b (F,) the
bias, y = act(z + b), dy = dL/dy.  act is one of the activations the numba kernels implement
(``fastmath.activation_code``: linear, relu, tanh, sigmoid, hard_sigmoid); its derivative is written from
the output y::

    forward:   y = act(z + b)   (z + b is not stored: the layer forms its logits on request)
    backward:  dz = act'(y) ⊙ dy;   db[f] = Σ_n dz[n, f]   (accumulated in float64, rounded once)

From ``parallel.PARALLEL_WORK`` numbers on, the rows run in ranges that the cores pull
(:func:`~tinynn.kernels.parallel.share_batch`); the backward's db is then the ranges' float64 partial sums added
in range order, rounded once (the bits depend on the thread count only).

NumPy makes two or three passes over memory each way (``z += b``, ``act(z)``; ``z > 0``, ``⊙``, ``sum``): the
readable version is :mod:`tinynn.kernels.reference.bias_activation`, which ``tests/test_bias_activation.py``
compares these with.
"""

from __future__ import annotations

import numba
import numpy as np

from . import warmup
from .fastmath import RELU, activate_row, derivative_row, relu_fast
from .jitcache import load_without_refresh
from .parallel import kernel_entry, share_batch, sum_in_order

__all__ = [
    "activation_gradient_broadcast_rows",
    "activation_gradient_rows",
    "bias_activation_backward",
    "bias_activation_forward",
    "bias_activation_rows",
]


@numba.njit(error_model="numpy", cache=True, nogil=True)
def _forward(z, bias, code, y):  # pragma: no cover - compiled
    N, F = z.shape
    if code == RELU and z.ctypes.data == y.ctypes.data:  # in place: one array, which LLVM vectorises (two arrays
        for n in range(N):  # that overlap fail its runtime overlap check and run the scalar loop)
            yn = y[n]
            for f in range(F):
                v = yn[f] + bias[f]
                yn[f] = relu_fast(v)
        return
    if code == RELU:  # the common case, as one vectorised select per row
        for n in range(N):
            zn, yn = z[n], y[n]
            for f in range(F):
                v = zn[f] + bias[f]
                yn[f] = relu_fast(v)
        return
    for n in range(N):
        zn, yn = z[n], y[n]
        for f in range(F):
            yn[f] = zn[f] + bias[f]
        activate_row(yn, code)


@numba.njit(error_model="numpy", cache=True, nogil=True)
def _backward(y, dy, code, use_bias, dz, db):  # pragma: no cover - compiled
    N, F = y.shape
    acc = np.zeros(F, np.float64)
    for n in range(N):
        dzn, dyn, yn = dz[n], dy[n], y[n]
        if code == RELU:
            for f in range(F):
                dzn[f] = dyn[f] if yn[f] > 0 else dyn[f] * 0
        else:
            derivative_row(dzn, yn, code)
            for f in range(F):
                dzn[f] *= dyn[f]
        if use_bias:
            for f in range(F):
                acc[f] += dzn[f]
    for f in range(F):
        db[f] = acc[f]


@numba.njit(error_model="numpy", cache=True, nogil=True)
def _backward_broadcast(y, g, p0, P, code, use_bias, dz, db):  # pragma: no cover - compiled
    """:func:`_backward` for dy[n] = g[(p0 + n) // P]: the gradient of a mean over each image's (or sequence's) P
    positions, which is the same row g[b] at every position of image b. y, dz (N, F) are the rows of positions
    p0 .. p0 + N - 1 (a chunk may start and end inside an image), g (B, F). Each row's operations are _backward's,
    in the same order, so the bits are the same, without reading P copies of g. (The row body is _backward's
    written out again: sharing it, as an inline helper or by running _backward as this loop with P = 1, made
    _backward slower: benchmarks/RESULTS.md.)"""
    N, F = y.shape
    acc = np.zeros(F, np.float64)
    n = 0
    while n < N:  # image by image: two divisions per image rather than per row
        b = (p0 + n) // P
        gb, end = g[b], min(N, (b + 1) * P - p0)
        for m in range(n, end):
            dzn, yn = dz[m], y[m]
            if code == RELU:
                for f in range(F):
                    dzn[f] = gb[f] if yn[f] > 0 else gb[f] * 0
            else:
                derivative_row(dzn, yn, code)
                for f in range(F):
                    dzn[f] *= gb[f]
            if use_bias:
                for f in range(F):
                    acc[f] += dzn[f]
        n = end
    for f in range(F):
        db[f] = acc[f]


#: The two loops, for kernels that apply the tail to pieces of their own output while a piece is in the cache (the
#: image kernels): ``bias_activation_rows(z, bias, code, y)`` writes y = act(z + bias) for z, y (N, F) (y may be z:
#: in place); ``activation_gradient_rows(y, dy, code, use_bias, dz, db)`` writes dz = act'(y) ⊙ dy and db = Σ_n dz;
#: ``activation_gradient_broadcast_rows(y, g, p0, P, code, use_bias, dz, db)`` does the same for the gradient of a
#: global average pooling, dy[n] = g[(p0 + n) // P], read from g (B, F) without writing dy out.
bias_activation_rows = _forward
activation_gradient_rows = _backward
activation_gradient_broadcast_rows = _backward_broadcast


def _rows(a: np.ndarray, dtype) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=dtype).reshape(-1, a.shape[-1])


@kernel_entry
def bias_activation_forward(z: np.ndarray, bias: np.ndarray | None, code: int, out: np.ndarray | None = None
                            ) -> np.ndarray:
    """y = act(z + b) for z (..., F); z itself is left as it is (``z + b`` is never stored). Returns y (written
    into ``out`` when given: C-contiguous, z's shape and dtype)."""
    F = z.shape[-1]
    b = np.zeros(F, z.dtype) if bias is None else np.ascontiguousarray(bias, dtype=z.dtype)
    if b.shape != (F,):
        raise ValueError(f"bias_activation_forward: bias {b.shape} does not fit z {z.shape}")
    if out is None:
        out = np.empty(z.shape, z.dtype)
    elif out.shape != z.shape or out.dtype != z.dtype or not out.flags.c_contiguous:
        raise ValueError(f"bias_activation_forward: out {out.shape} {out.dtype} does not fit z {z.shape} {z.dtype}")
    rows, y = _rows(z, z.dtype), out.reshape(-1, F)
    share_batch(lambda _, r0, r1: _forward(rows[r0:r1], b, code, y[r0:r1]), rows.shape[0], rows.size, blas=False)
    return out


@kernel_entry
def bias_activation_backward(y: np.ndarray, dy: np.ndarray, code: int, bias_sum: bool = True):
    """(dz, db): dz = act'(y) ⊙ dy (y's shape and dtype), db = Σ over every axis but the last (None if
    ``bias_sum`` is False)."""
    if dy.shape != y.shape:
        raise ValueError(f"bias_activation_backward: dy {dy.shape} does not match y {y.shape}")
    F = y.shape[-1]
    dz = np.empty(y.shape, y.dtype)
    y_rows, dz_rows, use_bias = _rows(y, y.dtype), dz.reshape(-1, F), bool(bias_sum)
    N = y_rows.shape[0]

    def ranges(kernel, args):  # kernel(*args(r0, r1), code, use_bias, dz, db) on row ranges; db: Σ dz in order
        def piece(_, r0, r1):
            part = np.empty(F, np.float64)
            kernel(*args(r0, r1), code, use_bias, dz_rows[r0:r1], part)
            return part

        return sum_in_order(share_batch(piece, N, y_rows.size, blas=False)).astype(y.dtype)  # (rounded once)

    if dy.ndim == 3 and dy.strides[1] == 0 and dy.shape[1] > 1:  # dy[b, t] = dy[b, 0]: a mean's gradient, a view
        g, T = np.ascontiguousarray(dy[:, 0], y.dtype), y.shape[1]
        if warmup.kernel_ready(_backward_broadcast, y_rows, g, 0, T, code, use_bias, dz_rows, np.empty(F, np.float64)):
            db = ranges(_backward_broadcast, lambda r0, r1: (y_rows[r0:r1], g, r0, T))
            return dz, (db if bias_sum else None)
    dy_rows = _rows(dy, y.dtype)
    db = ranges(_backward, lambda r0, r1: (y_rows[r0:r1], dy_rows[r0:r1]))
    return dz, (db if bias_sum else None)


load_without_refresh(globals())  # cached kernels load without refreshing numba (tinynn.kernels.jitcache)
