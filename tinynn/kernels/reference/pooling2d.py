r"""2-D max and average pooling (channels-last) in plain NumPy, forward and backward.

Symbols: x (B, H, W, C), pool (PH, PW), strides (SH, SW), ``(pt, pl)`` rows / columns of padding before the
input (from :func:`tinynn.kernels.reference.conv2d.conv_output_size` with K = pool size, d = 1), y (B, Ho, Wo, C).
Window (i, j) covers the pixels ``R_i × C_j`` with ``R_i = [i·SH - pt, i·SH - pt + PH) ∩ [0, H)`` and
``C_j = [j·SW - pl, j·SW - pl + PW) ∩ [0, W)``: padding never takes part (for 'same' every window holds at
least one real pixel).

Max (padding acts as -∞). TF's MaxPoolGrad routes a window's whole gradient to its FIRST maximal pixel in
row-major order (the smallest tap index p·PW + q)::

    y[b,i,j,c]  = max_{(h,w) ∈ R_i × C_j} x[b,h,w,c]
    dx[b,h,w,c] = Σ_{(i,j): (h,w) is the first maximum of window (i,j)} dy[b,i,j,c]

A NaN pixel counts as the largest value: its window's max is NaN and the window's gradient goes to its first NaN
pixel (NumPy's max and argmax; PyTorch's max pooling gives the same NaN max but routes the gradient to the last
NaN). TensorFlow's MaxPool kernel skips NaN instead (a window of NaNs gives -3.4e38), so a NaN input is the one
place tinynn differs from Keras-TF here.

Max pooling above a layer with a = act(z) as its output (x = a), the two backward passes as one (the layer
below's activation gradient, act' written from a; :func:`max_pool2d_backward_to_logits`)::

    dz[b,h,w,c] = act'(a[b,h,w,c]) · dx[b,h,w,c],   db[c] = Σ_{b,h,w} dz[b,h,w,c]

A 2×2, stride-2, unpadded max pooling can keep its windows' first maxima instead of its input: k[b,i,j,c] ∈
{0, 1, 2, 3} = 2r + s, the tap (r, s) of window (i, j) that is its first maximum (:func:`max_pool2d_window_index`).
Then the pair's backward needs neither a nor the pooling's dx (:func:`max_pool2d_backward_from_index`; a at the
first maximum is y itself)::

    dz[b, 2i + r, 2j + s, c] = act'(y[b,i,j,c]) · dy[b,i,j,c]  where 2r + s = k[b,i,j,c],  0 elsewhere

Average ('same' divides by the number of real pixels, as TF does)::

    n_ij        = |R_i| · |C_j|
    y[b,i,j,c]  = Σ_{(h,w) ∈ R_i × C_j} x[b,h,w,c] / n_ij
    dx[b,h,w,c] = Σ_{(i,j): (h,w) ∈ R_i × C_j} dy[b,i,j,c] / n_ij

Each function loops over the PH·PW taps (p, q) of the window: for a fixed tap the pixels
``(i·SH + p - pt, j·SW + q - pl)`` of all windows are one strided slice of the padded input. The numba versions:
:mod:`tinynn.kernels.pooling2d`.
"""

from __future__ import annotations

import numpy as np

from .bias_activation import derivative_from_output
from .conv2d import pad_input, tap

__all__ = [
    "avg_pool2d_backward",
    "avg_pool2d_forward",
    "max_pool2d_backward",
    "max_pool2d_backward_from_index",
    "max_pool2d_backward_to_logits",
    "max_pool2d_forward",
    "max_pool2d_scatter",
    "max_pool2d_window_index",
]

_ONE = (1, 1)


def max_pool2d_forward(x, pool, strides, pads, out_hw):
    """y (B, Ho, Wo, C): the max of each window over its real pixels (the padding is -∞)."""
    xp = pad_input(x, pads, out_hw, pool, strides, _ONE, value=-np.inf)
    y = np.full((x.shape[0], *out_hw, x.shape[3]), -np.inf, dtype=x.dtype)
    for p in range(pool[0]):
        for q in range(pool[1]):
            np.maximum(y, tap(xp, p, q, out_hw, strides, _ONE), out=y)
    return y


def max_pool2d_backward(x, y, dy, pool, strides, pads):
    """dx (B, H, W, C): each window's dy goes to its first maximal pixel, taps visited in row-major order."""
    B, H, W, C = x.shape
    out_hw, (pt, pl) = y.shape[1:3], pads
    xp = pad_input(x, pads, out_hw, pool, strides, _ONE, value=-np.inf)
    dxp = np.zeros(xp.shape, dtype=dy.dtype)
    routed = np.zeros(y.shape, dtype=bool)  # has window (b, i, j, c) sent its gradient already?
    for p in range(pool[0]):
        for q in range(pool[1]):
            t = tap(xp, p, q, out_hw, strides, _ONE)
            first = ((t == y) | (np.isnan(t) & np.isnan(y))) & ~routed  # a NaN max: its first NaN pixel
            tap(dxp, p, q, out_hw, strides, _ONE)[...] += np.where(first, dy, 0)
            routed |= first
    return dxp[:, pt : pt + H, pl : pl + W]


