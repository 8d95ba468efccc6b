r"""Stride-1, undilated, one-group Conv1D with 5 taps by Winograd's minimal filtering algorithms, numba + BLAS.

The math (read it first): :mod:`tinynn.kernels.reference.conv`, section "Winograd F(2, 3) + F(2, 2)". Every pair t of
outputs (steps 2j, 2j + 1 of sample b) is taps 0-2 by F(2, 3) plus taps 3-4 by F(2, 2), which together read the six
input steps d_t = xp[b, 2j .. 2j + 5]; with U = G W (7 numbers per channel and filter) and V_t = Bᵀ d_t (7 per
channel), the pair is Aᵀ [Σ_c U ⊙ V_t], and for each of the 7 positions ξ the sum over channels for all pairs is one
matrix product::

    M[ξ] = V[ξ] @ U[ξ]        V (7, pairs, C), U (7, C, F), M (7, pairs, F)

That is 7 multiply-adds per pair, channel and filter where im2col needs 2·5 = 10: 1.43× fewer FLOPs, for the two
transforms (additions only, numba, vectorised over the channels). The pairs run in chunks of about ``CHUNK_BYTES`` of
V and M, samples shared out over the cores (:func:`tinynn.kernels.parallel.share_batch`); per chunk three numba
calls: the input transform, the 7 products (:func:`tinynn.kernels.winograd._products`, single-threaded BLAS), the
output transform with the bias and activation applied while the output is in the cache.

The filter gradient uses the forward's input transform::

    dU[ξ] = V[ξ]ᵀ @ Y[ξ]      Y_t = A g_t (g_t: the pair's two output gradients)      dW = Gᵀ dU

and the input gradient is the same forward run on dz, padded by 4 - pl, with the kernel reversed along its taps and
its channel axes swapped (:func:`winograd_conv1d_backward_data`).

Rounding: Bᵀ and Aᵀ hold 0 and ±1, G 0, ±½ and 1 (exact in binary); the float64 results agree with the direct
convolution to ~1e-15 relative, float32 to a few 1e-7 (tests/test_winograd1d.py, and the parity cases against Keras).
"""

from __future__ import annotations

import numba
import numpy as np

from . import warmup
from .bias_activation import activation_gradient_broadcast_rows, activation_gradient_rows, bias_activation_rows
from .conv2d import _pool_rows, _pooled_gradient
from .jitcache import load_without_refresh
from .parallel import kernel_scope, share_batch
from .parallel import scratch as _scratch
from .reference.conv import WINOGRAD1D_POSITIONS as POSITIONS
from .reference.conv import (
    winograd1d_filter_from_transformed,
    winograd1d_kernel_transform,
    winograd1d_padded,
    winograd1d_pairs,
)
from .winograd import _products

__all__ = [
    "applies",
    "gradient_transform",
    "input_transform",
    "output_transform",
    "pooled_ready",
    "winograd_conv1d",
    "winograd_conv1d_backward_data",
    "winograd_conv1d_backward_filter",
    "winograd_conv1d_backward_filter_fused",
    "winograd_conv1d_pooled",
]

#: Scratch bytes (V and M of a chunk of pairs) per chunk of the forward: the chunk's seven products are
#: (pairs × C) @ (C × F); V and M stay in the per-core L2 cache between the transforms and the products.
CHUNK_BYTES = 512 << 10
#: Scratch bytes (V and Y) per chunk of the filter gradient: its products V[ξ]ᵀ @ Y[ξ] sum over the chunk's pairs into
#: the running ∂L/∂U (7 × C × F, read and written once per chunk), so longer chunks pay that traffic fewer times.
FILTER_CHUNK_BYTES = 4 << 20
#: The forward (and the gradients) of a 5-tap, stride-1, undilated, one-group Conv1D run by Winograd with at least this
#: many input channels and filters: each product's summed axis is C, too short for BLAS to run near its rate below it,
#: and with few filters the transforms cost more than the products save (benchmarks/RESULTS.md).
MIN_CHANNELS = 64
MIN_FILTERS = 64
#: ...and a transformed kernel U (7 × C × F numbers) of at most this many bytes, half the per-core L2 cache: every
#: chunk's products read all of U, and with a larger U Winograd ran up to 1.6× slower than im2col
#: (benchmarks/RESULTS.md).
KERNEL_BYTES = 512 << 10
#: ...and over at least this many output steps (B·Lo): on one short sample the transforms and the padded copy cost
#: more than the products save.
MIN_ROWS = 1024
#: A forward pooled by a global average pooling (:func:`winograd_conv1d_pooled`) runs by Winograd from this many
#: filters: below it the pooled im2col chunks, cut to OpenBLAS's small-matrix kernels, were faster
#: (benchmarks/RESULTS.md).
POOLED_MIN_FILTERS = 128


