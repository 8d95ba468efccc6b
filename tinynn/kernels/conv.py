r"""1-D convolution (cross-correlation) kernels: forward, backward-data, backward-filter.

Symbols (channels-last, as Keras)::

    x   (B, L, C)        input          W  (K, Cg, F)   kernel, Cg = C/G input channels per group
    z   (B, Lo, F)       output         G  groups, Fg = F/G filters per group, g(f) = f // Fg
    s   stride           d  dilation    pl / pr  zeros padded on the left / right of x
    xp  = [0]*pl ++ x ++ [0]*pr   (along L)

Forward (the kernel is not flipped)::

    z[b,t,f] = Σ_k Σ_c xp[b, t·s + k·d, g(f)·Cg + c] · W[k,c,f]

Backward, given dz = dL/dz (B, Lo, F); write i = t·s + k·d - pl for the input step that tap k of output
step t reads::

    dx[b,i,g·Cg+c] = Σ_{(t,k) reading i} Σ_{f in group g} dz[b,t,f] · W[k,c,f]           (B, L, C)
    dW[k,c,f]      = Σ_b Σ_t xp[b, t·s + k·d, g(f)·Cg + c] · dz[b,t,f]                  (K, Cg, F)

Two ways to hand the FLOPs to BLAS, both one GEMM per pass (batched over groups); numba does the index
work around it:

* ``im2col`` (output side):  ``cols[g,b,t,k,c] = xp[b, t·s+k·d, g·Cg+c]`` (B·Lo rows of K·Cg);
  ``z_g = cols_g @ Wm_g`` with ``Wm[g, k·Cg+c, f] = W[k,c,g·Fg+f]``;
  ``dWm_g = cols_gᵀ @ dz_g``;  ``dx = col2im(dz_g @ Wm_gᵀ)`` (col2im sums each tap back onto step i).
* ``shift`` (input side):  ``Z_g = x_g @ Wr_g`` with ``Wr[g, c, k·Fg+f] = W[k,c,g·Fg+f]``, i.e.
  ``Z[g,b,i,k,f] = Σ_c x[b,i,g·Cg+c] W[k,c,g·Fg+f]`` for every input step, then
  ``z[b,t,g·Fg+f] = Σ_k Z[g,b,t·s+k·d-pl,k,f]`` (shift_add, skipping taps on padding).
  Backward: ``U[g,b,i,k,f] = dz[b,t,g·Fg+f]`` if ``t·s = i+pl-k·d`` for an output step t, else 0
  (spread);  ``dx_g = U_g @ Wr_gᵀ``;  ``dWr_g = x_gᵀ @ U_g``.

The shift method keeps B·L·K·F numbers instead of B·Lo·K·C and its GEMMs are wider, so it wins when
``F < C`` and ``s = 1`` (e.g. Conv1D(32, 7) on 128-dim embeddings); with ``s > 1`` it would waste
FLOPs on steps no output reads, so ``method='auto'`` picks im2col there.

One input channel per group (DepthwiseConv1D, and the depthwise half of SeparableConv1D: G = C) has a GEMM per
channel with a summed axis of K: ``method='depthwise'`` (``'auto'`` picks it there) runs the sum directly
instead, a numba loop over the taps with the channels innermost (``_depthwise_fwd`` / ``_depthwise_bwd``).

The ops run the batch in chunks (see ``FORWARD_CHUNK_BYTES``) so that the scratch a GEMM writes is still
in cache when numba reads it, on scratch buffers that an optional ``workspace`` dict keeps from call to call.

The readable statement of the op is :mod:`tinynn.kernels.reference.conv` (``conv1d_forward``,
``conv1d_backward_data``, ``conv1d_backward_filter``, one strided slice per tap), which also holds the NumPy
twins of the index kernels below; ``tests/test_conv_kernels.py`` proves they agree. Every product goes through
:func:`tinynn.kernels.blas.grouped_matmul`.
"""

from __future__ import annotations

import functools

import numba
import numpy as np

from . import blas, cblas, conv2d, warmup, windows, winograd1d
from .bias_activation import bias_activation_backward, bias_activation_rows
from .jitcache import load_without_refresh
from .layout import merge_groups, split_groups
from .parallel import even_ranges, kernel_scope, num_threads, share, sum_in_order
from .parallel import scratch as _scratch
from .reference.conv import conv_padding

__all__ = [
    "conv1d_backward",
    "conv1d_backward_data",
    "conv1d_backward_fused",
    "conv1d_backward_filter",
    "conv1d_forward",
    "conv1d_forward_lookup",
    "conv_padding",
]

METHODS = ("auto", "im2col", "shift", "depthwise")


