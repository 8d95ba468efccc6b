r"""3×3, stride-1 Conv2D with few input channels by Winograd's F(2, 3) along the width only, numba + BLAS.

The math (read it first): :mod:`tinynn.kernels.reference.conv2d`, section "Winograd F(2, 3) along the width". Each
pair t = (b, i, j) of output pixels (i, 2j) and (i, 2j + 1) reads the columns 2j .. 2j + 3 of the input rows
i .. i + 2; with the three kernel rows and the C channels as one summed axis of 3·C numbers,
V_t = Bᵀ d_t (4 vectors of 3·C), U = G W (4 matrices (3·C, F)), and for each position ξ the sum over that axis for all
pairs is one matrix product::

    M[ξ] = V[ξ] @ U[ξ]        V (4, pairs, 3·C), U (4, 3·C, F), M (4, pairs, F)

That is 4·3·C multiply-adds per pair and filter where im2col needs 2·9·C: 1.5× fewer, and the input transform
writes 12·C numbers per pair where im2col copies 18·C. F(2×2, 3×3) (:mod:`tinynn.kernels.winograd`) saves more
(2.25×) but its products sum over C alone, too few for BLAS below 32 channels; here they sum over 3·C. The output
rows run in chunks of about ``CHUNK_BYTES`` of V and M (they stay in the per-core L2 cache), row ranges shared out
over the cores (:func:`tinynn.kernels.conv2d._share_rows`), each range one numba call (:func:`_rows`): per chunk the
input transform, the 4 products (single-threaded BLAS), and the output transform with the bias and activation, or,
pooled, each pair's two pixels added straight to the images' sums (:func:`_output_pooled`: the output is never
written).

Rounding: Bᵀ and Aᵀ hold 0 and ±1, G 0, ±½ and 1 (exact in binary): float64 agrees with the direct convolution to
~1e-15 relative, float32 to a few 1e-7 (tests/test_winograd_width.py).
"""

from __future__ import annotations

import numba
import numpy as np

from . import blas, cblas, warmup
from .bias_activation import bias_activation_rows
from .fastmath import LINEAR, RELU, activate_row
from .jitcache import load_without_refresh
from .parallel import kernel_scope
from .parallel import scratch as _scratch
from .reference.conv2d import winograd_width_kernel_transform, winograd_width_padded, winograd_width_pairs
from .winograd import kept_transform

__all__ = [
    "applies",
    "input_transform",
    "output_transform",
    "ready",
    "winograd_width_conv2d",
    "winograd_width_conv2d_pooled",
]

#: Scratch bytes (V and M of a chunk of output rows) per chunk: small enough to stay in the per-core L2 cache between
#: the transforms and the products.
CHUNK_BYTES = 512 << 10
#: A 3×3, stride-1, undilated, one-group Conv2D that F(2×2, 3×3) does not take runs by this one with at least this
#: many input channels (each product sums over 3·C numbers: with 8 channels, 24, it ran slower than im2col), this
#: many filters, a transformed kernel U (4·3·C·F numbers) of at most ``KERNEL_BYTES`` (half the per-core L2 cache:
#: every chunk's products read all of U) and at least ``MIN_WORK`` multiply-adds (B·Ho·Wo·9·C·F): its row ranges
#: are handed to the other core through Python (:func:`tinynn.kernels.parallel.share`), where im2col's forward hands
#: them out inside numba (:mod:`tinynn.kernels.handoff`) and splits smaller passes. The measurements behind them:
#: benchmarks/RESULTS.md.
MIN_CHANNELS = 12
MIN_FILTERS = 16
#: The fewest filters on an Intel CPU (the AVX-512 Xeon), where im2col's small-matrix chunks ran 16-48 filters
#: faster than this algorithm and from 64 filters this one won or tied (benchmarks/RESULTS.md).
INTEL_MIN_FILTERS = 64
KERNEL_BYTES = 512 << 10
MIN_WORK = 1 << 26
#: At most this many row ranges per thread (each is one numba call handed out through Python).
PIECES_PER_THREAD = 2


