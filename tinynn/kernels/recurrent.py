r"""The time loops of SimpleRNN, LSTM and GRU, forward and backward (BPTT), in numba.

Only the recurrence loops here: the input projection of all timesteps is one GEMM done by the layer
(``xp_t = x̃_t W``; the bias is added in the loop), and the input side's gradients δW, δx are GEMMs over
all steps done by the layer too. Each public function dispatches to the numba kernel when the activations are ones
the kernels implement (``fastmath.activation_code``), else to the NumPy twin in
:mod:`tinynn.kernels.reference.recurrent` — which is also the readable statement of the math, and the
reference ``tests/test_recurrent_kernels.py`` proves the kernels agree with.

Conventions (time-major, one float dtype, C-contiguous)::

    T steps, B batch, u units, G gates (SimpleRNN 1, GRU 3, LSTM 4)
    xp    (T, B, G·u)  input projections x̃_t W (the kernels add the input bias b_in (G·u,) in the loop, and
                       return its gradient). CONSUMED: the forward kernel overwrites it in place with the
                       gate activations, the backward kernel then with δ of the pre-activations.
    U     (u, G·u)     recurrent kernel, gate blocks side by side as in Keras; U_k its k-th (u, u) block
    rm    (G, B, u)    recurrent-dropout multipliers r_k ∈ {0, 1/(1-rate)} or None; h̃_k = h ⊙ r_k is what
                       gate k's block multiplies (without dropout h̃_k = h and the G blocks are one GEMM)
    mask  (T, B) bool  m_t (False: the step is masked: every state is carried over unchanged) or None
    hs    (T+1, B, u)  carried hidden states, hs[0] = h0;  cs the same for the LSTM cell state
    dseq  (T, B, u)    δ of each step's carried h from the layer's outputs (already multiplied by the
                       output mask), or None when only the last output has a gradient
    dhT, dcT (B, u)    δ of the final states (returned state, last output)

Masked steps, for every cell (``cell`` computes h', c' from step t's inputs)::

    h_t = m_t ? h'_t : h_{t-1}          c_t = m_t ? c'_t : c_{t-1}
    δz_t = m_t ? (cell backward) : 0   δh_{t-1} = m_t ? (cell backward) : δh_t     (δc likewise)

The per-step products h̃ U_k and δz U_kᵀ are one BLAS call each from numba (``blas.gemm``, on one thread),
added straight into the step's rows of xp (the backward multiplies by a contiguous copy of Uᵀ made once per
call); the gate math is loops over contiguous rows that LLVM vectorises (``fastmath``).

Batch rows never interact inside a recurrence, so a large loop runs as one piece of rows b0:b1 per core
(``parallel.row_pieces``): every kernel takes its row range and each piece runs the whole time loop for its
rows on its own thread (the kernels release the GIL). Per-piece results are its own rows of the shared
arrays, plus a partial δb that the entry point sums (on 2 cores it nearly halves M3's LSTM loop; measurements in
``benchmarks/RESULTS.md``).
"""

from __future__ import annotations

import os
import time
from typing import NamedTuple

import numba
import numpy as np

from . import cblas, warmup
from .blas import gemm, gemm_small, matmul_tn
from .fastmath import (
    SIGMOID,
    TANH,
    activate,
    activate_row,
    activation_code,
    derivative,
    derivative_row,
    sigmoid_fast,
    tanh_fast,
)
from .jitcache import load_without_refresh
from .layout import to_time_major
from .parallel import in_piece, kernel_scope, num_threads, row_pieces, run_parallel
from .reference import recurrent as ref
from .spinwait import _clock, _load_acquire, _pause, _store_release

__all__ = [
    "gru_backward",
    "gru_forward",
    "lstm_backward",
    "lstm_forward",
    "simple_rnn_backward",
    "simple_rnn_forward",
]


