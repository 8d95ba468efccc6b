r"""1-D max and average pooling (channels-last) in plain NumPy, forward and backward.

Symbols: x (B, L, C), pool size P, stride S, ``pl`` steps of padding on the left (from
:func:`tinynn.kernels.reference.conv.conv_padding` with K = P, d = 1), y (B, Lo, C). Window t covers the steps
``W_t = [t·S - pl, t·S - pl + P) ∩ [0, L)``: padding never takes part (for 'same' every window holds at least
one real step, because (Lo-1)·S < L and the total padding is < P).

Max (padding acts as -∞; TF's MaxPoolGrad routes a window's whole gradient to its FIRST maximal element)::

    y[b,t,c]   = max_{i ∈ W_t} x[b,i,c],     a[b,t,c] = the first i ∈ W_t reaching the max
    dx[b,i,c]  = Σ_{t: a[b,t,c] = i} dy[b,t,c]

A NaN step counts as the largest value: y is NaN and a is its first NaN step (NumPy's max and argmax; PyTorch's max
pooling gives the same NaN max but routes the gradient to the last NaN). TensorFlow's MaxPool kernel skips NaN
instead (a window of NaNs gives -3.4e38).

Average ('same' divides by the number of real steps, as TF does)::

    n_t        = |W_t|
    y[b,t,c]   = Σ_{i ∈ W_t} x[b,i,c] / n_t
    dx[b,i,c]  = Σ_{t: i ∈ W_t} dy[b,t,c] / n_t

Global pooling over all L steps (no mask; GlobalMaxPooling1D's tie rule is tf.reduce_max's gradient: tied
maxima share the gradient equally)::

    max:   y[b,c] = max_i x[b,i,c],     e[b,i,c] = [x[b,i,c] = y[b,c]],   n[b,c] = Σ_i e[b,i,c]
           dx[b,i,c] = (e[b,i,c] / n[b,c]) · dy[b,c]
    mean:  y[b,c] = Σ_i x[b,i,c] / L,   dx[b,i,c] = dy[b,c] / L

Each function loops over the Lo windows with array slices. The numba versions: :mod:`tinynn.kernels.pooling`.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "avg_pool1d_backward", "avg_pool1d_forward", "global_avg_pool1d_backward", "global_avg_pool1d_forward",
    "global_max_pool1d_backward", "global_max_pool1d_forward", "max_pool1d_backward", "max_pool1d_forward",
    "max_pool1d_values",
]


def window(t: int, L: int, P: int, S: int, pl: int) -> tuple[int, int]:
    """[lo, hi): the real steps of window t."""
    return max(t * S - pl, 0), min(t * S - pl + P, L)


def max_pool1d_forward(x, pool_size, stride, pad_left, l_out):
    """(y (B, Lo, C), a (B, Lo, C) int64): each window's max and the step of its first maximum."""
    B, L, C = x.shape
    y = np.empty((B, l_out, C), x.dtype)
    a = np.empty((B, l_out, C), np.int64)
    for t in range(l_out):
        lo, hi = window(t, L, pool_size, stride, pad_left)
        y[:, t] = x[:, lo:hi].max(axis=1)
        a[:, t] = lo + x[:, lo:hi].argmax(axis=1)  # argmax returns the first maximum
    return y, a


def max_pool1d_values(x, pool_size, stride, pad_left, l_out):
    """y (B, Lo, C) of :func:`max_pool1d_forward` without the argmax steps (inference)."""
    return max_pool1d_forward(x, pool_size, stride, pad_left, l_out)[0]


def max_pool1d_backward(dy, a, length):
    """dx (B, L, C): each dy[b,t,c] added at step a[b,t,c]."""
    B, l_out, C = dy.shape
    dx = np.zeros((B, length, C), dy.dtype)
    b, c = np.meshgrid(np.arange(B), np.arange(C), indexing="ij")
    for t in range(l_out):  # within one window the (b, c) pairs are distinct, so fancy += is safe
        dx[b, a[:, t], c] += dy[:, t]
    return dx


def avg_pool1d_forward(x, pool_size, stride, pad_left, l_out):
    """y (B, Lo, C): the mean of each window's real steps."""
    B, L, C = x.shape
    y = np.empty((B, l_out, C), x.dtype)
    for t in range(l_out):
        lo, hi = window(t, L, pool_size, stride, pad_left)
        y[:, t] = x[:, lo:hi].sum(axis=1) / (hi - lo)
    return y


def avg_pool1d_backward(dy, length, pool_size, stride, pad_left):
    """dx (B, L, C): dy[b,t,c] / n_t spread over window t."""
    B, l_out, C = dy.shape
    dx = np.zeros((B, length, C), dy.dtype)
    for t in range(l_out):
        lo, hi = window(t, length, pool_size, stride, pad_left)
        dx[:, lo:hi] += dy[:, t : t + 1] / (hi - lo)
    return dx


def global_max_pool1d_forward(x):
    """y (B, C) = the max over the steps of x (B, L, C)."""
    return x.max(axis=1)


def global_max_pool1d_backward(x, y, dy):
    """dx (B, L, C): dy shared equally by the steps that reached the max."""
    e = (x == y[:, None, :]).astype(x.dtype)
    share = e / e.sum(axis=1, keepdims=True)
    return share * dy[:, None, :]


def global_avg_pool1d_forward(x):
    """y (B, C) = the mean over the steps of x (B, L, C)."""
    return x.mean(axis=1)


def global_avg_pool1d_backward(dy, length: int):
    """dx (B, L, C) = dy / L at every step."""
    B, C = dy.shape
    return np.broadcast_to((dy / dy.dtype.type(length))[:, None, :], (B, length, C)).copy()
