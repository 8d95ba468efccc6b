r"""The bias-and-activation tail of a layer in plain NumPy: ``y = act(z + b)`` and its gradient.

Symbols: z (..., F) the pre-activations without bias, b (F,) the bias (or None), ``act`` a tinynn activation
(:mod:`tinynn.activations`: calling it gives act(·), ``act.backward(z, y, dy)`` gives ``act'(z) ⊙ dy``)::

    forward:   z_b = z + b,   y = act(z_b)
    backward:  dz = act'(z_b) ⊙ dy,   db[f] = Σ over every other axis of dz[..., f]

The fast version (:mod:`tinynn.kernels.bias_activation`) fuses both passes into one numba loop for the
activations the kernels know, and keeps only y.
"""

from __future__ import annotations

import numpy as np

__all__ = ["bias_activation_backward", "bias_activation_forward"]


def bias_activation_forward(z, b, act):
    """(z_b, y): the logits z + b (z itself when b is None; never written in place) and y = act(z_b)."""
    z_b = z if b is None else z + b
    return z_b, act(z_b)


def bias_activation_backward(z_b, y, dy, act):
    """(dz, db): dz = act'(z_b) ⊙ dy and db = Σ dz over every axis but the last (summed in float64)."""
    dz = act.backward(z_b, y, dy)
    db = dz.reshape(-1, dz.shape[-1]).sum(axis=0, dtype=np.float64).astype(y.dtype)
    return dz, db
