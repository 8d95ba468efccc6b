r"""3×3, stride-1 convolutions with Winograd's minimal filtering algorithm F(2×2, 3×3), in numba + BLAS.

The math (read it first): :mod:`tinynn.kernels.reference.conv2d`, section "Winograd F(2×2, 3×3)". Every 2×2 block
t of outputs reads a 4×4 input tile d_t; with U = G w Gᵀ (16 numbers per channel and filter) and
V_t = Bᵀ d_t B (16 per channel), the block is Aᵀ [Σ_c U ⊙ V_t] A, and for each of the 16 positions ξ the sum over
channels for all blocks is one matrix product::

    M[ξ] = V[ξ] @ U[ξ]        V (16, blocks, C), U (16, C, F), M (16, blocks, F)

That is 16 multiply-adds per block, channel and filter where the direct convolution (im2col) needs 4·9 = 36: 2.25×
fewer FLOPs, for the price of the two transforms (additions only, numba, vectorised over the channels). The blocks
run in chunks of a few MiB of V and M (``CHUNK_BYTES``: fewer, longer products), images shared out over the cores
(:func:`tinynn.kernels.parallel.share_batch`), as in :mod:`tinynn.kernels.conv2d`; per chunk three numba calls:
the input transform, the 16 products (:func:`_products`: single-threaded BLAS calls from numba, one call from Python
instead of 16), the output transform with the bias and activation applied while the output is in the cache.

The same routine gives the input gradient of such a convolution: dx is the 3×3 correlation of dz, padded by
(2 - pt, 2 - pl), with the kernel turned by 180° and its channel axes swapped (:func:`winograd_conv2d_backward_data`).
The filter gradient uses the forward's tiles (:func:`winograd_conv2d_backward_filter`)::

    dU[ξ] = V[ξ]ᵀ @ Y[ξ]      Y_t = A dz_t Aᵀ (the 2×2 output gradients of block t)      dWk = Gᵀ dU G

Rounding: the transforms' coefficients are 0, ±1 and ±½ (exact in binary); the float64 results agree with the direct
convolution to ~1e-15 relative, float32 to a few 1e-7 (tests/test_conv2d_kernels.py, and the parity cases against
Keras).
"""

from __future__ import annotations

import numba
import numpy as np

from . import blas
from .fastmath import LINEAR, RELU, activate_row, relu_fast
from .jitcache import load_without_refresh
from .parallel import kernel_scope, share_batch
from .parallel import scratch as _scratch
from .pooling2d import window_max, window_max_first
from .reference.conv2d import winograd_tiles

__all__ = [
    "filter_from_transformed",
    "gradient_transform",
    "input_transform",
    "kept_transform",
    "kernel_transform",
    "output_transform",
    "turned_kernel_transform",
    "winograd_conv2d",
    "winograd_conv2d_backward_data",
    "winograd_conv2d_backward_filter",
    "winograd_conv2d_max_pooled",
]

#: Scratch bytes (V and M of a chunk of blocks) per chunk. The 16 products of a chunk are tall, thin GEMMs (K = C),
#: whose per-call cost (packing U, the call itself) is paid once per chunk, so a chunk is as long as the per-core L2
#: cache holds (2 MiB on the benchmark host's Xeon): longer ones, kept in L3, won on one core of a 512 KiB-L2 host,
#: but with both cores working their traffic costs more than the calls they save (the sweeps on M7's convolutions,
#: one and two cores, are in benchmarks/RESULTS.md).
CHUNK_BYTES = 1 << 21
#: Scratch bytes (V and Y) per chunk of the filter gradient (the same trade-off: K = the chunk's blocks).
FILTER_CHUNK_BYTES = 1 << 21


@numba.njit(error_model="numpy", cache=True, inline="always")
def _block_position(tt, TH, TW):  # pragma: no cover - compiled
    """(b, ti, tj) of block tt = (b·TH + ti)·TW + tj: its image and its row and column of 2×2 output tiles."""
    per_image = TH * TW
    b = tt // per_image
    ti = (tt - b * per_image) // TW
    return b, ti, tt - b * per_image - ti * TW