def applies(kernel_shape, stride: int, dilation: int, groups: int, dtype, rows: int = MIN_ROWS) -> bool:
    """Whether a Conv1D of this kernel shape (K, C/G, F) and ``dtype`` over ``rows`` output steps (B·Lo) runs by
    Winograd (:data:`MIN_CHANNELS`, :data:`MIN_FILTERS`, :data:`KERNEL_BYTES`, :data:`MIN_ROWS`)."""
    K, Cg, F = kernel_shape
    return (K == 5 and int(stride) == 1 and int(dilation) == 1 and int(groups) == 1 and Cg >= MIN_CHANNELS
            and F >= MIN_FILTERS and POSITIONS * Cg * F * np.dtype(dtype).itemsize <= KERNEL_BYTES
            and rows >= MIN_ROWS)  # fmt: skip


@numba.njit(error_model="numpy", cache=True, nogil=True)
def _input_transform(xp, t0, V):  # pragma: no cover - compiled
    """V (7, n, C) <- Bᵀ d_t for the pairs t0 .. t0 + n - 1 (pair t = b·T + j reads xp[b, 2j .. 2j + 5])."""
    B, Lp, C = xp.shape
    T = (Lp - 4) // 2
    for o in range(V.shape[1]):
        t = t0 + o
        b = t // T
        s = 2 * (t - b * T)
        for c in range(C):
            d0, d1, d2 = xp[b, s, c], xp[b, s + 1, c], xp[b, s + 2, c]
            d3, d4, d5 = xp[b, s + 3, c], xp[b, s + 4, c], xp[b, s + 5, c]
            V[0, o, c] = d0 - d2
            V[1, o, c] = d1 + d2
            V[2, o, c] = d2 - d1
            V[3, o, c] = d1 - d3
            V[4, o, c] = d3 - d4
            V[5, o, c] = d4
            V[6, o, c] = d5 - d4
    return V


@numba.njit(error_model="numpy", cache=True, nogil=True)
def _output_transform(M, t0, Lo, r0, bias, code, z):  # pragma: no cover - compiled
    """Rows (b·Lo + 2j + i) - r0 of z (rows, F) <- (Aᵀ m_t)[i] for the pairs t0 .. t0 + n - 1 (pair t = b·T + j; the
    step past Lo is dropped), then act(z + bias) over those rows, one contiguous block
    (:func:`tinynn.kernels.bias_activation.bias_activation_rows`, while they are in the cache; code < 0: neither).
    z holds the rows from r0 on: all of them (r0 = 0) or a chunk's."""
    _, n, F = M.shape
    T = (Lo + 1) // 2
    first = end = 0
    for o in range(n):
        t = t0 + o
        b = t // T
        s = 2 * (t - b * T)
        r = b * Lo + s - r0
        for f in range(F):
            z[r, f] = (M[0, o, f] + M[1, o, f] + M[2, o, f]) + (M[4, o, f] + M[5, o, f])
        if s + 1 < Lo:
            for f in range(F):
                z[r + 1, f] = (M[1, o, f] - M[2, o, f] - M[3, o, f]) + (M[5, o, f] + M[6, o, f])
        if o == 0:
            first = r
        end = r + min(2, Lo - s)
    if code >= 0 and n > 0:
        rows = z[first:end]
        bias_activation_rows(rows, bias, code, rows)
    return z


@numba.njit(error_model="numpy", cache=True, nogil=True)
def _gradient_transform(dz, Lo, r0, t0, Y):  # pragma: no cover - compiled
    """Y (7, n, F) <- A g_t for the output gradients g_t = (dz[b·Lo + 2j - r0], dz[b·Lo + 2j + 1 - r0]) of pairs
    t0 .. t0 + n - 1 (0 past Lo); dz (rows, F) holds the output rows from r0 on: all of them (r0 = 0) or a chunk's."""
    F = dz.shape[1]
    T = (Lo + 1) // 2
    for o in range(Y.shape[1]):
        t = t0 + o
        b = t // T
        s = 2 * (t - b * T)
        r = b * Lo + s - r0
        if s + 1 < Lo:
            for f in range(F):
                g0, g1 = dz[r, f], dz[r + 1, f]
                Y[0, o, f] = g0
                Y[1, o, f] = g0 + g1
                Y[2, o, f] = g0 - g1
                Y[3, o, f] = -g1
                Y[4, o, f] = g0
                Y[5, o, f] = g0 + g1
                Y[6, o, f] = g1
        else:  # the pair's second step is past Lo: g1 = 0
            for f in range(F):
                g0 = dz[r, f]
                Y[0, o, f] = g0
                Y[1, o, f] = g0
                Y[2, o, f] = g0
                Y[3, o, f] = 0
                Y[4, o, f] = g0
                Y[5, o, f] = g0
                Y[6, o, f] = 0
    return Y


