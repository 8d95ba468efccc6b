"""The layer protocol every tinynn layer follows, and the checks every layer gets from it.

A layer is a function ``y = f(x; θ)`` with a hand-written vector-Jacobian product::

    y  = layer.forward(x, training=False, mask=None)   # caches what backward needs
    dx = layer.backward(dy)                             # dL/dx; fills layer.gradients = [dL/dθ_i]

``layer.gradients`` is aligned with ``layer.weights`` / ``layer.get_weights()``, which list the
parameters in Keras's layout and order, so a Keras layer of the same config exchanges weights with
plain lists. ``layer(x)`` builds the layer on first use (from ``x.shape``), checks and casts ``x`` and
then calls ``forward``. Subclasses implement:

- ``build(input_shape)``: create parameters with ``self.add_weight(name, shape, initializer)``
  (``input_shape`` has ``None`` for the batch axis);
- ``compute_output_shape(input_shape)``;
- ``forward(x, training=False, mask=None)`` and ``backward(dy)``;
- optionally ``prepare_input(x)`` / ``check_input(x)`` (more input checks), ``compute_mask(x, mask)``
  (masks are boolean ``(batch, time)`` arrays, as in Keras), ``expected_mask_shape(x)`` and ``get_config()``.

Multi-array protocol: ``forward`` may return a list (``backward`` then takes a list of as many upstream
gradients, None meaning zero); a layer whose ``forward`` takes a list of inputs returns a list of dx;
recurrent layers given ``initial_state`` return ``(dx, [d_state, ...])``.

Checks every subclass gets without writing them (:meth:`Layer.__init_subclass__` wraps the ``forward``,
``backward``, ``backward_from_logits`` and ``check_input`` a class defines; see :class:`_ForwardRecord`):

- ``forward`` called directly (not through ``layer(x)``) converts and checks ``x`` as ``layer(x)`` does, and
  builds an unbuilt layer from ``x.shape``; a mask must have the shape ``expected_mask_shape(x)`` and a
  boolean-like dtype;
- ``backward`` (and ``backward_from_logits``) before any ``forward``, or after a forward whose cache the
  previous backward consumed, raises :class:`LayerCallError`; ``dy`` must match the last forward's output
  exactly: its shape (no broadcasting), a real numeric dtype (cast to the output's dtype), one upstream
  gradient per output of a multi-output layer (None for an output without gradient);
- the dx a ``backward`` returns must have the shape of the forward input (a guard on the layer itself).

Every error is a ``ValueError`` that starts with :attr:`Layer.who` (``Layer 'name' (Class)``), says what was
expected and what was given, and is raised before any numba kernel runs.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from .. import config as _config
from .. import graph as _graph
from .. import initializers
from ..utils import to_snake_case
from .arguments import positive_int_tuple

Shape = tuple  # a shape with None for unknown (batch) dimensions

_NAME_COUNTERS: dict[str, itertools.count] = defaultdict(lambda: itertools.count(0))


def unique_name(prefix: str) -> str:
    """'dense', 'dense_1', 'dense_2', ... as Keras names layers."""
    n = next(_NAME_COUNTERS[prefix])
    return prefix if n == 0 else f"{prefix}_{n}"


def reset_name_counters() -> None:
    _NAME_COUNTERS.clear()


class InputSpec:
    """What a built layer accepts: a rank (exact or minimum) and fixed sizes for some axes."""

    def __init__(self, ndim: int | None = None, min_ndim: int | None = None, axes: dict | None = None):
        self.ndim, self.min_ndim, self.axes = ndim, min_ndim, dict(axes or {})

    def describe(self) -> str:
        parts = []
        if self.ndim is not None:
            parts.append(f"rank {self.ndim}")
        if self.min_ndim is not None:
            parts.append(f"rank >= {self.min_ndim}")
        for axis, size in self.axes.items():
            parts.append(f"axis {axis} of size {size}")
        return ", ".join(parts) or "any array"


@contextlib.contextmanager
def input_gradient_needed(layers: Sequence[Layer], needed: bool) -> Iterator[None]:
    """Set ``layer.input_gradient_needed`` for these layers inside the block; the class default (True) after."""
    for layer in layers:
        layer.input_gradient_needed = needed
    try:
        yield
    finally:
        for layer in layers:
            del layer.input_gradient_needed


def format_shape(shape) -> str:
    return "(" + ", ".join("None" if s is None else str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


class LayerCallError(ValueError, RuntimeError):
    """``backward`` called before any ``forward``, or again after a forward whose cache it consumed."""


def batchless_shape(x) -> Shape | list:
    """``(None, *x.shape[1:])`` for an array, a list of those for a list of arrays (what ``build`` takes)."""
    if type(x) is np.ndarray:
        return (None, *x.shape[1:])
    if isinstance(x, (list, tuple)):
        return [batchless_shape(a) for a in x]
    return (None, *np.shape(x)[1:])


def _describe(value) -> str:
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape} and dtype {value.dtype}"
    return f"a {type(value).__name__}"


class _ForwardRecord:
    """What the last ``forward`` returned (shapes and dtypes, no data) and the shape(s) it was given.

    ``backward`` checks its upstream gradients against ``outputs`` and its dx against ``inputs``;
    ``consumed`` is set by a layer whose backward used up the forward's cache (see :meth:`Layer.consume_forward`).
    """

    __slots__ = ("outputs", "multi", "inputs", "consumed")

    def __init__(self, out, x):
        self.consumed = False
        if type(out) is np.ndarray and type(x) is np.ndarray:  # the common case
            self.multi, self.outputs, self.inputs = False, (out.shape, out.dtype), x.shape
            return
        self.multi = isinstance(out, (list, tuple))
        if self.multi:
            self.outputs = [None if o is None else (np.shape(o), np.asarray(o).dtype) for o in out]
        else:
            out = np.asarray(out)
            self.outputs = (out.shape, out.dtype)
        self.inputs = [np.shape(a) for a in x] if isinstance(x, (list, tuple)) else np.shape(x)

    def upstream(self, layer: Layer, dy):
        """dy as the layer's backward expects it: an array of the output's shape and dtype (None: zeros), or a
        list with one such array (or None) per output. Raises a ValueError naming the layer otherwise."""
        if not self.multi and type(dy) is np.ndarray and dy.shape == self.outputs[0] and dy.dtype == self.outputs[1]:
            return dy  # the common case, checked in three comparisons
        if not self.multi:
            if isinstance(dy, (list, tuple)):
                if len(dy) != 1:
                    raise ValueError(
                        f"{layer.who} returns one array of shape {self.outputs[0]}, so backward expects one upstream "
                        f"gradient, got a {type(dy).__name__} of {len(dy)}"
                    )
                dy = dy[0]
            return self._checked(layer, dy, self.outputs, "dy")
        n = len(self.outputs)
        if not isinstance(dy, (list, tuple)) or len(dy) != n:
            got = f"a {type(dy).__name__} of {len(dy)}" if isinstance(dy, (list, tuple)) else _describe(dy)
            raise ValueError(
                f"{layer.who} returns {n} arrays (shapes {[o[0] for o in self.outputs if o is not None]}), so "
                f"backward expects a list of {n} upstream gradients (None for zero), got {got}"
            )
        return [None if d is None else self._checked(layer, d, spec, f"dy[{k}]")
                for k, (d, spec) in enumerate(zip(dy, self.outputs))]  # fmt: skip

    @staticmethod
    def _checked(layer: Layer, dy, spec, what: str) -> np.ndarray:
        shape, dtype = spec
        if dy is None:
            return np.zeros(shape, dtype)
        if type(dy) is not np.ndarray:
            try:
                dy = np.asarray(dy)
            except (ValueError, TypeError) as err:
                raise ValueError(f"{layer.who}: backward expects {what} of shape {shape}, got {type(dy).__name__} "
                                 f"that is not an array ({err})") from err
        if dy.dtype.kind not in "fiu":
            raise ValueError(
                f"{layer.who}: backward expects {what} with a real numeric dtype (it is cast to {dtype}), got dtype "
                f"{dy.dtype}"
            )
        if dy.shape != shape:
            raise ValueError(
                f"{layer.who}: backward expects {what} of shape {shape} (the shape of the forward output; no "
                f"broadcasting), got {dy.shape}"
            )
        return dy if dy.dtype == dtype else dy.astype(dtype)

    def check_dx(self, layer: Layer, dx) -> None:
        """The dx a backward returned has the shape of the forward input (a guard on the layer's own code)."""
        if type(dx) is np.ndarray and dx.shape == self.inputs:
            return
        if isinstance(dx, tuple) and not isinstance(self.inputs, list):
            dx = dx[0]  # recurrent layers with initial_state return (dx, [d_states])
        if dx is None:
            return
        if isinstance(dx, (list, tuple)):
            expected = self.inputs if isinstance(self.inputs, list) else [self.inputs]
            pairs = list(zip(dx, expected)) if len(dx) == len(expected) else None
        else:
            pairs = [(dx, self.inputs)] if not isinstance(self.inputs, list) else None
        if pairs is None or any(d is not None and np.shape(d) != s for d, s in pairs):
            got = [None if d is None else np.shape(d) for d in dx] if isinstance(dx, (list, tuple)) else np.shape(dx)
            raise RuntimeError(
                f"{layer.who}: backward returned dx of shape {got} for inputs of shape {self.inputs} (a bug in the "
                "layer: dx must have the shape of the input)"
            )


def _checked_forward(fn):
    """``forward`` with the protocol's checks (module docstring); a nested call (super().forward) runs as is."""

    @functools.wraps(fn)
    def forward(self, x, training=False, mask=None, **kwargs):
        if self._in_forward:
            return fn(self, x, training=training, mask=mask, **kwargs)
        if x is not self._checked_input or x is None:  # a direct call: check as layer(x) does
            x = self.accept_input(x)
        self._checked_input = None
        if mask is not None:
            self.check_mask(mask, x)
        self._forward_record = None
        self._in_forward = True
        try:
            out = fn(self, x, training, mask, **kwargs)
        finally:
            self._in_forward = False
        self._forward_record = _ForwardRecord(out, x)
        return out

    forward._protocol_checked = True
    return forward


def _checked_backward(fn):
    """``backward`` / ``backward_from_logits`` with the protocol's checks; a nested call runs as is."""

    @functools.wraps(fn)
    def backward(self, dy, *args, **kwargs):
        if self._in_backward:
            return fn(self, dy, *args, **kwargs)
        record, dy = self._checked_upstream(dy)
        self._in_backward = True
        try:
            dx = fn(self, dy, *args, **kwargs)
        finally:
            self._in_backward = False
        record.check_dx(self, dx)
        return dx

    backward._protocol_checked = True
    return backward


def _marking_check_input(fn):
    """``check_input`` that, once the outermost call passed, marks ``x`` as checked for the next forward call."""

    @functools.wraps(fn)
    def check_input(self, x):
        if self._in_check:
            return fn(self, x)
        self._checked_input = None
        self._in_check = True
        try:
            fn(self, x)
        finally:
            self._in_check = False
        self._checked_input = x

    check_input._protocol_checked = True
    return check_input


_PROTOCOL_WRAPPERS = {
    "forward": _checked_forward,
    "backward": _checked_backward,
    "backward_from_logits": _checked_backward,
    "check_input": _marking_check_input,
}


class Layer:
    """Base class: weights, lazy building, input checks, the forward/backward contract."""

    supports_masking = False  # True: the layer passes its input mask on unchanged
    #: True for layers whose forward takes a list of arrays (merge layers): prepare_input converts each one,
    #: check_input checks each one, backward returns a list of dx.
    takes_list_input = False
    #: False while a model backpropagates into its first layer, whose input (the data) needs no gradient:
    #: layers that can skip computing dx (Dense, the convolutions, the recurrent layers) then return None.
    input_gradient_needed = True
    #: names of the constructor arguments that get_config() must record; subclasses list theirs.
    _config_keys: tuple[str, ...] = ()
    # the protocol's bookkeeping (see the module docstring): instance attributes once set
    _forward_record: _ForwardRecord | None = None
    _checked_input = None
    _in_forward = _in_backward = _in_check = False

    def __init_subclass__(cls, **kwargs):
        """Install the protocol's checks around the forward / backward / check_input a subclass defines."""
        super().__init_subclass__(**kwargs)
        for name, wrap in _PROTOCOL_WRAPPERS.items():
            fn = cls.__dict__.get(name)
            if callable(fn) and not getattr(fn, "_protocol_checked", False):
                setattr(cls, name, wrap(fn))

    @property
    def who(self) -> str:
        """The prefix of every error message about this layer: ``Layer 'name' (Class)``."""
        return f"Layer {self.name!r} ({type(self).__name__})"

    def __init__(
        self,
        *,
        name: str | None = None,
        trainable: bool = True,
        dtype: Any = None,
        input_shape: Shape | None = None,
        input_dim: int | None = None,
        batch_input_shape: Shape | None = None,
        batch_size: int | None = None,
        **kwargs: Any,
    ):
        cls = type(self).__name__
        if kwargs:
            raise ValueError(f"Unrecognized keyword arguments passed to {cls}: {kwargs}")
        self.name = name or unique_name(to_snake_case(cls))
        self.trainable = bool(trainable)
        self.dtype = _config.standardize_dtype(dtype, who=self.who)
        if input_dim is not None:
            input_shape = (int(input_dim),)
        if batch_input_shape is not None:
            batch_size, input_shape = batch_input_shape[0], tuple(batch_input_shape[1:])
        self.batch_size = batch_size
        self._input_shape_arg = None if input_shape is None else tuple(input_shape)
        self.built = False
        self.input_spec: InputSpec | None = None
        self.input_shape: Shape | None = None
        self._weight_names: list[str] = []
        self._weight_trainable: list[bool] = []
        self.gradients: list[np.ndarray] = []

    # ------------------------------------------------------------------ weights
    def add_weight(self, name: str, shape, initializer="glorot_uniform", trainable: bool = True) -> np.ndarray:
        """Create a parameter array, store it as ``self.<name>`` and register it in Keras's order."""
        shape = tuple(int(s) for s in shape)
        _config.reserve_weight_memory(shape, self.dtype, f"Layer {self.name!r} ({type(self).__name__}) weight {name!r}")
        init = initializers.get(initializer)
        value = np.ascontiguousarray(init(shape, self.dtype))
        setattr(self, name, value)
        self._weight_names.append(name)
        self._weight_trainable.append(bool(trainable))
        return value

    @property
    def weights(self) -> list[np.ndarray]:
        """The live parameter arrays (optimizers update them in place), in get_weights() order."""
        return [getattr(self, n) for n in self._weight_names]

    @property
    def weight_names(self) -> list[str]:
        return [f"{self.name}/{n}" for n in self._weight_names]

    @property
    def trainable_mask(self) -> list[bool]:
        """Per weight: is it trained? (all False when the layer is frozen)."""
        return [self.trainable and t for t in self._weight_trainable]

    @property
    def trainable_weights(self) -> list[np.ndarray]:
        return [w for w, t in zip(self.weights, self.trainable_mask) if t]

    @property
    def non_trainable_weights(self) -> list[np.ndarray]:
        return [w for w, t in zip(self.weights, self.trainable_mask) if not t]

    def get_weights(self) -> list[np.ndarray]:
        """Copies of the parameters, in Keras's layout and order."""
        return [np.array(w, copy=True) for w in self.weights]

    def set_weights(self, weights: list) -> None:
        """Load parameters (copied, cast to the layer dtype); shapes must match get_weights() exactly."""
        if not self.built:
            raise ValueError(
                f"{self.who} is not built yet: call it on data or give it input_shape= before set_weights()"
            )
        weights = list(weights)
        own = self.weights
        if len(weights) != len(own):
            raise ValueError(
                f"{self.who} expects {len(own)} weight arrays "
                f"{[w.shape for w in own]}, got {len(weights)}"
            )
        for target, value in zip(own, weights):
            value = np.asarray(value)
            if value.shape != target.shape:
                raise ValueError(
                    f"{self.who}: weight shape mismatch, expected "
                    f"{target.shape}, got {value.shape}"
                )
            target[...] = value.astype(target.dtype, copy=False)

    def count_params(self) -> int:
        if not self.built:
            raise ValueError(f"{self.who} is not built yet, so it has no parameter count")
        return int(sum(w.size for w in self.weights))

    # ------------------------------------------------------------------ building
    def build(self, input_shape: Shape) -> None:
        """Create weights for inputs of ``input_shape`` (batch axis None). Default: no weights."""

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return tuple(input_shape)

    def compute_mask(self, x: np.ndarray, mask: np.ndarray | None) -> np.ndarray | None:
        """The mask of the output given the input's mask (None: no mask)."""
        return mask if self.supports_masking else None

    def ensure_built(self, input_shape: Shape | list[Shape]) -> None:
        """Build once, for inputs of ``input_shape`` (a list of shapes for a layer that takes a list of inputs)."""
        if not self.built:
            one = lambda shape: tuple(None if s is None else int(s) for s in shape)  # noqa: E731
            several = isinstance(input_shape, list) and all(isinstance(s, (tuple, list)) for s in input_shape)
            input_shape = [one(s) for s in input_shape] if several and input_shape else one(input_shape)
            self.input_shape = input_shape
            self.build(input_shape)
            self.built = True

    def build_from_arg(self) -> bool:
        """Build from ``input_shape=`` given at construction; False if none was given."""
        if self._input_shape_arg is None:
            return False
        self.ensure_built((self.batch_size, *self._input_shape_arg))
        return True

    # ------------------------------------------------------------------ calling
    def __call__(self, x, training: bool = False, mask=None):
        if _graph.any_symbolic(x):  # functional API: record a node (tinynn/graph.py)
            return _graph.call_symbolic(self, x, training=training or None, mask=mask)
        return self.forward(self.accept_input(x), training=training, mask=mask)

    def accept_input(self, x):
        """``x`` as :meth:`forward` takes it: converted (:meth:`prepare_input`), the layer built on its shape if it
        was not yet, and checked (:meth:`check_input`); what ``__call__`` does before ``forward``."""
        x = self.prepare_input(x)
        if not self.built:
            self.ensure_built(batchless_shape(x))
        self.check_input(x)
        return x

    def prepare_input(self, x) -> np.ndarray | list[np.ndarray]:
        """Convert to an array of the layer's float dtype (a copy only when a cast is needed); a layer with
        ``takes_list_input`` gets a list of such arrays."""
        if isinstance(x, (list, tuple)) and self.takes_list_input:
            if len(x) == 0:
                raise ValueError(f"{self.who} expects a non-empty list of arrays, got an empty {type(x).__name__}")
            return [self._prepare_array(a, f"input {k}") for k, a in enumerate(x)]
        if isinstance(x, (list, tuple)):
            raise ValueError(f"{self.who} expects one array, got a {type(x).__name__}")
        if self.takes_list_input:
            raise ValueError(f"{self.who} expects a list of arrays, got {_describe(x)}")
        return self._prepare_array(x, "input")

    def _prepare_array(self, x, what: str) -> np.ndarray:
        try:
            x = np.asarray(x)
        except (ValueError, TypeError) as err:
            raise ValueError(f"{self.who} expects one numeric array as {what}, got {type(x).__name__} ({err})") from err
        if x.dtype.kind not in "fiub":
            raise ValueError(f"{self.who} expects numeric {what}, got dtype {x.dtype}")
        return x.astype(self.dtype, copy=False)

    def check_input(self, x) -> None:
        """Raise a ValueError naming the layer if ``x`` does not match the built input spec (a list of inputs:
        each against its own spec when ``input_spec`` is a list, else against the one spec)."""
        if isinstance(x, (list, tuple)):
            specs = self.input_spec if isinstance(self.input_spec, (list, tuple)) else [self.input_spec] * len(x)
            if len(specs) != len(x):
                raise ValueError(f"{self.who} expects {len(specs)} inputs, got {len(x)}")
            for k, (a, spec) in enumerate(zip(x, specs)):
                self._check_array(a, spec, f"input {k}")
            return
        self._check_array(x, self.input_spec, "input")

    def _check_array(self, x: np.ndarray, spec: InputSpec | None, what: str) -> None:
        if x.ndim >= 1 and x.shape[0] == 0:
            raise ValueError(f"{self.who} received an empty batch ({what} shape {x.shape})")
        if spec is None:
            return
        if spec.ndim is not None and x.ndim != spec.ndim:
            raise ValueError(f"{self.who} expects {what} of rank {spec.ndim}, got rank {x.ndim} with shape {x.shape}")
        if spec.min_ndim is not None and x.ndim < spec.min_ndim:
            raise ValueError(f"{self.who} expects {what} of rank >= {spec.min_ndim}, got shape {x.shape}")
        for axis, size in spec.axes.items():
            if size is not None and x.shape[axis] != size:
                expected = list(x.shape)
                expected[axis] = size
                raise ValueError(
                    f"{self.who} expects {what} with axis {axis} of size {size} (e.g. shape {tuple(expected)}), "
                    f"got shape {x.shape}"
                )

    def expected_mask_shape(self, x: np.ndarray) -> tuple | None:
        """The shape of a mask for input ``x``: ``x.shape[:-1]`` ((batch, timesteps) for sequences); None for a
        layer that ignores incoming masks (``supports_masking`` False: it drops them, as Keras does)."""
        if not self.supports_masking:
            return None
        return x.shape[:-1] if x.ndim >= 2 else x.shape

    def check_mask(self, mask, x) -> None:
        """Raise a ValueError naming the layer unless ``mask`` fits ``x`` (a list of masks: each entry, None
        allowed; a list of inputs: one mask or None per input). Numba kernels index with these masks."""
        if mask is None:
            return
        if isinstance(x, (list, tuple)):
            if not isinstance(mask, (list, tuple)) or len(mask) != len(x):
                raise ValueError(f"{self.who} takes {len(x)} inputs, so its mask must be a list of {len(x)} masks "
                                 f"(None for no mask), got {_describe(mask)}")
            for m, xi in zip(mask, x):
                self.check_mask(m, xi)
            return
        expected = self.expected_mask_shape(x)
        if expected is None:
            return
        for m in mask if isinstance(mask, (list, tuple)) else [mask]:
            if m is None:
                continue
            try:
                arr = np.asarray(m)
            except (ValueError, TypeError):
                arr = np.asarray(m, dtype=object)
            if arr.shape != tuple(expected) or arr.dtype.kind not in "biuf":
                raise ValueError(
                    f"{self.who} expects a boolean mask of shape {tuple(expected)} (batch, timesteps) for input "
                    f"shape {x.shape}, got shape {arr.shape} and dtype {arr.dtype}"
                )

    def forward(self, x: np.ndarray, training: bool = False, mask: np.ndarray | None = None) -> np.ndarray:
        raise NotImplementedError

    def backward(self, dy: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def consume_forward(self) -> None:
        """Called by a backward that used up its forward's cache: a further backward needs a new forward."""
        if self._forward_record is not None:
            self._forward_record.consumed = True

    def _checked_upstream(self, dy) -> tuple[_ForwardRecord, object]:
        """(the last forward's record, dy as the backward expects it): the protocol's checks before a backward (a
        forward to run it from, not yet consumed; dy of the output's shape and dtype)."""
        record = self._forward_record
        if record is None or record.consumed:
            raise LayerCallError(self._call_order_message(record))
        return record, record.upstream(self, dy)

    def _call_order_message(self, record: _ForwardRecord | None) -> str:
        if record is None:
            return (f"{self.who}: backward needs a forward call first (call the layer, layer(x), or its forward(x); "
                    "then backward(dy) with dy shaped like the output)")
        return (f"{self.who}: backward was already called after the last forward, whose cache it consumed; call the "
                "layer again first (or use tinynn.config.kernels('reference'), which allows repeated backward calls)")

    def zero_gradients(self) -> None:
        self.gradients = [np.zeros_like(w) for w in self.weights]

    # ------------------------------------------------------------------ config
    def get_config(self) -> dict:
        cfg = {"name": self.name, "trainable": self.trainable, "dtype": self.dtype}
        for key in self._config_keys:
            cfg[key] = serialize_value(getattr(self, key))
        return cfg

    @classmethod
    def from_config(cls, cfg: dict) -> Layer:
        return cls(**cfg)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name!r} built={self.built}>"

    # ------------------------------------------------------------------ functional API (tinynn/graph.py)
    @property
    def input(self):
        """The symbolic input of the layer's first call on symbolic tensors (a list for several)."""
        return _graph.layer_attribute(self, "input")

    @property
    def output(self):
        """The symbolic output of the layer's first call on symbolic tensors (a list for several)."""
        return _graph.layer_attribute(self, "output")


def serialize_value(value):
    """Make a constructor argument JSON-friendly (activations and initializers by name/config)."""
    from .. import activations

    if isinstance(value, activations.ActivationFunction):
        return activations.serialize(value)
    if isinstance(value, initializers.Initializer):
        return initializers.serialize(value)
    if isinstance(value, tuple):
        return list(value)
    return value


def normalize_tuple(value, n: int, name: str, who: str) -> tuple[int, ...]:
    """Keras's ``standardize_tuple`` (:func:`tinynn.layers.arguments.positive_int_tuple`)."""
    return positive_int_tuple(value, n, name, who)


Layer.check_input = _marking_check_input(Layer.check_input)