@numba.njit(error_model="numpy", cache=True, nogil=True)
def _input_transform(x, pt, pl, TH, TW, t0, V):  # pragma: no cover - compiled
    """V (16, T, C) <- Bᵀ d B for the tiles of blocks t0 .. t0+T-1 (block t = (b·TH + ti)·TW + tj).

    A run of blocks in one row of blocks (b, ti) reads the 4 input rows 2ti - pt .. 2ti - pt + 3: they are copied
    once into P (4, Wp·C), the row of Wp = 2·TW + 2 padded columns (column w of x at w + pl, zeros elsewhere), and
    e = Bᵀ P is formed for the whole run in four flat loops (neighbouring blocks share two columns: each column is
    transformed once). Per block only the column step V = e B remains, four loops over C."""
    B, H, W, C = x.shape
    T = V.shape[1]
    Wp = 2 * TW + 2
    P = np.zeros((4, Wp * C), x.dtype)  # its padding columns stay 0: only [pl, pl + w_hi) is ever written
    E = np.empty((4, Wp * C), x.dtype)
    x_rows = x.reshape(B, H, W * C)
    w_hi = min(W, Wp - pl)  # the columns of x the blocks read: 0 .. w_hi-1
    t = 0
    while t < T:
        b, ti, tj0 = _block_position(t0 + t, TH, TW)
        tj1 = min(TW, tj0 + T - t)  # the run: blocks tj0 .. tj1-1 of this row
        for r in range(4):
            h = 2 * ti - pt + r
            row = P[r, pl * C : (pl + w_hi) * C]
            if 0 <= h < H:
                src = x_rows[b, h, : w_hi * C]
                for k in range(row.shape[0]):
                    row[k] = src[k]
            else:
                for k in range(row.shape[0]):
                    row[k] = 0
        c0, c1 = 2 * tj0 * C, (2 * tj1 + 2) * C  # the columns the run reads
        p0, p1, p2, p3 = P[0, c0:c1], P[1, c0:c1], P[2, c0:c1], P[3, c0:c1]
        e0, e1, e2, e3 = E[0, c0:c1], E[1, c0:c1], E[2, c0:c1], E[3, c0:c1]
        for k in range(p0.shape[0]):  # e = Bᵀ d (along the rows)
            e0[k] = p0[k] - p2[k]
            e1[k] = p1[k] + p2[k]
            e2[k] = p2[k] - p1[k]
            e3[k] = p1[k] - p3[k]
        for tj in range(tj0, tj1):  # V = e B (along the columns)
            o, a = t + tj - tj0, 2 * tj * C
            for i in range(4):
                q0, q1 = E[i, a : a + C], E[i, a + C : a + 2 * C]
                q2, q3 = E[i, a + 2 * C : a + 3 * C], E[i, a + 3 * C : a + 4 * C]
                v0, v1, v2, v3 = V[4 * i, o], V[4 * i + 1, o], V[4 * i + 2, o], V[4 * i + 3, o]
                for c in range(C):
                    v0[c] = q0[c] - q2[c]
                    v1[c] = q1[c] + q2[c]
                    v2[c] = q2[c] - q1[c]
                    v3[c] = q1[c] - q3[c]
        t += tj1 - tj0
    return V


def _g_rows(a: np.ndarray) -> np.ndarray:
    """G a along a's first axis (3 → 4), in a's dtype: G's rows are (1, 0, 0), ½(1, 1, 1), ½(1, -1, 1), (0, 0, 1),
    summed left to right."""
    out = np.empty((4, *a.shape[1:]), a.dtype)
    out[0], out[3] = a[0], a[2]
    np.add(a[0], a[1], out=out[1])
    out[1] += a[2]
    out[1] *= 0.5
    np.subtract(a[0], a[1], out=out[2])
    out[2] += a[2]
    out[2] *= 0.5
    return out


def _gt_rows(a: np.ndarray) -> np.ndarray:
    """Gᵀ a along a's first axis (4 → 3), in the order of the sums Gᵀ's rows spell: (a0 + ½a1) + ½a2,
    ½a1 - ½a2, (½a1 + ½a2) + a3."""
    half1, half2 = 0.5 * a[1], 0.5 * a[2]
    out = np.empty((3, *a.shape[1:]), a.dtype)
    np.add(a[0], half1, out=out[0])
    out[0] += half2
    np.subtract(half1, half2, out=out[1])
    np.add(half1, half2, out=out[2])
    out[2] += a[3]
    return out


