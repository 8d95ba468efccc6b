r"""2-D max and average pooling kernels (channels-last) in numba, forward and backward.

The math and symbols are those of :mod:`tinynn.kernels.reference.pooling2d` (read it first): window (i, j) holds
the real pixels ``R_i × C_j``, max pooling pads with -∞ and routes a window's gradient to its first maximal pixel
in row-major order (TF's MaxPoolGrad), average pooling divides by the number of real pixels ``n_ij``. A NaN
pixel is the largest value: it makes its window's max NaN and takes the window's gradient (as NumPy's max/argmax).

Max pooling keeps no argmax: the backward finds each window's first maximum again from x and y (both kept by the
layer anyway), so a forward pass writes nothing but y — inference pays nothing for the backward's bookkeeping. (A
Conv2D that pools its own output in a training forward keeps a byte per window instead of its output:
:func:`max_pool2d_backward_from_index`.) Every inner loop runs over the C channels of one pixel (contiguous,
vectorised by LLVM); the comparisons are branch-free selects, and the backward's "already routed" flags are uint8
combined with ``&`` and ``|=`` (Python's short-circuit ``and``/``or`` on booleans compiled to branches that kept
LLVM from vectorising the channel loop: the backward ran about twice as long, benchmarks/RESULTS.md). The forward's
common case, a whole 2×2 window, keeps the running max in a register for one loop over the channels (the general
loop re-reads and re-writes y[b, i, j] for every pixel, which LLVM cannot keep in registers since y might alias x:
more than twice as slow). The batch is shared out over the cores (:func:`tinynn.kernels.parallel.share_batch`).

:func:`max_pool2d_backward_to_logits` is the backward of a max pooling and the activation gradient of the layer
below it in one pass (``MaxPooling2D.backward_through``): for a = act(z) that layer's output, dz = act'(a) ⊙ dx and
db = Σ dz, written over a, without the pooling's dx. :func:`max_pool2d_backward_from_index` does the same for a 2×2,
stride-2, unpadded pooling from its windows' first maxima (k, uint8, kept by a convolution that pooled its own output
in a training forward: ``Conv2D.forward_into``) and its output, without a.
"""

from __future__ import annotations

import numba
import numpy as np

from . import warmup
from .fastmath import LINEAR, RELU, derivative_row
from .jitcache import load_without_refresh
from .parallel import share_batch, sum_in_order

__all__ = [
    "avg_pool2d_backward",
    "avg_pool2d_forward",
    "max_pool2d_backward",
    "max_pool2d_backward_from_index",
    "max_pool2d_backward_to_logits",
    "max_pool2d_forward",
]



@numba.njit(cache=True, nogil=True)
def _window(i, S, P, pad, size):  # pragma: no cover - compiled
    lo = i * S - pad
    return max(lo, 0), min(lo + P, size)


@numba.njit(cache=True, nogil=True)
def _is_max(v, m):  # pragma: no cover - compiled
    """v is the window's max m: equal, or both NaN (a NaN window max is its first NaN pixel)."""
    return (v == m) | ((v != v) & (m != m))


@numba.njit(cache=True, inline="always")
def window_max(m, v):  # pragma: no cover - compiled
    """The running maximum m of a pooling window after its next pixel v (row-major order): v if it is larger or NaN
    (a NaN window's maximum is its first NaN pixel), else m. Every max pooling kernel compares with this."""
    return v if (v > m) | (v != v) else m


@numba.njit(cache=True, inline="always")
def window_max_first(m, first, v, tap):  # pragma: no cover - compiled
    """(:func:`window_max` (m, v), the tap of the window's first maximum): a window's running maximum m and the tap
    ``first`` of its first maximum so far, after its next pixel v (tap ``tap``, row-major order). The first maximum
    moves to v if v is larger or is the window's first NaN: the pixel the backward routes the window's gradient to."""
    return window_max(m, v), (tap if (v > m) | ((v != v) & (m == m)) else first)


