r"""1-D convolution (a cross-correlation, as in Keras) in plain NumPy: forward and its two gradients.

Symbols (channels-last)::

    x  (B, L, C)    input                  W  (K, Cg, F)  kernel, Cg = C/G input channels per group
    z  (B, Lo, F)   output (no bias)       G  groups, Fg = F/G filters per group, g(f) = f // Fg
    s  stride       d  dilation            pl zeros padded on the left of x
    xp = x with pl zeros on the left and enough on the right for Lo outputs

Forward (the kernel is not flipped)::

    z[b,t,f] = Σ_k Σ_c xp[b, t·s + k·d, g(f)·Cg + c] · W[k,c,f]

Backward, given dz = ∂L/∂z (B, Lo, F)::

    dxp[b, t·s + k·d, g·Cg + c] += Σ_{f ∈ g} dz[b,t,f] · W[k,c,f]      then dx = dxp without the padding
    dW[k,c,f] = Σ_b Σ_t xp[b, t·s + k·d, g(f)·Cg + c] · dz[b,t,f]

Each function below loops over the K taps: for a fixed tap k the input steps ``t·s + k·d`` (t = 0 … Lo-1) are
one strided slice of xp, so each tap is one matrix product per group.

The fast path (:mod:`tinynn.kernels.conv`) lowers the same sums to one GEMM per batch chunk (im2col or the
shift method); the twins of its index kernels close this module.
"""

from __future__ import annotations

import numpy as np

from .windows import share_identical_windows

__all__ = [
    "col2im",
    "conv1d_backward_data",
    "conv1d_backward_filter",
    "conv1d_forward",
    "conv_padding",
    "im2col",
    "shift_add",
    "shift_add_rows",
    "spread",
    "spread_rows",
    "winograd1d_conv1d_backward_filter",
    "winograd1d_conv1d_forward",
    "winograd1d_filter_from_transformed",
    "winograd1d_gradient_transform",
    "winograd1d_input_transform",
    "winograd1d_kernel_transform",
    "winograd1d_output_transform",
    "winograd1d_padded",
    "winograd1d_pairs",
]