def kernel_transform(Wk: np.ndarray, dtype) -> np.ndarray:
    """U (16, C, F) = G Wk Gᵀ of a (3, 3, C, F) kernel, summed in float64 and rounded to ``dtype`` once (twin:
    ``reference.conv2d.winograd_kernel_transform``): t = G Wk along p, then U = t Gᵀ along q, in whole-array
    NumPy steps (no BLAS: numpy's BLAS threads, once woken, spin on the cores the next kernel runs on)."""
    _, _, C, F = Wk.shape
    t = _g_rows(np.asarray(Wk, dtype=np.float64))  # t[i, q] = (G Wk)[i, q]
    u = _g_rows(t.transpose(1, 0, 2, 3))  # u[j, i] = (t Gᵀ)[i, j]
    return np.ascontiguousarray(u.transpose(1, 0, 2, 3), dtype=dtype).reshape(16, C, F)


#: ξ = 4i + j → 4σ(i) + σ(j), σ = (3, 1, 2, 0): G's columns in reverse order are G's rows in the order σ.
_TURNED = np.array([4 * si + sj for si in (3, 1, 2, 0) for sj in (3, 1, 2, 0)])


def turned_kernel_transform(U: np.ndarray) -> np.ndarray:
    """U' (16, F, C) of the input gradient's kernel Wrot[p, q, f, c] = Wk[2 - p, 2 - q, c, f] from U = G Wk Gᵀ
    (16, C, F): G[i, 2 - p] = G[σ(i), p], so U'[4i + j] = U[4σ(i) + σ(j)]ᵀ — a copy of U's planes, no arithmetic
    (the sums run in another order than in G Wrot Gᵀ: the same numbers up to float64 rounding)."""
    return np.ascontiguousarray(U[_TURNED].transpose(0, 2, 1))


def kept_transform(ws: dict, key: str, Wk: np.ndarray, dtype, transform) -> np.ndarray:
    """``transform(Wk, dtype)``, kept in the workspace under ``key`` with a copy of the kernel it came from: a later
    pass whose kernel is bit for bit the same (predictions between weight updates, a training step's backward
    after its forward) reuses it (comparing costs a few µs per 10⁵ numbers)."""
    kept = ws.get(key)
    if kept is not None and kept[0].shape == Wk.shape and kept[1].dtype == dtype and np.array_equal(kept[0], Wk):
        return kept[1]
    U = transform(Wk, dtype)
    ws[key] = (np.array(Wk, copy=True), U)
    return U


def filter_from_transformed(dU: np.ndarray) -> np.ndarray:
    """dWk (3, 3, C, F) = Gᵀ dU G for dU (16, C, F) (∂L/∂U of U = G Wk Gᵀ), summed in float64, in dU's dtype (twin:
    ``reference.conv2d.winograd_filter_from_transformed``): h = Gᵀ dU along i, then h G along j."""
    _, C, F = dU.shape
    h = _gt_rows(dU.reshape(4, 4, C, F).astype(np.float64))  # h[p, j]
    d = _gt_rows(h.transpose(1, 0, 2, 3))  # d[q, p]
    return np.ascontiguousarray(d.transpose(1, 0, 2, 3), dtype=dU.dtype)


#: Blocks per step of the output transform's first stage (its rows r stay in the L1 cache).
_OUT_STEP = 16


@numba.njit(error_model="numpy", cache=True, nogil=True, inline="always")
def _a_transpose_m(M, s0, s1, r):  # pragma: no cover - compiled
    """r[4i + j, :s1 - s0] <- (Aᵀ m)[i, j] for the blocks s0 .. s1-1 of M (16, T, F): M[ξ, s0:s1] is contiguous, so
    each of the eight is one flat loop over the blocks' F numbers."""
    F = M.shape[2]
    n = (s1 - s0) * F
    S = r.shape[1]
    for j in range(4):
        m0, m1 = M[j, s0:s1].reshape(n), M[4 + j, s0:s1].reshape(n)
        m2, m3 = M[8 + j, s0:s1].reshape(n), M[12 + j, s0:s1].reshape(n)
        ra, rb = r[j].reshape(S * F)[:n], r[4 + j].reshape(S * F)[:n]
        for k in range(n):
            ra[k] = m0[k] + m1[k] + m2[k]
            rb[k] = m1[k] - m2[k] - m3[k]


