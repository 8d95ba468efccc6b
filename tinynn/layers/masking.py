r"""Masking (Keras 3 ``keras.layers.Masking``): marks timesteps whose features all equal ``mask_value``.

For x (B, T, …, F)::

    m[b, t] = any_f(x[b, t, f] != mask_value)       (the output mask; an incoming mask is ignored)
    y = x ⊙ m[..., None]                             (masked steps become 0, not mask_value)
    δx = δy ⊙ m[..., None]
"""

from __future__ import annotations

import numpy as np

from .base import InputSpec, Layer


class Masking(Layer):
    """Skip timesteps equal to ``mask_value`` in downstream layers that support masking (RNNs, losses)."""

    supports_masking = True
    _config_keys = ("mask_value",)

    def __init__(self, mask_value: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.mask_value = mask_value
        self._keep = None

    def build(self, input_shape):
        self.input_spec = InputSpec(min_ndim=2)

    def _mask(self, x):
        return np.any(x != self.mask_value, axis=-1)

    def forward(self, x, training=False, mask=None):
        self._keep = self._mask(x)[..., None]
        return np.where(self._keep, x, np.zeros((), x.dtype))

    def expected_mask_shape(self, x):
        return None  # an incoming mask is ignored: the output mask comes from x, as in Keras

    def backward(self, dy):
        self.gradients = []
        return np.where(self._keep, dy, np.zeros((), self.dtype)).astype(self.dtype, copy=False)

    def compute_mask(self, x, mask):
        return self._mask(np.asarray(x))
