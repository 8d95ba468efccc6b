r"""1-D max and average pooling kernels (channels-last), forward and backward.

Symbols: x (B, L, C), pool size P, stride S, ``pl`` steps of padding on the left (from
:func:`tinynn.kernels.conv.conv_padding` with K = P, d = 1), y (B, Lo, C). Window t covers the steps
``W_t = [t·S - pl, t·S - pl + P) ∩ [0, L)``: padding never takes part (for 'same' every window holds
at least one real step, because (Lo-1)·S < L and the total padding is < P).

Max (padding acts as -∞)::

    y[b,t,c]   = max_{i ∈ W_t} x[b,i,c],     a[b,t,c] = the FIRST i ∈ W_t reaching the max
    dx[b,i,c]  = Σ_{t: a[b,t,c] = i} dy[b,t,c]

(TF's MaxPoolGrad also routes the whole gradient of a window to its first maximal element.)

Average ('same' divides by the number of real steps, as TF does)::

    n_t        = |W_t|
    y[b,t,c]   = Σ_{i ∈ W_t} x[b,i,c] / n_t
    dx[b,i,c]  = Σ_{t: i ∈ W_t} dy[b,t,c] / n_t

The readable statement, and the NumPy twin of each numba kernel here: :mod:`tinynn.kernels.reference.pooling`.
"""

from __future__ import annotations

import numba
import numpy as np

from .jitcache import load_without_refresh
from .parallel import kernel_entry, share_batch

__all__ = [
    "avg_pool1d_backward", "avg_pool1d_forward", "global_avg_pool1d_backward", "global_avg_pool1d_forward",
    "global_max_pool1d_backward", "global_max_pool1d_forward", "max_pool1d_backward", "max_pool1d_forward",
    "max_pool1d_values",
]


def _check(L, P, S, pl, l_out):
    if P < 1 or S < 1 or pl < 0 or l_out < 1 or pl >= P or (l_out - 1) * S - pl >= L:
        raise ValueError(f"pool1d: inconsistent geometry L={L}, pool={P}, stride={S}, pad_left={pl}, L_out={l_out}")


# --------------------------------------------------------------------------- numba
# The max kernels work on 1-D row slices (``xb[i]`` is step i's C channels) with a branch-free select, which
# LLVM vectorises over the channels; the backward zeroes dx one sample at a time and checks the argmax in the
# same pass (measurements: benchmarks/RESULTS.md).
@numba.njit(cache=True, nogil=True)
def _max_fwd(x, P, S, pl, y, a):  # pragma: no cover - compiled
    B, L, C = x.shape
    l_out = y.shape[1]
    for b in range(B):
        xb, yb, ab = x[b], y[b], a[b]
        for t in range(l_out):
            lo = max(t * S - pl, 0)
            hi = min(t * S - pl + P, L)
            yt, at, first = yb[t], ab[t], xb[lo]
            for c in range(C):
                yt[c] = first[c]
                at[c] = lo
            for i in range(lo + 1, hi):
                xi = xb[i]
                for c in range(C):
                    v = xi[c]
                    better = (v > yt[c]) | ((v != v) & (yt[c] == yt[c]))  # strict: the first maximum wins;
                    # a NaN beats every number (the first NaN wins), as NumPy's max and argmax
                    yt[c] = v if better else yt[c]
                    at[c] = i if better else at[c]
    return y, a


@numba.njit(cache=True, nogil=True)
def _max_values(x, P, S, pl, y):  # pragma: no cover - compiled
    """y of :func:`_max_fwd` without the argmax (inference): the same select, so the same bits."""
    B, L, C = x.shape
    l_out = y.shape[1]
    for b in range(B):
        xb, yb = x[b], y[b]
        for t in range(l_out):
            lo = max(t * S - pl, 0)
            hi = min(t * S - pl + P, L)
            yt, first = yb[t], xb[lo]
            for c in range(C):
                yt[c] = first[c]
            for i in range(lo + 1, hi):
                xi = xb[i]
                for c in range(C):
                    v = xi[c]
                    yt[c] = v if (v > yt[c]) | (v != v) else yt[c]  # a NaN stays, as in _max_fwd
    return y