@numba.njit(error_model="numpy", cache=True, nogil=True)
def _max_fwd(x, PH, PW, SH, SW, pt, pl, y):  # pragma: no cover - compiled
    """x and y read and written through their flat views at unsigned offsets (pixel views and signed offsets cost
    more than the comparisons: benchmarks/RESULTS.md)."""
    B, H, W, C = x.shape
    _, Ho, Wo, _ = y.shape
    xf, yf = x.reshape(-1), y.reshape(-1)
    width = np.uint64(C)
    row, col = np.uint64(W * C), np.uint64(C)
    for b in range(B):
        for i in range(Ho):
            h0, h1 = _window(i, SH, PH, pt, H)
            for j in range(Wo):
                w0, w1 = _window(j, SW, PW, pl, W)
                o = np.uint64(((b * Ho + i) * Wo + j) * C)
                p00 = np.uint64(((b * H + h0) * W + w0) * C)
                if h1 - h0 == 2 and w1 - w0 == 2:  # a whole 2×2 window: one loop, the running max in a register
                    p01, p10 = p00 + col, p00 + row
                    p11 = p10 + col
                    for c in range(width):  # the same comparisons in the same (row-major) order as the loops below
                        yf[o + c] = window_max(window_max(window_max(xf[p00 + c], xf[p01 + c]), xf[p10 + c]),
                                               xf[p11 + c])  # fmt: skip
                    continue
                for c in range(width):
                    yf[o + c] = xf[p00 + c]
                for h in range(h0, h1):
                    for w in range(w0, w1):
                        q = np.uint64(((b * H + h) * W + w) * C)
                        for c in range(width):
                            yf[o + c] = window_max(yf[o + c], xf[q + c])
    return y


@numba.njit(error_model="numpy", cache=True, nogil=True)
def _max_bwd(x, y, dy, PH, PW, SH, SW, pt, pl, dx):  # pragma: no cover - compiled
    """dx <- 0 (one sample at a time), then each window's dy added at its first pixel equal to y (row-major)."""
    B, H, W, C = x.shape
    _, Ho, Wo, _ = y.shape
    routed = np.zeros(C, np.uint8)
    for b in range(B):
        dxb = dx[b].reshape(H * W * C)
        for k in range(H * W * C):
            dxb[k] = 0
        for i in range(Ho):
            h0, h1 = _window(i, SH, PH, pt, H)
            for j in range(Wo):
                w0, w1 = _window(j, SW, PW, pl, W)
                yv, gv = y[b, i, j], dy[b, i, j]
                for c in range(C):
                    routed[c] = 0
                for h in range(h0, h1):
                    for w in range(w0, w1):
                        xv, dv = x[b, h, w], dx[b, h, w]
                        for c in range(C):
                            hit = _is_max(xv[c], yv[c]) & (routed[c] == 0)
                            dv[c] += gv[c] if hit else gv[c] * 0
                            routed[c] |= hit
    return dx


@numba.njit(error_model="numpy", cache=True, nogil=True)
def _max_bwd_disjoint(x, y, dy, PH, PW, SH, SW, pt, pl, dx):  # pragma: no cover - compiled
    """:func:`_max_bwd` for windows that do not overlap (SH >= PH, SW >= PW): every pixel of dx lies in one window
    at most, so it is written once (dy where it is its window's first maximum, else 0) in one pass over x, without
    zeroing dx first and without adding into it. ``routed[j·C + c]``: window (i, j) of the current row of windows has
    sent channel c's gradient already (pixels are visited row-major, as the windows' taps are). The arrays are read
    through their flat views at unsigned offsets, as in :func:`_max_fwd`."""
    B, H, W, C = x.shape
    _, Ho, Wo, _ = y.shape
    routed = np.zeros(Wo * C, np.uint8)
    zero = dx.dtype.type(0)
    xf, yf, gf, df = x.reshape(-1), y.reshape(-1), dy.reshape(-1), dx.reshape(-1)
    width = np.uint64(C)
    for b in range(B):
        for h in range(H):
            i, r = (h + pt) // SH, (h + pt) % SH
            row_read = i < Ho and r < PH
            if row_read and h == max(i * SH - pt, 0):  # the first real row of window row i
                for k in range(Wo * C):
                    routed[k] = 0
            for w in range(W):
                j, s = (w + pl) // SW, (w + pl) % SW
                o = np.uint64(((b * H + h) * W + w) * C)
                if not (row_read and j < Wo and s < PW):  # a pixel no window reads
                    for c in range(width):
                        df[o + c] = zero
                    continue
                oy, orr = np.uint64(((b * Ho + i) * Wo + j) * C), np.uint64(j * C)
                for c in range(width):
                    hit = _is_max(xf[o + c], yf[oy + c]) & (routed[orr + c] == 0)
                    df[o + c] = gf[oy + c] if hit else zero
                    routed[orr + c] |= hit
    return dx


