r"""SimpleRNN, LSTM and GRU in plain NumPy: the time loop and its backward (BPTT), one step at a time.

The readable statement of the recurrent math. The layers run these functions in the 'reference' kernel mode
(``tinynn.config.set_kernels("reference")``) and for activations the numba kernels do not implement; the fast
kernels (:mod:`tinynn.kernels.recurrent`) take the same arguments, return the same values, and are proven equal
to these by ``tests/test_recurrent_kernels.py``. These functions never modify their arguments, so ``backward``
may be called any number of times on one forward's cache.

Conventions (time-major)::

    T steps, B batch, u units, G gates (SimpleRNN 1, GRU 3, LSTM 4)
    xp    (T, B, G·u)  input projections x̃_t W of every step (the layer computes them with one GEMM)
    b_in  (G·u,)       the input bias, added here (or None)
    U     (u, G·u)     recurrent kernel, gate blocks side by side as in Keras; U_k its k-th (u, u) block
    rm    (G, B, u)    recurrent-dropout multipliers r_k ∈ {0, 1/(1-rate)}, or None
    mask  (T, B) bool  m_t (False: the step is masked and every state is carried over unchanged), or None
    hs    (T+1, B, u)  carried hidden states, hs[0] = h_0;  cs the same for the LSTM cell state
    dseq  (T, B, u)    δ of each step's h from the layer's outputs, or None (only the last output has one)
    dhT, dcT (B, u)    δ of the final states

Notation: σ = recurrent_activation, φ = activation, ⊙ elementwise, h̃_k = h ⊙ r_k (recurrent dropout of
gate k; h̃_k = h without it), [·]_k the k-th block of u columns. ``act.backward(z, a, δa)`` gives δz = act'(z) δa
for any tinynn activation a = act(z).
"""

from __future__ import annotations

import numpy as np


def _masks(mask, T, B):
    return np.ones((T, B), bool) if mask is None else np.asarray(mask, bool)


def _rec(h, U, rm, k_gates):
    """[h̃_k U_k]_k for the listed gates (all columns of those blocks, side by side)."""
    u = h.shape[1]
    if rm is None:
        return np.concatenate([h @ U[:, k * u:(k + 1) * u] for k in k_gates], axis=-1)
    return np.concatenate([(h * rm[k]) @ U[:, k * u:(k + 1) * u] for k in k_gates], axis=-1)


def _rec_t(dz, U, rm, k_gates):
    """Σ_k (δz_k U_kᵀ) ⊙ r_k: the transpose of :func:`_rec` (δz holds the listed blocks side by side)."""
    u = U.shape[0]
    out = 0
    for n, k in enumerate(k_gates):
        part = dz[:, n * u:(n + 1) * u] @ U[:, k * u:(k + 1) * u].T
        out = out + (part if rm is None else part * rm[k])
    return out


def _hk(h, rm, k):
    return h if rm is None else h * rm[k]


# --------------------------------------------------------------------------- SimpleRNN
def _with_bias(xp, b_in):
    return xp if b_in is None else xp + b_in


def simple_rnn_forward(xp, b_in, U, rm, mask, h0, act):
    r"""SimpleRNN over all steps (b_in: the input bias, or None).

        z_t = xp_t + b_in + h̃_{t-1} U,   a_t = φ(z_t),   h_t = m_t ? a_t : h_{t-1}

    Returns ``(hs, (z, a))`` with hs (T+1, B, u), z and a (T, B, u).
    """
    T, B, u = xp.shape
    xp = _with_bias(xp, b_in)
    m = _masks(mask, T, B)
    hs, zs, as_ = [np.asarray(h0, xp.dtype)], [], []
    for t in range(T):
        h = hs[-1]
        z = xp[t] + _rec(h, U, rm, [0])
        a = act(z)
        hs.append(np.where(m[t][:, None], a, h))
        zs.append(z)
        as_.append(a)
    return np.stack(hs), (np.stack(zs), np.stack(as_))