def applies(kernel_shape, strides, dilation, groups: int, dtype, pixels: int | None = None) -> bool:
    """Whether a Conv2D of this kernel shape (KH, KW, C/G, F) and ``dtype`` over ``pixels`` output pixels (None: the
    kernel's shape alone) runs by F(2, 3) along the width (:data:`MIN_CHANNELS`, :func:`min_filters`,
    :data:`KERNEL_BYTES`, :data:`MIN_WORK`); the caller has already given F(2×2, 3×3) its shapes."""
    KH, KW, Cg, F = kernel_shape
    return ((KH, KW) == (3, 3) and tuple(strides) == (1, 1) and tuple(dilation) == (1, 1) and int(groups) == 1
            and Cg >= MIN_CHANNELS and F >= min_filters() and 4 * KH * Cg * F * np.dtype(dtype).itemsize <= KERNEL_BYTES
            and (pixels is None or pixels * KH * KW * Cg * F >= MIN_WORK))  # fmt: skip


def min_filters() -> int:
    """The fewest filters :func:`applies` takes: :data:`INTEL_MIN_FILTERS` on an Intel CPU (``vendor_id`` of
    /proc/cpuinfo), else :data:`MIN_FILTERS`."""
    return INTEL_MIN_FILTERS if cblas.cpu_vendor() == "GenuineIntel" else MIN_FILTERS


@numba.njit(error_model="numpy", cache=True, nogil=True)
def _input_transform(xp, KH, r0, r1, V):  # pragma: no cover - compiled
    """V (4, (r1 - r0)·TW, KH·C) <- Bᵀ d_t for the pairs of the output rows r0 .. r1 - 1 (row r = b·Ho + i, its pair j
    reads the columns 2j .. 2j + 3 of the padded rows i .. i + KH - 1 of image b; TW = V.shape[1] / (r1 - r0))."""
    B, Hp, Wp, C = xp.shape
    Ho = Hp - KH + 1
    TW = (Wp - 2) // 2
    o = 0
    for r in range(r0, r1):
        b = r // Ho
        i = r - b * Ho
        for j in range(TW):
            w = 2 * j
            for kh in range(KH):
                row = xp[b, i + kh]
                a = kh * C
                for c in range(C):
                    d0, d1, d2, d3 = row[w, c], row[w + 1, c], row[w + 2, c], row[w + 3, c]
                    V[0, o, a + c] = d0 - d2
                    V[1, o, a + c] = d1 + d2
                    V[2, o, a + c] = d2 - d1
                    V[3, o, a + c] = d1 - d3
            o += 1
    return V


@numba.njit(error_model="numpy", cache=True, nogil=True)
def _output_transform(M, r0, r1, Wo, bias, code, z):  # pragma: no cover - compiled
    """Pixels r·Wo + 2j + m of z (pixels, F) <- (Aᵀ m_t)[m] for the pairs of the output rows r0 .. r1 - 1 (the column
    past Wo is dropped), then act(z + bias) over those rows' pixels (:func:`tinynn.kernels.bias_activation.
    bias_activation_rows`, while they are in the cache; code < 0: neither)."""
    _, n, F = M.shape
    TW = n // (r1 - r0)
    o = 0
    for r in range(r0, r1):
        for j in range(TW):
            w = 2 * j
            p = r * Wo + w
            for f in range(F):
                z[p, f] = M[0, o, f] + M[1, o, f] + M[2, o, f]
            if w + 1 < Wo:
                for f in range(F):
                    z[p + 1, f] = M[1, o, f] - M[2, o, f] - M[3, o, f]
            o += 1
    if code >= 0:
        rows = z[r0 * Wo : r1 * Wo]
        bias_activation_rows(rows, bias, code, rows)
    return z


def _padded(x: np.ndarray, pads, out_hw, KH: int) -> np.ndarray:
    """x itself when it is already the (B, Ho + KH - 1, 2·TW + 2, C) input the pairs read, else the padded copy
    (:func:`tinynn.kernels.reference.conv2d.winograd_width_padded`)."""
    H, W = x.shape[1:3]
    Hp, Wp = int(out_hw[0]) + KH - 1, 2 * winograd_width_pairs(out_hw) + 2
    if tuple(pads) == (0, 0) and (H, W) == (Hp, Wp):
        return np.ascontiguousarray(x)
    return winograd_width_padded(x, pads, out_hw, KH)