def conv_padding(length: int, kernel_size: int, stride: int, dilation: int, padding: str) -> tuple[int, int, int]:
    """``(pad_left, pad_right, L_out)`` exactly as TF/Keras compute them (L_out <= 0: empty output).

    eff = (K-1)·d + 1.  valid: no padding, ``L_out = ⌊(L - eff)/s⌋ + 1``.
    same: ``L_out = ⌈L/s⌉``, ``total = max((L_out-1)·s + eff - L, 0)``, ``left = ⌊total/2⌋``, the rest
    (the extra element, if any) on the right.  causal: ``(K-1)·d`` zeros on the left, then valid,
    so ``L_out = ⌈L/s⌉``.  Pooling uses the same rule with ``K = pool_size``, ``d = 1``.
    """
    eff = (kernel_size - 1) * dilation + 1
    if padding == "valid":
        return 0, 0, (length - eff) // stride + 1
    if padding == "same":
        l_out = -(-length // stride)
        total = max((l_out - 1) * stride + eff - length, 0)
        return total // 2, total - total // 2, l_out
    if padding == "causal":
        left = (kernel_size - 1) * dilation
        return left, 0, (length + left - eff) // stride + 1
    raise ValueError(f"padding must be 'valid', 'same' or 'causal', got {padding!r}")


def _padded(x, pl, l_out, K, s, d):
    """xp: x with pl zeros on the left and enough on the right for l_out outputs."""
    B, L, C = x.shape
    need = (l_out - 1) * s + (K - 1) * d + 1
    pr = max(need - pl - L, 0)
    return np.concatenate([np.zeros((B, pl, C), x.dtype), x, np.zeros((B, pr, C), x.dtype)], axis=1)


def _valid_l_out(L, K, s, d, pl):
    return (L + pl - (K - 1) * d - 1) // s + 1


def conv1d_forward(x, W, stride=1, dilation=1, pad_left=0, l_out=None, groups=1):
    """z[:, t, gF] = Σ_k xp[:, t·s + k·d, gC] @ W[k, :, gF], one strided slice per tap k.

    ``l_out`` defaults to the valid length for the given left padding; gC, gF are group g's channels, filters.
    Bit-identical windows then share the output of the first of them
    (:func:`tinynn.kernels.reference.windows.share_identical_windows`: matrix products may round identical rows
    differently, and the exact ties of padded regions decide the max poolings' gradients).
    """
    K, Cg, F = W.shape
    B, L, C = x.shape
    s, d, pl = stride, dilation, pad_left
    if l_out is None:
        l_out = _valid_l_out(L, K, s, d, pl)
    xp = _padded(x, pl, l_out, K, s, d)
    Fg = F // groups
    z = np.zeros((B, l_out, F), dtype=x.dtype)
    for k in range(K):
        x_k = xp[:, k * d : k * d + (l_out - 1) * s + 1 : s, :]  # (B, Lo, C): the steps tap k reads
        for g in range(groups):
            z[:, :, g * Fg : (g + 1) * Fg] += x_k[:, :, g * Cg : (g + 1) * Cg] @ W[k, :, g * Fg : (g + 1) * Fg]
    return share_identical_windows(z, x, K, s, d, pl)


def conv1d_backward_data(dz, W, length, stride=1, dilation=1, pad_left=0, groups=1):
    """dxp[:, t·s + k·d, gC] += dz[:, t, gF] @ W[k, :, gF]ᵀ, then drop the padding: dx (B, length, C)."""
    K, Cg, F = W.shape
    B, l_out, _ = dz.shape
    s, d, pl = stride, dilation, pad_left
    Fg = F // groups
    dxp = np.zeros_like(_padded(np.zeros((B, length, Cg * groups), dz.dtype), pl, l_out, K, s, d))
    for k in range(K):
        steps = slice(k * d, k * d + (l_out - 1) * s + 1, s)
        for g in range(groups):
            dxp[:, steps, g * Cg : (g + 1) * Cg] += dz[:, :, g * Fg : (g + 1) * Fg] @ W[k, :, g * Fg : (g + 1) * Fg].T
    return dxp[:, pl : pl + length]


def conv1d_backward_filter(x, dz, kernel_size, stride=1, dilation=1, pad_left=0, groups=1):
    """dW[k, :, gF] = Σ_{b,t} xp[b, t·s + k·d, gC]ᵀ dz[b, t, gF]: dW (K, Cg, F)."""
    B, L, C = x.shape
    _, l_out, F = dz.shape
    K, s, d, pl = kernel_size, stride, dilation, pad_left
    Cg, Fg = C // groups, F // groups
    xp = _padded(x, pl, l_out, K, s, d)
    dW = np.zeros((K, Cg, F), dtype=x.dtype)
    dz_rows = dz.reshape(B * l_out, F)
    for k in range(K):
        x_k = xp[:, k * d : k * d + (l_out - 1) * s + 1 : s, :].reshape(B * l_out, C)
        for g in range(groups):
            dW[k, :, g * Fg : (g + 1) * Fg] = x_k[:, g * Cg : (g + 1) * Cg].T @ dz_rows[:, g * Fg : (g + 1) * Fg]
    return dW


# --------------------------------------------------------------------------- twins of the fast path's index kernels
# The fast path (tinynn.kernels.conv) rearranges x or dz so that a whole pass is one GEMM. These are the same
# rearrangements in NumPy; tests/test_conv_kernels.py proves the numba versions equal to them.
def _taps(l_out: int, K: int, s: int, d: int, pl: int) -> np.ndarray:
    """i[t, k] = t·s + k·d - pl: the input step read by tap k of output step t.  (Lo, K)"""
    return np.arange(l_out)[:, None] * s + np.arange(K)[None, :] * d - pl


def im2col(x, groups, K, s, d, pl, l_out):
    """cols[g,b,t,k,c] = x[b, t·s + k·d - pl, g·Cg + c], 0 on padding.  (G, B, Lo, K, Cg)"""
    B, L, C = x.shape
    i = _taps(l_out, K, s, d, pl)
    inside = (i >= 0) & (i < L)
    cols = np.where(inside[None, :, :, None], x[:, np.clip(i, 0, L - 1), :], 0).astype(x.dtype)  # (B, Lo, K, C)
    return np.ascontiguousarray(cols.reshape(B, l_out, K, groups, C // groups).transpose(3, 0, 1, 2, 4))


def col2im(dcols, L, s, d, pl):
    """dx[b,i,g·Cg+c] = Σ_{t,k: t·s+k·d-pl = i} dcols[g,b,t,k,c]  (the adjoint of im2col).  (B, L, C)"""
    G, B, l_out, K, Cg = dcols.shape
    dx = np.zeros((B, L, G, Cg), dtype=dcols.dtype)
    i = _taps(l_out, K, s, d, pl)
    for k in range(K):  # for a fixed tap the steps i are distinct, so fancy += is safe
        inside = (i[:, k] >= 0) & (i[:, k] < L)
        dx[:, i[inside, k]] += dcols[:, :, inside, k].transpose(1, 2, 0, 3)
    return dx.reshape(B, L, G * Cg)


def shift_add(Z, s, d, pl, l_out):
    """z[b,t,g·Fg+f] = Σ_k Z[g,b,t·s+k·d-pl,k,f] over taps inside [0, L).  (B, Lo, F)"""
    G, B, L, K, Fg = Z.shape
    z = np.zeros((B, l_out, G, Fg), dtype=Z.dtype)
    i = _taps(l_out, K, s, d, pl)
    for k in range(K):
        inside = (i[:, k] >= 0) & (i[:, k] < L)
        z[:, inside] += Z[:, :, i[inside, k], k].transpose(1, 2, 0, 3)
    return z.reshape(B, l_out, G * Fg)


def shift_add_rows(Zu, rows, s, d, pl, l_out):
    """z[b,t,f] = Σ_k Zu[rows[b, t·s+k·d-pl], k, f] over taps inside [0, L) with rows[…] >= 0.  (B, Lo, F)

    shift_add with one group on the products of distinct steps only: ``Zu[u] = x_u @ Wr`` for the U distinct
    steps x_u of x, and ``rows`` (B, L) maps each step to its u (-1 for an all-zero step, whose product is 0:
    such taps are skipped like padding). Steps with equal bits share one product row, so windows with equal bits
    sum the same numbers in the same order: equal outputs by construction."""
    U, K, F = Zu.shape
    B, L = rows.shape
    z = np.zeros((B, l_out, F), dtype=Zu.dtype)
    i = _taps(l_out, K, s, d, pl)
    for k in range(K):
        inside = (i[:, k] >= 0) & (i[:, k] < L)
        u = np.where(inside[None, :], rows[:, np.clip(i[:, k], 0, L - 1)], -1)  # (B, Lo): the step's u, or -1
        z[u >= 0] += Zu[u[u >= 0], k]
    return z


def spread_rows(dz, rows, K, s, d, pl, U):
    """Uu[u,k,f] = Σ_{(b,t): rows[b, t·s+k·d-pl] = u} dz[b,t,f], summed in the order of (b,t): shift_add_rows's
    adjoint, the steps' gradient rows summed per distinct step (dW = Σ_u x_uᵀ Uu[u]).  (U, K, F)"""
    B, L = rows.shape
    _, l_out, F = dz.shape
    Uu = np.zeros((U, K, F), dtype=dz.dtype)
    i = _taps(l_out, K, s, d, pl)
    for k in range(K):
        inside = (i[:, k] >= 0) & (i[:, k] < L)
        u = np.where(inside[None, :], rows[:, np.clip(i[:, k], 0, L - 1)], -1)  # (B, Lo)
        np.add.at(Uu[:, k], u[u >= 0], dz[u >= 0])  # one row at a time, in the order of (b, t)
    return Uu


def spread(dz, groups, L, K, s, d, pl):
    """U[g,b,i,k,f] = dz[b,t,g·Fg+f] where t·s = i + pl - k·d for some 0 <= t < Lo, else 0 (shift_add's adjoint)."""
    B, l_out, F = dz.shape
    U = np.zeros((groups, B, L, K, F // groups), dtype=dz.dtype)
    dz_g = dz.reshape(B, l_out, groups, F // groups).transpose(2, 0, 1, 3)
    i = _taps(l_out, K, s, d, pl)
    for k in range(K):
        inside = (i[:, k] >= 0) & (i[:, k] < L)
        U[:, :, i[inside, k], k] = dz_g[:, :, inside]
    return U


# --------------------------------------------------------------------------- Winograd F(2, 3) + F(2, 2)
# The fast path computes stride-1, undilated, one-group convolutions with 5 taps by Winograd's minimal filtering
# algorithms (tinynn.kernels.winograd1d): each pair of outputs t (steps 2j, 2j + 1 of sample b) is the sum of taps
# 0-2 by F(2, 3), which reads the input steps 2j + (0..3), and of taps 3-4 by F(2, 2), which reads 2j + (3..5). For
# one filter that is Aᵀ [(G w) ⊙ (Bᵀ d_t)], summed over the channels, with the seven positions of both algorithms
# stacked (d_t = xp[b, 2j + (0..5)]). Every coefficient of Bᵀ and Aᵀ is 0 or ±1 and of G 0, ±½ or 1 (exact in
# binary); F(2, 5) in one piece (points 0, ±1, ±2) needs 6 positions instead of 7 but rounds 2-4× worse in float32
# than the direct sum, over Keras's parity tolerance (benchmarks/RESULTS.md). Per pair that is 7 multiplications
# per (channel, filter) where the direct sum needs 10, and for each position ξ the sum over channels for all pairs is
# one product (pairs × C) @ (C × F). These are the transforms in NumPy, written with the numba kernels' operations
# in the same order; tests/test_winograd1d.py proves the kernels equal to them and the whole algorithm equal to
# conv1d_forward and its gradients.
WINOGRAD1D_BT = np.array([[1, 0, -1, 0, 0, 0], [0, 1, 1, 0, 0, 0], [0, -1, 1, 0, 0, 0], [0, 1, 0, -1, 0, 0],
                          [0, 0, 0, 1, -1, 0], [0, 0, 0, 0, 1, 0], [0, 0, 0, 0, -1, 1]], dtype=np.float64)  # fmt: skip
WINOGRAD1D_G = np.array([[1, 0, 0, 0, 0], [0.5, 0.5, 0.5, 0, 0], [0.5, -0.5, 0.5, 0, 0], [0, 0, 1, 0, 0],
                         [0, 0, 0, 1, 0], [0, 0, 0, 1, 1], [0, 0, 0, 0, 1]], dtype=np.float64)  # fmt: skip
WINOGRAD1D_AT = np.array([[1, 1, 1, 0, 1, 1, 0], [0, 1, -1, -1, 0, 1, 1]], dtype=np.float64)
#: Transform positions per pair (4 of F(2, 3) and 3 of F(2, 2)).
WINOGRAD1D_POSITIONS = 7


def winograd1d_pairs(l_out: int) -> int:
    """T: the output pairs covering Lo steps (the last one may stick out)."""
    return -(-int(l_out) // 2)


def winograd1d_padded(x, pad_left: int, l_out: int):
    """xp (B, 2T + 4, C): x at steps pl .. pl + L - 1, zeros elsewhere (steps of x past 2T + 4 - pl are never read)."""
    B, L, C = x.shape
    Lp = 2 * winograd1d_pairs(l_out) + 4
    xp = np.zeros((B, Lp, C), dtype=x.dtype)
    n = min(L, Lp - pad_left)
    xp[:, pad_left : pad_left + n] = x[:, :n]
    return xp


def winograd1d_kernel_transform(W):
    """U[ξ, c, f] = Σ_k G[ξ, k] W[k, c, f] for a (5, C, F) kernel: (7, C, F)."""
    K, C, F = W.shape
    U = WINOGRAD1D_G @ W.astype(np.float64).reshape(K, C * F)
    return np.ascontiguousarray(U.reshape(WINOGRAD1D_POSITIONS, C, F).astype(W.dtype))


def winograd1d_input_transform(xp):
    """V[ξ, t, c] = (Bᵀ d_t)[ξ] for the six steps d_t = xp[b, 2j + (0..5)] of every pair t = b·T + j: (7, B·T, C)."""
    B, Lp, C = xp.shape
    T = (Lp - 4) // 2
    d0, d1, d2, d3, d4, d5 = (xp[:, k : k + 2 * T : 2].reshape(B * T, C) for k in range(6))
    V = np.stack([d0 - d2, d1 + d2, d2 - d1, d1 - d3, d3 - d4, d4, d5 - d4])
    return np.ascontiguousarray(V)


def winograd1d_output_transform(M, batch: int, l_out: int):
    """z[b, 2j + i, f] = (Aᵀ m_t)[i] for the seven products m_t = M[:, t, f] of every pair (the step past Lo dropped):
    (B, Lo, F)."""
    m0, m1, m2, m3, m4, m5, m6 = M
    y0 = (m0 + m1 + m2) + (m4 + m5)
    y1 = (m1 - m2 - m3) + (m5 + m6)
    T = M.shape[1] // batch
    z = np.stack([y0, y1], axis=1).reshape(batch, T, 2, -1).reshape(batch, 2 * T, -1)
    return np.ascontiguousarray(z[:, :l_out])


def winograd1d_gradient_transform(dz, pairs: int):
    """Y[ξ, t, f] = (A g_t)[ξ] for the output gradients g_t = dz[b, 2j + (0, 1), f] of every pair (0 past Lo): it is
    ∂L/∂m_t for the forward's z_t = Aᵀ m_t. (7, B·T, F)."""
    B, Lo, F = dz.shape
    g = np.zeros((B, 2 * pairs, F), dtype=dz.dtype)
    g[:, :Lo] = dz
    g0, g1 = g[:, 0::2].reshape(B * pairs, F), g[:, 1::2].reshape(B * pairs, F)
    return np.ascontiguousarray(np.stack([g0, g0 + g1, g0 - g1, -g1, g0, g0 + g1, g1]))


def winograd1d_filter_from_transformed(dU):
    """dW[k, c, f] = Σ_ξ G[ξ, k] dU[ξ, c, f] for dU = ∂L/∂U (7, C, F), summed in float64: (5, C, F)."""
    _, C, F = dU.shape
    dW = WINOGRAD1D_G.T @ dU.astype(np.float64).reshape(WINOGRAD1D_POSITIONS, C * F)
    return np.ascontiguousarray(dW.reshape(5, C, F).astype(dU.dtype))


def winograd1d_conv1d_forward(x, W, pad_left, l_out):
    """conv1d_forward for 5 taps, stride 1, no dilation, one group, through the three transforms."""
    V = winograd1d_input_transform(winograd1d_padded(x, pad_left, l_out))
    return winograd1d_output_transform(V @ winograd1d_kernel_transform(W), x.shape[0], l_out)


def winograd1d_conv1d_backward_filter(x, dz, pad_left):
    """conv1d_backward_filter for 5 taps, stride 1, no dilation, one group, through the transforms: with V = Bᵀ d
    (the forward's input transform) and Y = A dz, ∂L/∂U[ξ] = V[ξ]ᵀ @ Y[ξ], and dW = Gᵀ (∂L/∂U)."""
    l_out = dz.shape[1]
    V = winograd1d_input_transform(winograd1d_padded(x, pad_left, l_out))
    Y = winograd1d_gradient_transform(dz, winograd1d_pairs(l_out))
    return winograd1d_filter_from_transformed(V.transpose(0, 2, 1) @ Y)