def simple_rnn_backward(cache, U, rm, mask, hs, dseq, dhT, act):
    r"""BPTT for SimpleRNN, from t = T-1 down to 0, with δh the gradient reaching the carried h_t:

        δh_t += dseq_t
        δz_t = m_t ? φ'(z_t) δh_t : 0                      (act.backward)
        δh_{t-1} = m_t ? (δz_t Uᵀ) ⊙ r : δh_t
        δU = Σ_t h̃_{t-1}ᵀ δz_t      δb_in = Σ_t δz_t

    Returns ``(δz (T, B, u), δU, δb_in, δh_0)``.
    """
    zs, as_ = cache
    T, B, u = zs.shape
    m = _masks(mask, T, B)
    dh = np.array(dhT, dtype=zs.dtype)
    dZ = np.zeros_like(zs)
    dU = np.zeros_like(U)
    for t in range(T - 1, -1, -1):
        if dseq is not None:
            dh = dh + dseq[t]
        dz = np.where(m[t][:, None], act.backward(zs[t], as_[t], dh), 0)
        dZ[t] = dz
        dU += _hk(hs[t], rm, 0).T @ dz
        dh = np.where(m[t][:, None], _rec_t(dz, U, rm, [0]), dh)
    return dZ, dU, dZ.sum(axis=(0, 1)), dh


# --------------------------------------------------------------------------- LSTM
def lstm_forward(xp, b_in, U, rm, mask, h0, c0, act, rec_act):
    r"""LSTM over all steps (Keras gate order i, f, c, o; the c gate is written g):

        z_t = xp_t + b_in + [h̃_{k,t-1} U_k]_k
        i = σ(z_i)   f = σ(z_f)   g = φ(z_g)   o = σ(z_o)
        c'_t = f ⊙ c_{t-1} + i ⊙ g        h'_t = o ⊙ φ(c'_t)
        c_t = m_t ? c'_t : c_{t-1}         h_t = m_t ? h'_t : h_{t-1}

    Returns ``(hs, cs, (z, gates))``, z and gates = [i, f, g, o] of shape (T, B, 4u).
    """
    T, B, G = xp.shape
    u = G // 4
    xp = _with_bias(xp, b_in)
    m = _masks(mask, T, B)
    hs, cs = [np.asarray(h0, xp.dtype)], [np.asarray(c0, xp.dtype)]
    zs, gs = [], []
    for t in range(T):
        h, c = hs[-1], cs[-1]
        z = xp[t] + _rec(h, U, rm, range(4))
        i, f = rec_act(z[:, :u]), rec_act(z[:, u:2 * u])
        g, o = act(z[:, 2 * u:3 * u]), rec_act(z[:, 3 * u:])
        c_new = f * c + i * g
        h_new = o * act(c_new)
        keep = m[t][:, None]
        cs.append(np.where(keep, c_new, c))
        hs.append(np.where(keep, h_new, h))
        zs.append(z)
        gs.append(np.concatenate([i, f, g, o], axis=-1))
    return np.stack(hs), np.stack(cs), (np.stack(zs), np.stack(gs))