def choose_method(length: int, l_out: int, channels: int, filters: int, stride: int, method: str = "auto",
                  groups: int = 1) -> str:
    """'depthwise' for one input channel per group (DepthwiseConv1D, SeparableConv1D: a direct loop, no GEMM);
    else 'shift' when it stores fewer numbers and wastes no FLOPs (s = 1, L·F <= L_out·C), else 'im2col'."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    depthwise = groups > 1 and groups == channels
    if method == "depthwise" and not depthwise:
        raise ValueError(f"method 'depthwise' needs one input channel per group, got {channels} channels in "
                         f"{groups} groups")
    if method != "auto":
        return method
    if depthwise:
        return "depthwise"
    return "shift" if stride == 1 and length * filters <= l_out * channels else "im2col"


# --------------------------------------------------------------------------- numba index kernels
# The kernels write into arrays allocated by NumPy: arrays allocated inside numba (NRT) made `spread` several
# times slower on large outputs (benchmarks/RESULTS.md). The ops pass views of reusable scratch buffers
# (a caller-owned ``workspace`` dict; the layers keep one each) and slices of their outputs as ``out``.
def _out(out, shape, dtype):
    if out is None:
        return np.empty(shape, dtype=dtype)
    if out.shape != tuple(shape) or out.dtype != dtype or not out.flags.c_contiguous:
        raise ValueError(f"conv1d: out buffer {out.shape} {out.dtype} does not fit {tuple(shape)} {np.dtype(dtype)}")
    return out


def im2col(x, groups, K, s, d, pl, l_out, out=None):
    """cols[g,b,t,k,c] = x[b, t·s + k·d - pl, g·Cg + c], 0 on padding.  (G, B, Lo, K, Cg)"""
    B, _, C = x.shape
    return _im2col(x, K, s, d, pl, _out(out, (groups, B, l_out, K, C // groups), x.dtype))


@numba.njit(cache=True, nogil=True)
def _im2col(x, K, s, d, pl, cols):  # pragma: no cover - compiled
    """With one group and no dilation, a window inside x is K·C consecutive numbers of x[b]: one flat copy
    (from 0 over 1-D slices, which LLVM vectorises)."""
    B, L, C = x.shape
    groups, _, l_out, _, Cg = cols.shape
    flat_windows = groups == 1 and d == 1
    x_rows = x.reshape(B, L * C)
    col_rows = cols.reshape(groups, B, l_out, K * Cg)
    KC = K * C
    for g in range(groups):
        c0 = g * Cg
        for b in range(B):
            for t in range(l_out):
                i0 = t * s - pl
                if flat_windows and i0 >= 0 and i0 + K <= L:
                    src, dst = x_rows[b, i0 * C:i0 * C + KC], col_rows[0, b, t]
                    for j in range(KC):
                        dst[j] = src[j]
                    continue
                for k in range(K):
                    i = t * s + k * d - pl
                    if 0 <= i < L:
                        for c in range(Cg):
                            cols[g, b, t, k, c] = x[b, i, c0 + c]
                    else:
                        for c in range(Cg):
                            cols[g, b, t, k, c] = 0
    return cols


def col2im(dcols, L, s, d, pl, out=None):
    """dx[b,i,g·Cg+c] = Σ_{t,k: t·s+k·d-pl = i} dcols[g,b,t,k,c]  (the adjoint of im2col).  (B, L, C)

    Accumulates into ``out`` when given (pass zeros)."""
    G, B, _, _, Cg = dcols.shape
    out = np.zeros((B, L, G * Cg), dtype=dcols.dtype) if out is None else _out(out, (B, L, G * Cg), dcols.dtype)
    return _col2im(dcols, s, d, pl, out)


@numba.njit(cache=True, nogil=True)
def _col2im(dcols, s, d, pl, dx):  # pragma: no cover - compiled
    G, B, l_out, K, Cg = dcols.shape
    L = dx.shape[1]
    for g in range(G):
        c0 = g * Cg
        for b in range(B):
            for t in range(l_out):
                for k in range(K):
                    i = t * s + k * d - pl
                    if 0 <= i < L:
                        for c in range(Cg):
                            dx[b, i, c0 + c] += dcols[g, b, t, k, c]
    return dx


def shift_add(Z, s, d, pl, l_out, out=None):
    """z[b,t,g·Fg+f] = Σ_k Z[g,b,t·s+k·d-pl,k,f] over taps inside [0, L).  (B, Lo, F)

    Accumulates into ``out`` when given (pass zeros)."""
    G, B, _, _, Fg = Z.shape
    out = np.zeros((B, l_out, G * Fg), dtype=Z.dtype) if out is None else _out(out, (B, l_out, G * Fg), Z.dtype)
    return _shift_add(Z, s, d, pl, out)


@numba.njit(cache=True, nogil=True)
def _shift_add(Z, s, d, pl, z):  # pragma: no cover - compiled
    G, B, L, K, Fg = Z.shape
    l_out = z.shape[1]
    for b in range(B):
        for t in range(l_out):
            for g in range(G):
                f0 = g * Fg
                for k in range(K):
                    i = t * s + k * d - pl
                    if 0 <= i < L:
                        for f in range(Fg):
                            z[b, t, f0 + f] += Z[g, b, i, k, f]
    return z


def _check_rows(rows, U: int, who: str) -> None:
    """The step map is (B, L) with entries in [-1, U): the numba loops index with it unchecked."""
    if rows.ndim != 2 or rows.dtype != np.int64 or (rows.size and (rows.min() < -1 or rows.max() >= U)):
        raise ValueError(f"{who}: the step map must be (B, L) int64 in [-1, {U}), got {rows.shape} {rows.dtype}"
                         + (f" in [{rows.min()}, {rows.max()}]" if rows.size and rows.ndim == 2 else ""))


def shift_add_rows(Zu, rows, s, d, pl, l_out, out=None):
    """z[b,t,f] = Σ_k Zu[rows[b, t·s+k·d-pl], k, f] over taps inside [0, L) with rows[…] >= 0.  (B, Lo, F)

    Written into ``out`` when given (its contents are not read: no zeroing pass)."""
    _check_rows(rows, Zu.shape[0], "shift_add_rows")
    B = rows.shape[0]
    out = np.empty((B, l_out, Zu.shape[2]), dtype=Zu.dtype) if out is None else _out(out, (B, l_out, Zu.shape[2]),
                                                                                       Zu.dtype)
    return _shift_add_rows(np.ascontiguousarray(Zu), rows, s, d, pl, out)


@numba.njit(cache=True, nogil=True)
def _shift_add_rows(Zu, rows, s, d, pl, z):  # pragma: no cover - compiled
    """Output step by output step, its taps summed in a small buffer from +0 in the order k = 0, 1, … and stored
    in z (the rows of Zu are scattered: their reads, not the sums, take the time). Zu (C-contiguous) is read
    through its flat view: a view ``Zu[u, k]`` per tap made the pass several times slower (benchmarks/RESULTS.md)."""
    B, L = rows.shape
    K, F = Zu.shape[1], Zu.shape[2]
    l_out = z.shape[1]
    Zf = Zu.reshape(-1)
    acc = np.zeros(F, Zu.dtype)
    for b in range(B):
        rb = rows[b]
        for t in range(l_out):
            for f in range(F):
                acc[f] = 0
            for k in range(K):
                i = t * s + k * d - pl
                if 0 <= i < L:
                    u = rb[i]
                    if u >= 0:
                        o = (u * K + k) * F
                        for f in range(F):
                            acc[f] += Zf[o + f]
            zr = z[b, t]
            for f in range(F):
                zr[f] = acc[f]
    return z


def spread_rows(dz, rows, K, s, d, pl, out, k0=0, k1=None):
    """Uu[u,k,f] += Σ_{(b,t): rows[b, t·s+k·d-pl] = u} dz[b,t,f] for the taps k0 <= k < k1, (b,t) in row-major
    order: shift_add_rows's adjoint (Uu (U, K, F) zeros or a running sum; Σ_u x_uᵀ Uu[u] is dWr)."""
    k1 = K if k1 is None else k1
    _check_rows(rows, out.shape[0], "spread_rows")
    if rows.shape[0] != dz.shape[0]:
        raise ValueError(f"spread_rows: step map {rows.shape} does not fit dz {dz.shape}")
    if (out.shape[1:] != (K, dz.shape[2]) or out.dtype != dz.dtype or not out.flags.c_contiguous
            or not 0 <= k0 <= k1 <= K):  # fmt: skip
        raise ValueError(f"spread_rows: out {out.shape} {out.dtype} (C-contiguous: {out.flags.c_contiguous}) does "
                         f"not fit dz {dz.shape} {dz.dtype}, K={K}")  # fmt: skip
    return _spread_rows(np.ascontiguousarray(dz), rows, s, d, pl, out, k0, k1)


@numba.njit(cache=True, nogil=True)
def _spread_rows(dz, rows, s, d, pl, Uu, k0, k1):  # pragma: no cover - compiled
    """Input step by input step: the taps k0…k1-1 of row Uu[u] are one contiguous stretch, updated together
    (scattered 1-tap updates waited on memory). Uu[u,k] still receives its terms in the order of (b, t): for a
    fixed k, t grows with i. Uu and dz are read through their flat views at unsigned offsets: a view per tap cost
    more than its adds, and a signed offset (numba wraps negative indices) kept LLVM from vectorising the adds."""
    B, L = rows.shape
    l_out, F = dz.shape[1], dz.shape[2]
    K = Uu.shape[1]
    Uf, dzf = Uu.reshape(-1), dz.reshape(-1)
    width = np.uint64(F)
    for b in range(B):
        for i in range(L):
            u = rows[b, i]
            if u < 0:
                continue
            for k in range(k0, k1):
                num = i + pl - k * d
                if num < 0:
                    break  # num falls as k grows
                t = num if s == 1 else num // s
                if t * s == num and t < l_out:
                    o, q = np.uint64((u * K + k) * F), np.uint64((b * l_out + t) * F)
                    for f in range(width):
                        Uf[o + f] += dzf[q + f]
    return Uu