@numba.njit(cache=True, nogil=True)
def _max_bwd(dy, a, dx):  # pragma: no cover - compiled
    """dx (allocated empty) <- the scatter-add; zeroed one sample at a time, so it is still in cache for the
    scatter. Returns False (dx then unspecified) if an argmax step lies outside [0, L)."""
    B, l_out, C = dy.shape
    L = dx.shape[1]
    for b in range(B):
        dyb, ab, dxb = dy[b], a[b], dx[b]
        for i in range(L):
            dxi = dxb[i]
            for c in range(C):
                dxi[c] = 0
        for t in range(l_out):
            dyt, at = dyb[t], ab[t]
            for c in range(C):
                i = at[c]
                if i < 0 or i >= L:
                    return False
                dxb[i, c] += dyt[c]
    return True


@numba.njit(cache=True, nogil=True)
def _avg_fwd(x, P, S, pl, y):  # pragma: no cover - compiled
    B, L, C = x.shape
    l_out = y.shape[1]
    for b in range(B):
        for t in range(l_out):
            lo = max(t * S - pl, 0)
            hi = min(t * S - pl + P, L)
            for i in range(lo, hi):
                for c in range(C):
                    y[b, t, c] += x[b, i, c]
            n = hi - lo
            for c in range(C):
                y[b, t, c] /= n
    return y


@numba.njit(cache=True, nogil=True)
def _avg_bwd(dy, P, S, pl, dx):  # pragma: no cover - compiled
    B, l_out, C = dy.shape
    L = dx.shape[1]
    for b in range(B):
        for t in range(l_out):
            lo = max(t * S - pl, 0)
            hi = min(t * S - pl + P, L)
            n = hi - lo
            for i in range(lo, hi):
                for c in range(C):
                    dx[b, i, c] += dy[b, t, c] / n
    return dx


# --------------------------------------------------------------------------- public (checked) entry points
@kernel_entry
def max_pool1d_forward(x: np.ndarray, pool_size: int, stride: int, pad_left: int, l_out: int):
    """(y (B, Lo, C), a (B, Lo, C) int64 argmax steps) for x (B, L, C), the batch shared out over the cores."""
    _check(x.shape[1], pool_size, stride, pad_left, l_out)
    B, _, C = x.shape
    x = np.ascontiguousarray(x)
    y, a = np.empty((B, l_out, C), dtype=x.dtype), np.empty((B, l_out, C), dtype=np.int64)
    P, S, pl = int(pool_size), int(stride), int(pad_left)
    share_batch(lambda _, b0, b1: _max_fwd(x[b0:b1], P, S, pl, y[b0:b1], a[b0:b1]), B, 4 * x.size, blas=False)
    return y, a


def max_pool1d_values(x: np.ndarray, pool_size: int, stride: int, pad_left: int, l_out: int) -> np.ndarray:
    """y (B, Lo, C) of :func:`max_pool1d_forward` alone (no argmax steps: an inference call), the batch shared out
    over the cores (:func:`tinynn.kernels.parallel.share_batch`)."""
    _check(x.shape[1], pool_size, stride, pad_left, l_out)
    B, _, C = x.shape
    x = np.ascontiguousarray(x)
    y = np.empty((B, l_out, C), dtype=x.dtype)
    P, S, pl = int(pool_size), int(stride), int(pad_left)
    share_batch(lambda _, b0, b1: _max_values(x[b0:b1], P, S, pl, y[b0:b1]), B, 4 * x.size, blas=False)
    return y


@kernel_entry
def max_pool1d_backward(dy: np.ndarray, a: np.ndarray, length: int) -> np.ndarray:
    """dx (B, L, C): each dy[b,t,c] added at step a[b,t,c]."""
    if dy.shape != a.shape or dy.ndim != 3:
        raise ValueError(f"max_pool1d_backward: dy {dy.shape} and argmax {a.shape} do not fit L={length}")
    dx = np.empty((dy.shape[0], int(length), dy.shape[2]), dtype=dy.dtype)
    dy, a = np.ascontiguousarray(dy), np.ascontiguousarray(a, dtype=np.int64)
    routed = share_batch(lambda _, b0, b1: _max_bwd(dy[b0:b1], a[b0:b1], dx[b0:b1]), dy.shape[0], 4 * dx.size,
                         blas=False)  # fmt: skip
    if not all(routed):
        raise ValueError(f"max_pool1d_backward: argmax steps outside [0, {length}) for dy {dy.shape}")
    return dx


@kernel_entry
def avg_pool1d_forward(x: np.ndarray, pool_size: int, stride: int, pad_left: int, l_out: int) -> np.ndarray:
    """y (B, Lo, C): the mean of each window's real steps."""
    _check(x.shape[1], pool_size, stride, pad_left, l_out)
    y = np.zeros((x.shape[0], l_out, x.shape[2]), dtype=x.dtype)
    return _avg_fwd(np.ascontiguousarray(x), int(pool_size), int(stride), int(pad_left), y)


