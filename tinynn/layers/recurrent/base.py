r"""What SimpleRNN, LSTM and GRU share: inputs, masks, states, dropout, outputs, and the input-side GEMMs.

Shapes: x (B, T, n_in), kernel W (n_in, G·u), recurrent_kernel U (u, G·u); G gates (1, 4, 3).

Forward (one call)::

    x̃ = x ⊙ d_k                              input dropout (training only; one mask per call, reused at
                                             every step; per gate k when recurrent_dropout > 0)
    xp_t = x̃_t W                             every step at once: one GEMM over the B·T rows (b_in is added
                                             in the loop)
    h_t (, c_t) = cell loop                  the cell's kernels (carries states over masked steps)
    y_t = s_t ⊙ h_t                          s_t = [some step ≤ t unmasked]: a masked step repeats the previous
                                             output, zeros before the first valid step (Keras). With
                                             zero_output_for_mask (Bidirectional) s_t = m_t.
    output = y (return_sequences) or y_{T-1};  return_state adds the final h (and c).

go_backwards runs the loop over x[:, ::-1] (and the mask reversed) and returns the outputs in that
processing order, as Keras does.

Backward, given δoutput (and δ of returned states)::

    δh_t (from outputs) = s_t ⊙ δy_t;   δh_{T-1} += δh_state;  δc_{T-1} = δc_state
    δxp, δU(, δb_rh), δh_0(, δc_0) = BPTT (kernels)
    δW_k = Σ_rows x̃_kᵀ δxp_k     δb_in = Σ_rows δxp     δx = Σ_k (δxp_k W_kᵀ) ⊙ d_k

States given as ``initial_state`` get their gradient δh_0 (δc_0): ``backward`` then returns ``(δx, [δh_0, …])``.
A stateful layer starts each call from the previous call's final states (no gradient flows across calls).

Kernels, by ``tinynn.config.kernel_mode()``: 'reference' runs the plain NumPy loops of
:mod:`tinynn.kernels.reference.recurrent` (read them first), NumPy products and :mod:`tinynn.kernels.reference.layout`;
'fast' runs the numba loops of :mod:`tinynn.kernels.recurrent` (batch rows split over cores), single-threaded
BLAS calls (:mod:`tinynn.kernels.blas`) and :mod:`tinynn.kernels.layout`. The backward of a forward call uses the
forward's mode; the fast kernels consume the forward's cache (one backward per forward), the reference ones do not.
"""

from __future__ import annotations

import numpy as np

from ... import activations, config, graph
from ... import initializers as _init
from ...kernels import blas, layout, warmup
from ...kernels import recurrent as fast_recurrent
from ...kernels.reference import layout as reference_layout
from ...kernels.reference import recurrent as reference_recurrent
from ...utils import make_rng
from ..arguments import positive_int, rate
from ..base import InputSpec, Layer, format_shape


class _Kernels:
    """The functions one kernel mode runs a recurrent layer with: layout copies, the input-side products
    (a @ b, a @ bᵀ, aᵀ @ b) and the cell loops (``loops``: a module with simple_rnn_* / lstm_* / gru_*)."""

    def __init__(self, reference: bool):
        self.reference = reference
        if reference:  # plain NumPy: tinynn.kernels.reference
            self.to_time_major, self.to_batch_major = reference_layout.to_time_major, reference_layout.to_batch_major
            self.matmul, self.matmul_nt, self.matmul_tn = np.matmul, lambda a, b: a @ b.T, lambda a, b: a.T @ b
            self.loops = reference_recurrent
        else:  # numba loops, single-threaded BLAS calls, batch pieces on every core
            self.to_time_major, self.to_batch_major = layout.to_time_major, layout.to_batch_major
            self.matmul, self.matmul_nt, self.matmul_tn = blas.matmul, blas.matmul_nt, blas.matmul_tn
            self.loops = fast_recurrent


_FAST, _REFERENCE = _Kernels(reference=False), _Kernels(reference=True)


def kernels_for_mode(layer=None, x=None, mask=None) -> _Kernels:
    """The recurrent kernels of the current ``tinynn.config.kernel_mode()``; given a layer and its input, the
    reference ones also while the fast ones are still compiling (:func:`tinynn.kernels.warmup.fast_ready`)."""
    if config.kernel_mode() == "reference" or (layer is not None and not warmup.fast_ready(layer, x, mask)):
        return _REFERENCE
    return _FAST


