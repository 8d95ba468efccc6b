r"""Dense (fully connected) layer in plain NumPy: the affine map on the last axis and its gradients.

Symbols: x (..., n_in), kernel W (n_in, u), bias b (u,) or None, act a tinynn activation; the leading axes of x
are flattened to rows for the sums::

    z = x W + b             y = act(z)
    dz = act'(z) ⊙ dy       (act.backward)
    dW = xᵀ dz   (n_in, u)     db = Σ_rows dz   (u,)     dx = dz Wᵀ   (..., n_in)

The 'reference' kernel mode runs these functions; the fast mode (``tinynn.layers.Dense``) computes the same
products in single-threaded BLAS pieces on the cores (:mod:`tinynn.kernels.blas`) and the bias and activation in
one pass each way (:mod:`tinynn.kernels.bias_activation`).
"""

from __future__ import annotations

__all__ = ["dense_backward", "dense_forward"]


def dense_forward(x, W, b, act):
    """(z, y): z = x W + b (b None: no bias), y = act(z)."""
    z = x @ W
    if b is not None:
        if b.dtype == z.dtype:
            z += b  # in place on the fresh product (the same sums)
        else:
            z = z + b
    return z, act(z)


def dense_backward(x, W, dz, use_bias: bool, need_dx: bool = True):
    """(dx, dW, db) from dz = ∂L/∂z: dW = xᵀ dz, db = Σ_rows dz (None without bias), dx = dz Wᵀ (None if not
    ``need_dx``)."""
    x_rows = x.reshape(-1, x.shape[-1])
    dz_rows = dz.reshape(-1, W.shape[1])
    dW = x_rows.T @ dz_rows
    db = dz_rows.sum(axis=0) if use_bias else None
    dx = dz @ W.T if need_dx else None
    return dx, dW, db