@numba.njit(error_model="numpy", cache=True, nogil=True)
def _max_bwd_disjoint_act(x, y, dy, PH, PW, SH, SW, pt, pl, code, dz, db):  # pragma: no cover - compiled
    """:func:`_max_bwd_disjoint` and then the layer below's activation gradient in the same pass: x = a = act(z) is
    that layer's output, and each pixel's dz = act'(a) ⊙ dx is written where dx would be (dz may be x itself: each
    pixel is read before it is written), db = Σ dz in float64 in pixel order. The arithmetic is the two passes'
    (``dx`` exactly 0 off the maxima, then ``tinynn.kernels.bias_activation.activation_gradient_rows``), so the
    bits of dz are theirs. Flat views at unsigned offsets, as in :func:`_max_fwd`."""
    B, H, W, C = x.shape
    _, Ho, Wo, _ = y.shape
    routed = np.zeros(Wo * C, np.uint8)
    g = np.empty(C, dz.dtype)  # this pixel's dx
    d = np.empty(C, dz.dtype)  # act'(a) of this pixel
    zero = dz.dtype.type(0)
    acc = np.zeros(C, np.float64)
    xf, yf, gf, zf = x.reshape(-1), y.reshape(-1), dy.reshape(-1), dz.reshape(-1)
    width = np.uint64(C)
    for b in range(B):
        for h in range(H):
            i, r = (h + pt) // SH, (h + pt) % SH
            row_read = i < Ho and r < PH
            if row_read and h == max(i * SH - pt, 0):  # the first real row of window row i
                for k in range(Wo * C):
                    routed[k] = 0
            for w in range(W):
                j, s = (w + pl) // SW, (w + pl) % SW
                o = np.uint64(((b * H + h) * W + w) * C)
                if row_read and j < Wo and s < PW:
                    oy, orr = np.uint64(((b * Ho + i) * Wo + j) * C), np.uint64(j * C)
                    for c in range(width):
                        hit = _is_max(xf[o + c], yf[oy + c]) & (routed[orr + c] == 0)
                        g[c] = gf[oy + c] if hit else zero
                        routed[orr + c] |= hit
                else:  # a pixel no window reads
                    for c in range(width):
                        g[c] = zero
                if code == RELU:
                    for c in range(width):
                        zf[o + c] = g[c] if xf[o + c] > 0 else g[c] * 0
                else:
                    derivative_row(d, xf[o:o + width], code)
                    for c in range(width):
                        zf[o + c] = d[c] * g[c]
                for c in range(width):
                    acc[c] += zf[o + c]
    for c in range(C):
        db[c] = acc[c]


@numba.njit(error_model="numpy", cache=True, nogil=True)
def _max_bwd_from_index(y, k, dy, code, dz, db):  # pragma: no cover - compiled
    """:func:`_max_bwd_disjoint_act` for a 2×2, stride-2, unpadded pooling from y (B, Hp, Wp, C) and the windows'
    first maxima k (their taps 2r + s, uint8) instead of a: the first maximum's a is y, so its dz = act'(y) · dy
    (``code`` linear or ReLU, the two ways :func:`_max_bwd_disjoint_act` writes them), every other pixel's 0; dz
    (B, H, W, C) written pixel by pixel, db = Σ dz in float64 in pixel order: the bits of that kernel."""
    B, H, W, C = dz.shape
    _, Hp, Wp, _ = y.shape
    zero = dz.dtype.type(0)
    acc = np.zeros(C, np.float64)
    yf, kf, gf, zf = y.reshape(-1), k.reshape(-1), dy.reshape(-1), dz.reshape(-1)
    width = np.uint64(C)
    for b in range(B):
        for h in range(H):
            i, r = h // 2, h % 2
            for w in range(W):
                j, s = w // 2, w % 2
                o = np.uint64(((b * H + h) * W + w) * C)
                if i < Hp and j < Wp:
                    oy, tap_index = np.uint64(((b * Hp + i) * Wp + j) * C), np.uint8(2 * r + s)
                    if code == RELU:
                        for c in range(width):
                            g = gf[oy + c] if kf[oy + c] == tap_index else zero
                            zf[o + c] = g if yf[oy + c] > 0 else g * 0
                    else:
                        for c in range(width):
                            zf[o + c] = gf[oy + c] if kf[oy + c] == tap_index else zero
                else:  # a pixel no window reads
                    for c in range(width):
                        zf[o + c] = zero
                for c in range(width):
                    acc[c] += zf[o + c]
    for c in range(C):
        db[c] = acc[c]


