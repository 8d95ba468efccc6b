r"""LSTM (Keras 3 ``keras.layers.LSTM``): gates in Keras order i, f, c, o.

Weights: kernel W (n_in, 4u), recurrent_kernel U (u, 4u), bias b (4u,); each is four blocks of u
columns [i | f | c | o]. ``unit_forget_bias=True`` initialises b to [0]*u + [1]*u + [0]*2u.

Forward per step (σ = recurrent_activation (sigmoid), φ = activation (tanh); the c gate is written g;
x̃_k = x ⊙ d_k and h̃_k = h ⊙ r_k are the dropout-masked inputs of gate k, one mask for all gates unless
recurrent_dropout > 0)::

    z_t = [x̃_k W_k + b_k + h̃_{k,t-1} U_k]_k
    i = σ(z_i)   f = σ(z_f)   g = φ(z_g)   o = σ(z_o)
    c'_t = f ⊙ c_{t-1} + i ⊙ g        h'_t = o ⊙ φ(c'_t)
    c_t = m_t ? c'_t : c_{t-1}         h_t = m_t ? h'_t : h_{t-1}

BPTT (t = T-1 … 0; δh_t, δc_t are the gradients reaching the carried states)::

    δo = δh_t ⊙ φ(c_t)                 δc̄ = δc_t + φ'(c_t) ⊙ δh_t ⊙ o
    δi = δc̄ ⊙ g    δg = δc̄ ⊙ i    δf = δc̄ ⊙ c_{t-1}
    δz = [σ'(z_i) δi, σ'(z_f) δf, φ'(z_g) δg, σ'(z_o) δo]      (0 where not m_t)
    δc_{t-1} = m_t ? δc̄ ⊙ f : δc_t
    δh_{t-1} = m_t ? Σ_k (δz_k U_kᵀ) ⊙ r_k : δh_t
    δU_k = Σ_t h̃_{k,t-1}ᵀ δz_k    δW_k = Σ_t x̃_kᵀ δz_k    δb = Σ_t δz    δx = Σ_k (δz_k W_kᵀ) ⊙ d_k

Code, reference first: :func:`tinynn.kernels.reference.recurrent.lstm_forward` / ``lstm_backward`` (plain NumPy,
the 'reference' kernel mode), then the numba twins :func:`tinynn.kernels.recurrent.lstm_forward` / ``lstm_backward``
(the default 'fast' mode); inputs, masks, states and the input-side GEMMs: :mod:`tinynn.layers.recurrent.base`.
"""

from __future__ import annotations

import numpy as np

from .base import GatedRecurrentLayer


class LSTM(GatedRecurrentLayer):
    """Long Short-Term Memory layer (Hochreiter 1997), Keras 3 semantics:
    ``LSTM(units, activation='tanh', recurrent_activation='sigmoid', use_bias=True, ..., unit_forget_bias=True)``."""

    n_gates = 4
    n_states = 2
    _config_keys = GatedRecurrentLayer._config_keys + ("unit_forget_bias",)

    def __init__(self, units: int, *args, unit_forget_bias: bool = True, **kwargs):
        super().__init__(units, *args, **kwargs)
        self.unit_forget_bias = bool(unit_forget_bias)

    def _build_cell(self, n_in):
        u = self.units
        self.add_weight("kernel", (n_in, 4 * u), self.kernel_initializer)
        self.add_weight("recurrent_kernel", (u, 4 * u), self.recurrent_initializer)
        if self.use_bias:
            bias = self.add_weight("bias", (4 * u,), self.bias_initializer)
            if self.unit_forget_bias:  # Keras: init((u,)) ++ ones(u) ++ init((2u,))
                init = self.bias_initializer
                bias[...] = np.concatenate([init((u,), self.dtype), np.ones(u), init((2 * u,), self.dtype)])

    def _loop(self, loops, xp, rm, mask_t, init):
        hs, cs, cache = loops.lstm_forward(
            xp, self._input_bias(), self.recurrent_kernel, rm, mask_t, init[0], init[1], self.activation,
            self.recurrent_activation,
        )
        return [hs, cs], cache

    def _loop_backward(self, loops, cache, rm, mask_t, seqs, dseq, d_final):
        dZ, dU, db, dh0, dc0 = loops.lstm_backward(
            cache, self.recurrent_kernel, rm, mask_t, seqs[0], seqs[1], dseq, d_final[0], d_final[1],
            self.activation, self.recurrent_activation,
        )
        return dZ, [dU], [dh0, dc0], db
