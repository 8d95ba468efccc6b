r"""2-D convolutions (cross-correlations, as in Keras) in plain NumPy: forward and both gradients.

Symbols (channels-last, Keras's layouts)::

    x  (B, H, W, C)          input               Wk (KH, KW, Cg, F)  kernel, Cg = C/G channels per group
    z  (B, Ho, Wo, F)        output (no bias)    G  groups, Fg = F/G filters per group, g(f) = f // Fg
    (sh, sw) strides         (dh, dw) dilation   (pt, pl) zeros padded on top / on the left
    xp = x with pt rows of zeros on top, pl columns on the left, and enough at the bottom / right for Ho × Wo

Padding, per axis (TF's rule, :func:`conv_output_size`): with eff = (K-1)·d + 1,
``valid``: no padding, ``Ho = ⌊(H - eff)/s⌋ + 1``; ``same``: ``Ho = ⌈H/s⌉``, ``total = max((Ho-1)·s + eff - H, 0)``,
``pt = ⌊total/2⌋`` (the extra row, if any, at the bottom).

Forward (the kernel is not flipped)::

    z[b,i,j,f] = Σ_{p,q} Σ_c xp[b, i·sh + p·dh, j·sw + q·dw, g(f)·Cg + c] · Wk[p,q,c,f]

Backward, given dz = ∂L/∂z::

    dxp[b, i·sh + p·dh, j·sw + q·dw, g·Cg + c] += Σ_{f ∈ g} dz[b,i,j,f] · Wk[p,q,c,f]     then dx = dxp cropped
    dWk[p,q,c,f] = Σ_{b,i,j} xp[b, i·sh + p·dh, j·sw + q·dw, g(f)·Cg + c] · dz[b,i,j,f]

Depthwise (D (KH, KW, C, M), output channel c·M + m reads input channel c only)::

    u[b,i,j,c·M+m] = Σ_{p,q} xp[b, i·sh + p·dh, j·sw + q·dw, c] · D[p,q,c,m]
    dxp[b, i·sh + p·dh, j·sw + q·dw, c] += Σ_m du[b,i,j,c·M+m] · D[p,q,c,m]
    dD[p,q,c,m] = Σ_{b,i,j} xp[b, i·sh + p·dh, j·sw + q·dw, c] · du[b,i,j,c·M+m]

Every function loops over the KH·KW taps (p, q): for a fixed tap the pixels ``(i·sh + p·dh, j·sw + q·dw)`` of all
outputs are one strided slice of xp, so each tap is one matrix product per group (a broadcast product for the
depthwise form). The fast path (:mod:`tinynn.kernels.conv2d`) lowers the same sums to one GEMM per batch chunk
(im2col); :func:`im2col` and :func:`col2im` at the end are the twins of its index kernels.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "col2im",
    "conv2d_backward_data",
    "conv2d_backward_filter",
    "conv2d_forward",
    "conv_output_size",
    "depthwise_conv2d_backward_data",
    "depthwise_conv2d_backward_filter",
    "depthwise_conv2d_forward",
    "im2col",
    "winograd_width_forward",
    "winograd_width_input_transform",
    "winograd_width_kernel_transform",
    "winograd_width_output_transform",
    "winograd_width_padded",
    "winograd_width_pairs",
]


def conv_output_size(size: int, kernel_size: int, stride: int, dilation: int, padding: str) -> tuple[int, int]:
    """``(pad_before, size_out)`` along one axis, exactly as TF/Keras compute them (size_out < 1: empty output).

    eff = (K-1)·d + 1.  valid: ``(0, ⌊(size - eff)/s⌋ + 1)``.  same: ``size_out = ⌈size/s⌉``,
    ``total = max((size_out-1)·s + eff - size, 0)``, ``pad_before = ⌊total/2⌋`` (the extra one goes after).
    Pooling uses the same rule with K = pool_size, d = 1.
    """
    eff = (kernel_size - 1) * dilation + 1
    if padding == "valid":
        return 0, (size - eff) // stride + 1
    if padding == "same":
        size_out = -(-size // stride)
        total = max((size_out - 1) * stride + eff - size, 0)
        return total // 2, size_out
    raise ValueError(f"padding must be 'valid' or 'same', got {padding!r}")


def pad_input(x, pads, out_hw, kernel_hw, strides, dilation, value=0.0):
    """xp: x (B, H, W, C) with pt rows / pl columns of ``value`` before, and enough after for Ho × Wo outputs."""
    B, H, W, C = x.shape
    (pt, pl), (Ho, Wo), (KH, KW), (sh, sw), (dh, dw) = pads, out_hw, kernel_hw, strides, dilation
    rows = max((Ho - 1) * sh + (KH - 1) * dh + 1, pt + H)
    cols = max((Wo - 1) * sw + (KW - 1) * dw + 1, pl + W)
    xp = np.full((B, rows, cols, C), value, dtype=x.dtype)
    xp[:, pt : pt + H, pl : pl + W] = x
    return xp


def tap(xp, p, q, out_hw, strides, dilation):
    """The (B, Ho, Wo, ·) pixels tap (p, q) reads: ``xp[:, i·sh + p·dh, j·sw + q·dw]`` for every output (i, j)."""
    (Ho, Wo), (sh, sw), (dh, dw) = out_hw, strides, dilation
    return xp[:, p * dh : p * dh + (Ho - 1) * sh + 1 : sh, q * dw : q * dw + (Wo - 1) * sw + 1 : sw]


def _valid_out(H, W, kernel_hw, strides, dilation, pads):
    (KH, KW), (sh, sw), (dh, dw), (pt, pl) = kernel_hw, strides, dilation, pads
    return (H + pt - (KH - 1) * dh - 1) // sh + 1, (W + pl - (KW - 1) * dw - 1) // sw + 1


def conv2d_forward(x, Wk, strides=(1, 1), dilation=(1, 1), pads=(0, 0), out_hw=None, groups=1):
    """z (B, Ho, Wo, F) = Σ_{p,q} tap(p,q)[..., gC] @ Wk[p, q, :, gF] per group g (no bias).

    ``out_hw`` defaults to the output size with the given top/left padding and none after."""
    KH, KW, Cg, F = Wk.shape
    B, H, W, C = x.shape
    if out_hw is None:
        out_hw = _valid_out(H, W, (KH, KW), strides, dilation, pads)
    xp = pad_input(x, pads, out_hw, (KH, KW), strides, dilation)
    Fg = F // groups
    z = np.zeros((B, *out_hw, F), dtype=x.dtype)
    for p in range(KH):
        for q in range(KW):
            x_pq = tap(xp, p, q, out_hw, strides, dilation)
            for g in range(groups):
                gC, gF = slice(g * Cg, (g + 1) * Cg), slice(g * Fg, (g + 1) * Fg)
                z[..., gF] += x_pq[..., gC] @ Wk[p, q, :, gF]
    return z


def conv2d_backward_data(dz, Wk, in_hw, strides=(1, 1), dilation=(1, 1), pads=(0, 0), groups=1):
    """dx (B, H, W, C): every tap sends ``dz[..., gF] @ Wk[p, q, :, gF]ᵀ`` back to the pixels it read."""
    KH, KW, Cg, F = Wk.shape
    B, Ho, Wo, _ = dz.shape
    (H, W), (pt, pl) = in_hw, pads
    Fg = F // groups
    dxp = pad_input(np.zeros((B, H, W, Cg * groups), dz.dtype), pads, (Ho, Wo), (KH, KW), strides, dilation)
    for p in range(KH):
        for q in range(KW):
            dx_pq = tap(dxp, p, q, (Ho, Wo), strides, dilation)  # a view: += writes into dxp
            for g in range(groups):
                gC, gF = slice(g * Cg, (g + 1) * Cg), slice(g * Fg, (g + 1) * Fg)
                dx_pq[..., gC] += dz[..., gF] @ Wk[p, q, :, gF].T
    return dxp[:, pt : pt + H, pl : pl + W]


def conv2d_backward_filter(x, dz, kernel_hw, strides=(1, 1), dilation=(1, 1), pads=(0, 0), groups=1):
    """dWk (KH, KW, Cg, F): ``dWk[p, q, :, gF] = tap(p,q)[..., gC]ᵀ @ dz[..., gF]`` summed over b, i, j."""
    B, H, W, C = x.shape
    _, Ho, Wo, F = dz.shape
    KH, KW = kernel_hw
    Cg, Fg = C // groups, F // groups
    xp = pad_input(x, pads, (Ho, Wo), kernel_hw, strides, dilation)
    dz_rows = dz.reshape(-1, F)
    dWk = np.zeros((KH, KW, Cg, F), dtype=x.dtype)
    for p in range(KH):
        for q in range(KW):
            x_rows = tap(xp, p, q, (Ho, Wo), strides, dilation).reshape(-1, C)
            for g in range(groups):
                gC, gF = slice(g * Cg, (g + 1) * Cg), slice(g * Fg, (g + 1) * Fg)
                dWk[p, q, :, gF] = x_rows[:, gC].T @ dz_rows[:, gF]
    return dWk


def depthwise_conv2d_forward(x, D, strides=(1, 1), dilation=(1, 1), pads=(0, 0), out_hw=None):
    """u (B, Ho, Wo, C·M) = Σ_{p,q} tap(p,q)[..., c, None] · D[p, q, c, :] (channel c·M + m reads channel c)."""
    KH, KW, C, M = D.shape
    B, H, W, _ = x.shape
    if out_hw is None:
        out_hw = _valid_out(H, W, (KH, KW), strides, dilation, pads)
    xp = pad_input(x, pads, out_hw, (KH, KW), strides, dilation)
    u = np.zeros((B, *out_hw, C, M), dtype=x.dtype)
    for p in range(KH):
        for q in range(KW):
            u += tap(xp, p, q, out_hw, strides, dilation)[..., :, None] * D[p, q]
    return u.reshape(B, *out_hw, C * M)


def depthwise_conv2d_backward_data(du, D, in_hw, strides=(1, 1), dilation=(1, 1), pads=(0, 0)):
    """dx (B, H, W, C): every tap sends ``Σ_m du[..., c·M+m] · D[p, q, c, m]`` back to the pixels it read."""
    KH, KW, C, M = D.shape
    B, Ho, Wo, _ = du.shape
    (H, W), (pt, pl) = in_hw, pads
    du = du.reshape(B, Ho, Wo, C, M)
    dxp = pad_input(np.zeros((B, H, W, C), du.dtype), pads, (Ho, Wo), (KH, KW), strides, dilation)
    for p in range(KH):
        for q in range(KW):
            tap(dxp, p, q, (Ho, Wo), strides, dilation)[...] += (du * D[p, q]).sum(axis=-1)
    return dxp[:, pt : pt + H, pl : pl + W]


def depthwise_conv2d_backward_filter(x, du, kernel_hw, depth_multiplier, strides=(1, 1), dilation=(1, 1),
                                     pads=(0, 0)):  # fmt: skip
    """dD (KH, KW, C, M): ``dD[p, q, c, m] = Σ_{b,i,j} tap(p,q)[b,i,j,c] · du[b,i,j,c·M+m]``."""
    B, H, W, C = x.shape
    _, Ho, Wo, _ = du.shape
    KH, KW = kernel_hw
    M = depth_multiplier
    du_rows = du.reshape(-1, C, M)
    xp = pad_input(x, pads, (Ho, Wo), kernel_hw, strides, dilation)
    dD = np.zeros((KH, KW, C, M), dtype=x.dtype)
    for p in range(KH):
        for q in range(KW):
            x_rows = tap(xp, p, q, (Ho, Wo), strides, dilation).reshape(-1, C)
            dD[p, q] = np.einsum("nc,ncm->cm", x_rows, du_rows)
    return dD


# --------------------------------------------------------------------------- twins of the fast path's index kernels
# The fast path (tinynn.kernels.conv2d) copies the pixels every output reads into one row per output, so that a
# whole pass is one GEMM. These are the same rearrangements in NumPy; tests/test_conv2d_kernels.py proves the numba
# versions equal to them.
def im2col(x, groups, kernel_hw, strides, dilation, pads, out_hw):
    """cols[g,b,i,j,p,q,c] = xp[b, i·sh + p·dh, j·sw + q·dw, g·Cg + c] (0 on padding).  (G, B, Ho, Wo, KH, KW, Cg)"""
    B, H, W, C = x.shape
    KH, KW = kernel_hw
    xp = pad_input(x, pads, out_hw, kernel_hw, strides, dilation)
    taps = [[tap(xp, p, q, out_hw, strides, dilation) for q in range(KW)] for p in range(KH)]
    cols = np.stack([np.stack(row, axis=3) for row in taps], axis=3)  # (B, Ho, Wo, KH, KW, C)
    cols = cols.reshape(B, *out_hw, KH, KW, groups, C // groups)
    return np.ascontiguousarray(np.moveaxis(cols, 5, 0))


def col2im(dcols, in_hw, strides, dilation, pads):
    """dx[b, i·sh + p·dh - pt, j·sw + q·dw - pl, g·Cg + c] += dcols[g,b,i,j,p,q,c] (the adjoint of im2col)."""
    G, B, Ho, Wo, KH, KW, Cg = dcols.shape
    (H, W), (pt, pl) = in_hw, pads
    dxp = pad_input(np.zeros((B, H, W, G * Cg), dcols.dtype), pads, (Ho, Wo), (KH, KW), strides, dilation)
    for p in range(KH):
        for q in range(KW):
            contribution = np.moveaxis(dcols[:, :, :, :, p, q], 0, 3).reshape(B, Ho, Wo, G * Cg)
            tap(dxp, p, q, (Ho, Wo), strides, dilation)[...] += contribution
    return dxp[:, pt : pt + H, pl : pl + W]


# --------------------------------------------------------------------------- Winograd F(2×2, 3×3)
# The fast path computes 3×3, stride-1 convolutions with Winograd's minimal filtering algorithm: each 2×2 block of
# outputs of one filter is Aᵀ [(G w Gᵀ) ⊙ (Bᵀ d B)] A, summed over the channels, for the 4×4 input tile d it reads
# and the 3×3 kernel w. Per block that is 16 multiplications per (channel, filter) pair instead of 36, and the sum
# over channels of the 16 products at each tile position ξ is one matrix product (tiles × C) @ (C × F). These are
# the transforms in NumPy; tests/test_conv2d_kernels.py proves the numba versions (tinynn.kernels.winograd) equal
# to them and the whole algorithm equal to conv2d_forward.
WINOGRAD_BT = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], dtype=np.float64)
WINOGRAD_G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], dtype=np.float64)
WINOGRAD_AT = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], dtype=np.float64)


def winograd_tiles(out_hw) -> tuple[int, int]:
    """(TH, TW): the 2×2 output blocks covering an Ho × Wo output (the last ones may stick out)."""
    return -(-out_hw[0] // 2), -(-out_hw[1] // 2)


#: ``np.einsum``'s order for G · X · Gᵀ: G with X first, then the result with the other G (two BLAS-backed
#: contractions; without it einsum sums all three at once in one nested loop, slower: benchmarks/RESULTS.md).
_PAIRWISE = ["einsum_path", (0, 1), (0, 1)]


def winograd_kernel_transform(Wk):
    """U[ξ = 4i + j, c, f] = (G Wk[:, :, c, f] Gᵀ)[i, j] for a (3, 3, C, F) kernel: (16, C, F)."""
    U = np.einsum("ip,pqcf,jq->ijcf", WINOGRAD_G, Wk, WINOGRAD_G, optimize=_PAIRWISE)
    return np.ascontiguousarray(U.reshape(16, *Wk.shape[2:]).astype(Wk.dtype))


def winograd_input_transform(x, pads, tiles):
    """V[ξ = 4i + j, t, c] = (Bᵀ d_t B)[i, j] for the 4×4 tile d_t = xp[b, 2·ti + (0..3), 2·tj + (0..3), c] of every
    block t = (b·TH + ti)·TW + tj (zeros outside x): (16, B·TH·TW, C)."""
    B, H, W, C = x.shape
    (pt, pl), (TH, TW) = pads, tiles
    xp = np.zeros((B, 2 * TH + 2, 2 * TW + 2, C), dtype=x.dtype)
    rows, cols = min(H, 2 * TH + 2 - pt), min(W, 2 * TW + 2 - pl)
    xp[:, pt : pt + rows, pl : pl + cols] = x[:, :rows, :cols]
    d = np.stack([np.stack([xp[:, r : r + 2 * TH : 2, s : s + 2 * TW : 2] for s in range(4)], axis=0)
                  for r in range(4)], axis=0)  # (4, 4, B, TH, TW, C)  # fmt: skip
    V = np.einsum("ir,rsbhwc,js->ijbhwc", WINOGRAD_BT, d, WINOGRAD_BT)
    return np.ascontiguousarray(V.reshape(16, B * TH * TW, C).astype(x.dtype))


def winograd_output_transform(M, batch, out_hw):
    """z[b, 2·ti + i, 2·tj + j, f] = (Aᵀ m_t A)[i, j] for the 4×4 products m_t = M[:, t, f] of every block (outputs
    past Ho, Wo dropped): (B, Ho, Wo, F)."""
    _, T, F = M.shape
    TH, TW = winograd_tiles(out_hw)
    m = M.reshape(4, 4, batch, TH, TW, F)
    y = np.einsum("ir,rsbhwf,js->bhiwjf", WINOGRAD_AT, m, WINOGRAD_AT).reshape(batch, 2 * TH, 2 * TW, F)
    return np.ascontiguousarray(y[:, : out_hw[0], : out_hw[1]].astype(M.dtype))


def winograd_conv2d_forward(x, Wk, pads, out_hw):
    """conv2d_forward for a 3×3 kernel, stride 1, no dilation, one group, through the three transforms."""
    tiles = winograd_tiles(out_hw)
    V, U = winograd_input_transform(x, pads, tiles), winograd_kernel_transform(Wk)
    return winograd_output_transform(V @ U, x.shape[0], out_hw)


def winograd_gradient_transform(dz, tiles):
    """Y[ξ = 4i + j, t, f] = (A g_t Aᵀ)[i, j] for the 2×2 output gradients g_t = dz[b, 2·ti + (0, 1), 2·tj + (0, 1), f]
    of every block t (zeros past Ho, Wo: those outputs were dropped): (16, B·TH·TW, F). It is ∂L/∂m_t for the forward's
    z_t = Aᵀ m_t A."""
    B, Ho, Wo, F = dz.shape
    TH, TW = tiles
    g = np.zeros((B, 2 * TH, 2 * TW, F), dtype=dz.dtype)
    g[:, :Ho, :Wo] = dz
    g = g.reshape(B, TH, 2, TW, 2, F)
    Y = np.einsum("ir,bhrwsf,js->ijbhwf", WINOGRAD_AT.T, g, WINOGRAD_AT.T)
    return np.ascontiguousarray(Y.reshape(16, B * TH * TW, F).astype(dz.dtype))


def winograd_filter_from_transformed(dU):
    """dWk[p, q, c, f] = (Gᵀ dU[:, c, f] G)[p, q] for dU (16, C, F), ∂L/∂U of U = G Wk Gᵀ: (3, 3, C, F), summed in
    float64."""
    _, C, F = dU.shape
    dW = np.einsum("ip,ijcf,jq->pqcf", WINOGRAD_G, dU.reshape(4, 4, C, F).astype(np.float64), WINOGRAD_G,
                   optimize=_PAIRWISE)  # fmt: skip
    return np.ascontiguousarray(dW.astype(dU.dtype))


def winograd_conv2d_backward_filter(x, dz, pads):
    """conv2d_backward_filter for a 3×3 kernel, stride 1, no dilation, one group, through the transforms: with
    V = Bᵀ d B (the forward's input transform) and Y = A dz Aᵀ, ∂L/∂U[ξ] = Σ_t V[ξ, t]ᵀ Y[ξ, t] = V[ξ]ᵀ @ Y[ξ],
    and dWk = Gᵀ (∂L/∂U) G."""
    tiles = winograd_tiles(dz.shape[1:3])
    V, Y = winograd_input_transform(x, pads, tiles), winograd_gradient_transform(dz, tiles)
    return winograd_filter_from_transformed(V.transpose(0, 2, 1) @ Y)


# --------------------------------------------------------------------------- Winograd F(2, 3) along the width
# With few input channels (under conv2d.WINOGRAD_MIN_CHANNELS) the products of F(2×2, 3×3) sum over C numbers only,
# too few for BLAS to run near its rate. The fast path then runs F(2, 3) along the width alone
# (tinynn.kernels.winograd_width): each pair of outputs t = (b, i, j), pixels (i, 2j) and (i, 2j + 1), reads the
# columns 2j .. 2j + 3 of the input rows i .. i + KH - 1, and with the KH kernel rows and the C channels as one summed
# axis of KH·C numbers, the pair is Aᵀ [(G w) ⊙ (Bᵀ d_t)] along the columns (the 1-D F(2, 3) of
# tinynn.kernels.reference.conv's Winograd section: every coefficient 0, ±1 or ±½). Per pair that is 4·KH·C
# multiply-adds per filter where im2col needs 2·3·KH·C, and for each position ξ the sum over (kh, c) for all pairs
# is one product (pairs × KH·C) @ (KH·C × F). tests/test_winograd_width.py proves the numba transforms equal to these
# and the algorithm equal to conv2d_forward.
def winograd_width_pairs(out_hw) -> int:
    """TW: the pairs of output columns covering Wo (the last one may stick out)."""
    return -(-int(out_hw[1]) // 2)


def winograd_width_padded(x, pads, out_hw, KH: int):
    """xp (B, Ho + KH - 1, 2·TW + 2, C): x at rows pt .., columns pl .., zeros elsewhere (what the pairs read)."""
    B, H, W, C = x.shape
    (pt, pl), (Ho, _) = pads, out_hw
    Hp, Wp = Ho + KH - 1, 2 * winograd_width_pairs(out_hw) + 2
    xp = np.zeros((B, Hp, Wp, C), dtype=x.dtype)
    rows, cols = min(H, Hp - pt), min(W, Wp - pl)
    xp[:, pt : pt + rows, pl : pl + cols] = x[:, :rows, :cols]
    return xp


def winograd_width_kernel_transform(Wk):
    """U[ξ, (kh, c), f] for a (KH, 3, C, F) kernel: W0, (W0 + W1 + W2)/2, (W0 - W1 + W2)/2, W2 with Wq = Wk[:, q]
    as a (KH·C, F) matrix, formed in float64: (4, KH·C, F) in Wk's dtype."""
    KH, _, C, F = Wk.shape
    w0, w1, w2 = (Wk[:, q].astype(np.float64).reshape(KH * C, F) for q in range(3))
    U = np.stack([w0, (w0 + w1 + w2) / 2, (w0 - w1 + w2) / 2, w2])
    return np.ascontiguousarray(U.astype(Wk.dtype))


def winograd_width_input_transform(xp, KH: int):
    """V[ξ, t, (kh, c)] for the columns d_q = xp[b, i + kh, 2j + q] (q = 0..3) of every pair t = (b·Ho + i)·TW + j:
    d0 - d2, d1 + d2, d2 - d1, d1 - d3. (4, B·Ho·TW, KH·C)."""
    B, Hp, Wp, C = xp.shape
    Ho, TW = Hp - KH + 1, (Wp - 2) // 2
    rows = np.stack([xp[:, kh : kh + Ho] for kh in range(KH)], axis=3)  # (B, Ho, Wp, KH, C)
    d0, d1, d2, d3 = (rows[:, :, q : q + 2 * TW : 2].reshape(B * Ho * TW, KH * C) for q in range(4))
    return np.ascontiguousarray(np.stack([d0 - d2, d1 + d2, d2 - d1, d1 - d3]))


def winograd_width_output_transform(M, batch: int, out_hw):
    """z[b, i, 2j + m, f] = (Aᵀ m_t)[m]: M0 + M1 + M2 and M1 - M2 - M3 for every pair (the column past Wo dropped):
    (B, Ho, Wo, F)."""
    Ho, Wo = out_hw
    m0, m1, m2, m3 = M
    z = np.stack([m0 + m1 + m2, m1 - m2 - m3], axis=1)  # (pairs, 2, F)
    z = z.reshape(batch, Ho, 2 * winograd_width_pairs(out_hw), M.shape[2])
    return np.ascontiguousarray(z[:, :, :Wo])


def winograd_width_forward(x, Wk, pads, out_hw):
    """conv2d_forward for a (KH, 3, C, F) kernel, stride 1, no dilation, one group, through the three transforms."""
    KH = Wk.shape[0]
    V = winograd_width_input_transform(winograd_width_padded(x, pads, out_hw, KH), KH)
    return winograd_width_output_transform(V @ winograd_width_kernel_transform(Wk), x.shape[0], out_hw)