def lstm_inference(x, W, b_in, U, mask, h0, c0):
    r"""The LSTM forward of inference (no gates kept) for Keras's activations φ = tanh, σ = sigmoid, in the
    feature-major layout of the numba loop ``_lstm_inference``: the states are kept transposed, hᵀ, cᵀ (u, B), so
    each gate is one contiguous block of rows of zᵀ (4u, B)::

        zᵀ_t = Wᵀ x̃_tᵀ + Uᵀ hᵀ_{t-1} + b
        iᵀ, fᵀ, gᵀ, oᵀ = σ(zᵀ_t[:u]), σ(zᵀ_t[u:2u]), φ(zᵀ_t[2u:3u]), σ(zᵀ_t[3u:])
        c'ᵀ_t = fᵀ ⊙ cᵀ_{t-1} + iᵀ ⊙ gᵀ        h'ᵀ_t = oᵀ ⊙ φ(c'ᵀ_t)
        cᵀ_t = m_t ? c'ᵀ_t : cᵀ_{t-1}          hᵀ_t = m_t ? h'ᵀ_t : hᵀ_{t-1}     (m_t masks columns)

    — :func:`lstm_forward` transposed, given x̃ (T, B, n_in) and W instead of xp = x̃ W. Returns ``(hs, cs)``
    (T+1, B, u) in the usual batch-major layout.
    """
    T, B, _ = x.shape
    u = U.shape[0]
    b = np.zeros(4 * u, x.dtype) if b_in is None else np.asarray(b_in, x.dtype)
    m = _masks(mask, T, B)
    hT, cT = np.asarray(h0, x.dtype).T, np.asarray(c0, x.dtype).T
    hs, cs = [hT.T], [cT.T]
    for t in range(T):
        zT = W.T @ x[t].T + U.T @ hT + b[:, None]
        iT, fT = _sigmoid(zT[:u]), _sigmoid(zT[u:2 * u])
        gT, oT = np.tanh(zT[2 * u:3 * u]), _sigmoid(zT[3 * u:])
        c_newT = fT * cT + iT * gT
        h_newT = oT * np.tanh(c_newT)
        keep = m[t][None, :]
        cT, hT = np.where(keep, c_newT, cT), np.where(keep, h_newT, hT)
        hs.append(hT.T)
        cs.append(cT.T)
    return np.stack(hs), np.stack(cs)


def lstm_inference_units(x, W, b_in, U, mask, h0, c0, bounds):
    r""":func:`lstm_inference` with the hidden units split into ranges ``bounds`` [(j0, j1), ...], as the threads of
    the numba loop ``_lstm_inference_units`` split them: the part of units j0:j1 takes the columns
    ``cols = [k·u + j0 : k·u + j1 for the gates k = i, f, g, o]`` of W, U and b, and per step::

        zᵀ_p = W[:, cols]ᵀ x̃_tᵀ + U[:, cols]ᵀ hᵀ_{t-1} + b[cols]      (4(j1 - j0), B): every part reads all of h
        iᵀ, fᵀ, gᵀ, oᵀ = the four blocks of zᵀ_p through σ, σ, φ, σ
        cᵀ_t[j0:j1] = fᵀ ⊙ cᵀ_{t-1}[j0:j1] + iᵀ ⊙ gᵀ     hᵀ_t[j0:j1] = oᵀ ⊙ φ(cᵀ_t[j0:j1])    (masked columns kept)

    Each part's cell update needs only its own units; the parts meet once per step, where hᵀ_t is complete.
    """
    T, B, _ = x.shape
    u = U.shape[0]
    b = np.zeros(4 * u, x.dtype) if b_in is None else np.asarray(b_in, x.dtype)
    m = _masks(mask, T, B)
    hT, cT = np.asarray(h0, x.dtype).T, np.asarray(c0, x.dtype).T
    hs, cs = [hT.T], [cT.T]
    for t in range(T):
        h_newT, c_newT = np.empty_like(hT), np.empty_like(cT)
        for j0, j1 in bounds:
            n = j1 - j0
            cols = np.concatenate([np.arange(k * u + j0, k * u + j1) for k in range(4)])
            zT = W[:, cols].T @ x[t].T + U[:, cols].T @ hT + b[cols][:, None]
            iT, fT = _sigmoid(zT[:n]), _sigmoid(zT[n:2 * n])
            gT, oT = np.tanh(zT[2 * n:3 * n]), _sigmoid(zT[3 * n:])
            c_newT[j0:j1] = fT * cT[j0:j1] + iT * gT
            h_newT[j0:j1] = oT * np.tanh(c_newT[j0:j1])
        keep = m[t][None, :]
        cT, hT = np.where(keep, c_newT, cT), np.where(keep, h_newT, hT)
        hs.append(hT.T)
        cs.append(cT.T)
    return np.stack(hs), np.stack(cs)