def input_transform(xp: np.ndarray, KH: int) -> np.ndarray:
    """V (4, B·Ho·TW, KH·C) for a padded input (twin: ``reference.conv2d.winograd_width_input_transform``)."""
    B, Hp, Wp, C = xp.shape
    rows = B * (Hp - KH + 1)
    V = np.empty((4, rows * ((Wp - 2) // 2), KH * C), dtype=xp.dtype)
    return _input_transform(np.ascontiguousarray(xp), int(KH), 0, rows, V)


def output_transform(M: np.ndarray, batch: int, out_hw) -> np.ndarray:
    """z (B, Ho, Wo, F) = Aᵀ m for every pair (twin: ``reference.conv2d.winograd_width_output_transform``)."""
    Ho, Wo = int(out_hw[0]), int(out_hw[1])
    z = np.empty((batch * Ho * Wo, M.shape[2]), dtype=M.dtype)
    _output_transform(np.ascontiguousarray(M), 0, batch * Ho, Wo, np.zeros(M.shape[2], M.dtype), -1, z)
    return z.reshape(batch, Ho, Wo, M.shape[2])


def _check(x: np.ndarray, Wk: np.ndarray, pads, out_hw, who: str) -> None:
    if (x.ndim != 4 or Wk.ndim != 4 or Wk.shape[1] != 3 or Wk.shape[2] != x.shape[3] or min(out_hw) < 1
            or not (0 <= pads[0] < Wk.shape[0] and 0 <= pads[1] <= 2)):  # fmt: skip
        raise ValueError(f"{who}: needs x (B, H, W, C), a (KH, 3, C, F) kernel, pads in [0, KH) × [0, 2] and a "
                         f"non-empty output; got x {x.shape}, kernel {Wk.shape}, pads {tuple(pads)}, output "
                         f"{tuple(out_hw)}")  # fmt: skip


@numba.njit(error_model="numpy", cache=True, nogil=True)
def _output_pooled(M, r0, r1, Ho, Wo, bias, code, b0, sums, pair):  # pragma: no cover - compiled
    """sums[b - b0] += act((Aᵀ m_t)[m] + bias) (float64) for both pixels m of every pair of the output rows
    r0 .. r1 - 1 (row r = b·Ho + i: image b; the column past Wo left out; code < 0: Aᵀ m_t as it is). ``pair``: a
    (2, F) scratch. The output rows never reach memory: each pair's two pixels go straight into the sums. Linear,
    ReLU and no activation run a loop of their own (:func:`_add_pairs`): with the choice of activation inside the
    pair loop LLVM did not vectorise the sums over the filters (benchmarks/RESULTS.md)."""
    _, n, F = M.shape
    TW = n // (r1 - r0)
    if code < 0 or code == LINEAR or code == RELU:
        floor = M.dtype.type(0) if code == RELU else M.dtype.type(-np.inf)  # max(v, -inf) = v, NaN stays NaN
        _add_pairs(M, r0, r1, Ho, Wo, bias if code >= 0 else np.zeros(F, M.dtype), floor, b0, sums)
        return sums
    p0, p1 = pair[0], pair[1]
    o = 0
    for r in range(r0, r1):
        s = sums[r // Ho - b0]
        for j in range(TW):
            m0, m1, m2, m3 = M[0, o], M[1, o], M[2, o], M[3, o]
            o += 1
            for f in range(F):
                p0[f], p1[f] = m0[f] + m1[f] + m2[f] + bias[f], m1[f] - m2[f] - m3[f] + bias[f]
            activate_row(p0, code)
            activate_row(p1, code)
            if 2 * j + 1 < Wo:
                for f in range(F):
                    s[f] += np.float64(p0[f]) + np.float64(p1[f])
            else:
                for f in range(F):
                    s[f] += p0[f]
    return sums


@numba.njit(error_model="numpy", cache=True, nogil=True)
def _add_pairs(M, r0, r1, Ho, Wo, bias, floor, b0, sums):  # pragma: no cover - compiled
    """:func:`_output_pooled` for act(v) = max(v, floor) (floor 0: ReLU; -inf: linear, and with a zero bias no
    activation): the full pairs of a row in one loop, the row's last pair, when Wo is odd, with its first pixel
    only."""
    _, n, F = M.shape
    TW = n // (r1 - r0)
    full = Wo // 2
    o = 0
    for r in range(r0, r1):
        s = sums[r // Ho - b0]
        for j in range(full):
            m0, m1, m2, m3 = M[0, o + j], M[1, o + j], M[2, o + j], M[3, o + j]
            for f in range(F):
                c = bias[f]
                a0, a1 = m0[f] + m1[f] + m2[f] + c, m1[f] - m2[f] - m3[f] + c
                a0 = floor if a0 < floor else a0
                a1 = floor if a1 < floor else a1
                s[f] += np.float64(a0) + np.float64(a1)
        if full < TW:
            m0, m1, m2 = M[0, o + full], M[1, o + full], M[2, o + full]
            for f in range(F):
                a0 = m0[f] + m1[f] + m2[f] + bias[f]
                s[f] += floor if a0 < floor else a0
        o += TW
    return sums


@numba.njit(error_model="numpy", cache=True, nogil=True)
def _rows(xp, U, bias, code, KH, Ho, Wo, r_start, r_stop, step, V, M, z, b0, sums, pair):  # pragma: no cover
    """The forward over the output rows r_start .. r_stop - 1 (r = b·Ho + i), ``step`` rows per chunk, in one call:
    per chunk V <- Bᵀ d (:func:`_input_transform`, into the flat scratch ``V``), M[ξ] = V[ξ] @ U[ξ] (4
    single-threaded BLAS products, into the flat scratch ``M``), then either (``sums`` has rows) the chunk's pixels
    summed into sums (row b - b0 for image b: :func:`_output_pooled`), or its pixels of z (pixels, F) written with
    the bias and activation (:func:`_output_transform`; code < 0: neither)."""
    C = xp.shape[3]
    F = U.shape[2]
    TW = (xp.shape[2] - 2) // 2
    for r0 in range(r_start, r_stop, step):
        r1 = min(r_stop, r0 + step)
        n = (r1 - r0) * TW
        Vc = _input_transform(xp, KH, r0, r1, V[: 4 * n * KH * C].reshape((4, n, KH * C)))
        Mc = M[: 4 * n * F].reshape((4, n, F))
        for xi in range(4):
            blas.gemm(Vc[xi], U[xi], Mc[xi], False, False, 0.0)
        if sums.shape[0] > 0:
            _output_pooled(Mc, r0, r1, Ho, Wo, bias, code, b0, sums, pair)
        else:
            _output_transform(Mc, r0, r1, Wo, bias, code, z)
    return sums


def _kernel_transform(Wk: np.ndarray, dtype) -> np.ndarray:
    """U = G W (:func:`tinynn.kernels.reference.conv2d.winograd_width_kernel_transform`) in ``dtype``."""
    return np.ascontiguousarray(winograd_width_kernel_transform(Wk), dtype=dtype)


def _forward(x, Wk, pads, out_hw, bias, activation, workspace, z, who) -> list:
    """:func:`_rows` over ranges of the output rows shared out over the cores (:func:`conv2d._share_rows`), into
    z (pixels, F) when given, else pooled: the ranges' (b0, sums of images b0 ..) in range order."""
    from .conv2d import _share_rows  # (conv2d imports this module)

    out_hw = (int(out_hw[0]), int(out_hw[1]))
    _check(x, Wk, pads, out_hw, who)
    B, _, _, C = x.shape
    KH, F = Wk.shape[0], Wk.shape[3]
    Ho, Wo = out_hw
    xp, ws = _padded(x, pads, out_hw, KH), {} if workspace is None else workspace
    TW = winograd_width_pairs(out_hw)
    U = kept_transform(ws, "ww_kernel", Wk, x.dtype, _kernel_transform)  # (4, KH·C, F)
    code = -1 if activation is None else int(activation)
    b = np.zeros(F, x.dtype) if bias is None else np.ascontiguousarray(bias, dtype=x.dtype)
    step = max(1, CHUNK_BYTES // (4 * TW * (KH * C + F) * x.itemsize))  # output rows per chunk
    rows = B * Ho
    no_z, no_sums = np.empty((0, F), x.dtype), np.empty((0, F), np.float64)

    def piece(worker, r_start, r_stop):  # -> (b0, the sums of images b0 .. that the rows reach) or None
        n = min(step, r_stop - r_start) * TW
        V = _scratch(ws, f"wwV{worker}", (4 * n * KH * C,), x.dtype)
        M = _scratch(ws, f"wwM{worker}", (4 * n * F,), x.dtype)
        pair = _scratch(ws, f"wwpair{worker}", (2, F), x.dtype)
        if z is not None:
            _rows(xp, U, b, code, KH, Ho, Wo, r_start, r_stop, step, V, M, z, 0, no_sums, pair)
            return None
        b0 = r_start // Ho
        sums = np.zeros(((r_stop - 1) // Ho + 1 - b0, F), np.float64)
        return b0, _rows(xp, U, b, code, KH, Ho, Wo, r_start, r_stop, step, V, M, no_z, b0, sums, pair)

    with kernel_scope():
        return _share_rows(piece, rows, rows * Wo * 9 * C * F, PIECES_PER_THREAD)


def winograd_width_conv2d(x: np.ndarray, Wk: np.ndarray, pads, out_hw, bias: np.ndarray | None = None,
                          activation: int | None = None, workspace: dict | None = None) -> np.ndarray:  # fmt: skip
    """z (B, Ho, Wo, F) = conv(x, Wk) for a (KH, 3, C, F) kernel, stride 1, no dilation, one group, ``pads`` (pt, pl)
    zeros before x (and as many after as the outputs read); with ``activation`` (a
    :func:`tinynn.kernels.fastmath.activation_code`) act(z + bias) instead."""
    Ho, Wo = int(out_hw[0]), int(out_hw[1])
    F = Wk.shape[3]
    z = np.empty((x.shape[0], Ho, Wo, F), dtype=x.dtype)
    _forward(x, Wk, pads, out_hw, bias, activation, workspace, z.reshape(-1, F), "winograd_width_conv2d")
    return z


def winograd_width_conv2d_pooled(x: np.ndarray, Wk: np.ndarray, pads, out_hw, bias: np.ndarray | None = None,
                                 activation: int | None = None,
                                 workspace: dict | None = None) -> np.ndarray:  # fmt: skip
    """p (B, F) = (1 / (Ho·Wo)) Σ_{i,j} y[b, i, j] for y = :func:`winograd_width_conv2d`'s output, without writing y
    out: each pair's two pixels are added to float64 sums, with the bias and activation, straight from the
    products (:func:`_output_pooled`); each row range sums the images its rows reach, and the ranges' sums are added
    in range order."""
    Ho, Wo = int(out_hw[0]), int(out_hw[1])
    sums = np.zeros((x.shape[0], Wk.shape[3]), np.float64)
    for b0, part in _forward(x, Wk, pads, out_hw, bias, activation, workspace, None, "winograd_width_conv2d_pooled"):
        sums[b0 : b0 + len(part)] += part  # in range order: the same bits every run
    return (sums / (Ho * Wo)).astype(x.dtype)


def ready(dtype) -> bool:
    """Whether :func:`_rows` (the forward's one kernel, pooled or not) is compiled for ``dtype``; if not, it is
    compiled (or loaded) in the background and False is returned meanwhile (:func:`tinynn.kernels.warmup.kernel_ready`;
    always True in "wait" compile mode)."""
    return warmup.kernels_ready(_ready, dtype, _samples)


def _samples(d) -> list:
    """:func:`_rows` with arguments of the numba types :func:`_forward` passes for dtype ``d``."""
    v4, v1, m2 = np.empty((1, 1, 1, 1), d), np.empty(1, d), np.empty((1, 1), d)
    return [(_rows, (v4, np.empty((1, 1, 1), d), v1, 0, 3, 1, 1, 0, 1, 1, v1, v1, m2, 0,
                     np.empty((1, 1), np.float64), m2))]  # fmt: skip


_ready: set = set()  # dtypes ready() found compiled


load_without_refresh(globals())  # cached kernels load without refreshing numba (tinynn.kernels.jitcache)
