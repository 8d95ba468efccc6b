r"""2-D convolution kernels (channels-last): Conv2D lowered to GEMMs, and the depthwise convolution in numba.

The math, symbols and padding rule are those of :mod:`tinynn.kernels.reference.conv2d` (read it first)::

    z[b,i,j,f]   = Σ_{p,q} Σ_c xp[b, i·sh + p·dh, j·sw + q·dw, g(f)·Cg + c] · Wk[p,q,c,f]
    dWk[p,q,c,f] = Σ_{b,i,j} xp[b, i·sh + p·dh, j·sw + q·dw, g(f)·Cg + c] · dz[b,i,j,f]
    dx           = the adjoint: each tap sends dz · Wkᵀ back to the pixel it read

**Conv2D: im2col + one GEMM per batch chunk.** ``cols[g,b,i,j,p,q,c] = xp[b, i·sh+p·dh, j·sw+q·dw, g·Cg+c]``
(numba, :func:`im2col`) turns every output pixel into one row of KH·KW·Cg numbers, so that, per group g::

    z_g   = cols_g @ Wm_g                  Wm[g, (p·KW + q)·Cg + c, f] = Wk[p, q, c, g·Fg + f]
    dWm_g = cols_gᵀ @ dz_g                 (summed over the batch chunks)
    dx    = col2im(dz_g @ Wm_gᵀ)           (numba, :func:`col2im`: each row's numbers added back to their pixels)

With one group, Wm is a free reshape of Keras's (KH, KW, Cg, F) kernel. The output rows run in chunks (a few
rows of one image; a chunk may cross into the next image) whose columns stay in the cache between the im2col that
writes them and the GEMM that reads them (``CHUNK_BYTES``), on scratch buffers an optional ``workspace`` dict keeps
from call to call; the bias and activation are applied to each chunk's output right after its GEMM. The forward
shares runs of output rows out over the cores (:func:`_share_rows`: runs may cut an image; a core pulls the next
run when it is free), each piece's chunks one numba call (:func:`_forward_rows`: im2col, one BLAS call,
the epilogue); the backward shares whole images (:func:`tinynn.kernels.parallel.share_batch`). In predict, a
global average pooling after the convolution is taken chunk by chunk in the cache
(:func:`conv2d_forward_pooled`: the output is never written out). The backward builds each
chunk's columns again: in cache that costs next to nothing, while keeping the forward's columns for it cost more
than it saved (measured on M7's second conv, one core: forward 51 -> 89 ms with the columns written out for the
backward, backward 120 vs 125 ms).

**Depthwise: direct numba loops** (there is no large GEMM in it: output channel c·M+m reads input channel c
only). For an output row i and a tap (p, q), the contributions to the whole row are one flat multiply-add over
``Wo·C`` contiguous numbers when the stride along W is 1 and M = 1 (the kernel row ``D[p,q]`` tiled Wo times),
which LLVM vectorises; other strides and depth multipliers loop pixel by pixel.

Every function here has a NumPy twin in :mod:`tinynn.kernels.reference.conv2d`; ``tests/test_conv2d_kernels.py``
proves them equal.
"""

from __future__ import annotations

import numba
import numpy as np

from . import blas, cblas, parallel, warmup, winograd, winograd_width
from .bias_activation import activation_gradient_broadcast_rows, activation_gradient_rows, bias_activation_rows
from .fastmath import LINEAR, RELU, activate_row
from .jitcache import load_without_refresh
from .layout import split_groups
from .parallel import even_ranges, kernel_scope, num_threads, share, share_batch
from .parallel import scratch as _scratch
from .pooling2d import backward_from_index_kernel, window_max, window_max_first
from .reference.conv2d import conv_output_size

__all__ = [
    "col2im",
    "conv2d_backward",
    "conv2d_backward_fused",
    "conv2d_forward",
    "conv2d_forward_max_pooled",
    "conv2d_forward_pooled",
    "conv_output_size",
    "depthwise_conv2d_backward",
    "depthwise_conv2d_forward",
    "im2col",
    "pointwise_backward",
    "pointwise_forward",
    "separable_conv2d_backward",
    "separable_conv2d_forward",
]

#: Scratch bytes (im2col columns) per batch chunk: small enough to stay in the per-core L2 cache between the
#: im2col that writes them and the GEMM that reads them.
CHUNK_BYTES = 2 << 20
#: The same for the forward (:func:`conv2d_forward`, :func:`conv2d_forward_pooled`): half the L2 cache, so that a
#: chunk's columns and its output both stay in it. One core, ms, 2 MiB -> 512 KiB: the grid's Conv2D on 16 channels,
#: 20×20 images, batch 64, 32 filters 3.80 -> 3.58, 64: 6.18 -> 5.99, 256: 21.9 -> 20.4; M7's conv2d (3 -> 32)
#: 40.6 both (load 5).
FORWARD_CHUNK_BYTES = 512 << 10
#: Fewest output pixels per chunk when :func:`forward_step` fits a float32 chunk's product to the BLAS's small-matrix
#: kernels (fewer rows per product cost more in calls than the kernels save).
SMALL_CHUNK_MIN_PIXELS = 32
#: 3×3, stride-1, undilated, one-group convolutions with at least this many input and output channels run the
#: forward and the input gradient with Winograd's F(2×2, 3×3) (:mod:`tinynn.kernels.winograd`: 2.25× fewer FLOPs).
#: Measured on one core on M7's convolutions, forward / input gradient in ms, im2col vs Winograd: 32 -> 64 channels
#: 56 / 59 vs 46 / 48; 64 -> 128: 39 / 38 vs 26 / 29; 128 -> 128 on 17×17: 14.3 / 13.1 vs 13.0 / 16.2; 3 -> 32:
#: 28.5 vs 69 (a K = 3 GEMM wastes the saving). With fewer channels the GEMMs are too thin to win.
WINOGRAD_MIN_CHANNELS = 32


def uses_winograd(kernel_shape, strides, dilation, groups) -> bool:
    """Whether conv2d_forward / the input gradient run Winograd F(2×2, 3×3) for this convolution."""
    KH, KW, Cg, F = kernel_shape
    return ((KH, KW) == (3, 3) and tuple(strides) == (1, 1) and tuple(dilation) == (1, 1) and groups == 1
            and min(Cg, F) >= WINOGRAD_MIN_CHANNELS)  # fmt: skip


# --------------------------------------------------------------------------- numba index kernels
# Both work on a range of output rows r = b·Ho + i (a chunk may end inside one image and start inside the next),
# so that a chunk's columns fit the per-core cache even for large images.
@numba.njit(cache=True, nogil=True)
def _im2col_rows(x, KH, KW, sh, sw, dh, dw, pt, pl, Ho, r0, cols):  # pragma: no cover - compiled
    """cols (G, R, Wo, KH, KW, Cg) <- the pixels output rows r0 .. r0+R-1 read (0 on padding).

    With one group and dw = 1 a window row inside x is KW·C consecutive numbers of x[b, h]: one flat copy."""
    B, H, W, C = x.shape
    G, R, Wo, _, _, Cg = cols.shape
    KWC = KW * Cg
    x_rows = x.reshape(B, H, W * C)
    col_rows = cols.reshape(G, R, Wo, KH, KWC)
    flat = G == 1 and dw == 1
    for g in range(G):
        c0 = g * Cg
        for r in range(R):
            b, i = (r0 + r) // Ho, (r0 + r) % Ho
            for j in range(Wo):
                w0 = j * sw - pl
                for p in range(KH):
                    h = i * sh + p * dh - pt
                    dst = col_rows[g, r, j, p]
                    if h < 0 or h >= H:
                        for k in range(KWC):
                            dst[k] = 0
                    elif flat and w0 >= 0 and w0 + KW <= W:
                        src = x_rows[b, h, w0 * C : w0 * C + KWC]
                        for k in range(KWC):
                            dst[k] = src[k]
                    else:
                        for q in range(KW):
                            w = w0 + q * dw
                            if 0 <= w < W:
                                for c in range(Cg):
                                    dst[q * Cg + c] = x[b, h, w, c0 + c]
                            else:
                                for c in range(Cg):
                                    dst[q * Cg + c] = 0
    return cols


@numba.njit(cache=True, nogil=True)
def _col2im_rows(dcols, sh, sw, dh, dw, pt, pl, Ho, r0, dx, zeroed):  # pragma: no cover - compiled
    """Adds each number of dcols (G, R, Wo, KH, KW, Cg), the columns of output rows r0 .. r0+R-1, to the pixel of dx
    (B, H, W, C) it came from.

    dx is zeroed lazily, just before the first scatter into a row (it is then in cache): ``zeroed[b]`` counts the
    rows of image b zeroed so far; rows are visited in ascending order, and the chunk that ends an image zeroes the
    rows no output read."""
    G, R, Wo, KH, KW, Cg = dcols.shape
    _, H, W, C = dx.shape
    KWC = KW * Cg
    dx_rows = dx.reshape(dx.shape[0], H, W * C)
    dcol_rows = dcols.reshape(G, R, Wo, KH, KWC)
    flat = G == 1 and dw == 1
    for r in range(R):
        b, i = (r0 + r) // Ho, (r0 + r) % Ho
        last = min(H, i * sh + (KH - 1) * dh - pt + 1)  # rows below this one are not read by output row i
        if i == Ho - 1:
            last = H
        while zeroed[b] < last:
            row = dx_rows[b, zeroed[b]]
            for k in range(W * C):
                row[k] = 0
            zeroed[b] += 1
        for g in range(G):
            c0 = g * Cg
            for j in range(Wo):
                w0 = j * sw - pl
                for p in range(KH):
                    h = i * sh + p * dh - pt
                    if h < 0 or h >= H:
                        continue
                    src = dcol_rows[g, r, j, p]
                    if flat and w0 >= 0 and w0 + KW <= W:
                        dst = dx_rows[b, h, w0 * C : w0 * C + KWC]
                        for k in range(KWC):
                            dst[k] += src[k]
                    else:
                        for q in range(KW):
                            w = w0 + q * dw
                            if 0 <= w < W:
                                for c in range(Cg):
                                    dx[b, h, w, c0 + c] += src[q * Cg + c]
    return dx


def _out(out, shape, dtype):
    if out is None:
        return np.empty(shape, dtype=dtype)
    if out.shape != tuple(shape) or out.dtype != dtype or not out.flags.c_contiguous:
        raise ValueError(f"conv2d: out buffer {out.shape} {out.dtype} does not fit {tuple(shape)} {np.dtype(dtype)}")
    return out