@numba.njit(error_model="numpy", cache=True, nogil=True)
def _avg_fwd(x, PH, PW, SH, SW, pt, pl, y):  # pragma: no cover - compiled
    B, H, W, C = x.shape
    _, Ho, Wo, _ = y.shape
    for b in range(B):
        for i in range(Ho):
            h0, h1 = _window(i, SH, PH, pt, H)
            for j in range(Wo):
                w0, w1 = _window(j, SW, PW, pl, W)
                yv = y[b, i, j]
                for c in range(C):
                    yv[c] = 0
                for h in range(h0, h1):
                    for w in range(w0, w1):
                        xv = x[b, h, w]
                        for c in range(C):
                            yv[c] += xv[c]
                n = yv.dtype.type((h1 - h0) * (w1 - w0))
                for c in range(C):
                    yv[c] /= n
    return y


@numba.njit(error_model="numpy", cache=True, nogil=True)
def _avg_bwd(dy, PH, PW, SH, SW, pt, pl, dx):  # pragma: no cover - compiled
    B, H, W, C = dx.shape
    _, Ho, Wo, _ = dy.shape
    share = np.empty(C, dy.dtype)
    for b in range(B):
        dxb = dx[b].reshape(H * W * C)
        for k in range(H * W * C):
            dxb[k] = 0
        for i in range(Ho):
            h0, h1 = _window(i, SH, PH, pt, H)
            for j in range(Wo):
                w0, w1 = _window(j, SW, PW, pl, W)
                n = dy.dtype.type((h1 - h0) * (w1 - w0))
                gv = dy[b, i, j]
                for c in range(C):
                    share[c] = gv[c] / n
                for h in range(h0, h1):
                    for w in range(w0, w1):
                        dv = dx[b, h, w]
                        for c in range(C):
                            dv[c] += share[c]
    return dx


def _check(in_hw, pool, strides, pads, out_hw):
    (H, W), (PH, PW), (SH, SW), (pt, pl), (Ho, Wo) = in_hw, pool, strides, pads, out_hw
    for size, P, S, pad, out in ((H, PH, SH, pt, Ho), (W, PW, SW, pl, Wo)):
        if P < 1 or S < 1 or pad < 0 or out < 1 or pad >= P or (out - 1) * S - pad >= size:
            raise ValueError(f"pool2d: inconsistent geometry input {tuple(in_hw)}, pool {tuple(pool)}, strides "
                             f"{tuple(strides)}, pads {tuple(pads)}, output {tuple(out_hw)}")


def _run(kernel, B: int, size: int, call: tuple):
    """``kernel(*arrays, *args, out)`` on batch pieces (one per core for large inputs), ``call = (arrays, args,
    out)``: the arrays and ``out`` are batch-major and sliced per piece."""
    arrays, args, out = call
    share_batch(lambda k, b0, b1: kernel(*[a[b0:b1] for a in arrays], *args, out[b0:b1]), B, 4 * size, blas=False)
    return out


def _geometry_args(pool, strides, pads):
    return (int(pool[0]), int(pool[1]), int(strides[0]), int(strides[1]), int(pads[0]), int(pads[1]))


