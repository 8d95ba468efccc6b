r"""Bidirectional wrapper (Keras 3 ``keras.layers.Bidirectional``).

Two copies of an RNN layer read the sequence in opposite directions: the forward layer as given, the
backward layer a copy of its config with ``go_backwards=True`` and fresh weights (or ``backward_layer``).
Weights (Keras order): the forward layer's, then the backward layer's.

Forward (y_f, y_b the two layers' outputs; with return_sequences y_b is flipped back to input time order)::

    concat: y = [y_f, y_b]   sum: y = y_f + y_b   ave: y = (y_f + y_b)/2   mul: y = y_f ⊙ y_b   None: [y_f, y_b]

Keras forces ``zero_output_for_mask = return_sequences`` on both layers, so with a mask and
return_sequences, masked steps output 0 (a plain RNN repeats its previous output instead).
return_state returns ``[y, *forward_states, *backward_states]`` (``[y_f, y_b, …]`` for merge_mode None);
``initial_state`` is split the same way (first half forward).

The two layers run concurrently on two cores when available (``tinynn.kernels.parallel``), except in the
'reference' kernel mode, which runs them one after the other (no threads).

Backward, given δy::

    concat: δy_f, δy_b = the two halves   sum: δy_f = δy_b = δy   ave: δy/2 each
    mul: δy_f = δy ⊙ y_b, δy_b = δy ⊙ y_f
    δy_b is flipped again with return_sequences;  δx = δx_f + δx_b
"""

from __future__ import annotations

import numpy as np

from ... import config, graph
from ...kernels.parallel import run_parallel
from ..arguments import one_of
from ..base import Layer, input_gradient_needed
from .base import RecurrentLayer

MERGE_MODES = ("concat", "sum", "mul", "ave", None)


def _clone(layer: RecurrentLayer, **overrides) -> RecurrentLayer:
    cfg = layer.get_config()
    if layer.batch_size is not None:
        cfg["batch_size"] = layer.batch_size  # a stateful layer's fixed batch size
    cfg.update(overrides)
    return type(layer).from_config(cfg)


def _strip(name: str, prefix: str) -> str:
    return name[len(prefix):] if name.startswith(prefix) else name