@numba.njit(error_model="numpy", cache=True, nogil=True, inline="always")
def _output_transform_body(M, t0, TH, TW, bias, code, z):  # pragma: no cover - compiled
    """z[b, 2ti + i, 2tj + j] <- act((Aᵀ m A)[i, j] + bias) for blocks t0 .. t0+T-1 (code < 0: no bias, no act).

    r = Aᵀ m runs over ``_OUT_STEP`` consecutive blocks at once (M[ξ, t0:t1] is contiguous: flat loops), then each
    block's four outputs r A, with the bias and ReLU in the same loop."""
    _, T, F = M.shape
    _, Ho, Wo, _ = z.shape
    S = _OUT_STEP
    r = np.empty((8, S, F), M.dtype)  # r[4i + j] = (Aᵀ m)[i, j]
    for s0 in range(0, T, S):
        s1 = min(T, s0 + S)
        _a_transpose_m(M, s0, s1, r)
        for t in range(s0, s1):  # z = r A (along the columns)
            b, ti, tj = _block_position(t0 + t, TH, TW)
            o = t - s0
            for i in range(2):
                h = 2 * ti + i
                if h >= Ho:
                    continue
                q0, q1, q2, q3 = r[4 * i, o], r[4 * i + 1, o], r[4 * i + 2, o], r[4 * i + 3, o]
                for jj in range(2):
                    w = 2 * tj + jj
                    if w >= Wo:
                        continue
                    out = z[b, h, w]
                    if code == RELU:
                        if jj == 0:
                            for f in range(F):
                                v = q0[f] + q1[f] + q2[f] + bias[f]
                                out[f] = relu_fast(v)
                        else:
                            for f in range(F):
                                v = q1[f] - q2[f] - q3[f] + bias[f]
                                out[f] = relu_fast(v)
                        continue
                    if jj == 0:
                        for f in range(F):
                            out[f] = q0[f] + q1[f] + q2[f]
                    else:
                        for f in range(F):
                            out[f] = q1[f] - q2[f] - q3[f]
                    if code >= 0:
                        for f in range(F):
                            out[f] += bias[f]
                        activate_row(out, code)
    return z


@numba.njit(error_model="numpy", cache=True, nogil=True)
def _output_transform(M, t0, TH, TW, bias, code, z):  # pragma: no cover - compiled
    """:func:`_output_transform_body` for any ``code``."""
    return _output_transform_body(M, t0, TH, TW, bias, code, z)


@numba.njit(error_model="numpy", cache=True, nogil=True)
def _output_transform_relu(M, t0, TH, TW, bias, code, z):  # pragma: no cover - compiled
    """:func:`_output_transform` for ``code`` = ReLU (the argument is ignored), compiled with the code a constant:
    LLVM then drops the other activations' branches from the loops, which made the ReLU pass 1.2–2× faster at
    F = 128 … 32 (benchmarks/RESULTS.md). The same bits."""
    return _output_transform_body(M, t0, TH, TW, bias, RELU, z)


@numba.njit(error_model="numpy", cache=True, nogil=True)
def _output_transform_plain(M, t0, TH, TW, bias, code, z):  # pragma: no cover - compiled
    """:func:`_output_transform` with neither bias nor activation (``code`` ignored; the input gradient's pass),
    compiled with the code a constant like :func:`_output_transform_relu`."""
    return _output_transform_body(M, t0, TH, TW, bias, -1, z)


def _output_transform_for(code: int):
    """The output transform compiled for this activation code (ReLU, none) or the one for any code."""
    return _output_transform_relu if code == RELU else _output_transform_plain if code < 0 else _output_transform