def _sigmoid(z):
    return 0.5 * np.tanh(0.5 * z) + 0.5  # = 1 / (1 + exp(-z)), without overflow


def lstm_backward(cache, U, rm, mask, hs, cs, dseq, dhT, dcT, act, rec_act):
    r"""BPTT for the LSTM, from t = T-1 down to 0 (δh, δc reach the carried h_t, c_t):

        δh_t += dseq_t
        δo = δh ⊙ φ(c_t)                    δc̄ = δc_t + φ'(c_t) ⊙ (δh ⊙ o)
        δi = δc̄ ⊙ g    δg = δc̄ ⊙ i    δf = δc̄ ⊙ c_{t-1}
        δz = [σ'(z_i) δi, σ'(z_f) δf, φ'(z_g) δg, σ'(z_o) δo]
        δc_{t-1} = m_t ? δc̄ ⊙ f : δc_t
        δh_{t-1} = m_t ? Σ_k (δz_k U_kᵀ) ⊙ r_k : δh_t        (δz_t = 0 where not m_t)
        δU_k = Σ_t h̃_{k,t-1}ᵀ δz_{k,t}      δb_in = Σ_t δz_t

    Returns ``(δz (T, B, 4u), δU, δb_in, δh_0, δc_0)``.
    """
    zs, gs = cache
    T, B, G = zs.shape
    u = G // 4
    m = _masks(mask, T, B)
    dh = np.array(dhT, dtype=zs.dtype)
    dc = np.array(dcT, dtype=zs.dtype)
    dZ = np.zeros_like(zs)
    dU = np.zeros_like(U)
    for t in range(T - 1, -1, -1):
        if dseq is not None:
            dh = dh + dseq[t]
        z, gates = zs[t], gs[t]
        i, f, g, o = (gates[:, k * u:(k + 1) * u] for k in range(4))
        c_prev, c = cs[t], cs[t + 1]
        tc = act(c)
        do = dh * tc
        dcbar = dc + act.backward(c, tc, dh * o)
        di, dg, df = dcbar * g, dcbar * i, dcbar * c_prev
        dz = np.concatenate(
            [
                rec_act.backward(z[:, :u], i, di),
                rec_act.backward(z[:, u:2 * u], f, df),
                act.backward(z[:, 2 * u:3 * u], g, dg),
                rec_act.backward(z[:, 3 * u:], o, do),
            ],
            axis=-1,
        )
        keep = m[t][:, None]
        dz = np.where(keep, dz, 0)
        dZ[t] = dz
        for k in range(4):
            dU[:, k * u:(k + 1) * u] += _hk(hs[t], rm, k).T @ dz[:, k * u:(k + 1) * u]
        dc = np.where(keep, dcbar * f, dc)
        dh = np.where(keep, _rec_t(dz, U, rm, range(4)), dh)
    return dZ, dU, dZ.sum(axis=(0, 1)), dh, dc


