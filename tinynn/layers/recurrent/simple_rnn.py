r"""SimpleRNN: ``h_t = φ(x̃_t W + b + h̃_{t-1} U)`` (Keras 3 ``keras.layers.SimpleRNN``).

Weights (Keras order): kernel W (n_in, u), recurrent_kernel U (u, u), bias b (u,).

Forward per step (φ = activation, tanh by default; d, r the dropout multipliers; m_t the step mask)::

    z_t = (x_t ⊙ d) W + b + (h_{t-1} ⊙ r) U          a_t = φ(z_t)          h_t = m_t ? a_t : h_{t-1}

BPTT (t = T-1 … 0; δh_t collects the output gradient of step t and what step t+1 sends back)::

    δz_t = m_t ? φ'(z_t) ⊙ δh_t : 0
    δh_{t-1} = m_t ? (δz_t Uᵀ) ⊙ r : δh_t
    δU = Σ_t (h_{t-1} ⊙ r)ᵀ δz_t     δW = Σ_t (x_t ⊙ d)ᵀ δz_t     δb = Σ_t δz_t     δx_t = (δz_t Wᵀ) ⊙ d

Code, reference first: :func:`tinynn.kernels.reference.recurrent.simple_rnn_forward` / ``simple_rnn_backward``
(plain NumPy, the 'reference' kernel mode), then the numba twins :func:`tinynn.kernels.recurrent.simple_rnn_forward`
/ ``simple_rnn_backward`` (the default 'fast' mode); the shared input/output/mask/state handling:
:mod:`tinynn.layers.recurrent.base`.
"""

from __future__ import annotations

from .base import RecurrentLayer


class SimpleRNN(RecurrentLayer):
    """Fully connected RNN whose output is fed back as the next step's state."""

    n_gates = 1
    n_states = 1
    _config_keys = RecurrentLayer._base_config_keys

    def _build_cell(self, n_in):
        u = self.units
        self.add_weight("kernel", (n_in, u), self.kernel_initializer)
        self.add_weight("recurrent_kernel", (u, u), self.recurrent_initializer)
        if self.use_bias:
            self.add_weight("bias", (u,), self.bias_initializer)

    def _loop(self, loops, xp, rm, mask_t, init):
        hs, cache = loops.simple_rnn_forward(xp, self._input_bias(), self.recurrent_kernel, rm, mask_t, init[0],
                                         self.activation)
        return [hs], cache

    def _loop_backward(self, loops, cache, rm, mask_t, seqs, dseq, d_final):
        dX, dU, db, dh0 = loops.simple_rnn_backward(
            cache, self.recurrent_kernel, rm, mask_t, seqs[0], dseq, d_final[0], self.activation
        )
        return dX, [dU], [dh0], db
