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

__all__ = ["bias_activation_backward", "bias_activation_forward", "derivative_from_output"]


def bias_activation_forward(z, b, act):
    """(z_b, y): the logits z + b (z itself when b is None; never written in place) and y = act(z_b)."""
    z_b = z if b is None else z + b
    return z_b, act(z_b)


def bias_activation_backward(z_b, y, dy, act):
    """(dz, db): dz = act'(z_b) ⊙ dy and db = Σ dz over every axis but the last (summed in float64)."""
    dz = act.backward(z_b, y, dy)
    db = dz.reshape(-1, dz.shape[-1]).sum(axis=0, dtype=np.float64).astype(y.dtype)
    return dz, db


#: act'(·) written from the activation's output a, for the activations the numba kernels fuse (by name)
_FROM_OUTPUT = {
    "linear": lambda a: np.ones_like(a),  # a = z: 1
    "tanh": lambda a: 1 - a * a,  # a = tanh z: 1 - a²
    "sigmoid": lambda a: a * (1 - a),  # a = σ(z): a (1 - a)
    "relu": lambda a: (a > 0).astype(a.dtype),  # a = max(z, 0): [a > 0]
    "hard_sigmoid": lambda a: np.where((a > 0) & (a < 1), a.dtype.type(1 / 6), a.dtype.type(0)),  # [0 < a < 1] / 6
}


def derivative_from_output(a, name: str):
    """act'(z) from a = act(z), for ``name`` one of linear, tanh, sigmoid, relu, hard_sigmoid."""
    if name not in _FROM_OUTPUT:
        raise ValueError(f"derivative_from_output: no formula from the output for activation {name!r}; known: "
                         f"{', '.join(_FROM_OUTPUT)}")
    return _FROM_OUTPUT[name](a)
