"""The layer protocol every tinynn layer follows.

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
- optionally ``compute_mask(x, mask)`` (masks are boolean ``(batch, time)`` arrays, as in Keras) and
  ``get_config()`` (constructor arguments, for saving).

Errors for bad input are ``ValueError``s that name the layer, what was expected and what was given;
they are raised before any numba kernel runs.
"""

from __future__ import annotations

import contextlib
import itertools
from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from .. import config as _config
from .. import initializers
from ..utils import to_snake_case

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


class Layer:
    """Base class: weights, lazy building, input checks, the forward/backward contract."""

    supports_masking = False  # True: the layer passes its input mask on unchanged
    #: False while a model backpropagates into its first layer, whose input (the data) needs no gradient:
    #: layers that can skip computing dx (Dense, the convolutions, the recurrent layers) then return None.
    input_gradient_needed = True
    #: names of the constructor arguments that get_config() must record; subclasses list theirs.
    _config_keys: tuple[str, ...] = ()

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
        self.dtype = _config.standardize_dtype(dtype, who=f"{cls} {self.name!r}")
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
                f"Layer {self.name!r} ({type(self).__name__}) is not built yet: call it on data or give it "
                "input_shape= before set_weights()"
            )
        weights = list(weights)
        own = self.weights
        if len(weights) != len(own):
            raise ValueError(
                f"Layer {self.name!r} ({type(self).__name__}) expects {len(own)} weight arrays "
                f"{[w.shape for w in own]}, got {len(weights)}"
            )
        for target, value in zip(own, weights):
            value = np.asarray(value)
            if value.shape != target.shape:
                raise ValueError(
                    f"Layer {self.name!r} ({type(self).__name__}): weight shape mismatch, expected "
                    f"{target.shape}, got {value.shape}"
                )
            target[...] = value.astype(target.dtype, copy=False)

    def count_params(self) -> int:
        if not self.built:
            raise ValueError(f"Layer {self.name!r} is not built yet, so it has no parameter count")
        return int(sum(w.size for w in self.weights))

    # ------------------------------------------------------------------ building
    def build(self, input_shape: Shape) -> None:
        """Create weights for inputs of ``input_shape`` (batch axis None). Default: no weights."""

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return tuple(input_shape)

    def compute_mask(self, x: np.ndarray, mask: np.ndarray | None) -> np.ndarray | None:
        """The mask of the output given the input's mask (None: no mask)."""
        return mask if self.supports_masking else None

    def ensure_built(self, input_shape: Shape) -> None:
        if not self.built:
            input_shape = tuple(None if s is None else int(s) for s in input_shape)
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
        x = self.prepare_input(x)
        self.ensure_built((None, *x.shape[1:]))
        self.check_input(x)
        return self.forward(x, training=training, mask=mask)

    def prepare_input(self, x) -> np.ndarray:
        """Convert to an array of the layer's float dtype (a copy only when a cast is needed)."""
        if isinstance(x, (list, tuple)):
            raise ValueError(f"Layer {self.name!r} ({type(self).__name__}) expects one array, got a {type(x).__name__}")
        x = np.asarray(x)
        if x.dtype.kind not in "fiub":
            raise ValueError(
                f"Layer {self.name!r} ({type(self).__name__}) expects numeric input, got dtype {x.dtype}"
            )
        return x.astype(self.dtype, copy=False)

    def check_input(self, x: np.ndarray) -> None:
        """Raise a ValueError naming the layer if ``x`` does not match the built input spec."""
        spec = self.input_spec
        who = f"Layer {self.name!r} ({type(self).__name__})"
        if x.ndim >= 1 and x.shape[0] == 0:
            raise ValueError(f"{who} received an empty batch (input shape {x.shape})")
        if spec is None:
            return
        if spec.ndim is not None and x.ndim != spec.ndim:
            raise ValueError(f"{who} expects input of rank {spec.ndim}, got rank {x.ndim} with shape {x.shape}")
        if spec.min_ndim is not None and x.ndim < spec.min_ndim:
            raise ValueError(f"{who} expects input of rank >= {spec.min_ndim}, got shape {x.shape}")
        for axis, size in spec.axes.items():
            if size is not None and x.shape[axis] != size:
                expected = list(x.shape)
                expected[axis] = size
                raise ValueError(
                    f"{who} expects input with axis {axis} of size {size} (e.g. shape {tuple(expected)}), "
                    f"got shape {x.shape}"
                )

    def forward(self, x: np.ndarray, training: bool = False, mask: np.ndarray | None = None) -> np.ndarray:
        raise NotImplementedError

    def backward(self, dy: np.ndarray) -> np.ndarray:
        raise NotImplementedError

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
    """Keras's ``standardize_tuple``: an int or an n-sequence of positive ints."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        values = (int(value),) * n
    else:
        try:
            values = tuple(value)
        except TypeError as err:
            raise ValueError(f"{who}: {name} must be an int or a tuple of {n} ints, got {value!r}") from err
        if len(values) != n or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
            raise ValueError(f"{who}: {name} must be an int or a tuple of {n} ints, got {value!r}")
        values = tuple(int(v) for v in values)
    if any(v <= 0 for v in values):
        raise ValueError(f"{who}: {name} must be positive, got {value!r}")
    return values