class RecurrentLayer(Layer):
    """Base class of SimpleRNN, LSTM and GRU (Keras's ``RNN`` with a built-in cell)."""

    supports_masking = True
    n_gates = 1
    n_states = 1
    _base_config_keys = (
        "units", "activation", "use_bias", "kernel_initializer", "recurrent_initializer", "bias_initializer",
        "dropout", "recurrent_dropout", "seed", "return_sequences", "return_state", "go_backwards", "stateful",
        "unroll", "zero_output_for_mask",
    )

    def __init__(
        self,
        units: int,
        activation="tanh",
        use_bias: bool = True,
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        bias_initializer="zeros",
        dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        seed: int | None = None,
        return_sequences: bool = False,
        return_state: bool = False,
        go_backwards: bool = False,
        stateful: bool = False,
        unroll: bool = False,
        zero_output_for_mask: bool = False,
        **kwargs,
    ):
        kwargs.pop("implementation", None)  # Keras picks the implementation itself; so do we
        kwargs.pop("use_cudnn", None)
        super().__init__(**kwargs)
        who = self.who
        self.units = positive_int(units, "units", who)
        self.activation = activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = _init.get(kernel_initializer)
        self.recurrent_initializer = _init.get(recurrent_initializer)
        self.bias_initializer = _init.get(bias_initializer)
        self.dropout = rate(dropout, "dropout", who)
        self.recurrent_dropout = rate(recurrent_dropout, "recurrent_dropout", who)
        self.seed = seed
        self.return_sequences = bool(return_sequences)
        self.return_state = bool(return_state)
        self.go_backwards = bool(go_backwards)
        self.stateful = bool(stateful)
        self.unroll = bool(unroll)  # accepted for compatibility: the result is identical either way
        self.zero_output_for_mask = bool(zero_output_for_mask)
        self.states: list[np.ndarray] | None = None
        self._rng = make_rng(seed)
        self._fixed_masks: tuple | None = None
        self._cache: dict | None = None

    # ------------------------------------------------------------------ subclass hooks
    def _build_cell(self, n_in: int) -> None:
        raise NotImplementedError

    def _input_bias(self) -> np.ndarray | None:
        """The bias added to x̃ W (LSTM/SimpleRNN: ``bias``; GRU: ``bias`` or its first row)."""
        return self.bias if self.use_bias else None

    def _loop(self, loops, xp, rm, mask_t, init):
        """Run the cell over all steps with ``loops`` (the fast or the reference module): returns
        ``(state sequences [hs, (cs)], cache)``."""
        raise NotImplementedError

    def _loop_backward(self, loops, cache, rm, mask_t, seqs, dseq, d_final):
        """BPTT: returns ``(δxp, [recurrent-side gradients in weight order], [δ initial states], δb_in)``."""
        raise NotImplementedError

    def _bias_gradient(self, db_in, recurrent_grads):
        return db_in

    # ------------------------------------------------------------------ building
    def build(self, input_shape):
        who = self.who
        if len(input_shape) != 3 or input_shape[-1] is None:
            raise ValueError(
                f"{who} expects inputs of shape (batch, timesteps, features) with known features, "
                f"got {format_shape(input_shape)}"
            )
        n_in = int(input_shape[-1])
        self._build_cell(n_in)
        axes = {-1: n_in}
        if self.stateful:
            batch = input_shape[0] if input_shape[0] is not None else self.batch_size
            if batch is None:
                raise ValueError(
                    f"{who} is stateful, which needs a fixed batch size: pass batch_size=... (or "
                    "batch_input_shape=...) to the layer, or start the model with Input(batch_shape=...)"
                )
            self.batch_size = int(batch)
            axes[0] = self.batch_size
            self.states = [np.zeros((self.batch_size, self.units), self.dtype) for _ in range(self.n_states)]
        self.input_spec = InputSpec(ndim=3, axes=axes)

    def compute_output_shape(self, input_shape):
        batch, steps = input_shape[0], input_shape[1]
        out = (batch, steps, self.units) if self.return_sequences else (batch, self.units)
        if self.return_state:
            return [out] + [(batch, self.units)] * self.n_states
        return out

    def compute_mask(self, x, mask):
        if isinstance(mask, (list, tuple)):
            mask = mask[0]
        out = mask if self.return_sequences else None  # as Keras: passed on unchanged (even with go_backwards)
        if self.return_state:
            return [out] + [None] * self.n_states
        return out

    def reset_state(self) -> None:
        """Zero the carried states of a stateful layer."""
        if self.states is not None:
            for s in self.states:
                s[...] = 0

    def reset_states(self) -> None:
        self.reset_state()

    # ------------------------------------------------------------------ dropout
    def set_dropout_masks(self, dropout_masks=None, recurrent_dropout_masks=None) -> None:
        """Use these dropout multipliers (0 or 1/(1-rate)) in every training call instead of random ones.

        A testing hook (inject the same masks into a Keras twin to compare). Each is a list of arrays:
        one (B, n_in) / (B, units) array, or one per gate when recurrent_dropout > 0 (Keras's
        implementation 1). ``set_dropout_masks()`` goes back to random masks.
        """
        if dropout_masks is None and recurrent_dropout_masks is None:
            self._fixed_masks = None
            return
        to_list = lambda m: None if m is None else [np.array(a, dtype=self.dtype) for a in m]  # noqa: E731
        self._fixed_masks = (to_list(dropout_masks), to_list(recurrent_dropout_masks))

    def _masks_per_call(self) -> tuple[int, int]:
        """How many input / recurrent dropout masks one call draws (0 = that dropout is off)."""
        per_gate = self.n_gates > 1 and self.recurrent_dropout != 0  # Keras switches to implementation 1
        n_masks = self.n_gates if per_gate else 1
        if self.n_gates == 1:  # SimpleRNN applies any rate > 0
            active_in, active_rec = self.dropout > 0, self.recurrent_dropout > 0
        else:  # LSTM / GRU cells apply a rate only if 0 < rate < 1
            active_in, active_rec = 0 < self.dropout < 1, 0 < self.recurrent_dropout < 1
        return (n_masks if active_in else 0), (n_masks if active_rec else 0)

    def _bernoulli(self, shape, rate: float) -> np.ndarray:
        if rate >= 1:
            return np.zeros(shape, self.dtype)
        keep = self._rng.random(shape) >= rate
        return keep.astype(self.dtype) / np.asarray(1.0 - rate, self.dtype)

    def _dropout_multipliers(self, batch: int, n_in: int, training: bool):
        if not training:
            return None, None
        n_in_masks, n_rec_masks = self._masks_per_call()
        if self._fixed_masks is not None:
            dm, rm = self._fixed_masks
            dm = dm if n_in_masks else None
            rm = rm if n_rec_masks else None
            self._check_fixed(dm, n_in_masks, (batch, n_in), "dropout")
            self._check_fixed(rm, n_rec_masks, (batch, self.units), "recurrent_dropout")
        else:
            dm = [self._bernoulli((batch, n_in), self.dropout) for _ in range(n_in_masks)] or None
            rm = [self._bernoulli((batch, self.units), self.recurrent_dropout) for _ in range(n_rec_masks)] or None
        return dm, (None if rm is None else np.stack(rm))

    def _check_fixed(self, masks, count, shape, what):
        if count and (masks is None or len(masks) != count or any(m.shape != shape for m in masks)):
            got = None if masks is None else [m.shape for m in masks]
            raise ValueError(
                f"{self.who}: set_dropout_masks expects {count} {what} mask(s) of shape {shape}, got {got}"
            )

    # ------------------------------------------------------------------ calling
    def __call__(self, x, training: bool = False, mask=None, initial_state=None):
        if graph.any_symbolic(x, initial_state):  # functional API (tinynn/graph.py)
            return graph.call_symbolic(self, x, training=training or None, mask=mask, initial_state=initial_state)
        return self.forward(self.accept_input(x), training=training, mask=mask, initial_state=initial_state)

    def prepare_input(self, x) -> np.ndarray:
        x = super().prepare_input(x)
        if x.ndim != 3:
            raise ValueError(f"{self.who} expects input of rank 3 (batch, timesteps, features), got shape {x.shape}")
        return x

    def check_input(self, x: np.ndarray) -> None:
        if self.stateful and x.shape[0] != self.batch_size:
            raise ValueError(
                f"{self.who} is stateful with batch size {self.batch_size}: every batch must have {self.batch_size} "
                f"samples, got input shape {x.shape}"
            )
        super().check_input(x)
        if x.shape[1] == 0:
            raise ValueError(f"{self.who} needs at least one timestep, got input shape {x.shape}")

    @staticmethod
    def _mask_array(mask) -> np.ndarray | None:
        """The (B, T) boolean mask (its shape and dtype were checked before forward: Layer.check_mask)."""
        if isinstance(mask, (list, tuple)):
            mask = mask[0]
        return None if mask is None else np.asarray(mask).astype(bool)

    def _check_initial_state(self, initial_state, batch: int):
        if initial_state is None:
            return None
        states = list(initial_state) if isinstance(initial_state, (list, tuple)) else [initial_state]
        who = self.who
        if len(states) != self.n_states:
            raise ValueError(f"{who} expects initial_state to be a list of {self.n_states} array(s), got {len(states)}")
        out = []
        for k, s in enumerate(states):
            try:
                s = np.asarray(s)
            except (ValueError, TypeError) as err:
                raise ValueError(f"{who}: initial_state[{k}] must be an array, got {type(s).__name__}") from err
            if s.dtype.kind not in "fiub":
                raise ValueError(f"{who}: initial_state[{k}] must be numeric, got dtype {s.dtype}")
            if s.shape != (batch, self.units):
                raise ValueError(
                    f"{who}: initial_state[{k}] must have shape {(batch, self.units)} (batch, units), got {s.shape}"
                )
            out.append(np.array(s, dtype=self.dtype))
        return out

    # ------------------------------------------------------------------ forward / backward
    def _project(self, k: _Kernels, xt: np.ndarray, dm, training: bool = True):
        """xp = x̃ W for all steps at once: (T, B, n_in) -> (T, B, G·u). The fast loops take x̃ and W instead
        (:class:`tinynn.kernels.recurrent.Projection`) when one x̃ serves every gate: they form each step's x̃_t W
        in the step's own rows, and keep no gates for a backward outside training."""
        T, B, n_in = xt.shape
        W = self.kernel
        Gu = W.shape[1]
        if not k.reference and (dm is None or len(dm) == 1):
            return fast_recurrent.Projection(xt if dm is None else xt * dm[0], W, keep_gates=training)
        if dm is None:
            xp = k.matmul(xt.reshape(T * B, n_in), W)
        elif len(dm) == 1:
            xp = k.matmul((xt * dm[0]).reshape(T * B, n_in), W)
        else:
            u = self.units
            xp = np.empty((T * B, Gu), self.dtype)
            for g, d in enumerate(dm):
                xp[:, g * u:(g + 1) * u] = k.matmul((xt * d).reshape(T * B, n_in), W[:, g * u:(g + 1) * u])
        return xp.reshape(T, B, Gu)  # the input bias is added inside the loop kernels

    def _project_backward(self, k: _Kernels, dxp: np.ndarray, xt: np.ndarray, dm):
        """δW = Σ_k x̃_kᵀ δxp_k and δx = Σ_k (δxp_k W_kᵀ) ⊙ d_k (time-major; None when ``input_gradient_needed``
        is False) from δxp."""
        T, B, n_in = xt.shape
        W = self.kernel
        Gu = W.shape[1]
        D = dxp.reshape(T * B, Gu)
        need_dx = self.input_gradient_needed
        if dm is None:
            dW = k.matmul_tn(xt.reshape(T * B, n_in), D)
            dxt = k.matmul_nt(D, W).reshape(T, B, n_in) if need_dx else None
        elif len(dm) == 1:
            dW = k.matmul_tn((xt * dm[0]).reshape(T * B, n_in), D)
            dxt = k.matmul_nt(D, W).reshape(T, B, n_in) * dm[0] if need_dx else None
        else:
            u = self.units
            dW = np.empty_like(W)
            dxt = np.zeros((T, B, n_in), self.dtype)
            for g, d in enumerate(dm):
                blk = slice(g * u, (g + 1) * u)
                dW[:, blk] = k.matmul_tn((xt * d).reshape(T * B, n_in), D[:, blk])
                if need_dx:
                    dxt += k.matmul_nt(D[:, blk], W[:, blk]).reshape(T, B, n_in) * d
            dxt = dxt if need_dx else None
        return dW, dxt

    def _output_mask(self, mask_t):
        if mask_t is None:
            return None
        return mask_t if self.zero_output_for_mask else np.logical_or.accumulate(mask_t, axis=0)

    def forward(self, x, training=False, mask=None, initial_state=None):
        B, T, n_in = x.shape
        mask = self._mask_array(mask)
        initial_state = self._check_initial_state(initial_state, B)
        k = kernels_for_mode(self, x, mask)
        mask_t = None if mask is None else np.ascontiguousarray(mask.T[::-1] if self.go_backwards else mask.T)
        dm, rm = self._dropout_multipliers(B, n_in, training)
        if not k.reference and not training:  # the fast loops read x as it is (no time-major copy)
            xt = None
            xp = fast_recurrent.Projection(x, self.kernel, keep_gates=False, batch_major=True,
                                           reverse=self.go_backwards, sequence=self.return_sequences)
        else:
            xt = k.to_time_major(x, reverse=self.go_backwards)  # (T, B, n_in) in processing order
            xp = self._project(k, xt, dm, training)
        if initial_state is not None:
            init = initial_state
        elif self.stateful:
            init = [s.copy() for s in self.states]
        else:
            init = [np.zeros((B, self.units), self.dtype) for _ in range(self.n_states)]
        seqs, cache = self._loop(k.loops, xp, rm, mask_t, init)
        out_mask = self._output_mask(mask_t)
        hs = seqs[0]
        if self.return_sequences:
            y = k.to_batch_major(hs[1:], mask=out_mask)
        else:
            y = hs[T].copy() if out_mask is None else hs[T] * out_mask[-1][:, None]
        finals = [s[T].copy() for s in seqs]
        if self.stateful:
            self.states = [f.copy() for f in finals]
        self._cache = {
            "kernels": k, "x": x, "xt": xt, "dm": dm, "rm": rm, "mask_t": mask_t, "out_mask": out_mask, "seqs": seqs,
            "loop": cache, "has_initial_state": initial_state is not None,
            "rerun": None if cache is not None else (xp._replace(keep_gates=True), init),
        }
        return [y, *finals] if self.return_state else y

    def backward(self, dy):
        """BPTT through the whole sequence (module docstring). ``dy`` was checked against the forward's outputs
        (one array, or a list [δoutput, δh_T(, δc_T)] with return_state, None for zero). The fast kernels
        consume the forward's cache (one backward per forward); the reference ones keep it."""
        c = self._cache
        k = c["kernels"]
        if not k.reference:
            self._cache = None
            self.consume_forward()
        d_out, d_states = (dy[0], dy[1:]) if self.return_state else (dy, [None] * self.n_states)
        seqs, out_mask = c["seqs"], c["out_mask"]
        B = seqs[0].shape[1]
        d_final = [np.zeros((B, self.units), self.dtype) if d is None else d.copy() for d in d_states]
        dseq = None
        if d_out is not None:
            if self.return_sequences:
                dseq = k.to_time_major(d_out, mask=out_mask)
            else:
                d_final[0] += d_out if out_mask is None else d_out * out_mask[-1][:, None]
        loop_cache = c["loop"]
        if loop_cache is None:  # an inference forward kept no gates: the same loop again, keeping them
            projection, init = c["rerun"]
            seqs, loop_cache = self._loop(k.loops, projection, c["rm"], c["mask_t"], init)
        dxp, rec_grads, d_init, db_in = self._loop_backward(k.loops, loop_cache, c["rm"], c["mask_t"], seqs, dseq,
                                                            d_final)
        xt = c["xt"] if c["xt"] is not None else k.to_time_major(c["x"], reverse=self.go_backwards)
        dW, dxt = self._project_backward(k, dxp, xt, c["dm"])
        dx = None if dxt is None else k.to_batch_major(dxt, reverse=self.go_backwards)
        grads = [dW, rec_grads[0]]
        if self.use_bias:
            grads.append(self._bias_gradient(db_in, rec_grads))
        self.gradients = grads
        if c["has_initial_state"]:
            return dx, d_init
        return dx


class GatedRecurrentLayer(RecurrentLayer):
    """What LSTM and GRU share: their constructor (RecurrentLayer's arguments and a recurrent activation σ for
    the gates); each adds one cell option of its own (``unit_forget_bias`` / ``reset_after``)."""

    _config_keys = RecurrentLayer._base_config_keys + ("recurrent_activation",)

    def __init__(self, units: int, activation="tanh", recurrent_activation="sigmoid", use_bias: bool = True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal", bias_initializer="zeros",
                 **kwargs):
        super().__init__(units, activation=activation, use_bias=use_bias, kernel_initializer=kernel_initializer,
                         recurrent_initializer=recurrent_initializer, bias_initializer=bias_initializer, **kwargs)
        self.recurrent_activation = activations.get(recurrent_activation)