def max_pool2d_forward(x, pool, strides, pads, out_hw) -> np.ndarray:
    """y (B, Ho, Wo, C): each window's max over its real pixels."""
    _check(x.shape[1:3], pool, strides, pads, out_hw)
    x = np.ascontiguousarray(x)
    y = np.empty((x.shape[0], *out_hw, x.shape[3]), dtype=x.dtype)
    return _run(_max_fwd, x.shape[0], x.size, ((x,), _geometry_args(pool, strides, pads), y))


def disjoint_windows(pool, strides) -> bool:
    """Whether no two pooling windows overlap (strides >= pool along both axes): every pixel is in one window at
    most, which the one-pass backward kernels need."""
    return strides[0] >= pool[0] and strides[1] >= pool[1]


def max_pool2d_backward(x, y, dy, pool, strides, pads) -> np.ndarray:
    """dx (B, H, W, C): each window's dy at its first maximal pixel (row-major)."""
    if y.shape != dy.shape or y.ndim != 4 or x.ndim != 4 or x.shape[0] != y.shape[0] or x.shape[3] != y.shape[3]:
        raise ValueError(f"max_pool2d_backward: x {x.shape}, y {y.shape} and dy {dy.shape} do not fit")
    _check(x.shape[1:3], pool, strides, pads, y.shape[1:3])
    x, y, dy = (np.ascontiguousarray(a, dtype=x.dtype) for a in (x, y, dy))
    dx = np.empty(x.shape, dtype=x.dtype)
    kernel = _max_bwd_disjoint if disjoint_windows(pool, strides) else _max_bwd
    return _run(kernel, x.shape[0], x.size, ((x, y, dy), _geometry_args(pool, strides, pads), dx))


def max_pool2d_backward_to_logits(a, y, dy, pool, strides, pads, code: int,
                                  in_place: bool = False) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """(dz, db) for a max pooling of a = act(z), the output of the layer below (activation ``code``, written from
    its output: ``fastmath.derivative_row``): dz = act'(a) ⊙ dx with dx the pooling's gradient, db = Σ dz over every
    axis but the channels, in one pass without dx. Windows must not overlap (strides >= pool). ``in_place``: dz is
    written over a (which the caller no longer needs), so the pair's backward allocates nothing of a's size."""
    if y.shape != dy.shape or y.ndim != 4 or a.ndim != 4 or a.shape[0] != y.shape[0] or a.shape[3] != y.shape[3]:
        raise ValueError(f"max_pool2d_backward_to_logits: a {a.shape}, y {y.shape} and dy {dy.shape} do not fit")
    _check(a.shape[1:3], pool, strides, pads, y.shape[1:3])
    if not disjoint_windows(pool, strides):
        raise ValueError(f"max_pool2d_backward_to_logits: windows overlap (pool {tuple(pool)}, strides "
                         f"{tuple(strides)}); it needs strides >= pool")
    if in_place and not (a.flags.c_contiguous and a.flags.writeable):
        raise ValueError("max_pool2d_backward_to_logits: in_place needs a C-contiguous, writeable a")
    y, dy = (np.ascontiguousarray(v, dtype=a.dtype) for v in (y, dy))
    a = np.ascontiguousarray(a)
    dz = a if in_place else np.empty(a.shape, dtype=a.dtype)
    args = _geometry_args(pool, strides, pads)
    C = a.shape[3]

    def piece(_, b0, b1):
        db = np.empty(C, np.float64)
        _max_bwd_disjoint_act(a[b0:b1], y[b0:b1], dy[b0:b1], *args, int(code), dz[b0:b1], db)
        return db

    db = sum_in_order(share_batch(piece, a.shape[0], 4 * a.size, blas=False))
    return dz, db.astype(a.dtype)


def backward_to_logits_ready(dtype) -> bool:
    """Whether :func:`max_pool2d_backward_to_logits`'s numba kernel is compiled for ``dtype``; if not, it is compiled
    (or loaded) in the background and False is returned meanwhile (:func:`tinynn.kernels.warmup.kernel_ready`;
    always True in "wait" compile mode). A MaxPooling2D's warm-up compiles it (``warm_up_also``)."""
    return warmup.kernels_ready(_to_logits_ready, dtype,
                                lambda d: [(_max_bwd_disjoint_act, _backward_to_logits_sample(d))])