# --------------------------------------------------------------------------- GRU
def gru_forward(xp, b_in, U, b_rec, rm, mask, h0, act, rec_act, reset_after):
    r"""GRU over all steps (Keras gate order z, r, h; below xp_t stands for x̃_t W + b_in; ĥ is ``hh``):

        reset_after=True (b_rec = b_rh, the second bias row):
            hz = [h̃_k U_k]_k + b_rh
            z = σ(xp_z + hz_z)   r = σ(xp_r + hz_r)   ĥ = φ(xp_h + r ⊙ hz_h)
        reset_after=False:
            z = σ(xp_z + h̃_z U_z)   r = σ(xp_r + h̃_r U_r)   ĥ = φ(xp_h + (r ⊙ h̃_h) U_h)
        h'_t = z ⊙ h_{t-1} + (1 - z) ⊙ ĥ,    h_t = m_t ? h'_t : h_{t-1}

    Returns ``(hs, (a, gates, aux))``: a the pre-activations [a_z, a_r, a_h], gates [z, r, ĥ] (T, B, 3u);
    aux (T, B, u) is hz_h (reset_after) or r ⊙ h̃_h.
    """
    T, B, G = xp.shape
    u = G // 3
    xp = _with_bias(xp, b_in)
    m = _masks(mask, T, B)
    hs, as_, gs, auxs = [np.asarray(h0, xp.dtype)], [], [], []
    for t in range(T):
        h = hs[-1]
        xp_t = xp[t]
        if reset_after:
            hz = _rec(h, U, rm, range(3)) + b_rec
            a_zr = xp_t[:, :2 * u] + hz[:, :2 * u]
            z, r = rec_act(a_zr[:, :u]), rec_act(a_zr[:, u:])
            aux = hz[:, 2 * u:]  # hz_h
            a_h = xp_t[:, 2 * u:] + r * aux
        else:
            a_zr = xp_t[:, :2 * u] + _rec(h, U, rm, range(2))
            z, r = rec_act(a_zr[:, :u]), rec_act(a_zr[:, u:])
            aux = r * _hk(h, rm, 2)  # r ⊙ h̃_h
            a_h = xp_t[:, 2 * u:] + aux @ U[:, 2 * u:]
        hh = act(a_h)
        h_new = z * h + (1 - z) * hh
        hs.append(np.where(m[t][:, None], h_new, h))
        as_.append(np.concatenate([a_zr, a_h], axis=-1))
        gs.append(np.concatenate([z, r, hh], axis=-1))
        auxs.append(aux)
    return np.stack(hs), (np.stack(as_), np.stack(gs), np.stack(auxs))


def gru_inference(x, W, b_in, U, b_rec, mask, h0):
    r"""The GRU forward of inference (no gates kept) for reset_after and Keras's activations φ = tanh,
    σ = sigmoid, in the feature-major layout of the numba loop ``_gru_inference`` (states hᵀ (u, B); each gate a
    contiguous block of rows)::

        xpᵀ = Wᵀ x̃_tᵀ + b_in      hzᵀ = Uᵀ hᵀ_{t-1} + b_rec
        zᵀ, rᵀ = σ(xpᵀ[:u] + hzᵀ[:u]), σ(xpᵀ[u:2u] + hzᵀ[u:2u])      ĥᵀ = φ(xpᵀ[2u:] + rᵀ ⊙ hzᵀ[2u:])
        h'ᵀ = zᵀ ⊙ hᵀ_{t-1} + (1 - zᵀ) ⊙ ĥᵀ        hᵀ_t = m_t ? h'ᵀ : hᵀ_{t-1}     (m_t masks columns)

    — :func:`gru_forward` (reset_after) transposed, given x̃ (T, B, n_in) and W. Returns hs (T+1, B, u).
    """
    T, B, _ = x.shape
    u = U.shape[0]
    b = np.zeros(3 * u, x.dtype) if b_in is None else np.asarray(b_in, x.dtype)
    m = _masks(mask, T, B)
    hT = np.asarray(h0, x.dtype).T
    hs = [hT.T]
    for t in range(T):
        xpT = W.T @ x[t].T + b[:, None]
        hzT = U.T @ hT + np.asarray(b_rec, x.dtype)[:, None]
        zT, rT = _sigmoid(xpT[:u] + hzT[:u]), _sigmoid(xpT[u:2 * u] + hzT[u:2 * u])
        hhT = np.tanh(xpT[2 * u:] + rT * hzT[2 * u:])
        h_newT = zT * hT + (1 - zT) * hhT
        hT = np.where(m[t][None, :], h_newT, hT)
        hs.append(hT.T)
    return np.stack(hs)