@kernel_entry
def avg_pool1d_backward(dy: np.ndarray, length: int, pool_size: int, stride: int, pad_left: int) -> np.ndarray:
    """dx (B, L, C): dy[b,t,c] / n_t spread over window t."""
    _check(length, pool_size, stride, pad_left, dy.shape[1])
    dx = np.zeros((dy.shape[0], int(length), dy.shape[2]), dtype=dy.dtype)
    return _avg_bwd(np.ascontiguousarray(dy), int(pool_size), int(stride), int(pad_left), dx)


# --------------------------------------------------------------------------- global pooling (all steps, no mask)
@numba.njit(error_model="numpy", cache=True, nogil=True)
def _global_fwd(x, is_max, y):  # pragma: no cover - compiled
    """y[b] = max or mean over the steps of x[b] (row slices, the steps in order as NumPy sums them)."""
    B, L, C = x.shape
    for b in range(B):
        yb, xb = y[b], x[b]
        first = xb[0]
        for c in range(C):
            yb[c] = first[c]
        for i in range(1, L):
            xi = xb[i]
            if is_max:
                for c in range(C):
                    v = xi[c]
                    yb[c] = v if (v > yb[c] or v != v) else yb[c]  # a NaN stays, as in NumPy's max
            else:
                for c in range(C):
                    yb[c] += xi[c]
        if not is_max:
            n = yb.dtype.type(L)
            for c in range(C):
                yb[c] = yb[c] / n


@numba.njit(error_model="numpy", cache=True, nogil=True)
def _global_max_bwd(x, y, dy, dx):  # pragma: no cover - compiled
    """dx[b,i] = [x[b,i] = y[b]] · (1 / n[b]) · dy[b], n the number of tied maxima."""
    B, L, C = x.shape
    n = np.empty(C, x.dtype)
    for b in range(B):
        xb, yb, dxb, dyb = x[b], y[b], dx[b], dy[b]
        for c in range(C):
            n[c] = 0
        for i in range(L):
            xi = xb[i]
            for c in range(C):
                n[c] += 1 if xi[c] == yb[c] else 0
        for c in range(C):
            n[c] = n.dtype.type(1) / n[c]
        for i in range(L):
            xi, di = xb[i], dxb[i]
            for c in range(C):
                di[c] = (n[c] if xi[c] == yb[c] else n[c] * 0) * dyb[c]


@numba.njit(error_model="numpy", cache=True, nogil=True)
def _global_avg_bwd(dy, dx):  # pragma: no cover - compiled
    B, L, C = dx.shape
    for b in range(B):
        dyb = dy[b]
        for i in range(L):
            di = dx[b, i]
            for c in range(C):
                di[c] = dyb[c] / dyb.dtype.type(L)


@kernel_entry
def global_max_pool1d_forward(x: np.ndarray) -> np.ndarray:
    """y (B, C) = max over the steps of x (B, L, C), L >= 1."""
    x = np.ascontiguousarray(x)
    y = np.empty((x.shape[0], x.shape[2]), x.dtype)
    _global_fwd(x, True, y)
    return y


@kernel_entry
def global_max_pool1d_backward(x: np.ndarray, y: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """dx (B, L, C): dy shared equally by the steps that reached the max y."""
    B, L, C = x.shape
    if y.shape != (B, C) or dy.shape != (B, C):
        raise ValueError(f"global_max_pool1d_backward: y {y.shape} and dy {dy.shape} must be {(B, C)}")
    dx = np.empty_like(x)
    _global_max_bwd(np.ascontiguousarray(x), np.ascontiguousarray(y, x.dtype), np.ascontiguousarray(dy, x.dtype), dx)
    return dx


@kernel_entry
def global_avg_pool1d_forward(x: np.ndarray) -> np.ndarray:
    """y (B, C) = mean over the steps of x (B, L, C), L >= 1."""
    x = np.ascontiguousarray(x)
    y = np.empty((x.shape[0], x.shape[2]), x.dtype)
    _global_fwd(x, False, y)
    return y


@kernel_entry
def global_avg_pool1d_backward(dy: np.ndarray, length: int) -> np.ndarray:
    """dx (B, L, C) = dy / L at every step."""
    dy = np.ascontiguousarray(dy)
    dx = np.empty((dy.shape[0], int(length), dy.shape[1]), dy.dtype)
    _global_avg_bwd(dy, dx)
    return dx


load_without_refresh(globals())  # cached kernels load without refreshing numba (tinynn.kernels.jitcache)