@numba.njit(error_model="numpy", cache=True, nogil=True, inline="always")
def _max_blocks(M, t0, TH, TW, bias, code, p, k, with_index):  # pragma: no cover - compiled
    """p[b, ti, tj] <- the maximum of the block's four outputs act((Aᵀ m A)[i, j] + bias) for the blocks
    t0 .. t0+T-1 that lie inside p (B, Hp, Wp, F) (code: ReLU, else linear). Block (ti, tj) is window (ti, tj) of a
    2×2, stride-2, unpadded max pooling; its outputs are compared in the window's row-major order with
    :func:`tinynn.kernels.pooling2d.window_max` (the max pooling's rule), so p has the bits of that
    pooling of :func:`_output_transform`'s z. ``with_index`` (a constant where it is compiled): k[b, ti, tj] <- the
    tap 2i + j of the window's first maximum too (:func:`tinynn.kernels.pooling2d.window_max_first`). Blocks of a
    last odd output row or column (no whole window) are skipped. r = Aᵀ m as in :func:`_output_transform`."""
    _, T, F = M.shape
    _, Hp, Wp, _ = p.shape
    S = _OUT_STEP
    r = np.empty((8, S, F), M.dtype)
    floor = M.dtype.type(0) if code == RELU else M.dtype.type(-np.inf)
    for s0 in range(0, T, S):
        s1 = min(T, s0 + S)
        _a_transpose_m(M, s0, s1, r)
        for t in range(s0, s1):
            b, ti, tj = _block_position(t0 + t, TH, TW)
            if ti >= Hp or tj >= Wp:
                continue
            o = t - s0
            q0, q1, q2, q3 = r[0, o], r[1, o], r[2, o], r[3, o]
            u0, u1, u2, u3 = r[4, o], r[5, o], r[6, o], r[7, o]
            out = p[b, ti, tj]
            if with_index:
                first = k[b, ti, tj]
                for f in range(F):
                    m = q0[f] + q1[f] + q2[f] + bias[f]  # z[2ti, 2tj], then (2ti, 2tj+1), (2ti+1, 2tj), (2ti+1, 2tj+1)
                    m, tap = floor if m < floor else m, np.uint8(0)
                    v = q1[f] - q2[f] - q3[f] + bias[f]
                    m, tap = window_max_first(m, tap, floor if v < floor else v, np.uint8(1))
                    v = u0[f] + u1[f] + u2[f] + bias[f]
                    m, tap = window_max_first(m, tap, floor if v < floor else v, np.uint8(2))
                    v = u1[f] - u2[f] - u3[f] + bias[f]
                    out[f], first[f] = window_max_first(m, tap, floor if v < floor else v, np.uint8(3))
                continue
            for f in range(F):
                m = q0[f] + q1[f] + q2[f] + bias[f]  # z[2ti, 2tj], then (2ti, 2tj+1), (2ti+1, 2tj), (2ti+1, 2tj+1)
                m = floor if m < floor else m
                v = q1[f] - q2[f] - q3[f] + bias[f]
                m = window_max(m, floor if v < floor else v)
                v = u0[f] + u1[f] + u2[f] + bias[f]
                m = window_max(m, floor if v < floor else v)
                v = u1[f] - u2[f] - u3[f] + bias[f]
                out[f] = window_max(m, floor if v < floor else v)
    return p


@numba.njit(error_model="numpy", cache=True, nogil=True)
def _output_transform_max(M, t0, TH, TW, bias, code, p):  # pragma: no cover - compiled
    """:func:`_max_blocks` without the windows' first maxima (prediction)."""
    return _max_blocks(M, t0, TH, TW, bias, code, p, np.empty((0, 0, 0, 0), np.uint8), False)


@numba.njit(error_model="numpy", cache=True, nogil=True)
def _output_transform_max_index(M, t0, TH, TW, bias, code, out):  # pragma: no cover - compiled
    """:func:`_max_blocks` with the windows' first maxima: ``out`` = (p, k), k uint8 of p's shape (training)."""
    _max_blocks(M, t0, TH, TW, bias, code, out[0], out[1], True)
    return out


@numba.njit(cache=True, nogil=True)
def _products(V, U, M, trans_v, beta):  # pragma: no cover - compiled
    """M[ξ] = op(V[ξ]) @ U[ξ] + β·M[ξ] for the 16 positions ξ, op(V) = Vᵀ if ``trans_v``: 16 single-threaded BLAS
    calls (:func:`tinynn.kernels.blas.gemm`) in one call from Python. (The transforms stay separate numba calls:
    compiling them into one loop with the products cost seconds more of compile time than it saved in run time.)"""
    for xi in range(V.shape[0]):
        blas.gemm(V[xi], U[xi], M[xi], trans_v, False, beta)
    return M