def spread(dz, groups, L, K, s, d, pl, out=None):
    """U[g,b,i,k,f] = dz[b,t,g·Fg+f] where t·s = i + pl - k·d for some 0 <= t < Lo, else 0.  (G, B, L, K, Fg)

    The adjoint of shift_add."""
    B, _, F = dz.shape
    return _spread(dz, s, d, pl, _out(out, (groups, B, L, K, F // groups), dz.dtype))


@numba.njit(cache=True, nogil=True)
def _spread(dz, s, d, pl, U):  # pragma: no cover - compiled
    B, l_out, F = dz.shape
    groups, _, L, K, Fg = U.shape
    for g in range(groups):
        f0 = g * Fg
        for b in range(B):
            for i in range(L):
                for k in range(K):
                    num = i + pl - k * d
                    t = num // s
                    if num >= 0 and t * s == num and t < l_out:
                        for f in range(Fg):
                            U[g, b, i, k, f] = dz[b, t, f0 + f]
                    else:
                        for f in range(Fg):
                            U[g, b, i, k, f] = 0
    return U


@numba.njit(error_model="numpy", cache=True, nogil=True)
def _depthwise_fwd(x, W2, s, d, pl, z):  # pragma: no cover - compiled
    """Depthwise (one input channel c per group, M = F/C outputs each):
    z[b,t,c·M+m] += Σ_k x[b, t·s+k·d-pl, c] · W2[k, c·M+m]  (taps on padding skipped; z starts at 0)."""
    B, L, C = x.shape
    l_out, F = z.shape[1], z.shape[2]
    K = W2.shape[0]
    M = F // C
    for b in range(B):
        for t in range(l_out):
            zr = z[b, t]
            for k in range(K):
                i = t * s + k * d - pl
                if i < 0 or i >= L:
                    continue
                xr, wk = x[b, i], W2[k]
                if M == 1:
                    for c in range(C):
                        zr[c] += xr[c] * wk[c]
                else:
                    for c in range(C):
                        v = xr[c]
                        for m in range(M):
                            zr[c * M + m] += v * wk[c * M + m]


@numba.njit(error_model="numpy", cache=True, nogil=True)
def _depthwise_bwd(x, W2, dz, s, d, pl, dx, dW2):  # pragma: no cover - compiled
    """dx[b,i,c] += Σ_{t,k: t·s+k·d-pl = i} Σ_m dz[b,t,c·M+m] W2[k,c·M+m] (when dx has rows);
    dW2[k,c·M+m] += Σ_b Σ_t x[b, t·s+k·d-pl, c] dz[b,t,c·M+m] (when dW2 has rows)."""
    B, l_out, F = dz.shape
    K = W2.shape[0]
    L, C = (dx.shape[1], dx.shape[2]) if dx.shape[0] > 0 else (x.shape[1], x.shape[2])
    M = F // C
    need_dx, need_dW = dx.shape[0] > 0, dW2.shape[0] > 0
    for b in range(B):
        for t in range(l_out):
            dzr = dz[b, t]
            for k in range(K):
                i = t * s + k * d - pl
                if i < 0 or i >= L:
                    continue
                wk = W2[k]
                if need_dx:
                    dxr = dx[b, i]
                    if M == 1:
                        for c in range(C):
                            dxr[c] += dzr[c] * wk[c]
                    else:
                        for c in range(C):
                            acc = dxr[c] * 0
                            for m in range(M):
                                acc += dzr[c * M + m] * wk[c * M + m]
                            dxr[c] += acc
                if need_dW:
                    xr, gk = x[b, i], dW2[k]
                    if M == 1:
                        for c in range(C):
                            gk[c] += xr[c] * dzr[c]
                    else:
                        for c in range(C):
                            v = xr[c]
                            for m in range(M):
                                gk[c * M + m] += v * dzr[c * M + m]


# --------------------------------------------------------------------------- weight layouts
def _w_im2col(W, groups):
    """Wm[g, k·Cg+c, f] = W[k, c, g·Fg+f]  (G, K·Cg, Fg)"""
    K, Cg, F = W.shape
    return W.reshape(K, Cg, groups, F // groups).transpose(2, 0, 1, 3).reshape(groups, K * Cg, F // groups)


def _dw_from_im2col(dWm, K, Cg):
    G, _, Fg = dWm.shape
    return np.ascontiguousarray(dWm.reshape(G, K, Cg, Fg).transpose(1, 2, 0, 3).reshape(K, Cg, G * Fg))


def _w_shift(W, groups):
    """Wr[g, c, k·Fg+f] = W[k, c, g·Fg+f]  (G, Cg, K·Fg)"""
    K, Cg, F = W.shape
    return W.reshape(K, Cg, groups, F // groups).transpose(2, 1, 0, 3).reshape(groups, Cg, K * (F // groups))


def _dw_from_shift(dWr, K):
    G, Cg, KFg = dWr.shape
    Fg = KFg // K
    return np.ascontiguousarray(dWr.reshape(G, Cg, K, Fg).transpose(2, 1, 0, 3).reshape(K, Cg, G * Fg))


def _check(x, W, groups, l_out):
    if x.ndim != 3 or W.ndim != 3:
        raise ValueError(f"conv1d: x must be (B, L, C) and W (K, C/groups, F), got {x.shape} and {W.shape}")
    C, (_, Cg, F) = x.shape[2], W.shape
    if groups < 1 or C != Cg * groups or F % groups:
        raise ValueError(f"conv1d: x {x.shape} and W {W.shape} do not fit groups={groups}")
    if l_out < 1:
        raise ValueError(f"conv1d: empty output (L_out={l_out}) for x {x.shape}")


# --------------------------------------------------------------------------- the ops (numba index work + BLAS)
#: Scratch bytes per batch chunk. The forward runs the batch in chunks whose scratch (Z or cols) stays in the
#: L3 cache between the GEMM that writes it and the numba kernel that reads it. The backward's chunks are
#: larger: there each chunk adds a weight-gradient GEMM with a short reduction, and many small GEMMs lost to
#: one big one on a loaded machine; chunks still cap its scratch memory (measurements: benchmarks/RESULTS.md).
FORWARD_CHUNK_BYTES = 4 << 20
BACKWARD_CHUNK_BYTES = 64 << 20
#: The same for a backward's chunks that form only dx (the weight gradient comes from the distinct steps, or is not
#: asked for): no per-chunk reduction to lengthen, so chunks small enough that their scratch stays in the cache and
#: that the cores share out evenly, also around the one core that computes the weight gradient meanwhile. M1's first
#: Conv1D backward (dx over 128 × 500 steps, dW over the distinct steps), ms: 64 MiB 35-39, 4 MiB 27-31, 2 MiB
#: 26-29 (benchmarks/RESULTS.md).
DX_CHUNK_BYTES = 2 << 20
#: The largest im2col columns a training forward keeps for the backward's weight gradient (``keep_cols``).
KEEP_COLS_BYTES = 64 << 20


#: Below this much scratch in all (a pass of some tens of microseconds) the batch is one range, run on the calling
#: thread: handing work to the other core costs about as much...
SEQUENTIAL_BYTES = 1 << 20
#: ...unless the pass's products reach this many multiply-adds (about a millisecond on one core): a pass with few
#: filters writes little scratch for much work (Conv1D(32, 5) on 64 channels, batch 64 × 100 steps: 0.8 MB for 2^26
#: multiply-adds), and split it ran 1.2× faster at 2^25 and 1.5× at 2^26, 0.8× at 2^23 (benchmarks/RESULTS.md).
SEQUENTIAL_WORK = 1 << 25


def _chunk_ranges(B: int, bytes_per_sample: int, budget: int, work: float = 0) -> list[tuple[int, int]]:
    """Batch ranges of about ``budget`` bytes of scratch each, and at least two per core when the batch allows
    (the cores pull them: :func:`tinynn.kernels.parallel.share`); one range for small passes: less than
    ``SEQUENTIAL_BYTES`` of scratch and less than ``SEQUENTIAL_WORK`` multiply-adds (``work``, the pass's
    products)."""
    total = B * max(int(bytes_per_sample), 1)
    if total < SEQUENTIAL_BYTES and work < SEQUENTIAL_WORK:
        return [(0, B)]
    n = max(-(-total // budget), min(B, 2 * num_threads()))
    return even_ranges(B, n)


def conv1d_forward(
    x: np.ndarray,
    W: np.ndarray,
    stride: int = 1,
    dilation: int = 1,
    pad_left: int = 0,
    l_out: int | None = None,
    groups: int = 1,
    method: str = "auto",
    workspace: dict | None = None,
    keep_cols: bool = False,
    bias: np.ndarray | None = None,
    activation_code: int | None = None,
) -> np.ndarray:
    """z (B, Lo, F) = conv(x (B, L, C), W (K, C/G, F)); no bias.

    With an ``activation_code`` (:func:`tinynn.kernels.fastmath.activation_code`) it returns y = act(z + bias)
    instead (``bias`` None: no bias), the tail applied by :func:`tinynn.kernels.bias_activation.bias_activation_rows`
    to each batch chunk's rows right after they are computed, while they are in the cache: the same numbers as
    that function on the whole z, one pass over the output fewer. ``l_out`` defaults to the valid length
    for the given left padding (``⌊(L + pl - eff)/s⌋ + 1``); pass it to add right padding. ``workspace``:
    an optional dict of scratch buffers reused from call to call (the result never aliases them).

    The batch runs in chunks that the cores pull (index work and one single-threaded GEMM per chunk, on
    per-core scratch that stays in cache between the two).

    ``keep_cols`` (training): when the im2col method runs with one group and the columns fit in
    ``KEEP_COLS_BYTES``, they are kept in ``workspace`` for the weight gradient of the next backward call on
    the same ``x`` object, which then skips its own im2col (see :func:`_kept_cols`). A long training pass
    (:func:`trains_by_conv2d`) runs as a 2-D convolution instead and keeps nothing: its backward
    (:func:`conv1d_backward_fused`) forms its columns chunk by chunk.

    Bit-identical input windows get bit-identical outputs (:mod:`tinynn.kernels.windows`): the GEMM's rounding
    may depend on where a row falls in the matrix, and the exact ties of padded regions must survive.

    Distinct steps (``method='auto'``, one group): when at most ``DISTINCT_SHARE`` of the steps are distinct
    (repeated embedding ids, padding), the product runs on the U distinct steps only, ``Zu = x_u @ Wr``, and
    ``z[b,t] = Σ_k Zu[u(b, t·s+k·d-pl), k]`` (:func:`shift_add_rows`; all-zero steps add nothing, like padding):
    identical windows sum the same rows in the same order, so they are equal without the window pass. The
    hashed step ids are first checked bit for bit (:func:`tinynn.kernels.windows.verify_ids`); with
    ``keep_cols`` the groups are kept for the backward's weight gradient. When ``x`` is an Embedding's output, the
    step ids come from its lookup ids instead of hashing every step (:func:`tinynn.kernels.windows.lookup_row_ids`,
    the same ids, also checked bit for bit)."""
    K, s, d, pl = W.shape[0], int(stride), int(dilation), int(pad_left)
    l_out = (x.shape[1] + pl - (K - 1) * d - 1) // s + 1 if l_out is None else int(l_out)
    _check(x, W, int(groups), l_out)
    x = np.ascontiguousarray(x)
    if workspace is not None:
        workspace.pop("distinct_of", None)
    long_pass = method == "auto" and groups == 1 and keep_cols
    if warmup._in_warmup():  # a warm-up's sample is a copy, never an Embedding's output: compile that path's kernel
        windows.first_positions(np.zeros(1, np.int64))
        if long_pass and trains_by_conv2d(W, x.dtype, FUSED_MIN_ROWS):  # and the long passes' (one sample is short)
            _conv2d_forward(x, W, s, d, pl, l_out, {}, bias, activation_code)
        if method == "auto" and winograd1d.applies(W.shape, s, d, groups, x.dtype):  # and Winograd's
            winograd1d.winograd_conv1d(x, W, pl, l_out, bias, activation_code)
    tail = _tail(bias, activation_code, x.dtype, W.shape[2])
    ids = windows.lookup_row_ids(x, verify=_verify_ids_on_all_cores)
    verified = ids is not None
    if not verified:
        ids = windows.row_ids(x)
    all_distinct = _all_steps_distinct(ids)
    if method == "auto" and groups == 1 and (not all_distinct or warmup._in_warmup()):
        z = _distinct_rows_forward(x, W, s, d, pl, l_out, ids, workspace, keep_cols, verified, tail)
        if z is not None:
            return z
    if method == "auto" and winograd1d.applies(W.shape, s, d, groups, x.dtype, x.shape[0] * l_out):
        z = _winograd_forward(x, W, pl, l_out, workspace, bias, activation_code)
    elif long_pass and trains_by_conv2d(W, x.dtype, x.shape[0] * l_out):
        z = _conv2d_forward(x, W, s, d, pl, l_out, workspace, bias, activation_code)
    else:
        z = _conv1d_forward(x, W, stride, dilation, pad_left, l_out, groups, method, workspace, keep_cols, tail)
    if all_distinct and _every_window_reads_x(x.shape[1], K, s, d, pl, int(z.shape[1])):
        return z
    return windows.share_identical_windows(z, x, K, s, d, pl, ids=ids)


#: A training forward (``keep_cols``) of a one-group convolution over at least ``FUSED_MIN_ROWS`` output steps
#: (B·Lo), with ``FUSED_MIN_FILTERS`` to ``FUSED_MAX_FILTERS`` filters and an im2col weight matrix (K·C × F) of at
#: most ``CONV2D_MAX_WEIGHT_BYTES``, runs as the 2-D convolution of an L×1 image (:func:`_conv2d_forward`), and its
#: fused backward by the 2-D kernel (:func:`conv1d_backward_fused`): each row range in one numba call (columns,
#: product and tail per chunk of the cache's size), dz formed chunk by chunk in the cache, the weight gradient summed
#: per core. Shorter or wider passes keep this module's pair (columns kept for one weight-gradient product over all
#: rows), which won or tied there; with fewer filters the two tied, and the 2-D kernels' compile (about 9 CPU
#: seconds from an empty cache) would fall on models that need them nowhere else (benchmarks/RESULTS.md).
FUSED_MIN_ROWS = 4096
FUSED_MIN_FILTERS = 64
FUSED_MAX_FILTERS = 256
CONV2D_MAX_WEIGHT_BYTES = 1 << 20


def trains_by_conv2d(W: np.ndarray, dtype, rows: int) -> bool:
    """Whether a one-group training pass over ``rows`` output steps runs by the 2-D kernels (see
    :data:`FUSED_MIN_ROWS`); W is (K, C, F)."""
    K, C, F = W.shape
    return (rows >= FUSED_MIN_ROWS and FUSED_MIN_FILTERS <= F <= FUSED_MAX_FILTERS
            and K * C * F * np.dtype(dtype).itemsize <= CONV2D_MAX_WEIGHT_BYTES)  # fmt: skip


def _conv2d_forward(x, W, s, d, pl, l_out, workspace, bias, code):
    """conv(x, W) (and with ``code``, act(z + bias)) as :func:`tinynn.kernels.conv2d.conv2d_forward` of the image
    x[:, :, None, :] (B, L, 1, C) with the kernel W[:, None] (K, 1, C, F): strides (s, 1), dilation (d, 1),
    padding (pl, 0), output (Lo, 1). One group; keeps no columns (a backward makes its own)."""
    ws = {} if workspace is None else workspace
    ws.pop("kept_cols_of", None)  # columns an earlier forward kept no longer match the next backward
    sub = ws.setdefault("conv2d", {})
    B, F = x.shape[0], W.shape[2]
    z = conv2d.conv2d_forward(x[:, :, None, :], W[:, None], (s, 1), (d, 1), (pl, 0), (l_out, 1), 1, workspace=sub,
                              bias=bias, activation=code)  # fmt: skip
    return z.reshape(B, l_out, F)


def conv1d_forward_lookup(
    table: np.ndarray,
    ids: np.ndarray,
    W: np.ndarray,
    stride: int,
    dilation: int,
    pad_left: int,
    l_out: int,
    workspace: dict | None = None,
    bias: np.ndarray | None = None,
    activation_code: int | None = None,
    keep: bool = False,
) -> np.ndarray | None:
    """:func:`conv1d_forward` of x = table[ids] (one group) without forming x: table (V, C) an
    Embedding's weights, ids (B, L) in [0, V). The steps of x with equal ids are equal, so the distinct-steps
    forward runs as it would on x (the same numbers, bit for bit), with its U distinct steps taken from the
    table::

        u(r) = the rank of ids[r] among the distinct ids (order of first occurrence), firsts[u] its first step
        id'  = row_ids(table[ids[firsts]])        distinct ids whose rows are bitwise equal (or all +0) merge
        x_u  = table[ids[firsts[u]]],   z = conv(x, W) from x_u @ Wr (:func:`_distinct_rows_forward`)

    No pass over B·L·C numbers: neither the lookup nor the check of the ids against x
    (:func:`tinynn.kernels.windows.lookup_row_ids`) that a Conv1D reading an Embedding's output runs. None when
    more than ``DISTINCT_SHARE`` of the steps are distinct (then the caller forms x and calls
    :func:`conv1d_forward`). ``keep`` (training): the distinct steps stay in ``workspace`` for
    :func:`conv1d_backward_lookup`, which needs no x either."""
    K, C, F = W.shape
    if table.ndim != 2 or table.shape[1] != C or ids.ndim != 2 or table.dtype != W.dtype:
        raise ValueError(f"conv1d_forward_lookup: table {table.shape} {table.dtype} and ids {ids.shape} do not fit "
                         f"W {W.shape} {W.dtype}")  # fmt: skip
    B, L = ids.shape
    s, d, pl, l_out = int(stride), int(dilation), int(pad_left), int(l_out)
    carrier = np.broadcast_to(np.zeros(1, table.dtype), (B, L, C))  # x's shape and dtype, no memory
    _check(carrier, W, 1, l_out)
    idx = np.ascontiguousarray(ids, np.int64).reshape(-1)
    if idx.size and (idx.min() < 0 or idx.max() >= table.shape[0]):
        raise ValueError(f"conv1d_forward_lookup: ids must be in [0, {table.shape[0]}), got "
                         f"[{idx.min()}, {idx.max()}]")  # fmt: skip

    taken: dict = {}

    def rows_at(positions):  # the steps x[positions] = table[ids[positions]]; the hashed rows again: the same array
        if "rows" in taken and np.array_equal(taken["positions"], positions):
            return taken["rows"]
        taken.update(positions=positions, rows=np.take(table, idx[positions], axis=0))
        return taken["rows"]

    found = windows.step_ids_from_lookups(idx, rows_at)
    if found is None:
        return None
    flat, zero_id = found
    if workspace is not None:
        workspace.pop("distinct_of", None)
    return _distinct_rows_forward(carrier, W, s, d, pl, l_out, (flat.reshape(B, L), zero_id), workspace, keep, True,
                                  _tail(bias, activation_code, table.dtype, F), rows_at)  # fmt: skip


def conv1d_backward_lookup(
    W: np.ndarray,
    y: np.ndarray,
    dy: np.ndarray,
    activation: int,
    stride: int,
    dilation: int,
    pad_left: int,
    need_dx: bool,
    workspace: dict,
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """(dx (B, L, C) or None, dW, db) after a training :func:`conv1d_forward_lookup` (``keep``) on ``workspace``,
    y = act(conv(table[ids], W) + b) and dy = ∂L/∂y: what :func:`conv1d_backward_fused` does after a distinct-steps
    forward on the formed x, the same numbers, without x::

        dz = act'(y) ⊙ dy,   db[f] = Σ_b Σ_t dz[b,t,f]
        dW = Σ_u x_uᵀ Uu[u]  (the kept distinct steps x_u),   dx = the shift or im2col adjoint of dz and W

    Raises a ValueError when the workspace holds no such forward of this geometry (a later forward replaced it)."""
    record = workspace.get("distinct_of")
    K = W.shape[0]
    s, d, pl = int(stride), int(dilation), int(pad_left)
    carrier = None if record is None else record[0]
    if (carrier is None or carrier.strides[:2] != (0, 0) or y.shape != dy.shape or y.shape[0] != carrier.shape[0]
            or record[1] != (carrier.shape, K, s, d, pl, y.shape[1]) or W.shape[1] != carrier.shape[2]
            or y.shape[2] != W.shape[2] or not y.dtype == dy.dtype == W.dtype == carrier.dtype):  # fmt: skip
        raise ValueError(f"conv1d_backward_lookup: no training forward on an Embedding's ids with W {W.shape}, "
                         f"strides {s}, dilation {d}, padding {pl} and output {y.shape} in this workspace")  # fmt: skip
    dz, db = bias_activation_backward(y, dy, int(activation), True)
    dx, dW = _distinct_backward(carrier, W, np.ascontiguousarray(dz), s, d, pl, "auto", workspace["distinct"],
                                workspace, need_dx)  # fmt: skip
    return dx, dW, db


def _tail(bias, code, dtype, F):
    """``tail(src, dst)``: dst = act(src + bias) for blocks of rows (..., F), C-contiguous (dst may be src), or None
    without an activation code. (The window pass after it copies whole output rows, which commutes with a
    row-wise tail.)"""
    if code is None:
        return None
    b = np.zeros(F, dtype) if bias is None else np.ascontiguousarray(bias, dtype=dtype)
    if b.shape != (F,):
        raise ValueError(f"conv1d: bias {b.shape} does not fit {F} filters")
    code = int(code)

    def tail(src, dst):
        bias_activation_rows(src.reshape(-1, F), b, code, dst.reshape(-1, F))

    return tail


def _all_steps_distinct(ids) -> bool:
    """True when every step is distinct and none is all zeros: equal steps always get equal ids, so ``ids[r] = r``
    for all r proves it (then no step repeats: the distinct-steps forward has nothing to save)."""
    row_ids, zero_id = ids
    return zero_id < 0 and bool(np.array_equal(row_ids.reshape(-1), np.arange(row_ids.size)))


@functools.lru_cache(maxsize=256)
def _every_window_reads_x(L: int, K: int, s: int, d: int, pl: int, l_out: int) -> bool:
    """True when every window has a tap inside x: then, with all steps distinct, no two windows can be identical
    (the key of a window names a step no other window reads at that tap) and the window pass has nothing to do.
    (Cached per geometry: small batches call it once per forward.)"""
    i = np.arange(l_out)[:, None] * s + np.arange(K)[None, :] * d - pl
    return not bool(((i < 0) | (i >= L)).all(axis=1).any())


def _verify_ids_on_all_cores(x, flat) -> bool:
    """:func:`tinynn.kernels.windows.verify_ids` over all steps, shared between the cores (it reads all of x)."""
    rows = flat.shape[0]
    with kernel_scope():
        return all(share(lambda _, r0, r1: windows.verify_ids(x, flat, r0, r1), even_ranges(rows, num_threads())))


#: The distinct-steps forward runs when at most this share of the steps is distinct (repeated embedding ids,
#: padding): its product has U rows instead of B·L (or B·Lo), for one more pass over x (the ids' check).
DISTINCT_SHARE = 0.5


def _distinct_rows_forward(x, W, s, d, pl, l_out, ids, workspace, keep, verified=False, tail=None, rows_at=None):
    """z = conv(x, W) with one product per distinct step (:func:`tinynn.kernels.reference.conv.shift_add_rows`),
    or None when too many steps are distinct (or the ids cannot be trusted: a hash collision). ``verified``: the
    ids were already checked bit for bit (:func:`tinynn.kernels.windows.lookup_row_ids`).

    ``keep`` (training): the distinct steps and their map stay in ``workspace`` for the weight gradient of the
    next backward call on the same ``x`` object (:func:`_kept_distinct`). ``rows_at(positions)``: the steps at
    these flat positions (U, C), when x is only a carrier of its shape and dtype (:func:`conv1d_forward_lookup`;
    then ``verified``)."""
    K, C, F = W.shape
    B, L, _ = x.shape
    if l_out is None:
        l_out = (L + pl - (K - 1) * d - 1) // s + 1
    row_ids, zero_id = ids
    rows = B * L
    firsts, compact = windows.distinct_rows(x, row_ids, zero_id, verify=False)
    share_ = 1.0 if warmup._in_warmup() else DISTINCT_SHARE  # a warm-up's one sample compiles this path too
    if firsts.shape[0] > share_ * min(rows, B * l_out):
        return None
    if not (verified or _verify_ids_on_all_cores(x, row_ids.reshape(rows))):  # the check reads all of x once
        return None
    ws = {} if workspace is None else workspace
    ws.pop("kept_cols_of", None)  # columns kept by an earlier forward no longer match the next backward
    xu = np.take(x.reshape(rows, C), firsts, axis=0) if rows_at is None else rows_at(firsts)
    Zu = blas.matmul(xu, _w_shift(W, 1)[0], _scratch(ws, "Zu", (firsts.shape[0], K * F), x.dtype))
    Zu = Zu.reshape(-1, K, F)
    z = np.empty((B, l_out, F), dtype=x.dtype)  # every row is written
    def piece(_, b0, b1):
        shift_add_rows(Zu, compact[b0:b1], s, d, pl, l_out, out=z[b0:b1])
        if tail is not None:
            tail(z[b0:b1], z[b0:b1])

    _run_chunks(piece, _chunk_ranges(B, l_out * F * x.itemsize, FORWARD_CHUNK_BYTES))
    if keep and workspace is not None:
        workspace["distinct"] = (xu, compact)
        workspace["distinct_of"] = (x, (x.shape, K, s, d, pl, l_out))
    return z


def _distinct_backward_shift(x, W, dz, s, d, pl, kept, ws):
    """(dx, dW) with dW over the distinct steps as one task (spread_rows over all taps, then x_uᵀ Uu) that a core
    takes first, while the cores pull the shift method's dx chunks (spread, U @ Wrᵀ): no core waits for the other
    between the two, and dz is read once for Uu."""
    K, C, F = W.shape
    B, L, _ = x.shape
    xu, compact = kept
    WrT = _w_shift(W, 1).transpose(0, 2, 1)  # (1, K·F, C)
    dx = np.empty((B, L, C), dtype=dz.dtype)
    dW_parts: list = []

    def piece(worker, b0, b1):
        if b0 < 0:  # the weight gradient, on this core alone
            dW_parts.append(_distinct_weight_gradient(xu, compact, dz, K, s, d, pl, ws, share_taps=False))
            return
        n = b1 - b0
        Us = spread(dz[b0:b1], 1, L, K, s, d, pl, _scratch(ws, f"U{worker}", (1, n, L, K, F), dz.dtype))
        blas.grouped_matmul(Us.reshape(1, n * L, K * F), WrT, dx[b0:b1].reshape(1, n * L, C))

    _run_chunks(piece, [(-1, -1), *_chunk_ranges(B, L * K * F * dz.itemsize, DX_CHUNK_BYTES, B * L * K * F * C)])
    return dx, dW_parts[0]


def _distinct_backward(x, W, dz, s, d, pl, method, kept, ws, need_dx):
    """(dx or None, dW) of one group after a distinct-steps forward that ``kept`` (x_u, u): dW over the distinct
    steps; dx by the shift method's chunks beside that task, or by :func:`_backward`. Only x's shape is read (x may
    be the shape-only carrier of :func:`conv1d_forward_lookup`)."""
    L, C = x.shape[1], x.shape[2]
    if need_dx and choose_method(L, dz.shape[1], C, W.shape[2], s, method) == "shift":
        return _distinct_backward_shift(x, W, dz, s, d, pl, kept, ws)
    dW = _distinct_weight_gradient(*kept, dz, W.shape[0], s, d, pl, ws)
    return (_backward(None, W, dz, L, s, d, pl, 1, method, True, False, ws)[0] if need_dx else None), dW


def _kept_distinct(ws: dict, x, geometry):
    """(xu (U, C), compact (B, L)) of the forward on this very ``x`` and geometry (as :func:`_kept_cols`), else
    None."""
    record = ws.get("distinct_of")
    if record is None or record[0] is not x or record[1] != geometry:
        return None
    return ws["distinct"]


def _distinct_weight_gradient(xu, compact, dz, K, s, d, pl, ws, share_taps: bool = True):
    """dW (K, C, F) = Σ_u x_uᵀ Uu[u] (one product over the U distinct steps instead of B·L), Uu from
    :func:`spread_rows`, its taps shared between the cores (each sums its taps in the same order) or, with
    ``share_taps`` False (a caller already running on one core), all on the calling thread."""
    U, C = xu.shape
    F = dz.shape[2]
    Uu = _scratch(ws, "Uu", (U, K, F), dz.dtype)
    Uu[...] = 0
    if share_taps:
        with kernel_scope():
            share(lambda _, k0, k1: spread_rows(dz, compact, K, s, d, pl, Uu, k0, k1), even_ranges(K, num_threads()))
    else:
        spread_rows(dz, compact, K, s, d, pl, Uu)
    dWr = blas.matmul_tn(xu, Uu.reshape(U, K * F))  # (C, K·F)
    return _dw_from_shift(dWr[None], K)


def _winograd_forward(x, W, pl, l_out, workspace, bias, code):
    """conv(x, W) (and with ``code``, act(z + bias)) by :func:`tinynn.kernels.winograd1d.winograd_conv1d`; keeps no
    columns (the backward's Winograd filter gradient transforms x again)."""
    ws = {} if workspace is None else workspace
    ws.pop("kept_cols_of", None)  # columns an earlier forward kept no longer match the next backward
    return winograd1d.winograd_conv1d(x, W, pl, l_out, bias, code, ws.setdefault("winograd1d", {}))


def _winograd_backward(x, W, dz, pl, need_dx, workspace):
    """(dx or None, dW) of a convolution :func:`tinynn.kernels.winograd1d.applies` to, by Winograd."""
    ws = ({} if workspace is None else workspace).setdefault("winograd1d", {})
    dW = winograd1d.winograd_conv1d_backward_filter(x, dz, pl, ws)
    dx = winograd1d.winograd_conv1d_backward_data(dz, W, x.shape[1], pl, ws) if need_dx else None
    return dx, dW


def _conv1d_forward(x, W, stride, dilation, pad_left, l_out, groups, method, workspace, keep_cols, tail=None):
    K, Cg, F = W.shape
    B, L, C = x.shape
    s, d, pl, G = int(stride), int(dilation), int(pad_left), int(groups)
    if l_out is None:
        l_out = (L + pl - (K - 1) * d - 1) // s + 1
    _check(x, W, G, l_out)
    x, ws, Fg = np.ascontiguousarray(x), {} if workspace is None else workspace, F // G
    chosen = choose_method(L, l_out, C, F, s, method, G)
    if chosen == "depthwise":
        z = np.zeros((B, l_out, F), dtype=x.dtype)  # accumulated tap by tap
        W2 = np.ascontiguousarray(W.reshape(K, F), dtype=x.dtype)
        def depthwise_piece(_, b0, b1):
            _depthwise_fwd(x[b0:b1], W2, s, d, pl, z[b0:b1])
            if tail is not None:
                tail(z[b0:b1], z[b0:b1])

        _run_chunks(depthwise_piece, _chunk_ranges(B, l_out * F * x.itemsize, FORWARD_CHUNK_BYTES))
        return z
    if (chosen == "shift" and method == "auto" and G == 1 and C >= TAPS_MIN_CHANNELS
            and L * C * x.itemsize <= TAPS_SHIFT_SAMPLE_BYTES):
        return _taps_forward(x, W, d, pl, l_out, ws, tail)
    if chosen == "shift":
        z = np.zeros((B, l_out, F), dtype=x.dtype)  # shift_add accumulates
        Wr = _w_shift(W, G)  # (G, Cg, K·Fg)

        def shift_piece(worker, b0, b1):
            n = b1 - b0
            Z = blas.grouped_matmul(split_groups(x[b0:b1], G), Wr,
                                    _scratch(ws, f"Z{worker}", (G, n * L, K * Fg), x.dtype))  # (G, n·L, K·Fg)
            shift_add(Z.reshape(G, n, L, K, Fg), s, d, pl, l_out, out=z[b0:b1])
            if tail is not None:
                tail(z[b0:b1], z[b0:b1])

        _run_chunks(shift_piece, _chunk_ranges(B, L * K * F * x.itemsize, FORWARD_CHUNK_BYTES, B * L * C * K * Fg))
        return z
    keep = keep_cols and G == 1 and B * l_out * K * C * x.itemsize <= KEEP_COLS_BYTES
    if method == "auto" and not keep and s == 1 and G == 1 and C >= TAPS_MIN_CHANNELS and F <= 2 * C:
        ws.pop("kept_cols_of", None)
        return _taps_forward(x, W, d, pl, l_out, ws, tail)
    z = np.empty((B, l_out, F), dtype=x.dtype)  # every row is written below
    Wm = _w_im2col(W, G)  # (G, K·Cg, Fg)
    geometry = (x.shape, K, s, d, pl, l_out, G)
    ws.pop("kept_cols_of", None)
    kept = _scratch(ws, "kept_cols", (G, B, l_out, K, Cg), x.dtype) if keep else None

    def im2col_piece(worker, b0, b1):
        n = b1 - b0
        buf = kept[:, b0:b1] if keep else _scratch(ws, f"cols{worker}", (G, n, l_out, K, Cg), x.dtype)
        cols = im2col(x[b0:b1], G, K, s, d, pl, l_out, buf).reshape(G, n * l_out, K * Cg)
        if G == 1:
            blas.grouped_matmul(cols, Wm, z[b0:b1].reshape(1, n * l_out, F))
        else:
            z[b0:b1] = merge_groups(blas.grouped_matmul(cols, Wm), n, l_out)
        if tail is not None:
            tail(z[b0:b1], z[b0:b1])

    work = B * l_out * K * C * F / G
    _run_chunks(im2col_piece, _chunk_ranges(B, l_out * K * C * x.itemsize, FORWARD_CHUNK_BYTES, work), work)
    if keep:
        ws["kept_cols_of"] = (x, geometry)
    return z


#: A forward that keeps no columns (inference, or columns beyond ``KEEP_COLS_BYTES``) with stride 1, one group, at
#: least this many channels and F <= 2·C, where 'auto' would pick im2col, runs one product per tap instead
#: (:func:`_taps_forward`): no columns to copy, and each product's summed axis (C) is still long enough for BLAS
#: to run near its best (with many more filters than channels the K passes over the output rows cost more than
#: the columns saved).
TAPS_MIN_CHANNELS = 64
#: Where 'auto' picks the shift method (F < C), the products per tap run instead when a sample's x is at most this
#: many bytes: each tap's product reads the chunk's x again, which then still sits in the core's cache, and there
#: is no (B, L, K·F) scratch to write and sum back. With larger samples the K reads of x cost more than the shift
#: method's extra pass (measurements: benchmarks/RESULTS.md).
TAPS_SHIFT_SAMPLE_BYTES = 64 << 10


@numba.njit(error_model="numpy", cache=True, nogil=True)
def _taps_products(rows, Wk, zp, r0, m, d, step):
    """zp[:m] = Σ_k rows[r0 + k·d : r0 + k·d + m] @ Wk[k] (β = 1 after k = 0), in blocks of ``step`` rows of zp, all
    K taps of a block while its rows are in the cache (each row's sum still runs k = 0, 1, ..., K-1). ``step`` from
    :func:`tinynn.kernels.blas.small_blocks`: products OpenBLAS's small-matrix kernels take (``m``: one block)."""
    for i0 in range(0, m, step):
        i1 = min(m, i0 + step)
        out = zp[i0:i1]
        blas.gemm(rows[r0 + i0:r0 + i1], Wk[0], out, False, False, 0.0)
        for k in range(1, Wk.shape[0]):
            blas.gemm(rows[r0 + k * d + i0:r0 + k * d + i1], Wk[k], out, False, False, 1.0)


def _taps_forward(x, W, d, pl, l_out, ws, tail=None):
    """z = conv(x, W) for stride 1 and one group as K products into the same rows, no im2col:

        xp = x padded (B, Lp, C) as rows r = b·Lp + i,   z'[r] = Σ_k xp[r + k·d] @ W[k]   (β = 1 after k = 0)
        z[b, t] = z'[b·Lp + t]

    A batch chunk computes the rows r whose taps stay inside its own samples (the rows t >= Lo of a sample mix
    two samples and are dropped) into per-core scratch, then copies its samples' Lo valid rows to z."""
    K, C, F = W.shape
    B, L, _ = x.shape
    reach = (K - 1) * d
    Lp = max(L + pl, l_out + reach)  # steps per padded sample: all that the Lo windows read
    if Lp == L:
        xp = x
    else:
        xp = np.zeros((B, Lp, C), dtype=x.dtype)
        xp[:, pl : pl + L] = x
    rows = xp.reshape(B * Lp, C)
    Wk = np.ascontiguousarray(W, dtype=x.dtype)
    z = np.empty((B, l_out, F), dtype=x.dtype)
    small = cblas.small_gemm_work(x.dtype)

    def piece(worker, b0, b1):
        n = b1 - b0
        r0, m = b0 * Lp, n * Lp - reach
        zp = _scratch(ws, f"zt{worker}", (n * Lp, F), x.dtype)
        how, step = blas.small_blocks(m, F, C, small, False)
        _taps_products(rows, Wk, zp, r0, m, d, step if how == blas.ROWS else max(m, 1))
        if tail is None:
            z[b0:b1] = zp.reshape(n, Lp, F)[:, :l_out]
            return
        zs = zp.reshape(n, Lp, F)
        for j in range(n):  # each sample's valid rows, from the scratch the products left in the cache
            tail(zs[j, :l_out], z[b0 + j])

    work = B * Lp * K * C * F
    _run_chunks(piece, _chunk_ranges(B, Lp * F * x.itemsize, FORWARD_CHUNK_BYTES, work), work)
    return z


def _run_chunks(piece, ranges, work: float | None = None) -> list:
    """``piece(worker, b0, b1)`` over the batch ranges, pulled by the cores, BLAS on one thread each (``work``:
    the pass's multiply-adds, when known: :func:`tinynn.kernels.parallel.share`)."""
    with kernel_scope():
        return share(piece, ranges, work)


def _kept_cols(ws: dict, x, geometry) -> np.ndarray | None:
    """The forward's columns (G, B·Lo, K·Cg) if they were kept for this very ``x`` and geometry, else None.

    The identity check (``is``) holds because the layer keeps its input alive between forward and backward; a
    new forward call replaces both the columns and the record."""
    record = ws.get("kept_cols_of")
    if record is None or record[0] is not x or record[1] != geometry:
        return None
    (B, _, C), K, _, _, _, l_out, G = geometry
    return ws["kept_cols"][: B * l_out * K * C].reshape(G, B * l_out, K * C // G)


def _budget(need_dW: bool) -> int:
    """Scratch bytes per chunk of a backward: ``BACKWARD_CHUNK_BYTES`` when its chunks add weight gradients, else
    (dx alone) ``DX_CHUNK_BYTES``."""
    return BACKWARD_CHUNK_BYTES if need_dW else DX_CHUNK_BYTES


def _backward(x, W, dz, length, s, d, pl, G, method, need_dx, need_dW, workspace):
    """The shared backward pass: (dx or None, dW or None), batch chunks pulled by the cores; each core sums
    its chunks' weight gradients into its own partial sum, added at the end."""
    K, Cg, F = W.shape
    B, l_out, _ = dz.shape
    L, C, Fg = int(length), Cg * G, F // G
    dz, ws = np.ascontiguousarray(dz), {} if workspace is None else workspace
    item = dz.itemsize
    chosen = choose_method(L, l_out, C, F, s, method, G)
    if chosen == "depthwise":
        W2 = np.ascontiguousarray(W.reshape(K, F), dtype=dz.dtype)
        dx = np.zeros((B, L, C), dtype=dz.dtype) if need_dx else None
        no_x = np.zeros((0, L, C), dz.dtype)

        def depthwise_piece(worker, b0, b1):
            dW2 = np.zeros((K, F), dz.dtype) if need_dW else np.zeros((0, F), dz.dtype)
            _depthwise_bwd(no_x if x is None else x[b0:b1], W2, dz[b0:b1], s, d, pl,
                           dx[b0:b1] if need_dx else no_x, dW2)
            return dW2

        parts = _run_chunks(depthwise_piece, _chunk_ranges(B, l_out * F * item, _budget(need_dW)))
        return dx, (sum_in_order(parts).reshape(K, 1, F) if need_dW else None)
    if chosen == "shift":
        WrT = _w_shift(W, G).transpose(0, 2, 1)  # (G, K·Fg, Cg)
        dx = np.empty((B, L, C), dtype=dz.dtype) if need_dx else None

        def shift_piece(worker, b0, b1):
            n = b1 - b0
            U = spread(dz[b0:b1], G, L, K, s, d, pl, _scratch(ws, f"U{worker}", (G, n, L, K, Fg), dz.dtype))
            U = U.reshape(G, n * L, K * Fg)
            if need_dx and G == 1:
                blas.grouped_matmul(U, WrT, dx[b0:b1].reshape(1, n * L, C))
            elif need_dx:
                dx[b0:b1] = merge_groups(blas.grouped_matmul(U, WrT), n, L)
            return blas.grouped_matmul_tn(split_groups(x[b0:b1], G), U) if need_dW else None

        parts = _run_chunks(shift_piece, _chunk_ranges(B, L * K * F * item, _budget(need_dW),
                                                       (int(need_dx) + int(need_dW)) * B * L * K * Fg * Cg * G))
        return dx, (_dw_from_shift(sum_in_order(parts), K) if need_dW else None)
    Wm = _w_im2col(W, G)  # (G, K·Cg, Fg)
    dx = np.zeros((B, L, C), dtype=dz.dtype) if need_dx else None
    dWm = None
    kept = _kept_cols(ws, x, ((B, L, C), K, s, d, pl, l_out, G)) if need_dW else None
    if kept is not None:  # the forward's columns: one GEMM (split over the cores), no im2col
        dWm = blas.grouped_matmul_tn(kept, split_groups(dz, G))
        need_dW = False
    if not (need_dW or need_dx):
        return dx, (None if dWm is None else _dw_from_im2col(dWm, K, Cg))
    def im2col_piece(worker, b0, b1):
        n = b1 - b0
        dz_g = split_groups(dz[b0:b1], G)  # (G, n·Lo, Fg)
        if need_dW:
            cols = im2col(x[b0:b1], G, K, s, d, pl, l_out, _scratch(ws, f"cols{worker}", (G, n, l_out, K, Cg),
                                                                    dz.dtype))
            part = blas.grouped_matmul_tn(cols.reshape(G, n * l_out, K * Cg), dz_g)
        if need_dx:
            dcols = blas.grouped_matmul(dz_g, Wm.transpose(0, 2, 1),
                                        _scratch(ws, f"dcols{worker}", (G, n * l_out, K * Cg), dz.dtype))
            col2im(dcols.reshape(G, n, l_out, K, Cg), L, s, d, pl, out=dx[b0:b1])
        return part if need_dW else None

    parts = _run_chunks(im2col_piece, _chunk_ranges(B, 2 * l_out * K * C * item, _budget(need_dW),
                                                    (int(need_dx) + int(need_dW)) * B * l_out * K * Cg * F))
    if need_dW:
        dWm = sum_in_order(parts)
    return dx, (None if dWm is None else _dw_from_im2col(dWm, K, Cg))


def conv1d_backward(
    x: np.ndarray,
    W: np.ndarray,
    dz: np.ndarray,
    stride: int = 1,
    dilation: int = 1,
    pad_left: int = 0,
    groups: int = 1,
    method: str = "auto",
    need_dx: bool = True,
    workspace: dict | None = None,
) -> tuple[np.ndarray | None, np.ndarray]:
    """(dx (B, L, C), dW (K, C/G, F)) for dz (B, Lo, F); both come from the same im2col/spread buffer."""
    B, L, _ = x.shape
    _check(x, W, groups, dz.shape[1])
    if dz.shape != (B, dz.shape[1], W.shape[2]):
        raise ValueError(f"conv1d: dz {dz.shape} does not match x {x.shape} and W {W.shape}")
    x = np.ascontiguousarray(x)
    s, d, pl, G = int(stride), int(dilation), int(pad_left), int(groups)
    kept = None if workspace is None else _kept_distinct(workspace, x, (x.shape, W.shape[0], s, d, pl, dz.shape[1]))
    if kept is not None and G == 1 and dz.dtype == x.dtype:
        return _distinct_backward(x, W, np.ascontiguousarray(dz), s, d, pl, method, kept, workspace, need_dx)
    if method == "auto" and winograd1d.applies(W.shape, s, d, G, x.dtype):
        if B * dz.shape[1] >= winograd1d.MIN_ROWS:
            return _winograd_backward(x, W, np.ascontiguousarray(dz, dtype=x.dtype), pl, need_dx, workspace)
        if warmup._in_warmup():  # a warm-up's one sample compiles Winograd's backward kernels too
            _winograd_backward(x, W, np.ascontiguousarray(dz, dtype=x.dtype), pl, need_dx, {})
    return _backward(x, W, dz, L, s, d, pl, G, method, need_dx, True, workspace)


def conv1d_backward_fused(
    x: np.ndarray,
    W: np.ndarray,
    y: np.ndarray,
    dy: np.ndarray,
    activation: int,
    stride: int = 1,
    dilation: int = 1,
    pad_left: int = 0,
    groups: int = 1,
    need_dx: bool = True,
    workspace: dict | None = None,
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """(dx or None, dW, db) for y = act(conv(x, W) + b) (B, Lo, F) and dy = ∂L/∂y, ``activation`` a
    :func:`tinynn.kernels.fastmath.activation_code`::

        dz = act'(y) ⊙ dy,   db[f] = Σ_b Σ_t dz[b,t,f],   (dx, dW) = conv1d_backward(x, W, dz)

    dy may be a global average pooling's gradient as a view (stride 0 along the steps). After a training forward
    that ran as a 2-D convolution (:func:`trains_by_conv2d`) this is
    :func:`tinynn.kernels.conv2d.conv2d_backward_fused` on the same views; otherwise dz and db come from
    :func:`tinynn.kernels.bias_activation.bias_activation_backward` and the rest from :func:`conv1d_backward`."""
    B, L, _ = x.shape
    K, _, F = W.shape
    if y.shape != dy.shape or y.shape[0] != B or y.shape[2] != F:
        raise ValueError(f"conv1d: y {y.shape} and dy {dy.shape} do not fit x {x.shape} and W {W.shape}")
    s, d, pl, G = int(stride), int(dilation), int(pad_left), int(groups)
    x = np.ascontiguousarray(x)
    ws = {} if workspace is None else workspace
    l_out = y.shape[1]
    distinct = _kept_distinct(ws, x, (x.shape, K, s, d, pl, l_out)) is not None

    def by_conv2d(workspace):
        dx, dW, db = conv2d.conv2d_backward_fused(x[:, :, None, :], W[:, None], y[:, :, None, :], dy[:, :, None, :],
                                                  int(activation), (s, 1), (d, 1), (pl, 0), 1, need_dx=need_dx,
                                                  workspace=workspace)  # fmt: skip
        return (None if dx is None else dx.reshape(x.shape)), dW.reshape(W.shape), db

    if not distinct and winograd1d.applies(W.shape, s, d, G, x.dtype, B * l_out):
        if not need_dx:  # dz formed chunk by chunk next to the filter gradient's transforms
            dW, db = winograd1d.winograd_conv1d_backward_filter_fused(x, y, dy, int(activation), pl,
                                                                      ws.setdefault("winograd1d", {}))  # fmt: skip
            return None, dW, db
        dz, db = bias_activation_backward(y, dy, int(activation), True)
        dx, dW = _winograd_backward(x, W, dz, pl, need_dx, ws)
        return dx, dW, db
    if not distinct and warmup._in_warmup() and winograd1d.applies(W.shape, s, d, G, x.dtype) and not need_dx:
        winograd1d.winograd_conv1d_backward_filter_fused(x, y, dy, int(activation), pl, {})  # compile it too
    if G == 1 and not distinct and trains_by_conv2d(W, x.dtype, B * l_out):
        return by_conv2d(ws.setdefault("conv2d", {}))
    if G == 1 and warmup._in_warmup() and trains_by_conv2d(W, x.dtype, FUSED_MIN_ROWS):
        by_conv2d({})  # a warm-up's one sample compiles the long passes' kernels too
    dz, db = bias_activation_backward(y, dy, int(activation), True)
    dx, dW = conv1d_backward(x, W, dz, s, d, pl, G, need_dx=need_dx, workspace=workspace)
    return dx, dW, db


def conv1d_backward_data(
    dz: np.ndarray,
    W: np.ndarray,
    length: int,
    stride: int = 1,
    dilation: int = 1,
    pad_left: int = 0,
    groups: int = 1,
    method: str = "auto",
    workspace: dict | None = None,
) -> np.ndarray:
    """dx (B, L, C) for dz (B, Lo, F) and W (K, C/G, F)."""
    F = W.shape[2]
    if dz.ndim != 3 or dz.shape[2] != F or F % groups or dz.shape[1] < 1:
        raise ValueError(f"conv1d: dz {dz.shape} does not fit W {W.shape} with groups={groups}")
    return _backward(None, W, dz, length, int(stride), int(dilation), int(pad_left), int(groups), method, True,
                     False, workspace)[0]  # fmt: skip


def conv1d_backward_filter(
    x: np.ndarray,
    dz: np.ndarray,
    kernel_size: int,
    stride: int = 1,
    dilation: int = 1,
    pad_left: int = 0,
    groups: int = 1,
    method: str = "auto",
    workspace: dict | None = None,
) -> np.ndarray:
    """dW (K, C/G, F) for x (B, L, C) and dz (B, Lo, F)."""
    B, L, C = x.shape
    F = dz.shape[2]
    W_shape = np.empty((int(kernel_size), C // groups, F), dtype=x.dtype)  # shape carrier, never read
    _check(x, W_shape, groups, dz.shape[1])
    if dz.shape[0] != B:
        raise ValueError(f"conv1d: dz {dz.shape} does not match x {x.shape}")
    x = np.ascontiguousarray(x)
    return _backward(x, W_shape, dz, L, int(stride), int(dilation), int(pad_left), int(groups), method, False, True,
                     workspace)[1]  # fmt: skip


load_without_refresh(globals())  # cached kernels load without refreshing numba (tinynn.kernels.jitcache)