def gru_backward(cache, U, rm, mask, hs, dseq, dhT, act, rec_act, reset_after):
    r"""BPTT for the GRU, from t = T-1 down to 0:

        δh_t += dseq_t
        δz = δh ⊙ (h_{t-1} - ĥ)      δĥ = δh ⊙ (1 - z)      δa_h = φ'(a_h) δĥ
        reset_after=True:   δr = δa_h ⊙ hz_h;   δhz = [δa_z, δa_r, δa_h ⊙ r]
                            δh_{t-1} = δh ⊙ z + Σ_k (δhz_k U_kᵀ) ⊙ r_k
                            δU_k = Σ_t h̃_kᵀ δhz_k,   δb_rh = Σ_t δhz
        reset_after=False:  δ(r ⊙ h̃_h) = δa_h U_hᵀ;   δr = δ(r ⊙ h̃_h) ⊙ h̃_h
                            δh_{t-1} = δh ⊙ z + (δ(r ⊙ h̃_h) ⊙ r) ⊙ r_h + Σ_{k=z,r} (δa_k U_kᵀ) ⊙ r_k
                            δU_{z,r} = Σ_t h̃_kᵀ δa_k,   δU_h = Σ_t (r ⊙ h̃_h)ᵀ δa_h
        with δa_z = σ'(a_z) δz, δa_r = σ'(a_r) δr; all δ are 0 and δh_{t-1} = δh_t where not m_t.

    Returns ``(δa (T, B, 3u), δU, δb_in (= Σ_t δa), δb_rh (3u,), δh_0)``; δa = δxp (so δW follows), δb_rh
    is zeros unless reset_after.
    """
    as_, gs, auxs = cache
    T, B, G = as_.shape
    u = G // 3
    m = _masks(mask, T, B)
    dh = np.array(dhT, dtype=as_.dtype)
    dA = np.zeros_like(as_)
    dU = np.zeros_like(U)
    db_rec = np.zeros(G, as_.dtype)
    for t in range(T - 1, -1, -1):
        if dseq is not None:
            dh = dh + dseq[t]
        h = hs[t]
        a, gates, aux = as_[t], gs[t], auxs[t]
        z, r, hh = gates[:, :u], gates[:, u:2 * u], gates[:, 2 * u:]
        keep = m[t][:, None]
        dz = dh * (h - hh)
        da_h = act.backward(a[:, 2 * u:], hh, dh * (1 - z))
        dh_prev = dh * z
        if reset_after:
            dr = da_h * aux
        else:
            drh = da_h @ U[:, 2 * u:].T
            dr = drh * _hk(h, rm, 2)
            dh_prev = dh_prev + _hk(drh * r, rm, 2)
        da = np.concatenate([rec_act.backward(a[:, :u], z, dz), rec_act.backward(a[:, u:2 * u], r, dr), da_h], -1)
        da = np.where(keep, da, 0)
        dA[t] = da
        if reset_after:
            dhz = np.concatenate([da[:, :2 * u], da[:, 2 * u:] * r], axis=-1)
            for k in range(3):
                dU[:, k * u:(k + 1) * u] += _hk(h, rm, k).T @ dhz[:, k * u:(k + 1) * u]
            db_rec += dhz.sum(axis=0)
            dh_prev = dh_prev + _rec_t(dhz, U, rm, range(3))
        else:
            for k in range(2):
                dU[:, k * u:(k + 1) * u] += _hk(h, rm, k).T @ da[:, k * u:(k + 1) * u]
            dU[:, 2 * u:] += aux.T @ da[:, 2 * u:]
            dh_prev = dh_prev + _rec_t(da[:, :2 * u], U, rm, range(2))
        dh = np.where(keep, dh_prev, dh)
    return dA, dU, dA.sum(axis=(0, 1)), db_rec, dh