def im2col(x, groups, kernel_hw, strides, dilation, pads, out_hw, out=None):
    """cols[g,b,i,j,p,q,c] = xp[b, i·sh + p·dh, j·sw + q·dw, g·Cg + c] (0 on padding).  (G, B, Ho, Wo, KH, KW, Cg)"""
    B, _, _, C = x.shape
    (KH, KW), (sh, sw), (dh, dw), (pt, pl), (Ho, Wo) = kernel_hw, strides, dilation, pads, out_hw
    cols = _out(out, (groups, B, Ho, Wo, KH, KW, C // groups), x.dtype)
    _im2col_rows(np.ascontiguousarray(x), KH, KW, sh, sw, dh, dw, pt, pl, Ho, 0,
                 cols.reshape(groups, B * Ho, Wo, KH, KW, C // groups))
    return cols


def col2im(dcols, in_hw, strides, dilation, pads, out=None):
    """dx[b, i·sh + p·dh - pt, j·sw + q·dw - pl, g·Cg + c] = Σ dcols[g,b,i,j,p,q,c] (im2col's adjoint).  (B, H, W, C)"""
    G, B, Ho, Wo, KH, KW, Cg = dcols.shape
    (sh, sw), (dh, dw), (pt, pl) = strides, dilation, pads
    dx = _out(out, (B, *in_hw, G * Cg), dcols.dtype)
    dcols = np.ascontiguousarray(dcols).reshape(G, B * Ho, Wo, KH, KW, Cg)
    return _col2im_rows(dcols, sh, sw, dh, dw, pt, pl, Ho, 0, dx, np.zeros(B, np.int64))


# --------------------------------------------------------------------------- GEMMs and batch pieces
def _w_im2col(Wk: np.ndarray, groups: int) -> np.ndarray:
    """Wm[g, (p·KW + q)·Cg + c, f] = Wk[p, q, c, g·Fg + f]  (G, KH·KW·Cg, Fg)"""
    KH, KW, Cg, F = Wk.shape
    if groups == 1:
        return Wk.reshape(1, KH * KW * Cg, F)
    return np.ascontiguousarray(
        Wk.reshape(KH * KW * Cg, groups, F // groups).transpose(1, 0, 2)
    )


def _dw_from_im2col(dWm: np.ndarray, kernel_hw) -> np.ndarray:
    G, KKC, Fg = dWm.shape
    KH, KW = kernel_hw
    return np.ascontiguousarray(dWm.transpose(1, 0, 2)).reshape(KH, KW, KKC // (KH * KW), G * Fg)


def _chunk_rows(bytes_per_item: int, chunk_bytes: int | None = None) -> int:
    """Items per chunk of about ``chunk_bytes`` (default ``CHUNK_BYTES``) of scratch (at least one)."""
    return max(1, (CHUNK_BYTES if chunk_bytes is None else chunk_bytes) // max(int(bytes_per_item), 1))


def forward_step(Wo: int, K: int, F: int, dtype) -> int:
    """Output rows per chunk of an im2col forward (rows of Wo pixels, K columns, F filters): about
    ``FORWARD_CHUNK_BYTES`` of columns, and in float32 no more than the BLAS runs with its small-matrix kernels
    (``n·K·F ≤`` :func:`tinynn.kernels.cblas.small_sgemm_work` for the chunk's n pixels) when that still leaves
    ``SMALL_CHUNK_MIN_PIXELS`` or more. One core, GMAC/s, ReLU forward pooled, chunks of the old size / of the
    small-matrix size: Dense(32) 24 / 31, Conv2D(32, 3×3) on 16 channels 30 / 41 (benchmarks/RESULTS.md)."""
    itemsize = np.dtype(dtype).itemsize
    rows = _chunk_rows(Wo * K * itemsize, FORWARD_CHUNK_BYTES)
    small = cblas.small_gemm_work(dtype)
    fit = small // max(Wo * K * F, 1)
    if fit * Wo >= SMALL_CHUNK_MIN_PIXELS:
        rows = min(rows, fit)
    return rows


def _chunks(start: int, stop: int, bytes_per_item: int, chunk_bytes: int | None = None) -> list[tuple[int, int]]:
    """Ranges [c0, c1) of about ``chunk_bytes`` (default ``CHUNK_BYTES``) of scratch each (at least one item)."""
    step = _chunk_rows(bytes_per_item, chunk_bytes)
    return [(c0, min(stop, c0 + step)) for c0 in range(start, stop, step)]


#: Fewest multiply-adds per piece when :func:`_share_rows` splits a forward's output rows over the cores (the
#: threshold of :mod:`tinynn.kernels.blas`'s split products). A batch of one image of 2^22.5 (the grid's 128 filters
#: on 16 channels, 18×18 outputs) split in two ran 4× slower on the shared machine (a 2nd thread that is not
#: scheduled is waited for): benchmarks/RESULTS.md.
PIECE_WORK = 1 << 23
#: The same when the ranges are handed out inside numba (:mod:`tinynn.kernels.handoff`: a few µs, no GIL): one range
#: per thread from HANDOFF_MIN_WORK multiply-adds per thread, more ranges from HANDOFF_PIECE_WORK each (measured
#: from 2^18 to 2^21 in benchmarks/RESULTS.md: Dense(128) and Conv1D(32-64) on one sequence split from 2^18).
HANDOFF_MIN_WORK = 1 << 18
HANDOFF_PIECE_WORK = 1 << 21


def _share_rows(task, rows: int, work: float, pieces_per_thread: int | None = None, native=None) -> list:
    """``task(worker, r0, r1)`` over ranges of the output rows ``range(rows)`` (r = b·Ho + i), pulled by the cores;
    the results in range order. Like :func:`tinynn.kernels.parallel.share_batch`, but the ranges may cut an image,
    so that a small batch splits too: per thread up to ``pieces_per_thread`` (default ``PIECES_PER_THREAD``) ranges
    of ``PIECE_WORK`` or more (one range on the calling thread when there is not that much work for every thread).
    The ranges depend only on ``rows``, ``work``, the thread count and the BLAS found (sums added in range order
    give the same bits on every run).

    ``native`` (from :func:`_native`: the pass's dtype is one the hand-off takes): (ready(), run(ranges,
    workers)); the ranges are then cut for :mod:`tinynn.kernels.handoff` (from ``HANDOFF_MIN_WORK`` per thread)
    and handed out inside numba when ready() says it can take them now; run returns the results in range order,
    or None (then :func:`tinynn.kernels.parallel.share` runs the same ranges, or the calling thread runs them in
    turn when the pass is below ``parallel.PARALLEL_WORK``)."""
    workers = num_threads()
    with kernel_scope():  # BLAS on one thread also when the pass runs on the calling thread alone
        least = parallel.PARALLEL_WORK if native is None else workers * HANDOFF_MIN_WORK
        if work < least or workers <= 1 or not cblas.can_limit_threads():
            return [task(0, 0, rows)]
        most = parallel.PIECES_PER_THREAD if pieces_per_thread is None else pieces_per_thread
        if native is None:
            per_thread = min(most, int(work // (workers * max(PIECE_WORK, 1))))
        else:  # one range per thread from HANDOFF_MIN_WORK each, more from HANDOFF_PIECE_WORK each
            per_thread = min(most, max(int(work // (workers * HANDOFF_PIECE_WORK)),
                                       int(work >= workers * HANDOFF_MIN_WORK)))  # fmt: skip
        if per_thread < 1 or rows < 2:
            return [task(0, 0, rows)]
        ranges = even_ranges(rows, workers * per_thread)
        # the same ranges whoever runs them (a pooled pass's sums, added in range order, then have the same bits
        # whether the hand-off is compiled yet, takes the job or finds the box taken)
        if native is not None and not parallel.in_piece() and native[0]():
            done = native[1](ranges, workers)
            if done is not None:
                return done
        if work < parallel.PARALLEL_WORK:  # too short for a hand-off through Python: the same ranges, in turn
            return [task(0, r0, r1) for r0, r1 in ranges]
        return share(task, ranges, work)


#: Whether one-group im2col forwards hand their row ranges to the pool's threads inside numba
#: (:mod:`tinynn.kernels.handoff`) once its kernels are compiled; False: through Python (:func:`parallel.share`).
HANDOFF = True
_handoff_module = None


def _native(G, x, Wm, bias, code, args, Wo, step, z, ws, keep=None):
    """(ready, run) for :func:`_share_rows`: an im2col forward's row ranges handed out by :mod:`tinynn.kernels.handoff`
    (``handoff.forward_rows`` with :func:`_forward_rows`'s arguments: into z (B·Ho·Wo, F), or pooled when z is None)
    while the hand-off is on (:data:`HANDOFF`) for one group (Wm (1, K, F)) and x's dtype; else None. ready() says
    whether the hand-off can take the job now (asked only when a pass splits: it may start compiling). In a layer's
    warm-up this compiles (or loads) the hand-off's kernels instead and returns None: the layer's later passes then
    find them ready. ``keep(job)``: called with the hand-off's :class:`~tinynn.kernels.handoff.Job` when it ran."""
    global _handoff_module
    if not HANDOFF or G != 1:
        return None
    if _handoff_module is None:
        from . import handoff

        _handoff_module = handoff
    handoff, dtype = _handoff_module, x.dtype
    if dtype not in handoff.DTYPES:
        return None
    if warmup._in_warmup():
        handoff.warm(dtype)
        return None
    _, K, F = Wm.shape
    work = x.shape[0] * args[8] * Wo * K * F  # B·Ho·Wo·K·F multiply-adds
    return (lambda: handoff.ready(dtype)), (lambda ranges, workers: handoff.forward_rows(
        x, Wm[0], bias, code, args, Wo, step, ranges, z, F, ws, workers, work, keep))  # fmt: skip


def _check(x, Wk, groups, out_hw):
    if x.ndim != 4 or Wk.ndim != 4:
        raise ValueError(f"conv2d: x must be (B, H, W, C) and Wk (KH, KW, C/groups, F), got {x.shape} and {Wk.shape}")
    C, (_, _, Cg, F) = x.shape[3], Wk.shape
    if groups < 1 or C != Cg * groups or F % groups:
        raise ValueError(f"conv2d: x {x.shape} and Wk {Wk.shape} do not fit groups={groups}")
    if min(out_hw) < 1:
        raise ValueError(f"conv2d: empty output {tuple(out_hw)} for x {x.shape}")


# --------------------------------------------------------------------------- Conv2D
def _forward_arguments(x, Wk, strides, dilation, pads, out_hw, groups, workspace, bias):
    """(x contiguous, the scratch dict, G, (Ho, Wo)) for :func:`conv2d_forward` and :func:`conv2d_forward_pooled`,
    after the checks they share (:func:`_check`, the bias's shape). ``out_hw`` None: the size with the given
    top/left padding and none after."""
    KH, KW, _, F = Wk.shape
    _, H, W, _ = x.shape
    G = int(groups)
    if out_hw is None:
        out_hw = ((H + pads[0] - (KH - 1) * dilation[0] - 1) // strides[0] + 1,
                  (W + pads[1] - (KW - 1) * dilation[1] - 1) // strides[1] + 1)  # fmt: skip
    _check(x, Wk, G, out_hw)
    if bias is not None and np.shape(bias) != (F,):
        raise ValueError(f"conv2d: bias {np.shape(bias)} does not fit {F} filters")
    return np.ascontiguousarray(x), {} if workspace is None else workspace, G, out_hw


def _grouped_products(x, Wm, args, Wo, r_start, r_stop, ws, k):
    """(r0, z chunk (n, F)) for the chunks of output rows r_start .. r_stop-1 of a grouped convolution (G > 1):
    each chunk's columns (G, n, K) by :func:`_im2col_rows` into the piece's scratch ``cols{k}``, then the G
    products cols[g] @ Wm[g] side by side, z[:, g·F/G : (g+1)·F/G] (n = rows · Wo output pixels)."""
    G, K, Fg = Wm.shape
    KH, KW = args[0], args[1]
    for r0, r1 in _chunks(r_start, r_stop, Wo * K * x.itemsize, FORWARD_CHUNK_BYTES):
        n = (r1 - r0) * Wo
        buf = _scratch(ws, f"cols{k}", (G, r1 - r0, Wo, KH, KW, x.shape[3] // G), x.dtype)
        cols = _im2col_rows(x, *args, r0, buf).reshape(G, n, K)
        yield r0, np.ascontiguousarray(blas.grouped_matmul(cols, Wm).transpose(1, 0, 2)).reshape(n, G * Fg)


def conv2d_forward(x, Wk, strides=(1, 1), dilation=(1, 1), pads=(0, 0), out_hw=None, groups=1,
                   workspace: dict | None = None, bias: np.ndarray | None = None,
                   activation: int | None = None) -> np.ndarray:  # fmt: skip
    """z (B, Ho, Wo, F) = conv(x (B, H, W, C), Wk (KH, KW, C/G, F)). ``out_hw`` defaults to the size with the given
    top/left padding and none after; pass it to add padding after. ``workspace``: an optional dict of scratch
    buffers reused from call to call (the result never aliases them).

    ``activation`` (a :func:`tinynn.kernels.fastmath.activation_code`): returns y = act(z + bias) instead, each
    chunk's bias and activation applied while the chunk is still in the cache (``bias`` None: no bias)."""
    KH, KW, Cg, F = Wk.shape
    B = x.shape[0]
    x, ws, G, out_hw = _forward_arguments(x, Wk, strides, dilation, pads, out_hw, groups, workspace, bias)
    Ho, Wo = out_hw
    if uses_winograd(Wk.shape, strides, dilation, G):
        return winograd.winograd_conv2d(x, Wk, pads, out_hw, bias, activation, ws)
    if winograd_width.applies(Wk.shape, strides, dilation, G, x.dtype, B * Ho * Wo) and winograd_width.ready(
            x.dtype):  # fmt: skip
        return winograd_width.winograd_width_conv2d(x, Wk, pads, out_hw, bias, activation, ws)
    if warmup._in_warmup() and winograd_width.applies(Wk.shape, strides, dilation, G, x.dtype):
        winograd_width.winograd_width_conv2d(x, Wk, pads, out_hw, bias, activation)  # compile it (one sample is short)
    Wm = _w_im2col(Wk, G)
    K = KH * KW * Cg
    z = np.empty((B, Ho, Wo, F), dtype=x.dtype)
    z_rows = z.reshape(B * Ho * Wo, F)
    args = (KH, KW, strides[0], strides[1], dilation[0], dilation[1], pads[0], pads[1], Ho)
    b = np.zeros(F, x.dtype) if bias is None or activation is None else np.ascontiguousarray(bias, dtype=x.dtype)
    code = -1 if activation is None else int(activation)
    step = forward_step(Wo, K, F, x.dtype)
    no_sums = np.empty((0, F), np.float64)

    def piece(k, r_start, r_stop):
        if G == 1:  # every chunk in one numba call
            cols = _scratch(ws, f"cols{k}", (min(step, r_stop - r_start) * Wo * K,), x.dtype)
            _forward_rows(x, Wm[0], b, code, *args, Wo, r_start, r_stop, step, cols, cols, z_rows, 0, no_sums)
            return
        for r0, zc in _grouped_products(x, Wm, args, Wo, r_start, r_stop, ws, k):
            z_rows[r0 * Wo : r0 * Wo + len(zc)] = zc
            if activation is not None:
                _bias_activation(z_rows[r0 * Wo : r0 * Wo + len(zc)], b, code)

    _share_rows(piece, B * Ho, B * Ho * Wo * K * F, None, _native(G, x, Wm, b, code, args, Wo, step, z_rows, ws))
    return z


@numba.njit(error_model="numpy", cache=True, nogil=True)
def _pool_rows(z, bias, code, r0, Ho, Wo, b0, sums):  # pragma: no cover - compiled
    """sums[b - b0] += Σ_n act(z[n] + bias) (float64) over the pixels n of z (R·Wo, F): the output rows
    r0 .. r0+R-1 (row r = b·Ho + i: a chunk may cross into the next image). code < 0: z as it is (no bias, no
    activation). z is left as act(z + bias) for the activations other than linear and ReLU (else as it was).

    The pixels go image by image: those of image b are n < ((b + 1)·Ho - r0)·Wo, two divisions per image rather
    than per pixel (with few channels they cost more than the pixel's own sums). Each image's pixels are summed by
    one loop of their own (:func:`_add_rows`): with the choice of activation inside the pixel loop LLVM did not
    vectorise the sums over the channels (benchmarks/RESULTS.md)."""
    N, F = z.shape
    unbiased = np.zeros(F, z.dtype)
    floor = z.dtype.type(0) if code == RELU else z.dtype.type(-np.inf)  # max(v, -inf) = v, NaN stays NaN
    n = 0
    while n < N:
        b = (r0 + n // Wo) // Ho
        s, end = sums[b - b0], min(N, ((b + 1) * Ho - r0) * Wo)
        if code == RELU or code == LINEAR:
            _add_rows(z, bias, floor, n, end, s)
        else:
            if code >= 0:
                for m in range(n, end):
                    zn = z[m]
                    for f in range(F):
                        zn[f] += bias[f]
                    activate_row(zn, code)
            _add_rows(z, unbiased, floor, n, end, s)
        n = end
    return sums


@numba.njit(error_model="numpy", cache=True, nogil=True)
def _add_rows(z, bias, floor, n, end, s):  # pragma: no cover - compiled
    """s += Σ_{m = n .. end-1} max(z[m] + bias, floor) (float64; z + bias in z's dtype; floor 0: ReLU, -inf: none),
    four rows at a time as (a₀ + a₁) + (a₂ + a₃): one load and store of s per four rows (vectorised selects and
    adds)."""
    F = z.shape[1]
    m = n
    while m + 4 <= end:
        z0, z1, z2, z3 = z[m], z[m + 1], z[m + 2], z[m + 3]
        for f in range(F):
            c = bias[f]
            a0, a1, a2, a3 = z0[f] + c, z1[f] + c, z2[f] + c, z3[f] + c
            a0 = floor if a0 < floor else a0
            a1 = floor if a1 < floor else a1
            a2 = floor if a2 < floor else a2
            a3 = floor if a3 < floor else a3
            s[f] += (np.float64(a0) + np.float64(a1)) + (np.float64(a2) + np.float64(a3))
        m += 4
    for rest in range(m, end):
        zn = z[rest]
        for f in range(F):
            a = zn[f] + bias[f]
            s[f] += floor if a < floor else a


@numba.njit(error_model="numpy", cache=True, nogil=True)
def _forward_rows(x, Wm, bias, code, KH, KW, sh, sw, dh, dw, pt, pl, Ho, Wo, r_start, r_stop, step, cols, zbuf, z,
                  b0, sums):  # pragma: no cover - compiled
    """One group's forward over the output rows r_start .. r_stop-1, ``step`` rows per chunk, in one call: per chunk
    the columns (:func:`_im2col_rows`, into the flat scratch ``cols``), one BLAS product with Wm (K, F), then
    either (``sums`` has rows) the chunk pooled into sums (row b - b0 for image b) by :func:`_pool_rows` from the
    flat scratch ``zbuf``, or
    its rows of z (B·Ho·Wo, F) written and act(z + bias) applied in place (code < 0: neither).

    A pointwise convolution (1×1, stride 1, no padding, Ho = H, Wo = W: a Dense layer on every pixel) has its
    columns in x already: the chunk's pixels x.reshape(B·H·W, C)[r0·Wo : r0·Wo + n] are the product's rows."""
    B, H, W, C = x.shape
    K, F = Wm.shape
    pointwise = KH == 1 and KW == 1 and sh == 1 and sw == 1 and pt == 0 and pl == 0 and H == Ho and W == Wo
    pixels = x.reshape((B * H * W, C))
    for r0 in range(r_start, r_stop, step):
        R = min(step, r_stop - r0)
        n = R * Wo
        if pointwise:
            a = pixels[r0 * Wo : r0 * Wo + n]
        else:
            chunk = cols[: n * K]
            _im2col_rows(x, KH, KW, sh, sw, dh, dw, pt, pl, Ho, r0, chunk.reshape((1, R, Wo, KH, KW, C)))
            a = chunk.reshape((n, K))
        if sums.shape[0] > 0:
            zc = zbuf[: n * F].reshape((n, F))
            blas.gemm(a, Wm, zc, False, False, 0.0)
            _pool_rows(zc, bias, code, r0, Ho, Wo, b0, sums)
        else:
            zc = z[r0 * Wo : r0 * Wo + n]
            blas.gemm(a, Wm, zc, False, False, 0.0)
            if code >= 0:
                bias_activation_rows(zc, bias, code, zc)
    return sums


@numba.njit(error_model="numpy", cache=True, nogil=True)
def _forward_rows_max(x, Wm, bias, code, KH, KW, sh, sw, dh, dw, pt, pl, Ho, Wo, q_start, q_stop, step, cols, zbuf,
                      p, k):  # pragma: no cover - compiled
    """Rows q_start .. q_stop-1 (q = b·Hp + i) of p (B, Hp, Wp, F), the 2×2, stride-2, unpadded max pooling of
    y = act(conv(x) + bias): per chunk of up to ``step`` rows of p inside one image, the columns of the 2·n output
    rows it pools (:func:`_im2col_rows`), one BLAS product with Wm (K, F) and act(z + bias) in place
    (:func:`tinynn.kernels.bias_activation.bias_activation_rows`), as :func:`_forward_rows` forms y, then each
    window's maximum (:func:`_max_pool_pairs`; with k of p's shape, not empty, each window's first maximum in k
    too). A last odd output row or column (no whole window) is formed and not read."""
    C = x.shape[3]
    K, F = Wm.shape
    Hp = p.shape[1]
    with_index = k.size > 0
    q = q_start
    while q < q_stop:
        b = q // Hp
        i0 = q - b * Hp
        n = min(step, q_stop - q, Hp - i0)
        R = 2 * n
        m = R * Wo
        chunk = cols[: m * K]
        _im2col_rows(x, KH, KW, sh, sw, dh, dw, pt, pl, Ho, b * Ho + 2 * i0, chunk.reshape((1, R, Wo, KH, KW, C)))
        zc = zbuf[: m * F].reshape((m, F))
        blas.gemm(chunk.reshape((m, K)), Wm, zc, False, False, 0.0)
        bias_activation_rows(zc, bias, code, zc)
        if with_index:
            _max_pool_pairs_index(zc, Wo, p[b, i0 : i0 + n], k[b, i0 : i0 + n])
        else:
            _max_pool_pairs(zc, Wo, p[b, i0 : i0 + n])
        q += n
    return p


@numba.njit(error_model="numpy", cache=True, nogil=True, inline="always")
def _pool_pairs(y, Wo, q, first, with_index):  # pragma: no cover - compiled
    """q (n, Wp, F) <- the 2×2, stride-2 max pooling of the 2·n output rows of Wo pixels in y (2·n·Wo, F): q[k, j] is
    the maximum of the pixels (2k, 2j), (2k, 2j + 1), (2k + 1, 2j), (2k + 1, 2j + 1), compared in that (row-major)
    order by the max pooling's rule (:func:`tinynn.kernels.pooling2d.window_max`). ``with_index`` (a constant where
    it is compiled): first[k, j] <- the tap (0 .. 3, in that order) of window (k, j)'s first maximum too
    (:func:`tinynn.kernels.pooling2d.window_max_first`)."""
    n, Wp, F = q.shape
    for k in range(n):
        top = 2 * k * Wo
        for j in range(Wp):
            y00, y01 = y[top + 2 * j], y[top + 2 * j + 1]
            y10, y11 = y[top + Wo + 2 * j], y[top + Wo + 2 * j + 1]
            out = q[k, j]
            if not with_index:
                for f in range(F):
                    out[f] = window_max(window_max(window_max(y00[f], y01[f]), y10[f]), y11[f])
                continue
            taps = first[k, j]
            for f in range(F):
                m, tap = window_max_first(y00[f], np.uint8(0), y01[f], np.uint8(1))
                m, tap = window_max_first(m, tap, y10[f], np.uint8(2))
                out[f], taps[f] = window_max_first(m, tap, y11[f], np.uint8(3))


@numba.njit(error_model="numpy", cache=True, nogil=True)
def _max_pool_pairs(y, Wo, q):  # pragma: no cover - compiled
    """:func:`_pool_pairs` without the windows' first maxima (prediction)."""
    _pool_pairs(y, Wo, q, np.empty((0, 0, 0), np.uint8), False)


@numba.njit(error_model="numpy", cache=True, nogil=True)
def _max_pool_pairs_index(y, Wo, q, first):  # pragma: no cover - compiled
    """:func:`_pool_pairs` with each window's first maximum in ``first`` (a training forward)."""
    _pool_pairs(y, Wo, q, first, True)


def conv2d_forward_max_pooled(x, Wk, strides=(1, 1), dilation=(1, 1), pads=(0, 0), out_hw=None, groups=1,
                              workspace: dict | None = None, bias: np.ndarray | None = None,
                              activation: int = RELU, index: bool = False):  # fmt: skip
    """p (B, Ho // 2, Wo // 2, F): the 2×2, stride-2, unpadded max pooling of y = act(conv(x, Wk) + bias)
    (``activation`` linear or ReLU; ``bias`` None: zeros), without writing y out:
    ``max_pool2d_forward(conv2d_forward(..., bias, activation), (2, 2), (2, 2), (0, 0), ...)``. Winograd's shapes take
    each window as one block of its outputs (:func:`tinynn.kernels.winograd.winograd_conv2d_max_pooled`: the same
    chunks, so the same bits); one-group im2col pools each chunk of output rows while it is in the cache
    (:func:`_forward_rows_max`; rows of p shared out over the cores): the same numbers up to the products' rounding
    (its chunks have other heights, and BLAS may round a row differently in a product of another height). None
    (nothing done) for the other passes (grouped, F(2, 3) along the width) and an output without a whole window.
    ``index`` (a training forward): (p, k) with k (uint8, p's shape) each window's first maximum, its tap 2r + s
    (twin: ``reference.pooling2d.max_pool2d_window_index`` of y), for
    :func:`tinynn.kernels.pooling2d.max_pool2d_backward_from_index`."""
    KH, KW, Cg, F = Wk.shape
    B = x.shape[0]
    if activation not in (LINEAR, RELU):
        raise ValueError(f"conv2d_forward_max_pooled: activation code {activation} is not linear or ReLU")
    x, ws, G, out_hw = _forward_arguments(x, Wk, strides, dilation, pads, out_hw, groups, workspace, bias)
    Ho, Wo = out_hw
    if min(Ho, Wo) < 2:
        return None
    b = np.zeros(F, x.dtype) if bias is None else np.ascontiguousarray(bias, dtype=x.dtype)
    if uses_winograd(Wk.shape, strides, dilation, G):
        return winograd.winograd_conv2d_max_pooled(x, Wk, pads, out_hw, b, activation, ws, index=index)
    if G != 1 or (winograd_width.applies(Wk.shape, strides, dilation, G, x.dtype, B * Ho * Wo)
                  and winograd_width.ready(x.dtype)):  # fmt: skip
        return None
    K = KH * KW * Cg
    Wm = _w_im2col(Wk, 1)[0]
    p = np.empty((B, Ho // 2, Wo // 2, F), dtype=x.dtype)
    first = np.empty(p.shape if index else (0, 0, 0, 0), np.uint8)
    args = (KH, KW, strides[0], strides[1], dilation[0], dilation[1], pads[0], pads[1], Ho, Wo)
    step = max(1, forward_step(Wo, K, F, x.dtype) // 2)

    def piece(k, q_start, q_stop):
        n = min(step, q_stop - q_start) * 2 * Wo
        cols, zc = _scratch(ws, f"cols{k}", (n * K,), x.dtype), _scratch(ws, f"z{k}", (n * F,), x.dtype)
        _forward_rows_max(x, Wm, b, int(activation), *args, q_start, q_stop, step, cols, zc, p, first)

    _share_rows(piece, B * (Ho // 2), B * Ho * Wo * K * F)
    return (p, first) if index else p


def max_pooled_ready(dtype, by_winograd: bool, index: bool = False) -> bool:
    """Whether the kernel :func:`conv2d_forward_max_pooled` runs for a convolution (``by_winograd``:
    :func:`uses_winograd` says so: Winograd's ``_output_transform_max``, else :func:`_forward_rows_max`) is compiled
    for ``dtype``; if not, it is compiled (or loaded) in the background and False is returned meanwhile
    (:func:`tinynn.kernels.warmup.kernels_ready`; always True in "wait" compile mode). ``index``: the training
    forward's kernels (the windows' first maxima kept) and the backward from them
    (:func:`tinynn.kernels.pooling2d.max_pool2d_backward_from_index`)."""
    if index and by_winograd:
        return warmup.kernels_ready(_max_index_winograd, dtype, lambda d: [
            (winograd._output_transform_max_index, winograd._max_sample(d, index=True)),
            backward_from_index_kernel(d)])  # fmt: skip
    if index:
        return warmup.kernels_ready(_max_index_im2col, dtype, lambda d: [
            (_forward_rows_max, _forward_rows_max_sample(d)), backward_from_index_kernel(d)])  # fmt: skip
    if by_winograd:
        return warmup.kernels_ready(_max_pooled_winograd, dtype,
                                    lambda d: [(winograd._output_transform_max, winograd._max_sample(d))])  # fmt: skip
    return warmup.kernels_ready(_max_pooled_im2col, dtype, lambda d: [(_forward_rows_max, _forward_rows_max_sample(d))])


_max_pooled_winograd: set = set()  # dtypes max_pooled_ready found compiled, Winograd's kernel
_max_pooled_im2col: set = set()  # the same, im2col's
_max_index_winograd: set = set()  # the same for a training forward (index), Winograd's
_max_index_im2col: set = set()  # and im2col's


def _forward_rows_max_sample(dtype) -> tuple:
    """Arguments of :func:`_forward_rows_max` with the numba types :func:`conv2d_forward_max_pooled` passes."""
    d = np.dtype(dtype)
    v, image = np.empty(1, d), np.empty((1, 1, 1, 1), d)
    return (image, np.empty((1, 1), d), v, 0, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 0, 1, 1, v, v, image,
            np.empty((0, 0, 0, 0), np.uint8))


def conv2d_forward_pooled(x, Wk, strides=(1, 1), dilation=(1, 1), pads=(0, 0), out_hw=None, groups=1,
                          workspace: dict | None = None, bias: np.ndarray | None = None,
                          activation: int | None = None,
                          pieces_per_thread: int | None = None) -> np.ndarray:  # fmt: skip
    """p (B, F) = (1 / (Ho·Wo)) Σ_{i,j} y[b,i,j] for y = act(conv(x, Wk) + bias) (``activation`` None: y = z), the
    global average pooling of :func:`conv2d_forward`'s output without writing that output out: each chunk's product
    goes to a scratch buffer and is pooled while it is in the cache (sums in float64; output rows shared out over
    the cores as in :func:`conv2d_forward`, each piece summing the images its rows reach, the pieces' sums added in
    range order). Winograd's shapes run :func:`conv2d_forward` and pool its output image by image; those of
    :func:`tinynn.kernels.winograd_width.applies` pool each chunk of its output rows
    (:func:`tinynn.kernels.winograd_width.winograd_width_conv2d_pooled`).

    ``pieces_per_thread``: at most this many ranges of output rows per thread (default
    ``parallel.PIECES_PER_THREAD``; Dense on a sequence, a pointwise convolution, passes 1, as its products do)."""
    KH, KW, Cg, F = Wk.shape
    B = x.shape[0]
    if (winograd_width.applies(Wk.shape, strides, dilation, groups, x.dtype)
            and not uses_winograd(Wk.shape, strides, dilation, groups)):  # fmt: skip
        x, ws, G, out_hw = _forward_arguments(x, Wk, strides, dilation, pads, out_hw, groups, workspace, bias)
        pixels = B * out_hw[0] * out_hw[1]
        if winograd_width.applies(Wk.shape, strides, dilation, G, x.dtype, pixels) and winograd_width.ready(x.dtype):
            return winograd_width.winograd_width_conv2d_pooled(x, Wk, pads, out_hw, bias, activation, ws)
    key = None if workspace is None else _pooled_key(x, Wk, strides, dilation, pads, out_hw, groups, bias,
                                                      activation, pieces_per_thread)  # fmt: skip
    again = None if workspace is None else workspace.get("pooled_job")
    if again is not None and again[0] == key:
        p = _pooled_again(again, x, Wk, bias)
        if p is not None:
            return p
    x, ws, G, out_hw = _forward_arguments(x, Wk, strides, dilation, pads, out_hw, groups, workspace, bias)
    Ho, Wo = out_hw
    code = -1 if activation is None else int(activation)
    b = np.zeros(F, x.dtype) if bias is None else np.ascontiguousarray(bias, dtype=x.dtype)
    sums = np.zeros((B, F), np.float64)
    if uses_winograd(Wk.shape, strides, dilation, G):
        z_rows = conv2d_forward(x, Wk, strides, dilation, pads, out_hw, G, ws, bias, activation).reshape(-1, F)

        def pool(k, b0, b1):
            _pool_rows(z_rows[b0 * Ho * Wo : b1 * Ho * Wo], b, -1, b0 * Ho, Ho, Wo, 0, sums)

        share_batch(pool, B, z_rows.size, blas=False)
        return (sums / (Ho * Wo)).astype(x.dtype)
    Wm = _w_im2col(Wk, G)
    K = KH * KW * Cg
    args = (KH, KW, strides[0], strides[1], dilation[0], dilation[1], pads[0], pads[1], Ho)
    step = forward_step(Wo, K, F, x.dtype)
    no_z = np.empty((0, F), x.dtype)

    def piece(k, r_start, r_stop):  # -> (b0, the sums of images b0 .. : the images the rows reach)
        b0 = r_start // Ho
        part = np.zeros(((r_stop - 1) // Ho + 1 - b0, F), np.float64)
        if G == 1:  # every chunk in one numba call
            n = min(step, r_stop - r_start) * Wo
            cols, zc = _scratch(ws, f"cols{k}", (n * K,), x.dtype), _scratch(ws, f"z{k}", (n * F,), x.dtype)
            _forward_rows(x, Wm[0], b, code, *args, Wo, r_start, r_stop, step, cols, zc, no_z, b0, part)
            if r_stop - r_start == B * Ho and workspace is not None:  # one range, this thread: kept for next time
                workspace["pooled_job"] = (key, None, Ho * Wo, K, (code, args, Wo, step, cols, zc, no_z))
            return b0, part
        for r0, zc in _grouped_products(x, Wm, args, Wo, r_start, r_stop, ws, k):
            _pool_rows(zc, b, code, r0, Ho, Wo, b0, part)
        return b0, part

    def keep(job):  # the next pass of this shape posts the same job again (_pooled_again)
        if workspace is not None:
            workspace["pooled_job"] = (key, job, Ho * Wo, K, None)

    native = _native(G, x, Wm, b, code, args, Wo, step, None, ws, keep)
    # in range order: the same bits every run
    for b0, part in _share_rows(piece, B * Ho, B * Ho * Wo * K * F, pieces_per_thread, native):
        sums[b0 : b0 + len(part)] += part
    return (sums / (Ho * Wo)).astype(x.dtype)


def _pooled_key(x, Wk, strides, dilation, pads, out_hw, groups, bias, activation, pieces_per_thread) -> tuple:
    """What decides :func:`conv2d_forward_pooled`'s pass besides the arrays' values: their shapes and dtype, the
    convolution's numbers, the threads and the module's thresholds."""
    return (x.shape, x.dtype, Wk.shape, tuple(strides), tuple(dilation), tuple(pads),
            None if out_hw is None else tuple(out_hw), groups, activation, None if bias is None else np.shape(bias),
            pieces_per_thread, num_threads(), HANDOFF, FORWARD_CHUNK_BYTES, SMALL_CHUNK_MIN_PIXELS, PIECE_WORK,
            HANDOFF_MIN_WORK, HANDOFF_PIECE_WORK, parallel.PARALLEL_WORK, parallel.PIECES_PER_THREAD)  # fmt: skip


def _pooled_again(again: tuple, x, Wk, bias) -> np.ndarray | None:
    """:func:`conv2d_forward_pooled` for a pass of the shape its last pass had (``again``: (key, the hand-off's
    job, Ho·Wo, K, local) kept by that pass), without working out its plan again: the same job posted again, or
    (``local``: the pass was one range run on this thread) the same one :func:`_forward_rows` call; the sums then
    added in range order as that pass did, so the same bits. None when the hand-off cannot take the job now
    (inside a parallel piece, the box taken): the pass then runs its full route."""
    _, job, pixels, K, local = again
    F = Wk.shape[3]
    x = np.ascontiguousarray(x)
    b = np.zeros(F, x.dtype) if bias is None else np.ascontiguousarray(bias, dtype=x.dtype)
    if local is not None:
        code, args, Wo, step, cols, zc, no_z = local
        part = np.zeros((x.shape[0], F), np.float64)
        with kernel_scope():
            _forward_rows(x, Wk.reshape(K, F), b, code, *args, Wo, 0, x.shape[0] * args[8], step, cols, zc, no_z,
                          0, part)  # fmt: skip
        pieces = [(0, part)]
    else:
        if parallel.in_piece() or not _handoff_module.ready(x.dtype):
            return None
        with kernel_scope():
            parts = _handoff_module.run_job(job, x, Wk.reshape(K, F), b)
        if parts is None:
            return None
        pieces = _handoff_module.pooled_sums(job, parts)
    sums = np.zeros((x.shape[0], F), np.float64)
    for b0, part in pieces:
        sums[b0 : b0 + len(part)] += part
    return (sums / pixels).astype(x.dtype)


def forward_pooled_ready(dtype) -> bool:
    """Whether :func:`conv2d_forward_pooled`'s numba kernel (one group, im2col) is compiled for ``dtype``; if not, it
    is compiled (or loaded) in the background and False is returned meanwhile
    (:func:`tinynn.kernels.warmup.kernel_ready`; always True in "wait" compile mode). For the layers that run
    their inference as a pooled 1-D convolution (Conv1D)."""
    return warmup.kernels_ready(_pooled_ready, dtype, lambda d: [(_forward_rows, _forward_rows_sample(d))])


_pooled_ready: set = set()  # dtypes forward_pooled_ready found compiled


def _forward_rows_sample(dtype) -> tuple:
    """Arguments of :func:`_forward_rows` with the numba types :func:`conv2d_forward_pooled` passes for ``dtype``."""
    d = np.dtype(dtype)
    v, m = np.empty(1, d), np.empty((1, 1), d)
    return (np.empty((1, 1, 1, 1), d), m, v, 0, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 0, 1, 1, v, v, m, 0,
            np.empty((1, 1), np.float64))  # fmt: skip


def conv2d_backward(x, Wk, dz, strides=(1, 1), dilation=(1, 1), pads=(0, 0), groups=1, need_dx: bool = True,
                    workspace: dict | None = None) -> tuple[np.ndarray | None, np.ndarray]:  # fmt: skip
    """(dx (B, H, W, C) or None, dWk (KH, KW, C/G, F)) for dz (B, Ho, Wo, F)."""
    dx, dW, _ = _backward(x, Wk, dz, None, None, strides, dilation, pads, groups, need_dx, workspace)
    return dx, dW


def conv2d_backward_fused(x, Wk, y, dy, activation: int, strides=(1, 1), dilation=(1, 1), pads=(0, 0), groups=1,
                          need_dx: bool = True, workspace: dict | None = None):  # fmt: skip
    """(dx or None, dWk, db) for y = act(conv(x, Wk) + b) and dy = ∂L/∂y: each chunk's dz = act'(y) ⊙ dy is formed
    in the cache right before its GEMMs, and db = Σ dz is summed in float64 on the way.

    dy may be the gradient of a global average pooling as a view (strides 0 along both image axes:
    ``GlobalAveragePooling2D.backward_broadcast``): each chunk then reads the row g[b] = dy[b, 0, 0] of its images
    (:func:`tinynn.kernels.bias_activation.activation_gradient_broadcast_rows`, the same bits) instead of Ho·Wo
    copies of it written out."""
    if y.shape != dy.shape:
        raise ValueError(f"conv2d: y {y.shape} and dy {dy.shape} differ")
    return _backward(x, Wk, dy, np.ascontiguousarray(y, dtype=dy.dtype), int(activation), strides, dilation, pads,
                     groups, need_dx, workspace)


def _backward(x, Wk, dz, y, activation, strides, dilation, pads, groups, need_dx, workspace):
    """The shared backward: dz is ∂L/∂z, or ∂L/∂y when ``activation`` is given (with y the forward's output)."""
    KH, KW, Cg, F = Wk.shape
    B, H, W, C = x.shape
    G = int(groups)
    _check(x, Wk, G, dz.shape[1:3] if dz.ndim == 4 else (0, 0))
    if dz.shape != (B, dz.shape[1], dz.shape[2], F):
        raise ValueError(f"conv2d: dz {dz.shape} does not match x {x.shape} and Wk {Wk.shape}")
    _, Ho, Wo, _ = dz.shape
    g = None if activation is None else _pooled_gradient(dz, y, activation)  # (B, F): dz[b, i, j] = g[b]
    x, ws, Fg = np.ascontiguousarray(x), {} if workspace is None else workspace, F // G
    if g is None:
        dz = np.ascontiguousarray(dz)
    if uses_winograd(Wk.shape, strides, dilation, G):  # dW and dx by Winograd
        db = None
        if activation is not None:
            dz, db = _activation_gradients(y, dz, activation, g)
        dW = winograd.winograd_conv2d_backward_filter(x, dz, pads, ws)
        dx = winograd.winograd_conv2d_backward_data(dz, Wk, (H, W), pads, ws) if need_dx else None
        return dx, dW, db
    K = KH * KW * Cg
    Wm = _w_im2col(Wk, G)
    WmT = np.ascontiguousarray(Wm.transpose(0, 2, 1))  # (G, Fg, K)
    dx = np.empty((B, H, W, C), dtype=dz.dtype) if need_dx else None
    rows = B * Ho * Wo

    args = (KH, KW, strides[0], strides[1], dilation[0], dilation[1], pads[0], pads[1], Ho)
    dz_all = dz.reshape(B * Ho * Wo, F) if g is None else None
    y_all = None if y is None else y.reshape(B * Ho * Wo, F)

    def piece(k, b0, b1):
        dWm = np.zeros((G, K, Fg), dtype=dz.dtype)
        db = np.zeros(F, np.float64)
        zeroed = np.zeros(B, np.int64)  # rows of each image of dx zeroed so far (see _col2im_rows)
        for r0, r1 in _chunks(b0 * Ho, b1 * Ho, Wo * K * dz.itemsize):
            n = (r1 - r0) * Wo
            if activation is not None:  # dz = act'(y) ⊙ dy for this chunk, db += Σ dz
                grad = _scratch(ws, f"dz{k}", (n, F), dz.dtype)
                if g is None:
                    _activation_gradient(y_all[r0 * Wo : r1 * Wo], dz_all[r0 * Wo : r1 * Wo], activation, grad, db)
                else:
                    _activation_gradient_broadcast(y_all[r0 * Wo : r1 * Wo], g, r0 * Wo, Ho * Wo, activation, grad, db)
                dz_rows = grad
            else:
                dz_rows = dz_all[r0 * Wo : r1 * Wo]
            dz_g = split_groups(dz_rows[None], G)  # (G, n, Fg)
            buf = _scratch(ws, f"cols{k}", (G, r1 - r0, Wo, KH, KW, Cg), dz.dtype)
            cols = _im2col_rows(x, *args, r0, buf).reshape(G, n, K)
            blas.grouped_matmul_tn(cols, dz_g, dWm, accumulate=True)  # dWm += colsᵀ @ dz_g, colsᵀ read in place
            if need_dx:
                dcols = blas.grouped_matmul(dz_g, WmT, _scratch(ws, f"dcols{k}", (G, n, K), dz.dtype))
                _col2im_rows(dcols.reshape(G, r1 - r0, Wo, KH, KW, Cg), strides[0], strides[1], dilation[0],
                             dilation[1], pads[0], pads[1], Ho, r0, dx, zeroed)  # fmt: skip
        return dWm, db

    partial = share_batch(piece, B, rows * K * F * (2 if need_dx else 1))
    dWm, db = partial[0]
    for other_dW, other_db in partial[1:]:
        dWm += other_dW
        db += other_db
    return dx, _dw_from_im2col(dWm, (KH, KW)), (db.astype(dz.dtype) if activation is not None else None)


def _activation_gradients(y: np.ndarray, dy: np.ndarray, code: int,
                          g: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """(dz = act'(y) ⊙ dy, db = Σ dz over every axis but the last) for whole arrays (B, Ho, Wo, F), rows split over
    the cores; with ``g`` (B, F), dy is a view of g[b] at every pixel of image b and only g is read."""
    F = y.shape[-1]
    y_rows = y.reshape(-1, F)
    dy_rows = dy.reshape(-1, F) if g is None else None
    pixels = y.shape[1] * y.shape[2]
    dz = np.empty(dy.shape, dtype=dy.dtype)
    dz_rows = dz.reshape(-1, F)

    def piece(k, r0, r1):
        db = np.zeros(F, np.float64)
        if g is None:
            _activation_gradient(y_rows[r0:r1], dy_rows[r0:r1], code, dz_rows[r0:r1], db)
        else:
            _activation_gradient_broadcast(y_rows[r0:r1], g, r0, pixels, code, dz_rows[r0:r1], db)
        return db

    db = sum(share_batch(piece, y_rows.shape[0], y.size, blas=False))
    return dz, db.astype(dy.dtype)


def _bias_activation(z: np.ndarray, bias: np.ndarray, code: int) -> None:
    """z (N, F) <- act(z + bias) in place (:func:`tinynn.kernels.bias_activation.bias_activation_rows`)."""
    bias_activation_rows(z, bias, code, z)


def _activation_gradient(y: np.ndarray, dy: np.ndarray, code: int, dz: np.ndarray, db: np.ndarray) -> None:
    """dz (N, F) <- act'(y) ⊙ dy (the derivative written from the output y); db (F,) float64 += Σ_n dz
    (:func:`tinynn.kernels.bias_activation.activation_gradient_rows`)."""
    part = np.empty(db.shape, np.float64)
    activation_gradient_rows(y, dy, code, True, dz, part)
    db += part


def _activation_gradient_broadcast(y: np.ndarray, g: np.ndarray, p0: int, pixels: int, code: int, dz: np.ndarray,
                                   db: np.ndarray) -> None:  # fmt: skip
    """:func:`_activation_gradient` for dy[n] = g[(p0 + n) // pixels]: the rows of y, dz are the pixels p0, p0 + 1,
    ... of images of ``pixels`` pixels, whose upstream gradient is the same row g[b] at every pixel of image b
    (:func:`tinynn.kernels.bias_activation.activation_gradient_broadcast_rows`)."""
    part = np.empty(db.shape, np.float64)
    activation_gradient_broadcast_rows(y, g, p0, pixels, code, True, dz, part)
    db += part


def _pooled_gradient(dy: np.ndarray, y: np.ndarray, code: int) -> np.ndarray | None:
    """g (B, F) when dy (B, Ho, Wo, F) is a view with the same row g[b] = dy[b, 0, 0] at every pixel of image b
    (strides 0 along both image axes: the gradient of a global average pooling, as
    ``GlobalAveragePooling2D.backward_broadcast`` hands it over) and the kernel that reads it is compiled (else it
    is compiled in the background meanwhile: :func:`tinynn.kernels.warmup.kernel_ready`); None otherwise."""
    if dy.ndim != 4 or dy.strides[1] != 0 or dy.strides[2] != 0 or dy.shape[1] * dy.shape[2] < 2:
        return None
    g = np.ascontiguousarray(dy[:, 0, 0], y.dtype)
    F = y.shape[-1]
    rows = y.reshape(-1, F)
    sample = (rows, g, 0, 1, int(code), True, np.empty((1, F), y.dtype), np.empty(F, np.float64))
    return g if warmup.kernel_ready(activation_gradient_broadcast_rows, *sample) else None


# --------------------------------------------------------------------------- depthwise
@numba.njit(error_model="numpy", cache=True, nogil=True)
def _dw_forward(x, D, Dt, sh, sw, dh, dw, pt, pl, u):  # pragma: no cover - compiled
    """u (B, Ho, Wo, C·M) = Σ_{p,q} x[b, i·sh+p·dh-pt, j·sw+q·dw-pl, c] · D[p,q,c·M+m]  (D flattened to (KH, KW, C·M);
    Dt[p,q] = D[p,q] tiled Wo times, used by the flat path: sw = 1 and M = 1)."""
    B, H, W, C = x.shape
    _, Ho, Wo, CM = u.shape
    KH, KW = D.shape[0], D.shape[1]
    M = CM // C
    flat = sw == 1 and M == 1
    x_rows = x.reshape(B, H, W * C)
    three = flat and KH == 3 and KW == 3
    c0 = min(Wo, max(0, pl))  # with a 3×3 kernel: the columns c0 .. c1-1 read a real pixel at every tap
    c1 = max(c0, min(Wo, W - 2 * dw + pl))
    dtf = Dt.reshape(Dt.size)
    for b in range(B):
        xb = x_rows[b].reshape(H * W * C)
        for i in range(Ho):
            u_row = u[b, i].reshape(Wo * CM)
            h0 = i * sh - pt
            if three and h0 >= 0 and h0 + 2 * dh < H and c1 > c0:
                _dw_row_3x3(xb, dtf, u_row, h0 * W * C, dh * W * C, (dw * C, pl * C), Wo * C, c0 * C, c1 * C)
                lo, hi = c0, c1  # done: columns lo .. hi-1; the edge columns below, tap by tap
            else:
                lo, hi = 0, 0
            for k in range(lo * CM):
                u_row[k] = 0
            for k in range(hi * CM, Wo * CM):
                u_row[k] = 0
            for p in range(KH):
                h = i * sh + p * dh - pt
                if h < 0 or h >= H:
                    continue
                for q in range(KW):
                    off = q * dw - pl  # input column of output column j: j·sw + off
                    j0 = 0
                    while j0 < Wo and j0 * sw + off < 0:
                        j0 += 1
                    j1 = min(Wo, (W - 1 - off) // sw + 1) if W - 1 - off >= 0 else 0
                    if j1 <= j0:
                        continue
                    if flat:  # the columns left of lo, then those from hi (all of them when lo = hi = 0)
                        for e0, e1 in ((j0, min(j1, lo)), (max(j0, hi), j1)):
                            if e1 > e0:
                                src = x_rows[b, h, (e0 + off) * C : (e1 + off) * C]
                                dst = u_row[e0 * C : e1 * C]
                                d = Dt[p, q, e0 * C : e1 * C]
                                for k in range(src.shape[0]):
                                    dst[k] += src[k] * d[k]
                    else:
                        dpq = D[p, q]
                        for j in range(j0, j1):
                            xv = x[b, h, j * sw + off]
                            uv = u[b, i, j]
                            for c in range(C):
                                xc = xv[c]
                                for m in range(M):
                                    uv[c * M + m] += xc * dpq[c * M + m]
    return u


@numba.njit(error_model="numpy", cache=True, nogil=True, inline="always")
def _dw_row_3x3(xb, dtf, u_row, r0, dr, cols, n, k0, k1):  # pragma: no cover - compiled
    """u_row[k] = Σ_{p,q} xb[r0 + p·dr + q·dc - pc + k] · dtf[(3p + q)·n + k] for k0 <= k < k1 ((dc, pc) = ``cols``:
    a column step of the taps and the left padding, in numbers), the nine taps of a 3×3 depthwise kernel added in
    :func:`_dw_forward`'s order (p, then q, from 0) in one loop: each output number is stored once instead of
    loaded and stored nine times. The same bits as tap by tap (no fused multiply-add either way)."""
    dc, pc = cols
    u64 = np.uint64
    a0 = u64(r0 - pc + k0)  # >= 0: the taps' columns are real (c0 >= pl)
    a1, a2 = a0 + u64(dr), a0 + u64(2 * dr)
    b1, b2 = u64(dc), u64(2 * dc)
    d0 = u64(k0)
    zero = u_row.dtype.type(0)
    for t in range(u64(k1 - k0)):  # unsigned offsets: no negative-index wraparound in the loop (it vectorises)
        s = zero
        s += xb[a0 + t] * dtf[d0 + t]
        s += xb[a0 + b1 + t] * dtf[d0 + u64(n) + t]
        s += xb[a0 + b2 + t] * dtf[d0 + u64(2 * n) + t]
        s += xb[a1 + t] * dtf[d0 + u64(3 * n) + t]
        s += xb[a1 + b1 + t] * dtf[d0 + u64(4 * n) + t]
        s += xb[a1 + b2 + t] * dtf[d0 + u64(5 * n) + t]
        s += xb[a2 + t] * dtf[d0 + u64(6 * n) + t]
        s += xb[a2 + b1 + t] * dtf[d0 + u64(7 * n) + t]
        s += xb[a2 + b2 + t] * dtf[d0 + u64(8 * n) + t]
        u_row[d0 + t] = s


#: Output rows of an image whose products :func:`_dw_backward` sums in the data's own dtype before adding them to its
#: float64 sums: a float32 sum of at most this many terms per column (relative error ≲ 16·2⁻²⁴ ≈ 1e-6) runs at
#: float32's vector width, and halved dD's time on M8's layers against float64 sums of every product
#: (benchmarks/RESULTS.md).
DW_ROWS = 16


@numba.njit(error_model="numpy", cache=True, nogil=True)
def _dw_backward(x, D, Dt, du, sh, sw, dh, dw, pt, pl, need_dx, dx, acc):  # pragma: no cover - compiled
    """dx (B, H, W, C) <- 0 then the scatter of du · D (if need_dx); acc (KH, KW, Wo·C·M) float64 += the per-column
    products x · du (summed over columns by the caller into dD; the flat path keeps one accumulator per column).
    The products of up to ``DW_ROWS`` output rows of one image are summed in x's dtype (``part``), then added to
    acc."""
    B, H, W, C = x.shape
    _, Ho, Wo, CM = du.shape
    KH, KW = D.shape[0], D.shape[1]
    M = CM // C
    flat = sw == 1 and M == 1
    x_rows = x.reshape(B, H, W * C)
    dx_rows = dx.reshape(dx.shape[0], H, W * C)
    part = np.zeros(acc.shape, x.dtype)
    acc_flat, part_flat = acc.reshape(acc.size), part.reshape(part.size)
    for b in range(B):
        if need_dx:
            zero = dx_rows[b].reshape(H * W * C)
            for k in range(H * W * C):
                zero[k] = 0
        for i in range(Ho):
            du_row = du[b, i].reshape(Wo * CM)
            for p in range(KH):
                h = i * sh + p * dh - pt
                if h < 0 or h >= H:
                    continue
                for q in range(KW):
                    off = q * dw - pl
                    j0 = 0
                    while j0 < Wo and j0 * sw + off < 0:
                        j0 += 1
                    j1 = min(Wo, (W - 1 - off) // sw + 1) if W - 1 - off >= 0 else 0
                    if j1 <= j0:
                        continue
                    a = part[p, q]
                    if flat:
                        src = x_rows[b, h, (j0 + off) * C : (j1 + off) * C]
                        g = du_row[j0 * C : j1 * C]
                        a_part = a[j0 * C : j1 * C]
                        for k in range(src.shape[0]):
                            a_part[k] += src[k] * g[k]
                        if need_dx:
                            dst = dx_rows[b, h, (j0 + off) * C : (j1 + off) * C]
                            d = Dt[p, q, j0 * C : j1 * C]
                            for k in range(dst.shape[0]):
                                dst[k] += g[k] * d[k]
                    else:
                        dpq = D[p, q]
                        for j in range(j0, j1):
                            w = j * sw + off
                            xv = x[b, h, w]
                            gv = du[b, i, j]
                            for c in range(C):
                                xc = xv[c]
                                s = gv[c * M] * dpq[c * M]
                                a[j * CM + c * M] += xc * gv[c * M]
                                for m in range(1, M):
                                    a[j * CM + c * M + m] += xc * gv[c * M + m]
                                    s += gv[c * M + m] * dpq[c * M + m]
                                if need_dx:
                                    dx[b, h, w, c] += s
            if i % DW_ROWS == DW_ROWS - 1 or i == Ho - 1:  # a run's (or the image's last) sums into acc
                for k in range(acc_flat.shape[0]):
                    acc_flat[k] += part_flat[k]
                    part_flat[k] = 0
    return dx


def _depthwise_check(x, D, out_hw):
    if x.ndim != 4 or D.ndim != 4 or D.shape[2] != x.shape[3]:
        raise ValueError(f"depthwise_conv2d: x must be (B, H, W, C) and D (KH, KW, C, M), got {x.shape} and {D.shape}")
    if min(out_hw) < 1:
        raise ValueError(f"depthwise_conv2d: empty output {tuple(out_hw)} for x {x.shape}")


def _depthwise_output_size(x, D, strides, dilation, pads, out_hw) -> tuple[int, int]:
    """(Ho, Wo) of a depthwise convolution of x by D (``out_hw`` None: the size with the given top/left padding and
    none after), checked (:func:`_depthwise_check`)."""
    KH, KW = D.shape[:2]
    _, H, W, _ = x.shape
    if out_hw is None:
        out_hw = ((H + pads[0] - (KH - 1) * dilation[0] - 1) // strides[0] + 1,
                  (W + pads[1] - (KW - 1) * dilation[1] - 1) // strides[1] + 1)  # fmt: skip
    _depthwise_check(x, D, out_hw)
    return tuple(out_hw)


def _depthwise_operands(D, dtype, Wo: int, strides, dilation, pads) -> tuple:
    """(Df, Dt, geometry) the depthwise kernels take: D (KH, KW, C, M) as Df (KH, KW, C·M) in ``dtype``, Dt[p, q] =
    Df[p, q] tiled Wo times (Dt[p, q, j·C + c] = D[p, q, c]: the flat path's, stride 1 along the width and M = 1),
    and (sh, sw, dh, dw, pt, pl) as ints."""
    KH, KW, C, M = D.shape
    Df = np.ascontiguousarray(D, dtype=dtype).reshape(KH, KW, C * M)
    Dt = np.ascontiguousarray(np.tile(Df, (1, 1, Wo)))
    return Df, Dt, (int(strides[0]), int(strides[1]), int(dilation[0]), int(dilation[1]), int(pads[0]), int(pads[1]))


def _depthwise_filter_gradient(acc: np.ndarray, D_shape, Wo: int, dtype) -> np.ndarray:
    """dD (KH, KW, C, M) from the kernels' per-column float64 sums acc (KH, KW, Wo·C·M)."""
    KH, KW, C, M = D_shape
    return acc.reshape(KH, KW, Wo, C, M).sum(axis=2).astype(dtype)


def depthwise_conv2d_forward(x, D, strides=(1, 1), dilation=(1, 1), pads=(0, 0), out_hw=None) -> np.ndarray:
    """u (B, Ho, Wo, C·M) for x (B, H, W, C) and D (KH, KW, C, M); no bias."""
    KH, KW, C, M = D.shape
    B = x.shape[0]
    Ho, Wo = out_hw = _depthwise_output_size(x, D, strides, dilation, pads, out_hw)
    x = np.ascontiguousarray(x)
    Df, Dt, args = _depthwise_operands(D, x.dtype, Wo, strides, dilation, pads)
    u = np.empty((B, Ho, Wo, C * M), dtype=x.dtype)
    share_batch(lambda k, b0, b1: _dw_forward(x[b0:b1], Df, Dt, *args, u[b0:b1]), B, u.size * KH * KW, blas=False)
    return u


@numba.njit(error_model="numpy", cache=True, nogil=True)
def _separable_images(x, D, Dt, P, bias, code, sh, sw, dh, dw, pt, pl, b_start, b_stop, u, z, y,
                      p):  # pragma: no cover - compiled
    """Images b_start .. b_stop-1 of a depthwise-separable convolution, each image's depthwise output formed in the
    scratch u (1, Ho, Wo, C·M) (:func:`_dw_forward`) and multiplied by P (C·M, F) while it is in the cache, then
    act(· + bias) (:func:`tinynn.kernels.bias_activation.bias_activation_rows`) written to y[b], or (p has images:
    p (B, Ho // 2, Wo // 2, F)) formed in the scratch z (Ho·Wo, F) and its 2×2 max pooling written to p[b]
    (:func:`_max_pool_pairs`)."""
    _, Ho, Wo, CM = u.shape
    F = P.shape[1]
    rows = u.reshape((Ho * Wo, CM))
    for b in range(b_start, b_stop):
        _dw_forward(x[b : b + 1], D, Dt, sh, sw, dh, dw, pt, pl, u)
        out = z if p.shape[0] > 0 else y[b].reshape((Ho * Wo, F))
        blas.gemm(rows, P, out, False, False, 0.0)
        bias_activation_rows(out, bias, code, out)
        if p.shape[0] > 0:
            _max_pool_pairs(out, Wo, p[b])
    return y


def separable_conv2d_forward(x, D, P, strides=(1, 1), dilation=(1, 1), pads=(0, 0), out_hw=None,
                             bias: np.ndarray | None = None, activation: int = LINEAR, max_pooled: bool = False,
                             workspace: dict | None = None) -> np.ndarray:  # fmt: skip
    """y (B, Ho, Wo, F) = act(u P + bias) for u = :func:`depthwise_conv2d_forward` (x, D) (P (C·M, F), ``bias`` None:
    zeros, ``activation`` a :func:`tinynn.kernels.fastmath.activation_code`), image by image, each image's u used
    while it is in the cache and never written out (:func:`_separable_images`; images shared out over the cores);
    ``max_pooled``: instead y's 2×2, stride-2, unpadded max pooling p (B, Ho // 2, Wo // 2, F), y never written
    either. u has the bits of :func:`depthwise_conv2d_forward`'s; the product, one image's rows at a time, the
    numbers of :func:`pointwise_forward` up to its rounding (BLAS may round a row differently in a product of
    another height)."""
    KH, KW, C, M = D.shape
    B = x.shape[0]
    Ho, Wo = out_hw = _depthwise_output_size(x, D, strides, dilation, pads, out_hw)
    F = P.shape[-1]
    if P.shape != (C * M, F) or (bias is not None and np.shape(bias) != (F,)):
        raise ValueError(f"separable_conv2d: P {P.shape} and bias {np.shape(bias)} do not fit {C * M} depthwise "
                         "channels")  # fmt: skip
    if max_pooled and min(Ho, Wo) < 2:
        raise ValueError(f"separable_conv2d: a {tuple(out_hw)} output has no whole 2×2 window")
    x, ws = np.ascontiguousarray(x), {} if workspace is None else workspace
    Df, Dt, args = _depthwise_operands(D, x.dtype, Wo, strides, dilation, pads)
    Pc = np.ascontiguousarray(P, dtype=x.dtype)
    b = np.zeros(F, x.dtype) if bias is None else np.ascontiguousarray(bias, dtype=x.dtype)
    if max_pooled:
        y, p = np.empty((0, Ho, Wo, F), x.dtype), np.empty((B, Ho // 2, Wo // 2, F), x.dtype)
    else:
        y, p = np.empty((B, Ho, Wo, F), x.dtype), np.empty((0, 1, 1, F), x.dtype)

    def piece(k, b0, b1):
        u = _scratch(ws, f"sep_u{k}", (1, Ho, Wo, C * M), x.dtype)
        z = _scratch(ws, f"sep_z{k}", (Ho * Wo if max_pooled else 0, F), x.dtype)
        _separable_images(x, Df, Dt, Pc, b, int(activation), *args, b0, b1, u, z, y, p)

    with kernel_scope():  # BLAS on one thread also when the pass runs on the calling thread alone
        share_batch(piece, B, B * Ho * Wo * C * M * (KH * KW + F))
    return p if max_pooled else y


@numba.njit(error_model="numpy", cache=True, nogil=True)
def _separable_backward_images(x, D, Dt, PT, u, y, dy, code, sh, sw, dh, dw, pt, pl, b_start, b_stop, need_dx, g,
                               du, dx, dP, db, acc, small):  # pragma: no cover - compiled
    """The backward of images b_start .. b_stop-1 of y = act(u P + bias), u = the depthwise convolution of x (u
    (B, Ho, Wo, C·M) kept by the forward, PT = Pᵀ (F, C·M)), one image at a time with its gradients in the cache:
    g = act'(y[b]) ⊙ dy[b] in the scratch g (Ho·Wo, F) and db += Σ g (float64, row after row: the order of the
    pooling's one-pass backward, :func:`tinynn.kernels.pooling2d.max_pool2d_backward_to_logits`; ``code`` < 0: dy is
    ∂L/∂z already, g = dy[b], db left to the caller), du = g Pᵀ in the scratch du (Ho·Wo, C·M), dP += u[b]ᵀ g (in
    ranges of the image's pixels for the small-matrix kernels: :func:`tinynn.kernels.blas.gemm_small` with
    ``small``), then the depthwise backward of that du (:func:`_dw_backward`: dx[b] if ``need_dx``, acc += the
    per-column products)."""
    _, Ho, Wo, CM = u.shape
    F = PT.shape[0]
    unused = np.empty(F, np.float64)
    du_image = du.reshape((1, Ho, Wo, CM))
    for b in range(b_start, b_stop):
        if code >= 0:
            activation_gradient_rows(y[b].reshape((Ho * Wo, F)), dy[b].reshape((Ho * Wo, F)), code, False, g, unused)
            for n in range(Ho * Wo):
                gn = g[n]
                for f in range(F):
                    db[f] += gn[f]
            gb = g
        else:
            gb = dy[b].reshape((Ho * Wo, F))
        blas.gemm(gb, PT, du, False, False, 0.0)
        blas.gemm_small(u[b].reshape((Ho * Wo, CM)), gb, dP, True, False, 1.0, small)
        _dw_backward(x[b : b + 1], D, Dt, du_image, sh, sw, dh, dw, pt, pl, need_dx, dx[b : b + 1] if need_dx else dx,
                     acc)  # fmt: skip
    return dP


def separable_conv2d_backward(x, D, P, u, dy, y: np.ndarray | None = None, activation: int | None = None,
                              strides=(1, 1), dilation=(1, 1), pads=(0, 0), need_dx: bool = True,
                              workspace: dict | None = None):  # fmt: skip
    """(dx (B, H, W, C) or None, dD (KH, KW, C, M), dP (C·M, F), db (F,) or None) of y = act(u P + bias) with u the
    depthwise convolution of x by D (kept by the training forward): with
    ``activation`` (and y), dy is ∂L/∂y and db = Σ ∂L/∂z (float64 sums); without, dy is ∂L/∂z and db None. Image by
    image (:func:`_separable_backward_images`; images shared out over the cores, the pieces' dP, db and dD sums
    added in range order): du = ∂L/∂u is never written out. dD is summed as in :func:`depthwise_conv2d_backward`."""
    KH, KW, C, M = D.shape
    B, H, W, _ = x.shape
    _, Ho, Wo, CM = u.shape
    F = P.shape[-1]
    _depthwise_check(x, D, (Ho, Wo))
    if u.shape != (B, Ho, Wo, C * M) or P.shape != (C * M, F) or dy.shape != (B, Ho, Wo, F) or (
            activation is not None and (y is None or y.shape != dy.shape)):  # fmt: skip
        raise ValueError(f"separable_conv2d_backward: x {x.shape}, D {D.shape}, P {P.shape}, u {u.shape}, dy "
                         f"{dy.shape} and y {None if y is None else y.shape} do not fit")  # fmt: skip
    x, u = np.ascontiguousarray(x), np.ascontiguousarray(u)
    dy = np.ascontiguousarray(dy, dtype=x.dtype)
    y = dy if activation is None else np.ascontiguousarray(y, dtype=x.dtype)
    ws = {} if workspace is None else workspace
    Df, Dt, args = _depthwise_operands(D, x.dtype, Wo, strides, dilation, pads)
    PT = np.ascontiguousarray(P.T, dtype=x.dtype)
    dx = np.empty((B, H, W, C), dtype=x.dtype) if need_dx else np.empty((0, H, W, C), x.dtype)
    code = -1 if activation is None else int(activation)
    small = cblas.small_gemm_work(x.dtype)  # dP's products in ranges of pixels, for the small-matrix kernels

    def piece(k, b0, b1):
        g = _scratch(ws, f"sep_g{k}", (Ho * Wo if code >= 0 else 0, F), x.dtype)
        du = _scratch(ws, f"sep_du{k}", (Ho * Wo, CM), x.dtype)
        dP, db = np.zeros((CM, F), x.dtype), np.zeros(F, np.float64)
        acc = np.zeros((KH, KW, Wo * CM), np.float64)
        _separable_backward_images(x, Df, Dt, PT, u, y, dy, code, *args, b0, b1, need_dx, g, du, dx, dP, db, acc,
                                   small)
        return dP, db, acc

    with kernel_scope():  # BLAS on one thread also when the pass runs on the calling thread alone
        parts = share_batch(piece, B, B * Ho * Wo * CM * (2 * F + 2 * KH * KW))
    dP, db, acc = parts[0]
    for other_dP, other_db, other_acc in parts[1:]:
        dP += other_dP
        db += other_db
        acc += other_acc
    dD = _depthwise_filter_gradient(acc, D.shape, Wo, x.dtype)
    return (dx if need_dx else None), dD, dP, (None if activation is None else db.astype(x.dtype))


def separable_backward_ready(dtype) -> bool:
    """Whether :func:`separable_conv2d_backward`'s kernel is compiled for ``dtype`` (as :func:`separable_ready`)."""
    return warmup.kernels_ready(_separable_backward_ready, dtype,
                                lambda d: [(_separable_backward_images, _separable_backward_sample(d))])  # fmt: skip


_separable_backward_ready: set = set()  # dtypes separable_backward_ready found compiled


def _separable_backward_sample(dtype) -> tuple:
    """Arguments of :func:`_separable_backward_images` with the numba types :func:`separable_conv2d_backward`
    passes."""
    d = np.dtype(dtype)
    image, m, m3 = np.empty((1, 1, 1, 1), d), np.empty((1, 1), d), np.empty((1, 1, 1), d)
    return (image, m3, m3, m, image, image, image, 0, 1, 1, 1, 1, 0, 0, 0, 1, True, m, m, image, m, np.empty(1),
            np.empty((1, 1, 1)), 0)  # fmt: skip


def separable_ready(dtype) -> bool:
    """Whether :func:`separable_conv2d_forward`'s kernel is compiled for ``dtype``; if not, it is compiled (or
    loaded) in the background and False is returned meanwhile (:func:`tinynn.kernels.warmup.kernels_ready`; always
    True in "wait" compile mode)."""
    return warmup.kernels_ready(_separable_ready, dtype, lambda d: [(_separable_images, _separable_sample(d))])


_separable_ready: set = set()  # dtypes separable_ready found compiled


def _separable_sample(dtype) -> tuple:
    """Arguments of :func:`_separable_images` with the numba types :func:`separable_conv2d_forward` passes."""
    d = np.dtype(dtype)
    image, m = np.empty((1, 1, 1, 1), d), np.empty((1, 1), d)
    return (image, np.empty((1, 1, 1), d), np.empty((1, 1, 1), d), m, np.empty(1, d), 0, 1, 1, 1, 1, 0, 0, 0, 1,
            image, m, image, image)  # fmt: skip


def depthwise_conv2d_backward(x, D, du, strides=(1, 1), dilation=(1, 1), pads=(0, 0), need_dx: bool = True):
    """(dx (B, H, W, C) or None, dD (KH, KW, C, M)) for du (B, Ho, Wo, C·M). dD's products are summed per column in
    x's dtype over runs of up to ``DW_ROWS`` output rows of an image, those sums in float64 (:func:`_dw_backward`)."""
    KH, KW, C, M = D.shape
    B, H, W, _ = x.shape
    _depthwise_check(x, D, du.shape[1:3] if du.ndim == 4 else (0, 0))
    if du.shape != (B, du.shape[1], du.shape[2], C * M):
        raise ValueError(f"depthwise_conv2d: du {du.shape} does not match x {x.shape} and D {D.shape}")
    Ho, Wo = du.shape[1:3]
    x, du = np.ascontiguousarray(x), np.ascontiguousarray(du)
    Df, Dt, args = _depthwise_operands(D, x.dtype, Wo, strides, dilation, pads)
    dx = np.empty((B, H, W, C), dtype=du.dtype) if need_dx else np.empty((0, H, W, C), du.dtype)

    def piece(k, b0, b1):
        acc = np.zeros((KH, KW, Wo * C * M), np.float64)
        _dw_backward(x[b0:b1], Df, Dt, du[b0:b1], *args, need_dx, dx[b0:b1] if need_dx else dx, acc)
        return acc

    acc = sum(share_batch(piece, B, 2 * du.size * KH * KW, blas=False))
    dD = _depthwise_filter_gradient(acc, D.shape, Wo, x.dtype)
    return (dx if need_dx else None), dD


# --------------------------------------------------------------------------- pointwise (1×1) products
def pointwise_forward(u: np.ndarray, P: np.ndarray, bias: np.ndarray | None = None,
                      activation: int | None = None) -> np.ndarray:  # fmt: skip
    """z = u @ P over the rows of u (..., K) for P (K, F): the 1×1 convolution of SeparableConv2D. With
    ``activation`` (an activation code), y = act(z + bias) instead, applied to each piece right after its GEMM."""
    rows = u.reshape(-1, u.shape[-1])
    F = P.shape[1]
    z = np.empty((rows.shape[0], F), dtype=u.dtype)
    P = np.ascontiguousarray(P, dtype=u.dtype)
    b = np.zeros(F, u.dtype) if bias is None else np.ascontiguousarray(bias, dtype=u.dtype)

    def piece(k, r0, r1):
        blas.grouped_matmul(rows[None, r0:r1], P[None], z[None, r0:r1])
        if activation is not None:
            _bias_activation(z[r0:r1], b, activation)

    share_batch(piece, rows.shape[0], rows.size * F)
    return z.reshape(*u.shape[:-1], F)


def pointwise_backward(u: np.ndarray, P: np.ndarray, dz: np.ndarray, y: np.ndarray | None = None,
                       activation: int | None = None):  # fmt: skip
    """(du = dz @ Pᵀ, dP = Σ_rows uᵀ dz) for z = u @ P; rows split over the cores (dP summed over the pieces).

    With ``activation`` (and y = act(z + b) the forward's output), ``dz`` is ∂L/∂y: each piece forms
    ∂L/∂z = act'(y) ⊙ dz first, and the result is (du, dP, db) with db = Σ_rows ∂L/∂z (float64 sums)."""
    F = P.shape[1]
    rows, dz_rows = u.reshape(-1, u.shape[-1]), np.ascontiguousarray(dz).reshape(-1, F)
    y_rows = None if y is None else np.ascontiguousarray(y, dtype=dz.dtype).reshape(-1, F)
    du = np.empty(rows.shape, dtype=dz.dtype)
    PT = np.ascontiguousarray(P.T, dtype=dz.dtype)

    dtype = np.result_type(rows.dtype, dz.dtype)

    def piece(k, r0, r1):  # chunks of rows whose ∂L/∂z stays in the cache between its two products
        dP, db = np.zeros((1, P.shape[0], F), dtype), np.zeros(F, np.float64)
        for c0, c1 in _chunks(r0, r1, F * dz.itemsize):
            g = dz_rows[c0:c1]
            if activation is not None:
                grad = np.empty(g.shape, dtype=g.dtype)
                _activation_gradient(y_rows[c0:c1], g, activation, grad, db)
                g = grad
            blas.grouped_matmul(g[None], PT[None], du[None, c0:c1])
            blas.grouped_matmul_tn(rows[None, c0:c1], g[None], dP, accumulate=True)  # uᵀ read in place, not copied
        return dP[0], db

    partial = share_batch(piece, rows.shape[0], 2 * rows.size * F)
    dP, db = partial[0]
    for other_dP, other_db in partial[1:]:
        dP += other_dP
        db += other_db
    if activation is None:
        return du.reshape(u.shape), dP
    return du.reshape(u.shape), dP, db.astype(dz.dtype)


load_without_refresh(globals())  # cached kernels load without refreshing numba (tinynn.kernels.jitcache)