class Bidirectional(Layer):
    """Runs an RNN layer forwards and a copy of it backwards, and merges the two outputs."""

    supports_masking = True

    def __init__(self, layer, merge_mode="concat", weights=None, backward_layer=None, **kwargs):
        if not isinstance(layer, RecurrentLayer):
            raise ValueError(
                f"Bidirectional needs a tinynn recurrent layer (SimpleRNN, LSTM, GRU), got {type(layer).__name__}"
            )
        if backward_layer is not None and not isinstance(backward_layer, RecurrentLayer):
            raise ValueError(
                f"Bidirectional: backward_layer must be a tinynn recurrent layer, got {type(backward_layer).__name__}"
            )
        kwargs.setdefault("dtype", layer.dtype)
        if "input_shape" not in kwargs and "batch_input_shape" not in kwargs and layer._input_shape_arg is not None:
            kwargs["input_shape"] = layer._input_shape_arg
            kwargs.setdefault("batch_size", layer.batch_size)
        super().__init__(**kwargs)
        merge_mode = one_of(merge_mode, MERGE_MODES, "merge_mode", self.who, lower=False)
        self.forward_layer = _clone(layer, name=f"forward_{_strip(layer.name, 'forward_')}")
        self._custom_backward = backward_layer is not None
        if backward_layer is None:
            self.backward_layer = _clone(layer, name=f"backward_{_strip(layer.name, 'backward_')}", go_backwards=True)
        else:
            self.backward_layer = backward_layer
        fwd, bwd = self.forward_layer, self.backward_layer
        if fwd.go_backwards == bwd.go_backwards:
            raise ValueError(
                f"{self.who}: the forward and backward layers must have different go_backwards, got "
                f"{fwd.go_backwards} for both"
            )
        for attr in ("stateful", "return_sequences", "return_state"):
            if getattr(fwd, attr) != getattr(bwd, attr):
                raise ValueError(
                    f"{self.who}: forward and backward layers must agree on {attr}, got "
                    f"{getattr(fwd, attr)} and {getattr(bwd, attr)}"
                )
        for inner in (fwd, bwd):
            inner.zero_output_for_mask = inner.return_sequences  # Keras forces this
            if self.batch_size is not None and inner.batch_size is None:
                inner.batch_size = self.batch_size
        self.merge_mode = merge_mode
        self.stateful = fwd.stateful
        self.return_sequences = fwd.return_sequences
        self.return_state = fwd.return_state
        self._initial_weights = weights
        self._cache: dict | None = None

    # ------------------------------------------------------------------ weights (the inner layers')
    @property
    def weights(self) -> list[np.ndarray]:
        return self.forward_layer.weights + self.backward_layer.weights

    @property
    def weight_names(self) -> list[str]:
        return [f"{self.name}/{n}" for n in self.forward_layer.weight_names + self.backward_layer.weight_names]

    @property
    def trainable_mask(self) -> list[bool]:
        return [self.trainable and t for t in self.forward_layer.trainable_mask + self.backward_layer.trainable_mask]

    @property
    def states(self):
        if self.forward_layer.states is not None and self.backward_layer.states is not None:
            return self.forward_layer.states + self.backward_layer.states
        return None

    def reset_state(self) -> None:
        if not self.stateful:
            raise AttributeError("Layer must be stateful.")
        self.forward_layer.reset_state()
        self.backward_layer.reset_state()

    def reset_states(self) -> None:
        self.reset_state()

    # ------------------------------------------------------------------ building
    def build(self, input_shape):
        self.forward_layer.ensure_built(input_shape)
        self.backward_layer.ensure_built(input_shape)
        self.input_spec = self.forward_layer.input_spec
        if self._initial_weights is not None:
            self.built = True
            self.set_weights(self._initial_weights)
            self._initial_weights = None

    def compute_output_shape(self, input_shape):
        out = self.forward_layer.compute_output_shape(input_shape)
        states = []
        if self.return_state:
            out, states = out[0], list(out[1:])
        if self.merge_mode == "concat":
            out = (*out[:-1], out[-1] * 2)
        outs = [out, out] if self.merge_mode is None else [out]
        if self.return_state:
            return outs + states + states
        return outs if self.merge_mode is None else out

    def compute_mask(self, x, mask):
        if isinstance(mask, (list, tuple)):
            mask = mask[0]
        if self.return_sequences:
            out = [mask, mask] if self.merge_mode is None else mask
        else:
            out = [None, None] if self.merge_mode is None else None
        if self.return_state:
            n = 2 * self.forward_layer.n_states
            return (out if isinstance(out, list) else [out]) + [None] * n
        return out

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
        super().check_input(x)
        if x.shape[1] == 0:
            raise ValueError(f"{self.who} needs at least one timestep, got input shape {x.shape}")

    def _split_initial_state(self, initial_state):
        """(forward layer's states, backward layer's states); each layer checks its own shapes."""
        if initial_state is None:
            return None, None
        states = list(initial_state) if isinstance(initial_state, (list, tuple)) else [initial_state]
        n_f, n = self.forward_layer.n_states, self.forward_layer.n_states + self.backward_layer.n_states
        if len(states) != n:
            raise ValueError(
                f"{self.who} expects initial_state to be a list of {n} arrays (forward states then backward states), "
                f"got {len(states)}"
            )
        return states[:n_f], states[n_f:]

    def forward(self, x, training=False, mask=None, initial_state=None):
        fwd, bwd = self.forward_layer, self.backward_layer
        f_state, b_state = self._split_initial_state(initial_state)
        reference = config.kernel_mode() == "reference"
        run_f = lambda: fwd(x, training=training, mask=mask, initial_state=f_state)  # noqa: E731
        run_b = lambda: bwd(x, training=training, mask=mask, initial_state=b_state)  # noqa: E731
        # fast mode: two cores when available (the kernels release the GIL), as TF runs both loops
        yf, yb = (run_f(), run_b()) if reference else run_parallel(run_f, run_b)
        states = []
        if self.return_state:
            states = list(yf[1:]) + list(yb[1:])
            yf, yb = yf[0], yb[0]
        if self.return_sequences:
            yb = yb[:, ::-1]
        self._cache = {"yf": yf, "yb": yb, "has_initial_state": initial_state is not None, "reference": reference}
        if self.merge_mode == "concat":
            out = [np.concatenate([yf, yb], axis=-1)]
        elif self.merge_mode == "sum":
            out = [yf + yb]
        elif self.merge_mode == "ave":
            out = [(yf + yb) / np.asarray(2, self.dtype)]
        elif self.merge_mode == "mul":
            out = [yf * yb]
        else:
            out = [yf, np.ascontiguousarray(yb)]
        if self.return_state:
            return out + states
        return out[0] if self.merge_mode is not None else out

    def backward(self, dy):
        """``dy`` was checked against the forward's outputs: one array, or a list with merge_mode=None or
        return_state (None for an output without gradient)."""
        c = self._cache
        if not c["reference"]:
            self._cache = None
            self.consume_forward()
        fwd, bwd = self.forward_layer, self.backward_layer
        dys = list(dy) if isinstance(dy, list) else [dy]
        n_out = 2 if self.merge_mode is None else 1
        yf, yb = c["yf"], c["yb"]
        zeros = lambda: np.zeros_like(yf)  # noqa: E731
        if self.merge_mode is None:
            d_yf, d_yb = (zeros() if d is None else d for d in dys[:2])
        else:
            d = zeros() if dys[0] is None else dys[0]
            if self.merge_mode == "concat":
                u = yf.shape[-1]
                d_yf, d_yb = d[..., :u], d[..., u:]
            elif self.merge_mode == "sum":
                d_yf, d_yb = d, d
            elif self.merge_mode == "ave":
                d_yf = d_yb = d / np.asarray(2, self.dtype)
            else:  # mul
                d_yf, d_yb = d * yb, d * yf
        if self.return_sequences:
            d_yb = d_yb[:, ::-1]
        d_states = dys[n_out:]
        if self.return_state:
            f_dy = [d_yf, *d_states[:fwd.n_states]]
            b_dy = [d_yb, *d_states[fwd.n_states:]]
        else:
            f_dy, b_dy = d_yf, d_yb
        with input_gradient_needed([fwd, bwd], self.input_gradient_needed):
            if c["reference"]:
                rf, rb = fwd.backward(f_dy), bwd.backward(b_dy)
            else:
                rf, rb = run_parallel(lambda: fwd.backward(f_dy), lambda: bwd.backward(b_dy))
        self.gradients = list(fwd.gradients) + list(bwd.gradients)
        if c["has_initial_state"]:
            (dxf, dsf), (dxb, dsb) = rf, rb
            return (None if dxf is None else dxf + dxb), list(dsf) + list(dsb)
        return None if rf is None else rf + rb

    # ------------------------------------------------------------------ config
    def get_config(self) -> dict:
        cfg = {"name": self.name, "trainable": self.trainable, "dtype": self.dtype, "merge_mode": self.merge_mode}
        cfg["layer"] = {"class_name": type(self.forward_layer).__name__, "config": self.forward_layer.get_config()}
        cfg["backward_layer"] = {
            "class_name": type(self.backward_layer).__name__, "config": self.backward_layer.get_config()
        }
        return cfg

    @classmethod
    def from_config(cls, cfg: dict) -> Bidirectional:
        from .. import registry

        cfg = dict(cfg)
        classes = registry()
        make = lambda spec: classes[spec["class_name"]].from_config(dict(spec["config"]))  # noqa: E731
        layer = make(cfg.pop("layer"))
        backward = cfg.pop("backward_layer", None)
        return cls(layer, backward_layer=None if backward is None else make(backward), **cfg)