@numba.njit(error_model="numpy", cache=True, nogil=True)
def _gradient_transform(dz, TH, TW, t0, Y):  # pragma: no cover - compiled
    """Y (16, T, F) <- A g Aᵀ for the 2×2 output gradients g of blocks t0 .. t0+T-1 (0 past Ho, Wo)."""
    B, Ho, Wo, F = dz.shape
    T = Y.shape[1]
    zero = np.zeros(F, dz.dtype)
    for t in range(T):
        tt = t0 + t
        b, ti, tj = _block_position(tt, TH, TW)
        h, w = 2 * ti, 2 * tj
        g00 = dz[b, h, w]
        g01 = dz[b, h, w + 1] if w + 1 < Wo else zero
        g10 = dz[b, h + 1, w] if h + 1 < Ho else zero
        g11 = dz[b, h + 1, w + 1] if h + 1 < Ho and w + 1 < Wo else zero
        # rows of A g: g0, g0 + g1, g0 - g1, -g1 (g0 = g00|g01, g1 = g10|g11), each times Aᵀ along the columns
        for f in range(F):
            Y[0, t, f], Y[1, t, f], Y[2, t, f], Y[3, t, f] = g00[f], g00[f] + g01[f], g00[f] - g01[f], -g01[f]
        for f in range(F):
            a, c = g00[f] + g10[f], g01[f] + g11[f]
            Y[4, t, f], Y[5, t, f], Y[6, t, f], Y[7, t, f] = a, a + c, a - c, -c
        for f in range(F):
            a, c = g00[f] - g10[f], g01[f] - g11[f]
            Y[8, t, f], Y[9, t, f], Y[10, t, f], Y[11, t, f] = a, a + c, a - c, -c
        for f in range(F):
            Y[12, t, f], Y[13, t, f], Y[14, t, f], Y[15, t, f] = -g10[f], -g10[f] - g11[f], g11[f] - g10[f], g11[f]
    return Y


def gradient_transform(dz: np.ndarray, tiles) -> np.ndarray:
    """Y (16, B·TH·TW, F): A g Aᵀ for every block's 2×2 output gradients (twin:
    ``reference.conv2d.winograd_gradient_transform``)."""
    Y = np.empty((16, dz.shape[0] * tiles[0] * tiles[1], dz.shape[3]), dtype=dz.dtype)
    return _gradient_transform(np.ascontiguousarray(dz), int(tiles[0]), int(tiles[1]), 0, Y)


def input_transform(x: np.ndarray, pads, tiles) -> np.ndarray:
    """V (16, B·TH·TW, C): Bᵀ d B for every 4×4 tile (twin: ``reference.conv2d.winograd_input_transform``)."""
    B, _, _, C = x.shape
    V = np.empty((16, B * tiles[0] * tiles[1], C), dtype=x.dtype)
    return _input_transform(np.ascontiguousarray(x), int(pads[0]), int(pads[1]), int(tiles[0]), int(tiles[1]), 0, V)


def output_transform(M: np.ndarray, batch: int, out_hw) -> np.ndarray:
    """z (B, Ho, Wo, F): Aᵀ m A for every block (twin: ``reference.conv2d.winograd_output_transform``)."""
    TH, TW = winograd_tiles(out_hw)
    z = np.empty((batch, *out_hw, M.shape[2]), dtype=M.dtype)
    return _output_transform_plain(np.ascontiguousarray(M), 0, TH, TW, np.zeros(M.shape[2], M.dtype), -1, z)


def winograd_conv2d(x: np.ndarray, Wk: np.ndarray, pads, out_hw, bias: np.ndarray | None = None,
                    activation: int | None = None, workspace: dict | None = None) -> np.ndarray:  # fmt: skip
    """z (B, Ho, Wo, F) = conv(x, Wk) for a (3, 3, C, F) kernel, stride 1, no dilation, one group; with
    ``activation`` (a :func:`tinynn.kernels.fastmath.activation_code`) act(z + bias) instead."""
    _check_kernel(x, Wk)
    ws = {} if workspace is None else workspace
    z = np.empty((x.shape[0], *out_hw, Wk.shape[3]), dtype=x.dtype)
    U = kept_transform(ws, "wg_kernel", Wk, x.dtype, kernel_transform)
    code = -1 if activation is None else int(activation)
    return _winograd_pass(x, U, pads, out_hw, bias, activation, ws, _output_transform_for(code), z)