def _padded(x: np.ndarray, pad_left: int, l_out: int) -> np.ndarray:
    """x itself when it is already the (B, 2T + 4, C) input the pairs read, else a padded copy
    (:func:`tinynn.kernels.reference.conv.winograd1d_padded`)."""
    if pad_left == 0 and x.shape[1] == 2 * winograd1d_pairs(l_out) + 4:
        return np.ascontiguousarray(x)
    return winograd1d_padded(x, pad_left, l_out)


def _first_row(t: int, T: int, l_out: int) -> int:
    """The first output row b·Lo + 2j of pair t = b·T + j."""
    return (t // T) * l_out + 2 * (t % T)


def input_transform(xp: np.ndarray) -> np.ndarray:
    """V (7, B·T, C) for a padded input (twin: ``reference.conv.winograd1d_input_transform``)."""
    B, Lp, C = xp.shape
    V = np.empty((POSITIONS, B * ((Lp - 4) // 2), C), dtype=xp.dtype)
    return _input_transform(np.ascontiguousarray(xp), 0, V)


def output_transform(M: np.ndarray, batch: int, l_out: int) -> np.ndarray:
    """z (B, Lo, F) = Aᵀ m for every pair (twin: ``reference.conv.winograd1d_output_transform``)."""
    z = np.empty((batch * l_out, M.shape[2]), dtype=M.dtype)
    _output_transform(np.ascontiguousarray(M), 0, l_out, 0, np.zeros(M.shape[2], M.dtype), -1, z)
    return z.reshape(batch, l_out, M.shape[2])


def gradient_transform(dz: np.ndarray) -> np.ndarray:
    """Y (7, B·T, F) = A g for every pair (twin: ``reference.conv.winograd1d_gradient_transform``)."""
    B, Lo, F = dz.shape
    Y = np.empty((POSITIONS, B * winograd1d_pairs(Lo), F), dtype=dz.dtype)
    return _gradient_transform(np.ascontiguousarray(dz).reshape(B * Lo, F), Lo, 0, 0, Y)


def _check(x: np.ndarray, W: np.ndarray, pad_left: int, l_out: int, who: str) -> None:
    if x.ndim != 3 or W.ndim != 3 or W.shape[:2] != (5, x.shape[2]) or l_out < 1 or not 0 <= pad_left <= 4:
        raise ValueError(f"{who}: needs x (B, L, C), a (5, C, F) kernel, pad_left in [0, 4] and a non-empty output; "
                         f"got x {x.shape}, kernel {W.shape}, pad_left {pad_left}, output length {l_out}")  # fmt: skip


def winograd_conv1d(x: np.ndarray, W: np.ndarray, pad_left: int, l_out: int, bias: np.ndarray | None = None,
                    activation: int | None = None, workspace: dict | None = None) -> np.ndarray:  # fmt: skip
    """z (B, Lo, F) = conv(x, W) for a (5, C, F) kernel, stride 1, no dilation, one group, ``pad_left`` zeros before x
    (and as many after as the Lo outputs read); with ``activation`` (a :func:`tinynn.kernels.fastmath.activation_code`)
    act(z + bias) instead."""
    z = np.empty((x.shape[0], int(l_out), W.shape[-1]), dtype=x.dtype)
    z_rows = z.reshape(-1, W.shape[-1])

    def finish(t0, M, r0, r1, b, code, worker):  # the chunk's rows of z, while M is in the cache
        _output_transform(M, t0, int(l_out), 0, b, code, z_rows)

    _forward(x, W, pad_left, l_out, bias, activation, workspace, finish, "winograd_conv1d")
    return z


def winograd_conv1d_pooled(x: np.ndarray, W: np.ndarray, pad_left: int, l_out: int, bias: np.ndarray | None = None,
                           activation: int | None = None, workspace: dict | None = None) -> np.ndarray:  # fmt: skip
    """p (B, F) = (1 / Lo) Σ_t y[b, t] for y = :func:`winograd_conv1d`'s output, without writing y out: each chunk's
    rows go to a scratch buffer and are pooled while they are in the cache, with the bias and activation
    (:func:`tinynn.kernels.conv2d._pool_rows`: sums in float64; each batch piece sums its own samples)."""
    F, Lo = W.shape[-1], int(l_out)
    sums = np.zeros((x.shape[0], F), np.float64)

    def finish(t0, M, r0, r1, b, code, worker):
        zc = _scratch(ws, f"z{worker}", (r1 - r0, F), x.dtype)
        _output_transform(M, t0, Lo, r0, b, -1, zc)
        _pool_rows(zc, b, code, r0, Lo, 1, 0, sums)  # each piece's samples are its own: no two write a row

    ws = {} if workspace is None else workspace
    _forward(x, W, pad_left, l_out, bias, activation, ws, finish, "winograd_conv1d_pooled")
    return (sums / Lo).astype(x.dtype)


def _forward(x, W, pad_left, l_out, bias, activation, workspace, finish, who) -> None:
    """The forward's chunks (batch pieces shared out over the cores): V <- Bᵀ d, M[ξ] = V[ξ] @ U[ξ], then
    ``finish(t0, M, r0, r1, bias, code, worker)`` with the chunk's pairs from t0 and output rows r0 .. r1 - 1."""
    pad_left, l_out = int(pad_left), int(l_out)
    _check(x, W, pad_left, l_out, who)
    B, _, C = x.shape
    F = W.shape[2]
    xp, ws = _padded(x, pad_left, l_out), {} if workspace is None else workspace
    T = winograd1d_pairs(l_out)
    U = np.ascontiguousarray(winograd1d_kernel_transform(W), dtype=x.dtype)  # (7, C, F)
    code = -1 if activation is None else int(activation)
    b = np.zeros(F, x.dtype) if bias is None else np.ascontiguousarray(bias, dtype=x.dtype)
    step = max(1, CHUNK_BYTES // (POSITIONS * (C + F) * x.itemsize))

    def piece(worker, b0, b1):
        for t0 in range(b0 * T, b1 * T, step):
            t1 = min(b1 * T, t0 + step)
            V = _input_transform(xp, t0, _scratch(ws, f"V{worker}", (POSITIONS, t1 - t0, C), x.dtype))
            M = _products(V, U, _scratch(ws, f"M{worker}", (POSITIONS, t1 - t0, F), x.dtype), False, 0.0)
            finish(t0, M, _first_row(t0, T, l_out), _first_row(t1, T, l_out), b, code, worker)

    with kernel_scope():  # BLAS on one thread also when the pass runs on the calling thread alone
        share_batch(piece, B, B * T * POSITIONS * C * F)


def pooled_ready(dtype) -> bool:
    """Whether :func:`winograd_conv1d_pooled`'s numba kernels are compiled for ``dtype``; if not, they are compiled
    (or loaded) in the background and False is returned meanwhile (:func:`tinynn.kernels.warmup.kernel_ready`;
    always True in "wait" compile mode)."""
    return warmup.kernels_ready(_pooled_ready, dtype, _pooled_samples)


def _pooled_samples(d) -> list:
    """The kernels of :func:`winograd_conv1d_pooled` with arguments of the numba types it passes for dtype ``d``."""
    v3, m2, v1 = np.empty((1, 1, 1), d), np.empty((1, 1), d), np.empty(1, d)
    return [(_input_transform, (v3, 0, v3)), (_products, (v3, v3, v3, False, 0.0)),
            (_output_transform, (v3, 0, 1, 0, v1, 0, m2)),
            (_pool_rows, (m2, v1, 0, 0, 1, 1, 0, np.empty((1, 1), np.float64)))]  # fmt: skip


_pooled_ready: set = set()  # dtypes pooled_ready found compiled


def winograd_conv1d_backward_data(dz: np.ndarray, W: np.ndarray, length: int, pad_left: int,
                                  workspace: dict | None = None) -> np.ndarray:  # fmt: skip
    """dx (B, L, C) of z = conv(x, W) (5 taps, stride 1, ``pad_left`` zeros before x): the same Winograd forward on dz,
    padded by 4 - pl, with ``Wrot[k, f, c] = W[4 - k, c, f]``::

        dx[b, i, c] = Σ_k Σ_f dz[b, i + pl - k, f] · W[k, c, f]
    """
    Wrot = np.ascontiguousarray(W[::-1].transpose(0, 2, 1))
    return winograd_conv1d(dz, Wrot, 4 - int(pad_left), int(length), workspace=workspace)


def winograd_conv1d_backward_filter(x: np.ndarray, dz: np.ndarray, pad_left: int,
                                    workspace: dict | None = None) -> np.ndarray:  # fmt: skip
    """dW (5, C, F) of z = conv(x, W) (5 taps, stride 1, ``pad_left`` zeros before x) for dz (B, Lo, F), with the
    forward's input transform: ∂L/∂U[ξ] = Σ_t V[ξ, t]ᵀ Y[ξ, t] (V = Bᵀ d, Y = A g), then dW = Gᵀ (∂L/∂U). Each
    batch piece sums its own ∂L/∂U; the pieces' sums are added in range order (the same bits on every run)."""
    return _filter_gradient(x, dz, pad_left, workspace, None, None, None)[0]


def winograd_conv1d_backward_filter_fused(x: np.ndarray, y: np.ndarray, dy: np.ndarray, activation: int,
                                          pad_left: int, workspace: dict | None = None):  # fmt: skip
    """(dW, db) for y = act(conv(x, W) + b) and dy = ∂L/∂y: :func:`winograd_conv1d_backward_filter` of
    dz = act'(y) ⊙ dy, with each chunk's rows of dz formed in the cache right before its gradient transform and
    db = Σ dz summed in float64 on the way (:func:`tinynn.kernels.bias_activation.activation_gradient_rows`). dy may
    be a global average pooling's gradient as a view (stride 0 along the steps): each chunk then reads the row
    g[b] = dy[b, 0] of its samples (:func:`tinynn.kernels.bias_activation.activation_gradient_broadcast_rows`)."""
    if y.shape != dy.shape or y.ndim != 3:
        raise ValueError(f"winograd_conv1d_backward_filter_fused: y {y.shape} and dy {dy.shape} differ")
    y = np.ascontiguousarray(y, dtype=x.dtype)
    g = _pooled_gradient(dy[:, :, None, :], y[:, :, None, :], int(activation))
    if g is None:
        dy = np.ascontiguousarray(dy, dtype=x.dtype)
    return _filter_gradient(x, dy, pad_left, workspace, y, int(activation), g)


def _filter_gradient(x, dz, pad_left, workspace, y, code, g):
    """(dW, db or None); with ``y`` and ``code``, dz is ∂L/∂y (or, with ``g`` (B, F), its rows g[b])."""
    pad_left = int(pad_left)
    B, _, C = x.shape
    _, l_out, F = dz.shape
    _check(x, np.empty((5, C, F), x.dtype), pad_left, l_out, "winograd_conv1d_backward_filter")
    if dz.shape[0] != B:
        raise ValueError(f"winograd_conv1d_backward_filter: dz {dz.shape} does not match x {x.shape}")
    xp, ws = _padded(x, pad_left, l_out), {} if workspace is None else workspace
    rows = None if g is not None else np.ascontiguousarray(dz, dtype=x.dtype).reshape(B * l_out, F)
    y_rows = None if y is None else y.reshape(B * l_out, F)
    T = winograd1d_pairs(l_out)
    step = max(1, FILTER_CHUNK_BYTES // (POSITIONS * (C + F) * x.itemsize))

    def piece(worker, b0, b1):  # dU += V[ξ]ᵀ @ Y[ξ] over the piece's pairs, chunk by chunk
        dU = np.zeros((POSITIONS, C, F), x.dtype)
        db = np.zeros(F, np.float64)
        for t0 in range(b0 * T, b1 * T, step):
            t1 = min(b1 * T, t0 + step)
            r0, r1 = _first_row(t0, T, l_out), _first_row(t1, T, l_out)
            if y is None:
                dz_rows, start = rows, 0
            else:  # this chunk's dz = act'(y) ⊙ dy, while it is in the cache
                dz_rows, start = _scratch(ws, f"dz{worker}", (r1 - r0, F), x.dtype), r0
                part = np.empty(F, np.float64)
                if g is None:
                    activation_gradient_rows(y_rows[r0:r1], rows[r0:r1], code, True, dz_rows, part)
                else:
                    activation_gradient_broadcast_rows(y_rows[r0:r1], g, r0, l_out, code, True, dz_rows, part)
                db += part
            V = _input_transform(xp, t0, _scratch(ws, f"V{worker}", (POSITIONS, t1 - t0, C), x.dtype))
            Y = _gradient_transform(dz_rows, l_out, start, t0, _scratch(ws, f"Y{worker}", (POSITIONS, t1 - t0, F),
                                                                         x.dtype))  # fmt: skip
            _products(V, Y, dU, True, 1.0)
        return dU, db

    with kernel_scope():
        parts = share_batch(piece, B, B * T * POSITIONS * C * F)
    dU, db = parts[0]
    for other_dU, other_db in parts[1:]:
        dU += other_dU
        db += other_db
    return winograd1d_filter_from_transformed(dU), (None if y is None else db.astype(x.dtype))


load_without_refresh(globals())  # cached kernels load without refreshing numba (tinynn.kernels.jitcache)