# --------------------------------------------------------------------------- shared step helpers
# Every loop below runs from 0 over 1-D slices of rows (``zi = z[b, :u]``): with 2-D indexing or offsets
# like ``z[b, u + j]`` numba's negative-index wraparound stays in the loop and LLVM vectorises it much worse.
@numba.njit(error_model="numpy", cache=True, nogil=True)
def _recurrent_product(h, U, rm, hk, out, beta, small):
    """``out = [h̃_k U_k]_k + β·out`` for the gate blocks k of ``U`` (u, G'·u): one GEMM without dropout, else
    one per block on h̃_k = h ⊙ r_k (``hk`` is scratch). ``out`` may be a column block of the step's rows."""
    if rm.shape[0] == 0:
        gemm_small(h, U, out, False, False, beta, small)
        return
    B, u = h.shape
    for k in range(U.shape[1] // u):
        for b in range(B):
            hb, hkb, rb = h[b], hk[b], rm[k, b]
            for j in range(u):
                hkb[j] = hb[j] * rb[j]
        gemm_small(hk, U[:, k * u:(k + 1) * u], out[:, k * u:(k + 1) * u], False, False, beta, small)


@numba.njit(error_model="numpy", cache=True, nogil=True)
def _recurrent_product_t(dz, Ur, trans, rm, hk, out, small):
    """``out = Σ_k (δz_k U_kᵀ) ⊙ r_k`` over the gate blocks k (without dropout ``out = δz Uᵀ``, one GEMM; ``hk`` is
    scratch). ``Ur``, ``trans``: U itself (u, G'·u), read transposed, or a contiguous copy of Uᵀ (G'·u, u), which
    BLAS multiplies faster when δz has more than a few rows; the columns j0:j1 of U are then ``Ur[:, j0:j1]`` or
    ``Ur[j0:j1]``, and ``gemm(a, block, out, False, trans, ·)`` is a @ U_blockᵀ either way."""
    if rm.shape[0] == 0:
        gemm_small(dz, Ur, out, False, trans, 0.0, small)
        return
    B, u = out.shape
    for b in range(B):
        _fill_row(out[b], 0)
    for k in range(dz.shape[1] // u):
        U_k = Ur[:, k * u:(k + 1) * u] if trans else Ur[k * u:(k + 1) * u]
        gemm_small(dz[:, k * u:(k + 1) * u], U_k, hk, False, trans, 0.0, small)
        for b in range(B):
            ob, hkb, rb = out[b], hk[b], rm[k, b]
            for j in range(u):
                ob[j] += hkb[j] * rb[j]


@numba.njit(error_model="numpy", cache=True, nogil=True)
def _copy_rows(dst, src):
    """``dst[:] = src`` for 2-D arrays (explicit loops: numba's slice assignment is several times slower)."""
    for b in range(dst.shape[0]):
        db, sb = dst[b], src[b]
        for j in range(dst.shape[1]):
            db[j] = sb[j]


@numba.njit(error_model="numpy", cache=True, nogil=True)
def _fill_row(v, value):
    for j in range(v.shape[0]):
        v[j] = value


@numba.njit(error_model="numpy", cache=True, nogil=True)
def _add_rows(z, zr, ncols):
    """``z[:, :ncols] += zr[:, :ncols]``."""
    for b in range(z.shape[0]):
        zb, rb = z[b], zr[b]
        for j in range(ncols):
            zb[j] += rb[j]


@numba.njit(error_model="numpy", cache=True, nogil=True)
def _add_bias(z, bias):
    """``z += bias`` on every row."""
    for b in range(z.shape[0]):
        zb = z[b]
        for j in range(z.shape[1]):
            zb[j] += bias[j]


@numba.njit(error_model="numpy", cache=True, nogil=True)
def _sum_rows_into(db, d):
    """``db += Σ_b d[b]`` (the bias gradient of one step)."""
    for b in range(d.shape[0]):
        x = d[b]
        for j in range(db.shape[0]):
            db[j] += x[j]


@numba.njit(error_model="numpy", cache=True, nogil=True)
def _carry(mask_t, new, old):
    """Masked rows keep the previous state: ``new[b] = old[b]`` where not m_t[b]."""
    for b in range(new.shape[0]):
        if not mask_t[b]:
            nb, ob = new[b], old[b]
            for j in range(new.shape[1]):
                nb[j] = ob[j]


@numba.njit(error_model="numpy", cache=True, nogil=True)
def _zero_masked(mask_t, d):
    for b in range(d.shape[0]):
        if not mask_t[b]:
            _fill_row(d[b], 0)


# --------------------------------------------------------------------------- SimpleRNN
@numba.njit(error_model="numpy", cache=True, nogil=True)
def _simple_rnn_forward(xp, x, W, bias, U, rm, mask, act, hs, b0, b1, small):
    """a_t = act(xp_t + b + h̃_{t-1} U);  h_t = m_t ? a_t : h_{t-1}.  xp[t] <- a_t.  Rows b0:b1 only."""
    T, u = hs.shape[0] - 1, hs.shape[2]
    B = b1 - b0
    hk = np.empty((B, u), xp.dtype)
    project = x.shape[0] > 0
    every_step = xp.shape[0] == T  # else one step's rows, reused (inference keeps no gates)
    for t in range(T):
        h, hn, a = hs[t, b0:b1], hs[t + 1, b0:b1], xp[t if every_step else 0, b0:b1]
        if project:
            gemm_small(x[t, b0:b1], W, a, False, False, 0.0, small)  # xp_t = x̃_t W, this step only
        _recurrent_product(h, U, rm, hk, a, 1.0, small)  # a = xp_t + h̃ U
        _add_bias(a, bias)
        activate(a, 0, u, act)
        _copy_rows(hn, a)
        _carry(mask[t, b0:b1], hn, h)


@numba.njit(error_model="numpy", cache=True, nogil=True)
def _simple_rnn_backward(a, Ur, trans, rm, mask, act, dseq, dh, db, b0, b1, small):
    """δz_t = m_t ? δh_t ⊙ act'(a_t) : 0;  δh_{t-1} = m_t ? (δz_t Uᵀ) ⊙ r : δh_t.

    a[t] <- δz_t;  dh <- δh_0;  db += Σ_t δz_t.  Rows b0:b1 of a, mask, dseq; dh, db, rm are that piece's own.
    """
    T, _, u = a.shape
    B = b1 - b0
    dact = np.empty((B, u), a.dtype)
    dhp = np.empty((B, u), a.dtype)
    hk = np.empty((B, u), a.dtype)
    has_seq = dseq.shape[0] > 0
    for t in range(T - 1, -1, -1):
        if has_seq:
            _add_rows(dh, dseq[t, b0:b1], u)
        a_t, m = a[t, b0:b1], mask[t, b0:b1]  # a_t = φ(z_t), overwritten below by δz_t
        derivative(dact, a_t, 0, u, act)  # φ'(z_t), written from a_t
        for b in range(B):
            dz, dhb, dactb = a_t[b], dh[b], dact[b]
            for j in range(u):
                dz[j] = dhb[j] * dactb[j]
        _zero_masked(m, a_t)
        _sum_rows_into(db, a_t)
        _recurrent_product_t(a_t, Ur, trans, rm, hk, dhp, small)
        _carry(m, dhp, dh)
        _copy_rows(dh, dhp)


# --------------------------------------------------------------------------- LSTM
@numba.njit(error_model="numpy", cache=True, nogil=True)
def _lstm_gates_tanh_sigmoid(z, c, h, cn, hn, m, bias):
    """One step's gate math for φ = tanh, σ = sigmoid (the arithmetic of the generic path in ``_lstm_forward``,
    so the same results): z <- [i, f, g, o] = [σ, σ, φ, σ](z + b);  c' = f c + i g;  h' = o φ(c');  masked rows
    keep c and h. Short loops of few arrays each, which LLVM vectorises: one loop over a row storing into many
    slices it cannot prove apart ran scalar, 1.3-1.8× slower (benchmarks/RESULTS.md)."""
    u = c.shape[1]
    b_if, b_g, b_o = bias[:2 * u], bias[2 * u:3 * u], bias[3 * u:]
    for b in range(z.shape[0]):
        zb = z[b]
        zi, zf, zg, zo = zb[:u], zb[u:2 * u], zb[2 * u:3 * u], zb[3 * u:]
        cb, hb, cnb, hnb = c[b], h[b], cn[b], hn[b]
        if not m[b]:
            for j in range(u):
                cnb[j] = cb[j]
            for j in range(u):
                hnb[j] = hb[j]
        zif = zb[:2 * u]
        for j in range(2 * u):
            zif[j] = sigmoid_fast(zif[j] + b_if[j])
        for j in range(u):
            zg[j] = tanh_fast(zg[j] + b_g[j])
        for j in range(u):
            zo[j] = sigmoid_fast(zo[j] + b_o[j])
        if m[b]:
            for j in range(u):
                cnb[j] = zf[j] * cb[j] + zi[j] * zg[j]  # c'_t
            for j in range(u):
                hnb[j] = zo[j] * tanh_fast(cnb[j])


@numba.njit(error_model="numpy", cache=True, nogil=True)
def _lstm_backward_tanh_sigmoid(g_t, c_prev, c, m, dh, dc, db, scratch):
    """One step of ``_lstm_backward``'s row loop for φ = tanh, σ = sigmoid, with the same arithmetic (derivatives
    from the outputs: φ' = 1 - φ², σ' = σ(1 - σ)) in short loops LLVM vectorises (see
    ``_lstm_gates_tanh_sigmoid``). g_t's rows [i, f, g, o] <- δz; dc <- δc_{t-1}; ``scratch`` (3, u)."""
    u = c.shape[1]
    G = 4 * u
    tc, dcbar, g_old = scratch[0], scratch[1], scratch[2]
    for b in range(g_t.shape[0]):
        gb = g_t[b]
        if not m[b]:
            _fill_row(gb, 0)
            continue
        i, f, g, o = gb[:u], gb[u:2 * u], gb[2 * u:3 * u], gb[3 * u:]
        cb, cpb, dhb, dcb = c[b], c_prev[b], dh[b], dc[b]
        for j in range(u):
            tc[j] = tanh_fast(cb[j])  # φ(c_t)
        for j in range(u):
            dcbar[j] = dcb[j] + dhb[j] * o[j] * (type(tc[j])(1.0) - tc[j] * tc[j])  # δc_t + φ'(c_t) ⊙ δh ⊙ o
        for j in range(u):
            o[j] = dhb[j] * tc[j] * (o[j] * (type(o[j])(1.0) - o[j]))  # δz_o = σ'(z_o) δh ⊙ φ(c_t)
        for j in range(u):
            g_old[j] = g[j]
        for j in range(u):
            g[j] = dcbar[j] * i[j] * (type(g[j])(1.0) - g[j] * g[j])  # δz_g = φ'(z_g) δc̄ ⊙ i
        for j in range(u):
            i[j] = dcbar[j] * g_old[j] * (i[j] * (type(i[j])(1.0) - i[j]))  # δz_i = σ'(z_i) δc̄ ⊙ g
        for j in range(u):
            dcb[j] = dcbar[j] * f[j]  # δc_{t-1}
        for j in range(u):
            f[j] = dcbar[j] * cpb[j] * (f[j] * (type(f[j])(1.0) - f[j]))  # δz_f = σ'(z_f) δc̄ ⊙ c_{t-1}
        for j in range(G):
            db[j] += gb[j]


@numba.njit(error_model="numpy", cache=True, nogil=True)
def _lstm_forward(xp, x, W, bias, U, rm, mask, act, rec_act, hs, cs, b0, b1, small):
    """z = xp_t + b + [h̃_k U_k]; i,f,o = σ(z_i,f,o), g = φ(z_g); c' = f c + i g; h' = o φ(c'). xp[t] <- [i,f,g,o].

    Rows b0:b1 only (``rm`` is that piece's own).
    """
    T, G = hs.shape[0] - 1, xp.shape[2]
    B = b1 - b0
    u = G // 4
    tc = np.empty((B, u), xp.dtype)
    hk = np.empty((B, u), xp.dtype)
    fused = act == TANH and rec_act == SIGMOID  # Keras's defaults: one loop per row, the same arithmetic
    project = x.shape[0] > 0
    every_step = xp.shape[0] == T  # else one step's rows, reused (inference keeps no gates)
    at_once = project and every_step and xp.shape[1] == 1  # a batch of one row: x̃ W of every step in one product
    if at_once:  # (T products of one row each are bound by reading W)
        gemm(x.reshape(T, x.shape[2]), W, xp.reshape(T, G), False, False, 0.0)
    for t in range(T):
        h, c, z = hs[t, b0:b1], cs[t, b0:b1], xp[t if every_step else 0, b0:b1]
        hn, cn = hs[t + 1, b0:b1], cs[t + 1, b0:b1]
        if project and not at_once:
            gemm_small(x[t, b0:b1], W, z, False, False, 0.0, small)  # xp_t = x̃_t W, this step only
        _recurrent_product(h, U, rm, hk, z, 1.0, small)  # z = xp_t + [h̃_k U_k]
        m = mask[t, b0:b1]
        if fused:
            _lstm_gates_tanh_sigmoid(z, c, h, cn, hn, m, bias)
            continue
        for b in range(B):  # one row at a time, so that it stays in L1 through all the gate math
            zb = z[b]
            for j in range(G):
                zb[j] += bias[j]
            activate_row(zb[:2 * u], rec_act)  # in place: the row now holds the gates [i, f, g, o]
            activate_row(zb[2 * u:3 * u], act)
            activate_row(zb[3 * u:], rec_act)
            i, f, g, o = zb[:u], zb[u:2 * u], zb[2 * u:3 * u], zb[3 * u:]
            cb, cnb, tcb, hb, hnb = c[b], cn[b], tc[b], h[b], hn[b]
            if m[b]:
                for j in range(u):
                    v = f[j] * cb[j] + i[j] * g[j]  # c'_t
                    cnb[j] = v
                    tcb[j] = v
                activate_row(tcb, act)  # φ(c'_t)
                for j in range(u):
                    hnb[j] = o[j] * tcb[j]
            else:
                for j in range(u):
                    cnb[j] = cb[j]
                    hnb[j] = hb[j]


@numba.njit(error_model="numpy", cache=True, nogil=True, inline="always")
def _products_as_elsewhere(zT):
    """(True, False, zT) typed as the layers' other products pass them to ``gemm`` (runtime booleans, a strided
    view), so that the inference loops' products reuse those ``gemm`` specialisations instead of compiling their
    own (numba specialises on literal booleans and on memory layouts)."""
    n = zT.shape[0]
    return n >= 0, n < 0, zT[:, :]


@numba.njit(error_model="numpy", cache=True, nogil=True, inline="always")
def _row_projections(x, W, b0, b1):
    """For a piece of one row (b1 = b0 + 1): x̃ W of all its steps, (T, G·u), in one product (T rows at once instead
    of T products of one row each, which are bound by reading W); else an empty array (unused)."""
    if b1 - b0 != 1:
        return np.empty((0, W.shape[1]), x.dtype)
    xw = np.empty((x.shape[1], W.shape[1]), x.dtype)
    gemm(x[b0], W, xw, False, False, 0.0)
    return xw


@numba.njit(error_model="numpy", cache=True, nogil=True)
def _lstm_inference(x, reverse, W, bias, U, mask, hs, cs, sequence, b0, b1, small):
    """The LSTM forward without a backward to feed (inference), for φ = tanh, σ = sigmoid: twin
    ``reference.recurrent.lstm_inference``. Rows b0:b1 of x, mask, hs, cs; hs[0], cs[0] hold h_0, c_0.

    x (B, T, n_in) batch-major as the layer received it (no time-major copy; BLAS reads step t's rows x[:, t] with
    a leading dimension of T·n_in); ``reverse``: step t reads x[:, T-1-t] (go_backwards). ``sequence`` False: only
    the final states hs[T], cs[T] are written (hs[1:T], cs[1:T] are left as they are).

    Feature-major: the states are kept transposed, hᵀ, cᵀ (u, B'), so the step's pre-activations
    zᵀ = Wᵀ x̃_tᵀ + Uᵀ hᵀ + b (4u, B') hold each gate as one contiguous block and the gate math is a few long
    flat loops (no per-row loops over short gate slices); hs[t+1], cs[t+1] get the transposed states. The same
    arithmetic as ``_lstm_forward``'s fused path, so an inference call returns what a training call returns (up to
    BLAS's rounding: the products here have the batch as N, there as M, which OpenBLAS rounds alike on some CPU
    kernels only).
    """
    T = x.shape[1]
    u = U.shape[0]
    Bp = b1 - b0
    G, n = 4 * u, u * Bp
    zT = np.empty((G, Bp), x.dtype)
    hT = np.empty((2, u, Bp), x.dtype)  # h_{t-1}ᵀ and h_tᵀ, alternating
    cT = np.empty((2, u, Bp), x.dtype)
    for b in range(Bp):
        h0, c0 = hs[0, b0 + b], cs[0, b0 + b]
        for j in range(u):
            hT[0, j, b] = h0[j]
            cT[0, j, b] = c0[j]
    z = zT.reshape(G * Bp)
    z_row = zT.reshape(Bp, G)  # the same memory as the row z when Bp = 1
    xw = _row_projections(x, W, b0, b1)
    yes, no, z_strided = _products_as_elsewhere(zT)
    zi, zf, zg, zo = z[:n], z[n:2 * n], z[2 * n:3 * n], z[3 * n:]
    for t in range(T):
        h, c, hn, cn = hT[t % 2], cT[t % 2], hT[(t + 1) % 2], cT[(t + 1) % 2]
        x_t = x[b0:b1, T - 1 - t if reverse else t]
        if Bp == 1:  # zᵀ, hᵀ are single columns, laid out as the rows z, h: the row-vector products are faster
            _copy_rows(z_row, xw[T - 1 - t if reverse else t:][:1])  # z = x̃_t W
            gemm(h.reshape(1, u), U, z_row, False, False, 1.0)  # z += h U
        else:
            gemm_small(W, x_t, z_strided, yes, yes, 0.0, small)  # zᵀ = Wᵀ x̃_tᵀ
            gemm_small(U, h, zT, yes, no, 1.0, small)  # zᵀ += Uᵀ hᵀ
        if Bp == 1:
            for j in range(G):
                z[j] += bias[j]
        else:
            for j in range(G):
                zr, bj = zT[j], bias[j]
                for b in range(Bp):
                    zr[b] += bj
        for k in range(2 * n):  # [i, f] = σ(z_i, z_f)
            z[k] = sigmoid_fast(z[k])
        for k in range(n):
            zg[k] = tanh_fast(zg[k])  # g = φ(z_g)
        for k in range(n):
            zo[k] = sigmoid_fast(zo[k])  # o = σ(z_o)
        cf, hnf, cnf = c.reshape(n), hn.reshape(n), cn.reshape(n)
        for k in range(n):
            cnf[k] = zf[k] * cf[k] + zi[k] * zg[k]  # c'_t = f c + i g
        for k in range(n):
            hnf[k] = zo[k] * tanh_fast(cnf[k])  # h'_t = o φ(c'_t)
        m = mask[t, b0:b1]
        masked = False
        for b in range(Bp):
            masked |= not m[b]
        if masked:  # masked columns keep c and h
            for j in range(u):
                cr, cnr, hr, hnr = c[j], cn[j], h[j], hn[j]
                for b in range(Bp):
                    if not m[b]:
                        cnr[b] = cr[b]
                        hnr[b] = hr[b]
        if not sequence and t < T - 1:
            continue
        ht, ct = hs[t + 1], cs[t + 1]
        for b in range(Bp):
            hb, cb = ht[b0 + b], ct[b0 + b]
            for j in range(u):
                hb[j] = hn[j, b]
            for j in range(u):
                cb[j] = cn[j, b]


@numba.njit(error_model="numpy", cache=True, nogil=True)
def _gate_columns_of(A, j0, j1):
    """The columns of the units j0:j1 of each of the 4 gate blocks of ``A`` (·, 4u), block after block: a contiguous
    (·, 4(j1 - j0)) copy."""
    u, up = A.shape[1] // 4, j1 - j0
    out = np.empty((A.shape[0], 4 * up), A.dtype)
    for r in range(A.shape[0]):
        row, dst = A[r], out[r]
        for k in range(4):
            src, to = row[k * u + j0:k * u + j1], dst[k * up:(k + 1) * up]
            for j in range(up):
                to[j] = src[j]
    return out


@numba.njit(error_model="numpy", cache=True, nogil=True)
def _meet(progress, me, t, patience):
    """The per-step meeting of ``_lstm_inference_units`` before step t: wait until every other thread has published
    t (or failed); returns -1, or the step s ≤ t at which the threads stop meeting (the stop cell, set here after
    waiting ``patience`` clock ticks, or by another thread). Threads wait only at the same meeting (none can pass one
    before everyone has reached it), so a thread that meets a set stop cell here is at most one step past it: its
    buffers still hold the states of step s. A thread behind s (one that started late) runs on up to s."""
    threads = progress.shape[0] - 1
    stop_cell = progress[threads]
    start = _clock()
    for k in range(threads):
        while k != me:
            stop = _load_acquire(stop_cell)
            if 0 <= stop <= t:  # (a thread behind the stop step, late to start, first catches up)
                return stop
            seen = _load_acquire(progress[k])
            if seen >= t or seen < 0:
                break
            if _clock() - start > (patience if t > 1 else 3 * patience):  # (at the first, the threads' start)
                _store_release(stop_cell, t)
                return t
            _pause()
    stop = _load_acquire(stop_cell)
    return stop if stop <= t else -1


@numba.njit(error_model="numpy", cache=True, nogil=True)
def _publish_state(hT_own, cT_own, h, c, j0):
    """h[:, j0:j1] = hT_ownᵀ, c[:, j0:j1] = cT_ownᵀ: a thread's columns of the states it stops at."""
    for b in range(h.shape[0]):
        hb, cb = h[b], c[b]
        for j in range(hT_own.shape[0]):
            hb[j0 + j] = hT_own[j, b]
            cb[j0 + j] = cT_own[j, b]


@numba.njit(error_model="numpy", cache=True, nogil=True)
def _lstm_inference_units(x, reverse, W, bias, U, mask, hT, hs, cs, sequence, j0, j1, progress, me, patience, small):
    """The LSTM inference loop of one thread that owns the hidden units j0:j1 for the whole batch: twin
    ``reference.recurrent.lstm_inference_units``. The threads split the 4u gate columns between them by units,
    each taking every gate's columns of its units, so each reads only its part of U (``Up`` (u, 4u'), u' = j1 - j0,
    the blocks [U_i, U_f, U_g, U_o] of its columns; ``Wp``, ``bp`` likewise) and its cell update needs nothing of
    the others'. Per step (feature-major as ``_lstm_inference``, the same arithmetic)::

        zᵀ = Wpᵀ x̃_tᵀ + Upᵀ hᵀ_{t-1} + bp    (4u', B)
        c'ᵀ = fᵀ ⊙ cᵀ + iᵀ ⊙ gᵀ    h'ᵀ = oᵀ ⊙ φ(c'ᵀ)    → rows j0:j1 of hᵀ_t (shared), cᵀ (this thread's own)

    ``hT`` (2, u, B): hᵀ_{t-1} and hᵀ_t alternating, hT[0] = h_0ᵀ (every row, filled by the caller); hs[0], cs[0]
    hold h_0, c_0; this thread writes the columns j0:j1 of hs[t+1], cs[t+1] (only at t = T-1 unless ``sequence``).
    Per-step barrier (``_meet``): ``progress`` (threads + 1, 8) int64, one cache line per thread; after step t thread
    ``me`` publishes t+1 in progress[me, 0] (an atomic store, release) and before step t+1 it waits until every other
    thread's cell has reached t+1 (atomic loads, acquire): hᵀ_t's rows are then all written, and nobody still reads
    hᵀ_{t-1}, which step t+1 overwrites. A negative cell (a thread that failed) ends the waits. A thread that has
    waited ``patience`` clock ticks at one meeting (another thread lost its core) writes that step s into the stop
    cell progress[threads, 0]; every thread then writes its columns of the states h_s, c_s into hs[s], cs[s] and
    returns, and the caller runs the steps from s on without meetings."""
    T = x.shape[1]
    B = x.shape[0]
    up = j1 - j0
    u = U.shape[0]
    Wp, Up = _gate_columns_of(W, j0, j1), _gate_columns_of(U, j0, j1)  # this thread's columns, packed
    bp = _gate_columns_of(bias.reshape(1, 4 * u), j0, j1)[0]
    G, n = 4 * up, up * B
    zT = np.empty((G, B), x.dtype)
    cT = np.empty((2, up, B), x.dtype)
    for b in range(B):
        c0 = cs[0, b]
        for j in range(up):
            cT[0, j, b] = c0[j0 + j]
    z = zT.reshape(G * B)
    z_row = zT.reshape(B, G)  # the same memory as the row z when B = 1
    xw = _row_projections(x, Wp, 0, B)  # B = 1: x̃ Wp of every step in one product
    yes, no, z_strided = _products_as_elsewhere(zT)
    zi, zf = z[:n], z[n:2 * n]  # this thread's units of each gate, one block of columns each
    zg, zo = z[2 * n:3 * n], z[3 * n:]
    for t in range(T):
        stop = _meet(progress, me, t, patience)  # every thread has finished step t-1 (or they stop here)
        if stop >= 0:
            _publish_state(hT[stop % 2, j0:j1], cT[stop % 2], hs[stop], cs[stop], j0)
            return
        h, hn = hT[t % 2], hT[(t + 1) % 2]
        c, cn = cT[t % 2], cT[(t + 1) % 2]
        if B == 1:  # zᵀ, hᵀ are single columns, laid out as the rows z, h: the row-vector products are faster
            _copy_rows(z_row, xw[T - 1 - t if reverse else t:][:1])  # z = x̃_t Wp
            gemm(h.reshape(1, u), Up, z_row, False, False, 1.0)  # z += h Up
        else:
            gemm_small(Wp, x[:, T - 1 - t if reverse else t], z_strided, yes, yes, 0.0, small)  # zᵀ = Wpᵀ x̃_tᵀ
            gemm_small(Up, h, zT, yes, no, 1.0, small)  # zᵀ += Upᵀ hᵀ
        for j in range(G):
            zr, bj = zT[j], bp[j]
            for b in range(B):
                zr[b] += bj
        for k in range(2 * n):  # [i, f] = σ(z_i, z_f)
            z[k] = sigmoid_fast(z[k])
        for k in range(n):
            zg[k] = tanh_fast(zg[k])  # g = φ(z_g)
        for k in range(n):
            zo[k] = sigmoid_fast(zo[k])  # o = σ(z_o)
        cf, cnf = c.reshape(n), cn.reshape(n)
        hnp = hn[j0:j1]
        hnf = hnp.reshape(n)
        for k in range(n):
            cnf[k] = zf[k] * cf[k] + zi[k] * zg[k]  # c'_t = f c + i g
        for k in range(n):
            hnf[k] = zo[k] * tanh_fast(cnf[k])  # h'_t = o φ(c'_t)
        m = mask[t]
        masked = False
        for b in range(B):
            masked |= not m[b]
        if masked:  # masked columns keep c and h
            hp = h[j0:j1]
            for j in range(up):
                c_j, cn_j, h_j, hn_j = c[j], cn[j], hp[j], hnp[j]
                for b in range(B):
                    if not m[b]:
                        cn_j[b] = c_j[b]
                        hn_j[b] = h_j[b]
        _store_release(progress[me], t + 1)
        if not sequence and t < T - 1:
            continue
        ht, ct = hs[t + 1], cs[t + 1]
        for b in range(B):
            hb, cb = ht[b], ct[b]
            for j in range(up):
                hb[j0 + j] = hnp[j, b]
            for j in range(up):
                cb[j0 + j] = cn[j, b]


@numba.njit(error_model="numpy", cache=True, nogil=True)
def _lstm_backward(gates, Ur, trans, rm, mask, act, rec_act, cs, dseq, dh, dc, db, b0, b1, small):
    """BPTT through the LSTM cell (equations in ``reference.recurrent.lstm_backward``).

    gates[t] <- δz_t = [δz_i, δz_f, δz_g, δz_o];  dh, dc <- δh_0, δc_0;  db += Σ_t δz_t.
    Rows b0:b1 of gates, mask, cs, dseq; dh, dc, db, rm are that piece's own.
    """
    T, _, G = gates.shape
    B = b1 - b0
    u = G // 4
    tc = np.empty(u, gates.dtype)
    dact = np.empty(G, gates.dtype)
    dact_c = np.empty(u, gates.dtype)
    dhp = np.empty((B, u), gates.dtype)
    hk = np.empty((B, u), gates.dtype)
    has_seq = dseq.shape[0] > 0
    fused = act == TANH and rec_act == SIGMOID
    scratch = np.empty((3, u), gates.dtype)
    for t in range(T - 1, -1, -1):
        if has_seq:
            _add_rows(dh, dseq[t, b0:b1], u)
        g_t, c_prev, c, m = gates[t, b0:b1], cs[t, b0:b1], cs[t + 1, b0:b1], mask[t, b0:b1]
        if fused:
            _lstm_backward_tanh_sigmoid(g_t, c_prev, c, m, dh, dc, db, scratch)
            _recurrent_product_t(g_t, Ur, trans, rm, hk, dhp, small)
            _carry(m, dhp, dh)
            _copy_rows(dh, dhp)
            continue
        for b in range(B):  # one row at a time (it stays in L1); the row [i, f, g, o] is overwritten by δz
            gb = g_t[b]
            if not m[b]:
                _fill_row(gb, 0)
                continue
            i, f, g, o = gb[:u], gb[u:2 * u], gb[2 * u:3 * u], gb[3 * u:]
            cb = c[b]
            for j in range(u):
                tc[j] = cb[j]
            activate_row(tc, act)  # φ(c_t)
            derivative_row(dact_c, tc, act)  # φ'(c_t)
            derivative_row(dact[:2 * u], gb[:2 * u], rec_act)  # σ'(z_i), σ'(z_f), from i and f
            derivative_row(dact[2 * u:3 * u], g, act)  # φ'(z_g)
            derivative_row(dact[3 * u:], o, rec_act)  # σ'(z_o)
            dact_i, dact_f, dact_g, dact_o = dact[:u], dact[u:2 * u], dact[2 * u:3 * u], dact[3 * u:]
            cpb, dhb, dcb = c_prev[b], dh[b], dc[b]
            for j in range(u):
                i_j, f_j, g_j, o_j = i[j], f[j], g[j], o[j]
                dcbar = dcb[j] + dhb[j] * o_j * dact_c[j]  # δc̄ = δc_t + φ'(c_t) ⊙ δh ⊙ o
                i[j] = dcbar * g_j * dact_i[j]  # δz_i = σ'(z_i) δi,  δi = δc̄ ⊙ g
                f[j] = dcbar * cpb[j] * dact_f[j]  # δz_f,  δf = δc̄ ⊙ c_{t-1}
                g[j] = dcbar * i_j * dact_g[j]  # δz_g,  δg = δc̄ ⊙ i
                o[j] = dhb[j] * tc[j] * dact_o[j]  # δz_o,  δo = δh ⊙ φ(c_t)
                dcb[j] = dcbar * f_j  # δc_{t-1}
            for j in range(G):
                db[j] += gb[j]
        _recurrent_product_t(g_t, Ur, trans, rm, hk, dhp, small)
        _carry(m, dhp, dh)
        _copy_rows(dh, dhp)


# --------------------------------------------------------------------------- GRU
@numba.njit(error_model="numpy", cache=True, nogil=True)
def _gru_update(gates, h, hn, m, u):
    """h' = z ⊙ h + (1 - z) ⊙ ĥ for one row (gates = [z, r, ĥ]); a masked row keeps h."""
    if m:
        z, hh = gates[:u], gates[2 * u:]
        for j in range(u):
            z_j = z[j]
            hn[j] = z_j * h[j] + (type(z_j)(1.0) - z_j) * hh[j]
    else:
        for j in range(u):
            hn[j] = h[j]


@numba.njit(error_model="numpy", cache=True, nogil=True)
def _gru_forward(xp, x, W, bias, U, b_rec, rm, mask, act, rec_act, reset_after, hs, aux, b0, b1, small):
    """GRU step (equations in ``reference.recurrent.gru_forward``; xp_t + b_in). xp[t] <- gates [z, r, ĥ].

    aux[t] <- reset_after: hz_h = h̃_h U_h + b_rh (needed for δr);  else r ⊙ h̃_h (the input of U_h).
    Rows b0:b1 only (``rm`` is that piece's own).
    """
    T, G = hs.shape[0] - 1, xp.shape[2]
    B = b1 - b0
    u = G // 3
    every_step = xp.shape[0] == T  # else one step's rows, reused (inference keeps no gates)
    hz = np.empty((B, G), xp.dtype)
    hk = np.empty((B, u), xp.dtype)
    rh = np.empty((B, u), xp.dtype)
    ones = np.ones(u, xp.dtype)
    use_rm = rm.shape[0] > 0
    project = x.shape[0] > 0
    for t in range(T):
        # g_t: the rows of xp_t, turned in place into the pre-activations, then the gates [z, r, ĥ]
        k = t if every_step else 0
        h, g_t, aux_t, hn, m = hs[t, b0:b1], xp[k, b0:b1], aux[k, b0:b1], hs[t + 1, b0:b1], mask[t, b0:b1]
        if project:
            gemm_small(x[t, b0:b1], W, g_t, False, False, 0.0, small)  # xp_t = x̃_t W, this step only
        if reset_after:
            _recurrent_product(h, U, rm, hk, hz, 0.0, small)  # hz = [h̃_k U_k]
            for b in range(B):
                gb, hzb, auxb = g_t[b], hz[b], aux_t[b]
                for j in range(2 * u):
                    gb[j] += hzb[j] + b_rec[j] + bias[j]  # a_z, a_r
                activate_row(gb[:2 * u], rec_act)  # z, r
                r, hh, hz_h, b_rh, b_h = gb[u:2 * u], gb[2 * u:], hzb[2 * u:], b_rec[2 * u:], bias[2 * u:]
                # loops storing into one slice each: LLVM vectorises them (see _lstm_gates_tanh_sigmoid)
                for j in range(u):
                    auxb[j] = hz_h[j] + b_rh[j]  # hz_h (with its bias)
                for j in range(u):
                    hh[j] += b_h[j] + r[j] * auxb[j]  # a_h = xp_h + b_h + r ⊙ hz_h
                activate_row(hh, act)  # ĥ = φ(a_h)
                _gru_update(gb, h[b], hn[b], m[b], u)
        else:
            _recurrent_product(h, U[:, :2 * u], rm, hk, g_t[:, :2 * u], 1.0, small)  # g_t[:, :2u] += [h̃_z U_z, h̃_r U_r]
            for b in range(B):
                gb, hb, auxb, rhb = g_t[b], h[b], aux_t[b], rh[b]
                for j in range(2 * u):
                    gb[j] += bias[j]  # a_z, a_r
                activate_row(gb[:2 * u], rec_act)  # z, r
                r = gb[u:2 * u]
                rmh = rm[2, b] if use_rm else ones
                for j in range(u):
                    v = r[j] * (hb[j] * rmh[j])  # r ⊙ h̃_h
                    auxb[j] = v
                    rhb[j] = v
            gemm_small(rh, U[:, 2 * u:], g_t[:, 2 * u:], False, False, 1.0, small)  # g_t[:, 2u:] += (r ⊙ h̃_h) U_h
            for b in range(B):
                gb = g_t[b]
                hh, b_h = gb[2 * u:], bias[2 * u:]
                for j in range(u):
                    hh[j] += b_h[j]  # a_h
                activate_row(hh, act)  # ĥ = φ(a_h)
                _gru_update(gb, h[b], hn[b], m[b], u)


@numba.njit(error_model="numpy", cache=True, nogil=True)
def _gru_inference(x, reverse, W, bias, U, b_rec, mask, hs, sequence, b0, b1, small):
    """The GRU forward of inference (reset_after, φ = tanh, σ = sigmoid, no recurrent dropout): twin
    ``reference.recurrent.gru_inference``; feature-major as ``_lstm_inference`` (x batch-major, ``reverse``,
    ``sequence``, rows b0:b1; hs[0] holds h_0), with the arithmetic of ``_gru_forward``::

        xpᵀ = Wᵀ x̃_tᵀ   hzᵀ = Uᵀ hᵀ   [zᵀ, rᵀ] = σ(xpᵀ_zr + ((hzᵀ_zr + b_rzr) + b_zr))
        auxᵀ = hzᵀ_h + b_rh   ĥᵀ = φ(xpᵀ_h + (b_h + rᵀ ⊙ auxᵀ))   h'ᵀ = zᵀ ⊙ hᵀ + (1 - zᵀ) ⊙ ĥᵀ
    """
    T = x.shape[1]
    u = U.shape[0]
    Bp = b1 - b0
    G, n = 3 * u, u * Bp
    gT = np.empty((G, Bp), x.dtype)  # xpᵀ, turned in place into the pre-activations, then [zᵀ, rᵀ, ĥᵀ]
    hzT = np.empty((G, Bp), x.dtype)
    hT = np.empty((2, u, Bp), x.dtype)  # h_{t-1}ᵀ and h_tᵀ, alternating
    for b in range(Bp):
        h0 = hs[0, b0 + b]
        for j in range(u):
            hT[0, j, b] = h0[j]
    g = gT.reshape(G * Bp)
    zg, hh = g[:n], g[2 * n:]
    g_row, hz_row = gT.reshape(Bp, G), hzT.reshape(Bp, G)  # the same memory as the rows g, hz when Bp = 1
    xw = _row_projections(x, W, b0, b1)
    yes, no, g_strided = _products_as_elsewhere(gT)
    for t in range(T):
        h, hn = hT[t % 2], hT[(t + 1) % 2]
        x_t = x[b0:b1, T - 1 - t if reverse else t]
        if Bp == 1:  # single columns, laid out as rows: the row-vector products are faster
            _copy_rows(g_row, xw[T - 1 - t if reverse else t:][:1])  # xp = x̃_t W
            gemm(h.reshape(1, u), U, hz_row, False, False, 0.0)  # hz = h U
        else:
            gemm_small(W, x_t, g_strided, yes, yes, 0.0, small)  # xpᵀ = Wᵀ x̃_tᵀ
            gemm_small(U, h, hzT, yes, no, 0.0, small)  # hzᵀ = Uᵀ hᵀ
        if Bp == 1:  # the same sums as below, as flat loops
            g1, hz1 = g_row[0], hz_row[0]
            for j in range(2 * u):
                g1[j] += hz1[j] + b_rec[j] + bias[j]
        else:
            for j in range(2 * u):  # a_z, a_r
                gr, hzr, c = gT[j], hzT[j], b_rec[j]
                bj = bias[j]
                for b in range(Bp):
                    gr[b] += hzr[b] + c + bj
        for k in range(2 * n):
            g[k] = sigmoid_fast(g[k])  # z, r
        if Bp == 1:
            g1, hz1 = g_row[0], hz_row[0]
            r1, gh1, hzh1, brh1, bh1 = g1[u:2 * u], g1[2 * u:], hz1[2 * u:], b_rec[2 * u:], bias[2 * u:]
            for j in range(u):
                gh1[j] += bh1[j] + r1[j] * (hzh1[j] + brh1[j])
        else:
            for j in range(u):  # a_h = xp_h + b_h + r ⊙ (hz_h + b_rh)
                gr, hzr, rr = gT[2 * u + j], hzT[2 * u + j], gT[u + j]
                c, bj = b_rec[2 * u + j], bias[2 * u + j]
                for b in range(Bp):
                    gr[b] += bj + rr[b] * (hzr[b] + c)
        for k in range(n):
            hh[k] = tanh_fast(hh[k])  # ĥ = φ(a_h)
        hf, hnf = h.reshape(n), hn.reshape(n)
        for k in range(n):
            z_k = zg[k]
            hnf[k] = z_k * hf[k] + (type(z_k)(1.0) - z_k) * hh[k]  # h' = z h + (1 - z) ĥ
        m = mask[t, b0:b1]
        masked = False
        for b in range(Bp):
            masked |= not m[b]
        if masked:  # masked columns keep h
            for j in range(u):
                hr, hnr = h[j], hn[j]
                for b in range(Bp):
                    if not m[b]:
                        hnr[b] = hr[b]
        if not sequence and t < T - 1:
            continue
        ht = hs[t + 1]
        for b in range(Bp):
            hb = ht[b0 + b]
            for j in range(u):
                hb[j] = hn[j, b]


@numba.njit(error_model="numpy", cache=True, nogil=True)
def _gru_backward(gates, Ur, trans, rm, mask, act, rec_act, reset_after, hs, aux, dseq, dh, db, dbh, dHZ, b0, b1,
                  small):
    """BPTT through the GRU cell (equations in ``reference.recurrent.gru_backward``).

    gates[t] ([z, r, ĥ]) <- δ of the input pre-activations [δa_z, δa_r, δa_h];  dh <- δh_0;  db += Σ_t δa_t;
    reset_after: dHZ[t] <- δhz = [δa_z, δa_r, δa_h ⊙ r] (δ of h̃ U + b_rh, the rows δU and δb_rh sum);
    dbh += Σ_t δhz_h.  Without reset_after, dHZ and dbh are unused and aux stays r ⊙ h̃_h.
    Rows b0:b1 of gates, mask, hs, aux, dseq, dHZ; dh, db, dbh, rm are that piece's own.
    """
    T, _, G = gates.shape
    B = b1 - b0
    u = G // 3
    dact = np.empty(G, gates.dtype)
    dhz_step = np.empty((B, G), gates.dtype)
    da_zr = np.empty((B, 2 * u), gates.dtype)
    dhp = np.empty((B, u), gates.dtype)
    da_h = np.empty((B, u), gates.dtype)
    drh = np.empty((B, u), gates.dtype)
    ones = np.ones(u, gates.dtype)
    hk = np.empty((B, u), gates.dtype)
    use_rm = rm.shape[0] > 0
    has_seq = dseq.shape[0] > 0
    for t in range(T - 1, -1, -1):
        if has_seq:
            _add_rows(dh, dseq[t, b0:b1], u)
        g_t, h, aux_t, m = gates[t, b0:b1], hs[t, b0:b1], aux[t, b0:b1], mask[t, b0:b1]
        dhz = dHZ[t, b0:b1] if reset_after else dhz_step
        for b in range(B):  # δa_z, δa_h, and δh through z (row by row, in L1)
            gb, da_hb, dhpb, dhb, hb = g_t[b], da_h[b], dhp[b], dh[b], h[b]
            z, r, hh = gb[:u], gb[u:2 * u], gb[2 * u:]  # overwritten below by δa_z, δa_r, δa_h
            if not m[b]:
                _fill_row(gb, 0)
                _fill_row(da_hb, 0)
                _fill_row(dhz[b], 0)
                _fill_row(dhpb, 0)
                continue
            derivative_row(dact[:2 * u], gb[:2 * u], rec_act)  # σ'(a_z), σ'(a_r), from z and r
            derivative_row(dact[2 * u:], hh, act)  # φ'(a_h), from ĥ
            dact_z, dact_r, dact_h = dact[:u], dact[u:2 * u], dact[2 * u:]
            for j in range(u):  # one stored slice per loop, z last (LLVM vectorises these)
                da_hb[j] = dhb[j] * (type(z[j])(1.0) - z[j]) * dact_h[j]  # δa_h = φ'(a_h) δh ⊙ (1 - z)
            for j in range(u):
                dhpb[j] = dhb[j] * z[j]  # δh_{t-1} through z
            for j in range(u):
                z[j] = dhb[j] * (hb[j] - hh[j]) * dact_z[j]  # δa_z = σ'(a_z) δh ⊙ (h_{t-1} - ĥ)
            if reset_after:
                auxb, dhzb = aux_t[b], dhz[b]
                dhz_h = dhzb[2 * u:]
                for j in range(u):
                    dhz_h[j] = da_hb[j] * r[j]  # δ(hz_h) = δa_h ⊙ r
                for j in range(u):
                    dbh[j] += dhz_h[j]
                for j in range(u):
                    r[j] = da_hb[j] * auxb[j] * dact_r[j]  # δa_r = σ'(a_r) δa_h ⊙ hz_h
                for j in range(u):
                    hh[j] = da_hb[j]
                for j in range(2 * u):
                    dhzb[j] = gb[j]
            else:
                parked = dhz[b, u:2 * u]  # σ'(a_r), needed after the δ(r ⊙ h̃_h) product below
                for j in range(u):
                    parked[j] = dact_r[j]
                    hh[j] = da_hb[j]
        if reset_after:
            _recurrent_product_t(dhz, Ur, trans, rm, hk, drh, small)
            _add_rows(dhp, drh, u)
        else:
            U_h = Ur[:, 2 * u:] if trans else Ur[2 * u:]
            gemm_small(da_h, U_h, drh, False, trans, 0.0, small)  # δ(r ⊙ h̃_h) = δa_h U_hᵀ
            for b in range(B):
                if not m[b]:
                    continue
                gb, hb, drhb, dhpb, dhzb = g_t[b], h[b], drh[b], dhp[b], dhz[b]
                r, dact_r = gb[u:2 * u], dhzb[u:2 * u]
                rmh = rm[2, b] if use_rm else ones
                for j in range(u):
                    r_j = r[j]
                    r[j] = drhb[j] * hb[j] * rmh[j] * dact_r[j]  # δa_r = σ'(a_r) δ(r ⊙ h̃_h) ⊙ h̃_h
                    dhpb[j] += drhb[j] * r_j * rmh[j]
                da_zrb = da_zr[b]
                for j in range(2 * u):
                    dhzb[j] = gb[j]
                    da_zrb[j] = gb[j]
            if use_rm:
                _recurrent_product_t(dhz[:, :2 * u], Ur, trans, rm, hk, drh, small)
            else:
                for b in range(B):
                    if not m[b]:
                        _fill_row(da_zr[b], 0)
                U_zr = Ur[:, :2 * u] if trans else Ur[:2 * u]
                gemm_small(da_zr, U_zr, drh, False, trans, 0.0, small)
            _add_rows(dhp, drh, u)
        _sum_rows_into(db, g_t)
        _carry(m, dhp, dh)
        _copy_rows(dh, dhp)


# --------------------------------------------------------------------------- public entry points
# Loops with at least this many multiply-adds in their recurrent products (T·B·u·G·u) run their batch rows in
# pieces on every free core: rows never interact inside a recurrence, so each core runs the whole time loop
# for its rows (M3's LSTM loop, T·B·u·4u = 262M, halves on 2 cores).
_PARALLEL_LOOP_WORK = 1 << 21


def _over_batch(run_piece, steps, u, G):
    """Call ``run_piece(b0, b1)`` for the batch pieces of a loop over ``steps`` (T, B, ·) (in parallel when worth
    it)."""
    T, B, _ = steps.shape
    pieces = row_pieces(B, T * B * u * G * u, _PARALLEL_LOOP_WORK)
    with kernel_scope():  # BLAS on one thread per core, subnormals flushed
        return run_parallel(*[lambda b0=b0, b1=b1: run_piece(b0, b1) for b0, b1 in pieces])


def _piece(rm_arr, b0, b1):
    """The recurrent-dropout multipliers of rows b0:b1 (a small contiguous copy; the kernels index it from 0)."""
    return np.ascontiguousarray(rm_arr[:, b0:b1])


def _prepare(T, xp, U, rm, mask, G, *states):
    """Contiguous arrays of xp's dtype for the numba loops, after checking every shape against T steps and xp
    (·, B, G·u): the loops do no bounds checks, so a wrong shape must stop here (the layers check their inputs
    first)."""
    _, B, Gu = xp.shape
    u = U.shape[0]
    expected = {"U": ((u, G * u), U), "rm": ((G, B, u), rm), "mask": ((T, B), mask)}
    expected.update({f"state {k}": ((B, u), s) for k, s in enumerate(states)})
    for what, (shape, a) in expected.items():
        if a is not None and np.shape(a) != shape or Gu != G * u:
            raise ValueError(f"recurrent kernel: {what} {np.shape(a)} does not fit xp {xp.shape} (expected {shape})")
    rm_arr = np.zeros((0, B, u), xp.dtype) if rm is None else np.ascontiguousarray(rm, dtype=xp.dtype)
    mask_arr = np.ones((T, B), np.bool_) if mask is None else np.ascontiguousarray(mask, dtype=np.bool_)
    return np.ascontiguousarray(U, dtype=xp.dtype), rm_arr, mask_arr


#: From this many batch rows on, the backward loops multiply δz by a contiguous copy of Uᵀ (made once per call)
#: instead of reading U transposed: BLAS is faster with the copy for several rows, and a row or two cannot pay for it.
_COPY_UT_ROWS = 4


def _u_for_backward(U, B: int):
    """``(Ur, trans)`` for the backward loops (``_recurrent_product_t``): U itself, read transposed, for a batch of
    a few rows; else a contiguous copy of Uᵀ."""
    if B < _COPY_UT_ROWS:
        return U, True
    return np.ascontiguousarray(U.T), False


def _dseq(dseq, T, B, u, dtype):
    if dseq is None:
        return np.zeros((0, B, u), dtype)
    if dseq.shape != (T, B, u):
        raise ValueError(f"recurrent kernel: dseq {dseq.shape} does not fit (T, B, u) = {(T, B, u)}")
    return np.ascontiguousarray(dseq, dtype=dtype)


def _weighted_sum(hs: np.ndarray, delta: np.ndarray, rm, G: int, gates=None) -> np.ndarray:
    """``Σ_t h̃_kᵀ δ_k`` for each gate block k (one GEMM over all T·B rows when there is no dropout).

    All T·B-row GEMMs here and in the layers go through ``blas.matmul*`` (single-threaded BLAS calls).
    """
    T, B, u = hs.shape
    H = hs.reshape(T * B, u)
    Dl = delta.reshape(T * B, -1)
    if rm is None:
        return matmul_tn(H, Dl)
    gates = range(G) if gates is None else gates
    out = np.empty((u, Dl.shape[1]), delta.dtype)
    for k in gates:
        Hk = (hs * rm[k]).reshape(T * B, u)
        out[:, k * u:(k + 1) * u] = matmul_tn(Hk, Dl[:, k * u:(k + 1) * u])
    return out


def _bias(b_in, G, dtype):
    return np.zeros(G, dtype) if b_in is None else np.ascontiguousarray(b_in, dtype=dtype)


class Projection(NamedTuple):
    """The input side of a loop given as x̃ (T, B, n_in) and the kernel W (n_in, G·u) instead of xp = x̃ W: the
    loop forms each step's x̃_t W in that step's own rows (one pass over that memory instead of three).
    ``keep_gates`` False (inference): one step's rows are reused, and no cache for a backward is returned.
    ``batch_major``: x is (B, T, n_in) as the layer received it, its steps run from T-1 down to 0 when ``reverse``
    (go_backwards); the LSTM inference loop reads it so, the other loops get a time-major copy. ``sequence`` False:
    only the final states are needed, and the LSTM inference loop writes no others (hs[1:T], cs[1:T] are then
    undefined)."""

    x: np.ndarray
    W: np.ndarray
    keep_gates: bool = True
    batch_major: bool = False
    reverse: bool = False
    sequence: bool = True


def _time_major(xp) -> np.ndarray:
    """The x̃ (T, B, n_in) of a :class:`Projection`, in processing order."""
    if getattr(xp, "batch_major", False):
        return to_time_major(xp.x, reverse=xp.reverse)
    return xp[0]


def _inputs(xp, G_u):
    """(xp, x, W, T) for the loops from ``xp``: the projections (consumed) or a :class:`Projection`."""
    if not isinstance(xp, tuple):
        return xp, np.zeros((0, 0, 0), xp.dtype), np.zeros((0, 0), xp.dtype), xp.shape[0]
    x, W = _time_major(xp), xp[1]
    keep = getattr(xp, "keep_gates", True)
    T, B, n_in = x.shape
    if W.shape != (n_in, G_u):
        raise ValueError(f"recurrent kernel: W {W.shape} does not fit x {x.shape} (expected {(n_in, G_u)})")
    out = np.empty((T if keep else 1, B, G_u), x.dtype)
    return out, np.ascontiguousarray(x), np.ascontiguousarray(W, dtype=x.dtype), T


def _projections(xp):
    """xp itself, or x̃ W for a :class:`Projection` (for the NumPy twins)."""
    return _time_major(xp) @ xp[1] if isinstance(xp, tuple) else xp


def _cache(xp, keep: bool):
    return xp if keep else None


def simple_rnn_forward(xp, b_in, U, rm, mask, h0, act):
    """Returns ``(hs, cache)``; hs (T+1, B, u). ``b_in`` (u,) or None. ``xp`` is consumed (module docstring), or
    is a pair (x̃ (T, B, n_in), kernel W): then the loop forms each xp_t = x̃_t W itself."""
    code = activation_code(act)
    if code is None:
        return ref.simple_rnn_forward(_projections(xp), b_in, U, rm, mask, h0, act)
    keep = getattr(xp, "keep_gates", True)
    xp, x, W, T = _inputs(xp, np.shape(U)[0])
    B, u = xp.shape[1], xp.shape[2]
    U, rm_arr, mask_arr = _prepare(T, xp, U, rm, mask, 1, h0)
    hs = np.empty((T + 1, B, u), xp.dtype)
    hs[0] = h0
    bias = _bias(b_in, u, xp.dtype)
    small = cblas.small_gemm_work(xp.dtype)
    _over_batch(lambda b0, b1: _simple_rnn_forward(xp, x, W, bias, U, _piece(rm_arr, b0, b1), mask_arr, code, hs, b0,
                                                   b1, small), hs[1:], u, 1)
    return hs, _cache(xp, keep)


def simple_rnn_backward(cache, U, rm, mask, hs, dseq, dhT, act):
    """Returns ``(dX, dU, db_in, dh0)``: dX (T, B, u) is δ of the pre-activation (of xp + b_in)."""
    code = activation_code(act)
    if code is None:
        return ref.simple_rnn_backward(cache, U, rm, mask, hs, dseq, dhT, act)
    a = cache
    T, B, u = a.shape
    U, rm_arr, mask_arr = _prepare(T, a, U, rm, mask, 1, dhT, hs[0])
    Ur, trans = _u_for_backward(U, B)
    dh = np.array(dhT, dtype=a.dtype, copy=True)
    dseq = _dseq(dseq, T, B, u, a.dtype)
    small = cblas.small_gemm_work(a.dtype)

    def piece(b0, b1):
        db = np.zeros(u, a.dtype)
        _simple_rnn_backward(a, Ur, trans, _piece(rm_arr, b0, b1), mask_arr, code, dseq, dh[b0:b1], db, b0, b1, small)
        return db

    db = sum(_over_batch(piece, a, u, 1))
    dU = _weighted_sum(hs[:-1], a, rm, 1)
    return a, dU, db, dh


def lstm_forward(xp, b_in, U, rm, mask, h0, c0, act, rec_act):
    """Returns ``(hs, cs, cache)``. ``b_in`` (4u,) or None. ``xp``: as in :func:`simple_rnn_forward`."""
    code, rcode = activation_code(act), activation_code(rec_act)
    if code is None or rcode is None:
        return ref.lstm_forward(_projections(xp), b_in, U, rm, mask, h0, c0, act, rec_act)
    keep = getattr(xp, "keep_gates", True)
    if not keep and rm is None and code == TANH and rcode == SIGMOID:  # inference with Keras's activations
        return _lstm_inference_forward(xp, b_in, U, mask, h0, c0)
    xp, x, W, T = _inputs(xp, 4 * np.shape(U)[0])
    B, G = xp.shape[1], xp.shape[2]
    u = G // 4
    U, rm_arr, mask_arr = _prepare(T, xp, U, rm, mask, 4, h0, c0)
    hs = np.empty((T + 1, B, u), xp.dtype)
    cs = np.empty((T + 1, B, u), xp.dtype)
    hs[0], cs[0] = h0, c0
    bias = _bias(b_in, G, xp.dtype)
    small = cblas.small_gemm_work(xp.dtype)
    _over_batch(lambda b0, b1: _lstm_forward(xp, x, W, bias, U, _piece(rm_arr, b0, b1), mask_arr, code, rcode, hs,
                                             cs, b0, b1, small), hs[1:], u, 4)
    return hs, cs, _cache(xp, keep)


def _batch_major_inputs(proj, G_u):
    """(x (B, T, n_in) C-contiguous, reverse, W, T, B) of a :class:`Projection` for the feature-major inference loops
    (a time-major x̃ is read through a batch-major copy)."""
    x = proj.x
    if proj.batch_major:
        B, T, n_in = x.shape
        reverse = bool(proj.reverse)
    else:
        T, B, n_in = x.shape
        x, reverse = x.transpose(1, 0, 2), False
    x = np.ascontiguousarray(x)
    if proj.W.shape != (n_in, G_u):
        raise ValueError(f"recurrent kernel: W {proj.W.shape} does not fit x {x.shape} (expected {(n_in, G_u)})")
    return x, reverse, np.ascontiguousarray(proj.W, dtype=x.dtype), T, B


def _gru_inference_forward(proj, b_in, U, b_rec, mask, h0):
    """:func:`gru_forward` for a :class:`Projection` without gates kept, reset_after, tanh/sigmoid, no recurrent
    dropout: the feature-major loop ``_gru_inference``."""
    u = np.shape(U)[0]
    G = 3 * u
    x, reverse, W, T, B = _batch_major_inputs(proj, G)
    U, _, mask_arr = _prepare(T, np.empty((0, B, G), x.dtype), U, None, mask, 3, h0)
    hs = np.empty((T + 1, B, u), x.dtype)
    hs[0] = h0
    bias = _bias(b_in, G, x.dtype)
    b_rec = np.ascontiguousarray(b_rec, dtype=x.dtype)
    if b_rec.shape != (G,):
        raise ValueError(f"recurrent kernel: b_rec {b_rec.shape} does not fit U {U.shape} (expected {(G,)})")
    sequence, small = bool(proj.sequence), cblas.small_gemm_work(x.dtype, _step_work(G, u, B))
    _over_batch(lambda b0, b1: _gru_inference(x, reverse, W, bias, U, b_rec, mask_arr, hs, sequence, b0, b1, small),
                hs[1:], u, 3)
    return hs, None


def _lstm_inference_forward(proj, b_in, U, mask, h0, c0):
    """:func:`lstm_forward` for a :class:`Projection` without gates kept, tanh/sigmoid, no recurrent dropout: the
    feature-major loop ``_lstm_inference`` on x̃ as given (batch-major or time-major)."""
    u = np.shape(U)[0]
    G = 4 * u
    x, reverse, W, T, B = _batch_major_inputs(proj, G)
    U, _, mask_arr = _prepare(T, np.empty((0, B, G), x.dtype), U, None, mask, 4, h0, c0)
    hs = np.empty((T + 1, B, u), x.dtype)
    cs = np.empty((T + 1, B, u), x.dtype)
    hs[0], cs[0] = h0, c0
    bias = _bias(b_in, G, x.dtype)
    sequence = bool(proj.sequence)
    threads = _unit_threads(T, B, u)
    if threads > 1:
        _lstm_inference_split(x, reverse, W, bias, U, mask_arr, hs, cs, sequence, threads)
        return hs, cs, None
    if u >= _UNIT_SPLIT_UNITS and warmup._in_warmup():  # a warm-up's one sample compiles the unit-split loop too
        _lstm_inference_split(x, reverse, W, bias, U, mask_arr, hs.copy(), cs.copy(), sequence, 1)
    small = cblas.small_gemm_work(x.dtype, _step_work(G, u, B))
    _over_batch(lambda b0, b1: _lstm_inference(x, reverse, W, bias, U, mask_arr, hs, cs, sequence, b0, b1, small),
                hs[1:], u, 4)
    return hs, cs, None


#: The LSTM inference loop splits the hidden units between the threads (each reading only its part of U, which then
#: stays in its core's cache) from this many units on, for batches of up to ``_UNIT_SPLIT_ROWS`` rows (any batch
#: from ``_UNIT_SPLIT_ALWAYS`` units on); otherwise the threads take the batch rows (``_over_batch``). Measurements in
#: benchmarks/RESULTS.md.
_UNIT_SPLIT_UNITS = 128
_UNIT_SPLIT_ROWS = 128
_UNIT_SPLIT_ALWAYS = 512


def _step_work(G: int, u: int, B: int, threads: int | None = None) -> int:
    """Multiply-adds of one core's share of an inference step's recurrent product (B rows, u by G), for
    :func:`tinynn.kernels.cblas.small_gemm_work`. ``threads`` None: the batch pieces' count, one inside a parallel
    piece (a Bidirectional's direction: the loop runs whole on its core, :func:`_over_batch`)."""
    if threads is None:
        threads = 1 if in_piece() else num_threads()
    return G * u * B // max(1, threads)


def _unit_threads(T: int, B: int, u: int) -> int:
    """How many threads split an inference loop's hidden units between them (1: the batch-row pieces instead).

    The threads wait for each other at every step, so only with a free core for each: never from inside a parallel
    piece (whose core is taken), only when numpy's BLAS can be held to one thread, and not while the machine is
    busier than its cores (load average above the thread count: a thread that loses its core for a time slice
    would stall the others at every step, where batch pieces only finish later), nor for ``UNIT_SPLIT_PAUSE``
    seconds after a call whose threads stopped meeting (``_lstm_inference_split``)."""
    if u < _UNIT_SPLIT_UNITS or (B > _UNIT_SPLIT_ROWS and u < _UNIT_SPLIT_ALWAYS):
        return 1
    if T * B * u * 4 * u < _PARALLEL_LOOP_WORK or in_piece() or not cblas.can_limit_threads():
        return 1
    threads = min(num_threads(), u)
    if threads > 1 and (_busy_machine(threads) or time.monotonic() < _unit_split_paused_until):
        return 1
    return max(1, threads)


def _busy_machine(threads: int) -> bool:
    """Whether the 1-minute load average exceeds ``threads`` + 0.5 (this process's own busy threads count in it)."""
    try:
        return os.getloadavg()[0] > threads + 0.5
    except (AttributeError, OSError):  # pragma: no cover - no load average on this platform
        return False


def _unit_bounds(u: int, parts: int) -> list[tuple[int, int]]:
    """``range(u)`` in ``parts`` contiguous non-empty pieces, cut at multiples of 16 units when each gets at least 16
    (the threads' columns of a float32 state row then start on separate 64-byte cache lines)."""
    step = 16 if u >= 16 * parts else 1
    cuts = [u * k // parts // step * step for k in range(parts)] + [u]
    return list(zip(cuts[:-1], cuts[1:]))


def _lstm_inference_split(x, reverse, W, bias, U, mask_arr, hs, cs, sequence, threads):
    """The inference loop ``_lstm_inference_units`` on ``threads`` threads at once, each owning a range of hidden
    units (their columns of W, U, b packed side by side), meeting at every step. If they stop meeting at a step s
    (one waited too long for another: the cores are shared), the steps from s on run as batch pieces
    (``_lstm_inference``, the same arithmetic, so the same results)."""
    global _unit_split_stops
    B, T, u = x.shape[0], x.shape[1], U.shape[0]
    hT = np.empty((2, u, B), x.dtype)
    hT[0] = hs[0].T
    progress = np.zeros((threads + 1, 8), np.int64)
    progress[threads, 0] = -1  # the stop cell: no stop
    patience, small = UNIT_SPLIT_PATIENCE, cblas.small_gemm_work(x.dtype, _step_work(4 * u, u, B, threads))

    def run(me, j0, j1):
        try:
            _lstm_inference_units(x, reverse, W, bias, U, mask_arr, hT, hs, cs, sequence, j0, j1, progress, me,
                                  patience, small)
        except BaseException:
            progress[me, 0] = -1  # the others stop waiting for this thread
            raise

    with kernel_scope():
        run_parallel(*[lambda me=me, j0=j0, j1=j1: run(me, j0, j1)
                       for me, (j0, j1) in enumerate(_unit_bounds(u, threads))])
    s = int(progress[threads, 0])
    if s < 0:
        return
    global _unit_split_paused_until
    _unit_split_stops += 1
    _unit_split_paused_until = time.monotonic() + UNIT_SPLIT_PAUSE
    x_rest = np.ascontiguousarray(x[:, :T - s] if reverse else x[:, s:])
    mask_rest = np.ascontiguousarray(mask_arr[s:])
    _over_batch(lambda b0, b1: _lstm_inference(x_rest, reverse, W, bias, U, mask_rest, hs[s:], cs[s:], sequence, b0,
                                               b1, small), hs[s + 1:], u, 4)


#: How long (CPU clock ticks, ~3 ms; three times as long at the first meeting, which also waits for the other threads
#: to start) a thread of the unit-split loop waits at one meeting before the threads stop meeting and the rest of
#: the loop runs as batch pieces: a thread that another process took the core from stalls the others for its time
#: slice at every step. (A single preemption is cheaper to wait out.) After such a stop the loops take batch pieces
#: for ``UNIT_SPLIT_PAUSE`` seconds.
UNIT_SPLIT_PATIENCE = 8_000_000
UNIT_SPLIT_PAUSE = 0.25
_unit_split_stops = 0  # how many calls stopped meeting (for tests)
_unit_split_paused_until = 0.0


def lstm_backward(cache, U, rm, mask, hs, cs, dseq, dhT, dcT, act, rec_act):
    """Returns ``(dZ, dU, db_in, dh0, dc0)``: dZ (T, B, 4u) is δ of the gate pre-activations."""
    code, rcode = activation_code(act), activation_code(rec_act)
    if code is None or rcode is None:
        return ref.lstm_backward(cache, U, rm, mask, hs, cs, dseq, dhT, dcT, act, rec_act)
    gates = cache
    T, B, G = gates.shape
    u = G // 4
    U, rm_arr, mask_arr = _prepare(T, gates, U, rm, mask, 4, dhT, dcT, hs[0], cs[0])
    Ur, trans = _u_for_backward(U, B)
    dh = np.array(dhT, dtype=gates.dtype, copy=True)
    dc = np.array(dcT, dtype=gates.dtype, copy=True)
    dseq = _dseq(dseq, T, B, u, gates.dtype)
    small = cblas.small_gemm_work(gates.dtype)

    def piece(b0, b1):
        db = np.zeros(G, gates.dtype)
        _lstm_backward(gates, Ur, trans, _piece(rm_arr, b0, b1), mask_arr, code, rcode, cs, dseq, dh[b0:b1],
                       dc[b0:b1], db, b0, b1, small)
        return db

    db = sum(_over_batch(piece, gates, u, 4))
    dU = _weighted_sum(hs[:-1], gates, rm, 4)
    return gates, dU, db, dh, dc


def gru_forward(xp, b_in, U, b_rec, rm, mask, h0, act, rec_act, reset_after):
    """Returns ``(hs, cache)``. ``b_in`` (3u,) or None; ``b_rec`` (3u,) the recurrent bias (zeros unless
    reset_after). ``xp``: as in :func:`simple_rnn_forward`."""
    code, rcode = activation_code(act), activation_code(rec_act)
    if code is None or rcode is None:
        return ref.gru_forward(_projections(xp), b_in, U, b_rec, rm, mask, h0, act, rec_act, reset_after)
    keep = getattr(xp, "keep_gates", True)
    if not keep and rm is None and reset_after and code == TANH and rcode == SIGMOID:  # inference, Keras's defaults
        return _gru_inference_forward(xp, b_in, U, b_rec, mask, h0)
    xp, x, W, T = _inputs(xp, 3 * np.shape(U)[0])
    B, G = xp.shape[1], xp.shape[2]
    u = G // 3
    U, rm_arr, mask_arr = _prepare(T, xp, U, rm, mask, 3, h0)
    hs = np.empty((T + 1, B, u), xp.dtype)
    hs[0] = h0
    aux = np.empty((xp.shape[0], B, u), xp.dtype)
    b_rec = np.ascontiguousarray(b_rec, dtype=xp.dtype)
    bias = _bias(b_in, G, xp.dtype)
    small = cblas.small_gemm_work(xp.dtype)
    _over_batch(lambda b0, b1: _gru_forward(xp, x, W, bias, U, b_rec, _piece(rm_arr, b0, b1), mask_arr, code, rcode,
                                            bool(reset_after), hs, aux, b0, b1, small), hs[1:], u, 3)
    return hs, (xp, aux) if keep else None


def gru_backward(cache, U, rm, mask, hs, dseq, dhT, act, rec_act, reset_after):
    """Returns ``(dX, dU, db_in, db_rec, dh0)``: dX (T, B, 3u) is δ of the input pre-activations; db_rec (3u,)
    δ of the recurrent bias (zeros unless reset_after)."""
    code, rcode = activation_code(act), activation_code(rec_act)
    if code is None or rcode is None:
        return ref.gru_backward(cache, U, rm, mask, hs, dseq, dhT, act, rec_act, reset_after)
    gates, aux = cache
    T, B, G = gates.shape
    u = G // 3
    U, rm_arr, mask_arr = _prepare(T, gates, U, rm, mask, 3, dhT, hs[0])
    Ur, trans = _u_for_backward(U, B)
    dh = np.array(dhT, dtype=gates.dtype, copy=True)
    dseq = _dseq(dseq, T, B, u, gates.dtype)

    dHZ = np.empty((T, B, G) if reset_after else (0, 0, G), gates.dtype)  # δ of hz = h̃ U + b_rh
    small = cblas.small_gemm_work(gates.dtype)

    def piece(b0, b1):
        db, dbh = np.zeros(G, gates.dtype), np.zeros(u, gates.dtype)
        _gru_backward(gates, Ur, trans, _piece(rm_arr, b0, b1), mask_arr, code, rcode, bool(reset_after), hs, aux,
                      dseq, dh[b0:b1], db, dbh, dHZ, b0, b1, small)
        return np.concatenate([db, dbh])

    sums = sum(_over_batch(piece, gates, u, 3))
    db = sums[:G]
    if reset_after:
        dU = _weighted_sum(hs[:-1], dHZ, rm, 3)
        db_rec = np.concatenate([db[:2 * u], sums[G:]])
    else:
        dU = np.empty_like(U)
        dU[:, :2 * u] = _weighted_sum(hs[:-1], gates[..., :2 * u], rm, 2)
        dU[:, 2 * u:] = matmul_tn(aux.reshape(T * B, u), gates[..., 2 * u:].reshape(T * B, u))
        db_rec = np.zeros(G, gates.dtype)
    return gates, dU, db, db_rec, dh


load_without_refresh(globals())  # cached kernels load without refreshing numba (tinynn.kernels.jitcache)