def winograd_conv2d_max_pooled(x: np.ndarray, Wk: np.ndarray, pads, out_hw, bias: np.ndarray | None = None,
                               activation: int | None = None, workspace: dict | None = None,
                               index: bool = False):  # fmt: skip
    """p (B, Ho // 2, Wo // 2, F): a 2×2, stride-2, unpadded max pooling of :func:`winograd_conv2d`'s output, each
    pooling window being one 2×2 block of outputs (:func:`_output_transform_max`): the (B, Ho, Wo, F) output is
    never written. The same numbers as ``max_pool2d_forward(winograd_conv2d(...), (2, 2), (2, 2), (0, 0), ...)``.
    ``activation``: linear or ReLU (the others raise; a missing bias is zeros, as the fused layers pass it).
    ``index``: (p, k) with k (uint8, p's shape) the tap 2i + j of each window's first maximum (a training forward's
    pair: ``tinynn.kernels.pooling2d.max_pool2d_backward_from_index``)."""
    if activation is None or int(activation) not in (LINEAR, RELU):
        raise ValueError(f"winograd_conv2d_max_pooled: activation code {activation} is not linear or ReLU")
    if min(out_hw) < 2:
        raise ValueError(f"winograd_conv2d_max_pooled: a {tuple(out_hw)} output has no whole 2×2 window")
    _check_kernel(x, Wk)
    ws = {} if workspace is None else workspace
    p = np.empty((x.shape[0], out_hw[0] // 2, out_hw[1] // 2, Wk.shape[3]), dtype=x.dtype)
    U = kept_transform(ws, "wg_kernel", Wk, x.dtype, kernel_transform)
    if index:
        k = np.empty(p.shape, np.uint8)
        return _winograd_pass(x, U, pads, out_hw, bias, activation, ws, _output_transform_max_index, (p, k))
    return _winograd_pass(x, U, pads, out_hw, bias, activation, ws, _output_transform_max, p)


def _max_sample(dtype, index: bool = False) -> tuple:
    """Arguments of :func:`_output_transform_max` (``index``: of :func:`_output_transform_max_index`) with the numba
    types :func:`winograd_conv2d_max_pooled` passes."""
    d = np.dtype(dtype)
    p = np.empty((1, 1, 1, 1), d)
    return (np.empty((16, 1, 1), d), 0, 1, 1, np.empty(1, d), 0, (p, np.empty(p.shape, np.uint8)) if index else p)


def _check_kernel(x, Wk) -> None:
    """A (3, 3, C, F) kernel for x (B, H, W, C), checked before :func:`kernel_transform` reads it."""
    if Wk.ndim != 4 or Wk.shape[:3] != (3, 3, x.shape[-1]):
        raise ValueError(f"winograd_conv2d: needs a (3, 3, {x.shape[-1]}, F) kernel; got kernel {Wk.shape}")


def _winograd_pass(x, U, pads, out_hw, bias, activation, workspace, output_transform, out) -> np.ndarray:
    """The forward's chunks for the transformed kernel U (16, C, F) (:func:`kernel_transform`): V <- Bᵀ d B,
    M[ξ] = V[ξ] @ U[ξ], then ``output_transform(M, t0, TH, TW, b, code, out)`` (:func:`_output_transform` or
    :func:`_output_transform_max`), images shared out over the cores."""
    B, H, W, C = x.shape
    if U.shape[:2] != (16, C) or min(out_hw) < 1 or not (0 <= pads[0] <= 2 and 0 <= pads[1] <= 2):
        raise ValueError(f"winograd_conv2d: needs a (3, 3, {C}, F) kernel, pads in [0, 2] and a non-empty output; got "
                         f"a transformed kernel {U.shape}, pads {tuple(pads)}, output {tuple(out_hw)}")
    F = U.shape[2]
    x, ws = np.ascontiguousarray(x), {} if workspace is None else workspace
    TH, TW = winograd_tiles(out_hw)
    code = -1 if activation is None else int(activation)
    b = np.zeros(F, x.dtype) if bias is None else np.ascontiguousarray(bias, dtype=x.dtype)
    per_image = TH * TW
    step = max(1, CHUNK_BYTES // (16 * (C + F) * x.itemsize))
    args = (int(pads[0]), int(pads[1]), TH, TW)

    def piece(k, b0, b1):  # V <- Bᵀ d B, M[ξ] = V[ξ] @ U[ξ], out <- the output transform, chunk by chunk
        for t0 in range(b0 * per_image, b1 * per_image, step):
            n = min(b1 * per_image, t0 + step) - t0
            V = _input_transform(x, *args, t0, _scratch(ws, f"V{k}", (16, n, C), x.dtype))
            M = _products(V, U, _scratch(ws, f"M{k}", (16, n, F), x.dtype), False, 0.0)
            output_transform(M, t0, TH, TW, b, code, out)

    with kernel_scope():  # BLAS on one thread also when the pass runs on the calling thread alone
        share_batch(piece, B, B * per_image * 16 * C * F)
    return out


def winograd_conv2d_backward_data(dz: np.ndarray, Wk: np.ndarray, in_hw, pads, workspace: dict | None = None):
    """dx (B, H, W, C) of z = conv(x, Wk) (3×3, stride 1, pads (pt, pl) before): the correlation of dz, padded by
    (2 - pt, 2 - pl), with ``Wrot[p, q, f, c] = Wk[2 - p, 2 - q, c, f]``::

        dx[b,h,w,c] = Σ_{p,q,f} dz[b, h + pt - p, w + pl - q, f] · Wk[p,q,c,f]
    """
    if Wk.ndim != 4 or Wk.shape[:2] != (3, 3) or Wk.shape[3] != dz.shape[-1]:
        raise ValueError(f"winograd_conv2d_backward_data: needs a (3, 3, C, {dz.shape[-1]}) kernel; got {Wk.shape}")
    ws = {} if workspace is None else workspace
    dx = np.empty((dz.shape[0], *in_hw, Wk.shape[2]), dtype=dz.dtype)
    U = kept_transform(ws, "wg_kernel", Wk, dz.dtype, kernel_transform)  # the forward's, when it ran with this Wk
    return _winograd_pass(dz, turned_kernel_transform(U), (2 - pads[0], 2 - pads[1]), in_hw, None, None, ws,
                          _output_transform_plain, dx)


def winograd_conv2d_backward_filter(x: np.ndarray, dz: np.ndarray, pads, workspace: dict | None = None) -> np.ndarray:
    """dWk (3, 3, C, F) of z = conv(x, Wk) (3×3, stride 1, pads (pt, pl) before) for dz (B, Ho, Wo, F), with the
    forward's tiles: ∂L/∂U[ξ] = Σ_t V[ξ, t]ᵀ Y[ξ, t] (V = Bᵀ d B, Y = A dz Aᵀ; 16 multiply-adds per block, channel
    and filter where im2col needs 36), then dWk = Gᵀ (∂L/∂U) G. Each batch piece sums its own ∂L/∂U; the pieces'
    sums are added in range order (the same bits on every run)."""
    B, H, W, C = x.shape
    _, Ho, Wo, F = dz.shape
    if dz.shape[0] != B or not (0 <= pads[0] <= 2 and 0 <= pads[1] <= 2) or min(Ho, Wo) < 1:
        raise ValueError(f"winograd_conv2d_backward_filter: x {x.shape}, dz {dz.shape} and pads {tuple(pads)} do not "
                         "fit a 3×3 stride-1 convolution")  # fmt: skip
    x, dz = np.ascontiguousarray(x), np.ascontiguousarray(dz, dtype=x.dtype)
    ws = {} if workspace is None else workspace
    TH, TW = winograd_tiles((Ho, Wo))
    per_image = TH * TW
    step = max(1, FILTER_CHUNK_BYTES // (16 * (C + F) * x.itemsize))
    args = (int(pads[0]), int(pads[1]), TH, TW)

    def piece(k, b0, b1):  # dU += V[ξ]ᵀ @ Y[ξ] over the piece's blocks, chunk by chunk
        dU = np.zeros((16, C, F), x.dtype)
        for t0 in range(b0 * per_image, b1 * per_image, step):
            n = min(b1 * per_image, t0 + step) - t0
            V = _input_transform(x, *args, t0, _scratch(ws, f"V{k}", (16, n, C), x.dtype))
            Y = _gradient_transform(dz, TH, TW, t0, _scratch(ws, f"Y{k}", (16, n, F), x.dtype))
            _products(V, Y, dU, True, 1.0)
        return dU

    with kernel_scope():
        parts = share_batch(piece, B, B * per_image * 16 * C * F)
    dU = parts[0]
    for other in parts[1:]:
        dU += other
    return filter_from_transformed(dU)


load_without_refresh(globals())  # cached kernels load without refreshing numba (tinynn.kernels.jitcache)