_to_logits_ready: set = set()  # dtypes backward_to_logits_ready found compiled


def _backward_to_logits_sample(dtype) -> tuple:
    """Arguments of :func:`_max_bwd_disjoint_act` with the numba types :func:`max_pool2d_backward_to_logits` passes
    for ``dtype``."""
    a = np.empty((1, 1, 1, 1), np.dtype(dtype))
    return (a, a, a, 1, 1, 1, 1, 0, 0, 0, a, np.empty(1, np.float64))


def max_pool2d_backward_from_index(y, k, dy, in_hw, code: int) -> tuple[np.ndarray, np.ndarray]:
    """(dz, db) of :func:`max_pool2d_backward_to_logits` for a 2×2, stride-2, unpadded max pooling of a = act(z)
    (``code`` linear or ReLU; a has ``in_hw`` rows and columns) from the pooling's output y and its windows' first
    maxima k (uint8 taps 2r + s; twin: ``reference.pooling2d.max_pool2d_backward_from_index``), without a: the same
    bits. dz is a new (B, H, W, C) array."""
    H, W = (int(n) for n in in_hw)
    if (y.ndim != 4 or y.shape != k.shape or y.shape != dy.shape or k.dtype != np.uint8
            or y.shape[1:3] != (H // 2, W // 2)):  # fmt: skip
        raise ValueError(f"max_pool2d_backward_from_index: y {y.shape}, k {k.shape} ({k.dtype}) and dy {dy.shape} "
                         f"do not fit a 2×2, stride-2 pooling of {H} × {W} pixels")  # fmt: skip
    if code not in (LINEAR, RELU):
        raise ValueError(f"max_pool2d_backward_from_index: activation code {code} is not linear or ReLU")
    y, dy = (np.ascontiguousarray(v, dtype=y.dtype) for v in (y, dy))
    k = np.ascontiguousarray(k)
    B, C = y.shape[0], y.shape[3]
    dz = np.empty((B, H, W, C), dtype=y.dtype)

    def piece(_, b0, b1):
        db = np.empty(C, np.float64)
        _max_bwd_from_index(y[b0:b1], k[b0:b1], dy[b0:b1], int(code), dz[b0:b1], db)
        return db

    db = sum_in_order(share_batch(piece, B, 4 * dz.size, blas=False))
    return dz, db.astype(y.dtype)


def backward_from_index_kernel(dtype) -> tuple:
    """(the numba kernel of :func:`max_pool2d_backward_from_index`, arguments with the numba types it passes for
    ``dtype``): for :func:`tinynn.kernels.warmup.kernels_ready`."""
    a = np.empty((1, 1, 1, 1), np.dtype(dtype))
    return _max_bwd_from_index, (a, np.empty((1, 1, 1, 1), np.uint8), a, 0, a, np.empty(1, np.float64))


def avg_pool2d_forward(x, pool, strides, pads, out_hw) -> np.ndarray:
    """y (B, Ho, Wo, C): the mean of each window's real pixels."""
    _check(x.shape[1:3], pool, strides, pads, out_hw)
    x = np.ascontiguousarray(x)
    y = np.empty((x.shape[0], *out_hw, x.shape[3]), dtype=x.dtype)
    return _run(_avg_fwd, x.shape[0], x.size, ((x,), _geometry_args(pool, strides, pads), y))


def avg_pool2d_backward(dy, in_hw, pool, strides, pads) -> np.ndarray:
    """dx (B, H, W, C): dy[b,i,j,c] / n_ij spread over window (i, j)."""
    if dy.ndim != 4:
        raise ValueError(f"avg_pool2d_backward: dy must be (B, Ho, Wo, C), got {dy.shape}")
    _check(in_hw, pool, strides, pads, dy.shape[1:3])
    dy = np.ascontiguousarray(dy)
    dx = np.empty((dy.shape[0], *in_hw, dy.shape[3]), dtype=dy.dtype)
    return _run(_avg_bwd, dy.shape[0], dx.size, ((dy,), _geometry_args(pool, strides, pads), dx))


load_without_refresh(globals())  # cached kernels load without refreshing numba (tinynn.kernels.jitcache)
