r"""GRU (Keras 3 ``keras.layers.GRU``): gates in Keras order z (update), r (reset), h (candidate).

Weights: kernel W (n_in, 3u), recurrent_kernel U (u, 3u), bias: (2, 3u) with ``reset_after=True`` (the
default; row 0 the input bias b_in, row 1 the recurrent bias b_rh), (3u,) with ``reset_after=False``.

Forward per step (σ = recurrent_activation, φ = activation; x̃_k, h̃_k dropout-masked per gate when
recurrent_dropout > 0; a = pre-activations)::

    xp = [x̃_k W_k]_k + b_in
    reset_after=True:   hz = [h̃_k U_k]_k + b_rh
                        z = σ(xp_z + hz_z)   r = σ(xp_r + hz_r)   ĥ = φ(xp_h + r ⊙ hz_h)
    reset_after=False:  z = σ(xp_z + h̃_z U_z)   r = σ(xp_r + h̃_r U_r)   ĥ = φ(xp_h + (r ⊙ h̃_h) U_h)
    h'_t = z ⊙ h_{t-1} + (1 - z) ⊙ ĥ            h_t = m_t ? h'_t : h_{t-1}

BPTT (t = T-1 … 0)::

    δa_z = σ'(a_z) ⊙ δh ⊙ (h_{t-1} - ĥ)      δa_h = φ'(a_h) ⊙ δh ⊙ (1 - z)
    reset_after=True:   δa_r = σ'(a_r) ⊙ δa_h ⊙ hz_h;   δhz = [δa_z, δa_r, δa_h ⊙ r]
                        δh_{t-1} = δh ⊙ z + Σ_k (δhz_k U_kᵀ) ⊙ r_k
                        δU_k = Σ_t h̃_kᵀ δhz_k    δb_rh = Σ_t δhz
    reset_after=False:  δ(r ⊙ h̃_h) = δa_h U_hᵀ;   δa_r = σ'(a_r) ⊙ δ(r ⊙ h̃_h) ⊙ h̃_h
                        δh_{t-1} = δh ⊙ z + δ(r ⊙ h̃_h) ⊙ r ⊙ r_h + Σ_{k=z,r} (δa_k U_kᵀ) ⊙ r_k
                        δU_{z,r} = Σ_t h̃_kᵀ δa_k    δU_h = Σ_t (r ⊙ h̃_h)ᵀ δa_h
    δa = 0 and δh_{t-1} = δh_t where not m_t;  δW_k = Σ_t x̃_kᵀ δa_k,  δb_in = Σ_t δa,  δx = Σ_k (δa_k W_kᵀ) ⊙ d_k

Code, reference first: :func:`tinynn.kernels.reference.recurrent.gru_forward` / ``gru_backward`` (plain NumPy,
the 'reference' kernel mode), then the numba twins :func:`tinynn.kernels.recurrent.gru_forward` / ``gru_backward``
(the default 'fast' mode); inputs, masks, states and the input-side GEMMs: :mod:`tinynn.layers.recurrent.base`.
"""

from __future__ import annotations

import numpy as np

from .base import GatedRecurrentLayer


class GRU(GatedRecurrentLayer):
    """Gated Recurrent Unit (Cho et al. 2014), Keras 3 semantics: ``GRU(units, activation='tanh',
    recurrent_activation='sigmoid', use_bias=True, ..., reset_after=True)``."""

    n_gates = 3
    n_states = 1
    _config_keys = GatedRecurrentLayer._config_keys + ("reset_after",)

    def __init__(self, units: int, *args, reset_after: bool = True, **kwargs):
        super().__init__(units, *args, **kwargs)
        self.reset_after = bool(reset_after)

    def _build_cell(self, n_in):
        u = self.units
        self.add_weight("kernel", (n_in, 3 * u), self.kernel_initializer)
        self.add_weight("recurrent_kernel", (u, 3 * u), self.recurrent_initializer)
        if self.use_bias:
            self.add_weight("bias", (2, 3 * u) if self.reset_after else (3 * u,), self.bias_initializer)

    def _input_bias(self):
        if not self.use_bias:
            return None
        return self.bias[0] if self.reset_after else self.bias

    def _recurrent_bias(self):
        if self.use_bias and self.reset_after:
            return self.bias[1]
        return np.zeros(3 * self.units, self.dtype)

    def _loop(self, loops, xp, rm, mask_t, init):
        hs, cache = loops.gru_forward(
            xp, self._input_bias(), self.recurrent_kernel, self._recurrent_bias(), rm, mask_t, init[0],
            self.activation,
            self.recurrent_activation, self.reset_after,
        )
        return [hs], cache

    def _loop_backward(self, loops, cache, rm, mask_t, seqs, dseq, d_final):
        dX, dU, db_in, db_rec, dh0 = loops.gru_backward(
            cache, self.recurrent_kernel, rm, mask_t, seqs[0], dseq, d_final[0], self.activation,
            self.recurrent_activation, self.reset_after,
        )
        return dX, [dU, db_rec], [dh0], db_in

    def _bias_gradient(self, db_in, recurrent_grads):
        if self.reset_after:
            return np.stack([db_in, recurrent_grads[1]])
        return db_in