def max_pool2d_backward_to_logits(a, y, dy, pool, strides, pads, activation: str):
    """(dz, db) for a max pooling of a = act(z), the output of the layer below: the pooling's dx, then that
    layer's dz = act'(a) ⊙ dx (act' written from a) and db = Σ dz over every axis but the channels (in float64)."""
    dx = max_pool2d_backward(a, y, dy, pool, strides, pads)
    dz = derivative_from_output(a, activation) * dx
    return dz, dz.reshape(-1, dz.shape[-1]).sum(axis=0, dtype=np.float64).astype(a.dtype)


def max_pool2d_window_index(a):
    """k (B, H // 2, W // 2, C) uint8: the tap 2r + s of each 2×2, stride-2 window's first maximum in row-major
    order (a NaN window: its first NaN), the pixel :func:`max_pool2d_backward` routes the window's gradient to."""
    Ho, Wo = a.shape[1] // 2, a.shape[2] // 2
    y = max_pool2d_forward(a, (2, 2), (2, 2), (0, 0), (Ho, Wo))
    k = np.zeros(y.shape, np.uint8)
    routed = np.zeros(y.shape, dtype=bool)
    for tap_index in range(4):
        r, s = divmod(tap_index, 2)
        t = a[:, r : 2 * Ho : 2, s : 2 * Wo : 2]
        first = ((t == y) | (np.isnan(t) & np.isnan(y))) & ~routed
        k[first] = tap_index
        routed |= first
    return k


def max_pool2d_scatter(values, k, in_hw):
    """(B, H, W, C): each window's value at its tap k (:func:`max_pool2d_window_index`), 0 everywhere else."""
    B, Ho, Wo, C = values.shape
    out = np.zeros((B, *in_hw, C), dtype=values.dtype)
    for tap_index in range(4):
        r, s = divmod(tap_index, 2)
        tap_view = out[:, r : 2 * Ho : 2, s : 2 * Wo : 2]
        tap_view[k == tap_index] = values[k == tap_index]
    return out


def max_pool2d_backward_from_index(y, k, dy, in_hw, activation: str):
    """(dz, db) as :func:`max_pool2d_backward_to_logits` gives them for a 2×2, stride-2, unpadded max pooling of
    a = act(z) (in_hw its rows and columns), from the pooling's output y and its windows' first maxima k alone:
    a at each window's first maximum is y."""
    dz = max_pool2d_scatter(derivative_from_output(y, activation) * dy, k, in_hw)
    return dz, dz.reshape(-1, dz.shape[-1]).sum(axis=0, dtype=np.float64).astype(y.dtype)


def _window_sizes(in_hw, pool, strides, pads, out_hw):
    """n (Ho, Wo, 1): the number of real pixels in each window."""
    ones = np.ones((1, *in_hw, 1))
    n = np.zeros((1, *out_hw, 1))
    onesp = pad_input(ones, pads, out_hw, pool, strides, _ONE)
    for p in range(pool[0]):
        for q in range(pool[1]):
            n += tap(onesp, p, q, out_hw, strides, _ONE)
    return n[0]


def avg_pool2d_forward(x, pool, strides, pads, out_hw):
    """y (B, Ho, Wo, C): the mean of each window's real pixels."""
    xp = pad_input(x, pads, out_hw, pool, strides, _ONE)
    total = np.zeros((x.shape[0], *out_hw, x.shape[3]), dtype=x.dtype)
    for p in range(pool[0]):
        for q in range(pool[1]):
            total += tap(xp, p, q, out_hw, strides, _ONE)
    return (total / _window_sizes(x.shape[1:3], pool, strides, pads, out_hw)).astype(x.dtype)


def avg_pool2d_backward(dy, in_hw, pool, strides, pads):
    """dx (B, H, W, C): dy[b,i,j,c] / n_ij spread over window (i, j)."""
    B, Ho, Wo, C = dy.shape
    (H, W), (pt, pl) = in_hw, pads
    share = (dy / _window_sizes(in_hw, pool, strides, pads, (Ho, Wo))).astype(dy.dtype)
    dxp = pad_input(np.zeros((B, H, W, C), dy.dtype), pads, (Ho, Wo), pool, strides, _ONE)
    for p in range(pool[0]):
        for q in range(pool[1]):
            tap(dxp, p, q, (Ho, Wo), strides, _ONE)[...] += share
    return dxp[:, pt : pt + H, pl : pl + W]
