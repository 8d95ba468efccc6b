"""Sequential: a stack of layers trained by hand-written backpropagation, with Keras's training API.

One training step on a batch (x, y)::

    ŷ, m = forward(x, training=True)            # each layer: x ← layer(x, mask=m); m ← layer.compute_mask
    L, ∂L/∂ŷ = loss(y, ŷ, mask=m)               # from the logits when the last layer is sigmoid/softmax
    for layer in reversed(layers): dy ← layer.backward(dy)
    optimizer.apply([∂L/∂θ], [θ])               # θ updated in place

Everything Keras reports is reproduced: the epoch loss is ``Σ_b L_b n_b / N`` over batches computed
with the weights before each update; validation runs after the epoch in inference mode.
"""

from __future__ import annotations

import warnings

import numpy as np

from . import callbacks as cbks
from . import data as data_utils
from . import losses as losses_mod
from . import metrics as metrics_mod
from . import optimizers as optimizers_mod
from . import saving
from .layers import Layer, deserialize, serialize
from .layers.base import input_gradient_needed
from .layers.core import InputLayer
from .utils import global_rng


class Sequential:
    """A linear stack of layers, as ``keras.Sequential``.

    >>> model = Sequential([layers.Input(shape=(64,)), layers.Dense(32, activation="relu"), layers.Dense(10)])
    """

    def __init__(self, layers: list | None = None, name: str | None = None):
        self.name = name or "sequential"
        self.layers: list[Layer] = []
        self.input_layer: InputLayer | None = None
        self.optimizer = None
        self.loss = None
        self.compiled_metrics: list = []
        self._metric_names: list[str] = []
        self.stop_training = False
        self.history = None
        for layer in layers or []:
            self.add(layer)

    # ------------------------------------------------------------------ structure
    def add(self, layer: Layer) -> None:
        if isinstance(layer, InputLayer):
            if self.layers or self.input_layer is not None:
                raise ValueError("Sequential: an Input can only be the first element of the model")
            self.input_layer = layer
            return
        if not isinstance(layer, Layer):
            raise ValueError(f"Sequential.add expects a tinynn layer, got {type(layer).__name__}: {layer!r}")
        if any(existing is layer for existing in self.layers):
            raise ValueError(f"Sequential: layer {layer.name!r} was already added")
        if not self.layers and self.input_layer is None and layer._input_shape_arg is not None:
            self.input_layer = InputLayer(shape=layer._input_shape_arg, batch_size=layer.batch_size)
        self.layers.append(layer)
        if self.input_layer is not None:
            self._build_from(self.input_layer.shape)

    def pop(self) -> Layer:
        if not self.layers:
            raise ValueError("Sequential.pop: the model has no layers")
        return self.layers.pop()

    def _build_from(self, input_shape: tuple) -> None:
        shape = tuple(input_shape)
        for layer in self.layers:
            layer.ensure_built(shape)
            shape = tuple(layer.compute_output_shape(shape))

    def build(self, input_shape: tuple | None = None) -> None:
        """Build every layer for inputs of ``input_shape`` (batch axis included, may be None)."""
        if input_shape is None:
            if self.input_layer is None:
                raise ValueError("Sequential.build: no input shape; pass input_shape or start with layers.Input")
            input_shape = self.input_layer.shape
        self._build_from(input_shape)

    @property
    def built(self) -> bool:
        return bool(self.layers) and all(layer.built for layer in self.layers)

    def output_shapes(self) -> list[tuple | None]:
        """Each layer's output shape (None where the model is not built yet)."""
        if self.input_layer is None and not self.built:
            return [None] * len(self.layers)
        shape = self.input_layer.shape if self.input_layer is not None else (None, *self.layers[0].input_shape[1:])
        shapes = []
        for layer in self.layers:
            shape = tuple(layer.compute_output_shape(shape)) if layer.built else None
            shapes.append(shape)
            if shape is None:
                break
        return shapes + [None] * (len(self.layers) - len(shapes))

    # ------------------------------------------------------------------ weights
    @property
    def weights(self) -> list[np.ndarray]:
        return [w for layer in self.layers for w in layer.weights]

    @property
    def trainable_weights(self) -> list[np.ndarray]:
        return [w for layer in self.layers for w, t in zip(layer.weights, layer.trainable_mask) if t]

    @property
    def trainable_weight_names(self) -> list[str]:
        return [n for layer in self.layers for n, t in zip(layer.weight_names, layer.trainable_mask) if t]

    def get_weights(self) -> list[np.ndarray]:
        """Copies of every weight, layer by layer in Keras's order (exchangeable with a Keras model)."""
        return [w for layer in self.layers for w in layer.get_weights()]

    def set_weights(self, weights: list) -> None:
        self._require_built("set_weights")
        weights = list(weights)
        expected = sum(len(layer.weights) for layer in self.layers)
        if len(weights) != expected:
            raise ValueError(
                f"Sequential {self.name!r}: set_weights expects {expected} arrays "
                f"{[w.shape for w in self.weights]}, got {len(weights)}"
            )
        i = 0
        for layer in self.layers:
            n = len(layer.weights)
            layer.set_weights(weights[i : i + n])
            i += n

    def count_params(self) -> int:
        self._require_built("count_params")
        return sum(layer.count_params() for layer in self.layers)

    def _require_built(self, what: str) -> None:
        if not self.built:
            raise ValueError(
                f"Sequential {self.name!r} is not built, so {what}() has nothing to work on: give the first layer "
                "input_shape=, start with layers.Input(shape=...), call model.build(shape) or call it on data"
            )

    # ------------------------------------------------------------------ forward / backward
    def __call__(self, x, training: bool = False) -> np.ndarray:
        return self.forward(x, training=training)[0]

    def forward(self, x, training: bool = False):
        """Run every layer; returns ``(ŷ, mask)`` where mask is the output mask (or None)."""
        if not self.layers:
            raise ValueError(f"Sequential {self.name!r} has no layers")
        x = self._check_model_input(x)
        if not self.built:
            self._build_from((None, *np.shape(x)[1:]))
        mask = None
        for layer in self.layers:
            out = layer(x, training=training, mask=mask)
            mask = layer.compute_mask(x, mask)
            x = out
        return x, mask

    def _check_model_input(self, x):
        x = data_utils.as_array(x, f"Sequential {self.name!r} input")
        if x.shape[0] == 0:
            raise ValueError(f"Sequential {self.name!r}: received an empty batch (input shape {x.shape})")
        if self.input_layer is not None:
            expected = self.input_layer.shape[1:]
            if x.ndim != len(expected) + 1 or any(e is not None and e != a for e, a in zip(expected, x.shape[1:])):
                raise ValueError(
                    f"Sequential {self.name!r} expects input of shape (batch, {', '.join(map(str, expected))}) "
                    f"-> (None, *{expected}), got {x.shape}"
                )
        return x

    def _uses_logits(self) -> bool:
        """Keras's logits shortcut: CE losses read the logits of a final sigmoid/softmax layer."""
        last = self.layers[-1]
        act = getattr(last, "activation", None)
        return (
            self.loss is not None
            and self.loss.logits_activation is not None
            and not getattr(self.loss, "from_logits", False)
            and getattr(act, "name", None) == self.loss.logits_activation
            and hasattr(last, "backward_from_logits")
        )

    def backward(self, dy: np.ndarray, from_logits: bool = False) -> None:
        """Backpropagate ``dy`` = ∂L/∂ŷ (or ∂L/∂z of the last layer when ``from_logits``)."""
        reached = len(self.layers)
        with input_gradient_needed(self.layers[:1], False):  # the data needs no gradient
            for k, layer in enumerate(reversed(self.layers)):
                dy = layer.backward_from_logits(dy) if k == 0 and from_logits else layer.backward(dy)
                reached = len(self.layers) - 1 - k
                if dy is None:  # e.g. Embedding: integer inputs have no gradient
                    break
        for layer in self.layers[:reached]:
            layer.zero_gradients()

    def compute_loss_and_gradients(self, x, y, sample_weight=None, training: bool = True, want_gradients=True):
        """Forward, loss and (unless ``want_gradients=False``) backward on one batch.

        Returns ``(L, [∂L/∂θ for each trainable θ])``; the predictions and output mask of the batch are
        kept for the metrics.
        """
        self._require_compiled()
        y_pred, mask = self.forward(x, training=training)
        loss_value, grad = self._loss_and_grad(y, y_pred, mask, sample_weight)
        self._last_pred, self._last_mask = y_pred, mask
        if not want_gradients:
            return loss_value, None
        self.backward(grad, from_logits=self._uses_logits())
        grads = [g for layer in self.layers for g, t in zip(layer.gradients, layer.trainable_mask) if t]
        return loss_value, grads

    def _loss_and_grad(self, y_true, y_pred, mask, sample_weight):
        loss = self.loss
        y_true_arr, pred = loss.prepare(y_true, y_pred)
        if self._uses_logits():
            _, logits = loss.prepare(y_true, self.layers[-1].logits)
            values, dv = loss.values_and_grad_from_logits(y_true_arr, logits)
        else:
            values, dv = loss.values_and_grad(y_true_arr, pred)
        value, dvalues = loss.reduce(values, sample_weight, mask)
        grad = (dvalues[..., None] * dv).reshape(y_pred.shape).astype(y_pred.dtype, copy=False)
        return float(value), grad

    # ------------------------------------------------------------------ compile / train
    def compile(self, optimizer="rmsprop", loss=None, metrics=None, **kwargs) -> None:
        """Choose the optimizer, loss and metrics, by name or object, as ``keras.Model.compile``."""
        from . import optimizers

        ignored = {k: v for k, v in kwargs.items() if k not in ("loss_weights", "weighted_metrics", "run_eagerly",
                                                                 "steps_per_execution", "jit_compile")}
        if ignored:
            raise ValueError(f"Sequential.compile: unrecognized arguments {sorted(ignored)}")
        if loss is None:
            raise ValueError("Sequential.compile: a loss is required, e.g. loss='mse'")
        self.optimizer = optimizers.get(optimizer)
        self.loss = losses_mod.get(loss)
        if metrics is None:
            metrics = []
        if isinstance(metrics, (str, metrics_mod.Metric)):
            metrics = [metrics]
        self._metric_specs = list(metrics)
        self.compiled_metrics = []

    def _require_compiled(self) -> None:
        if self.loss is None:
            raise ValueError(f"Sequential {self.name!r} must be compiled first: model.compile(optimizer, loss)")

    def _metrics_for(self, y_true, y_pred) -> list:
        if not self.compiled_metrics and self._metric_specs:
            self.compiled_metrics = [
                metrics_mod.get(m, np.shape(y_true), np.shape(y_pred)) for m in self._metric_specs
            ]
        return self.compiled_metrics

    def reset_metrics(self) -> None:
        for m in self.compiled_metrics:
            m.reset_state()

    def _update_metrics(self, y_true, y_pred, mask, sample_weight) -> None:
        for m in self._metrics_for(y_true, y_pred):
            m.update_state(y_true, y_pred, sample_weight=sample_weight, mask=mask)

    def _metric_logs(self, prefix: str = "") -> dict:
        return {prefix + m.name: m.result() for m in self.compiled_metrics}

    def train_on_batch(self, x, y, sample_weight=None, return_dict: bool = False):
        """One gradient step on one batch; returns the batch loss (and metrics)."""
        self._require_compiled()
        self.reset_metrics()
        loss_value = self._train_step(x, y, sample_weight)
        logs = {"loss": loss_value, **self._metric_logs()}
        return logs if return_dict else (loss_value if len(logs) == 1 else list(logs.values()))

    def _train_step(self, x, y, sample_weight) -> float:
        loss_value, grads = self.compute_loss_and_gradients(x, y, sample_weight, training=True)
        self._update_metrics(y, self._last_pred, self._last_mask, sample_weight)
        self.optimizer.apply(grads, self.trainable_weights)
        return loss_value

    def test_on_batch(self, x, y, sample_weight=None, return_dict: bool = False):
        self._require_compiled()
        self.reset_metrics()
        loss_value, _ = self.compute_loss_and_gradients(x, y, sample_weight, training=False, want_gradients=False)
        self._update_metrics(y, self._last_pred, self._last_mask, sample_weight)
        logs = {"loss": loss_value, **self._metric_logs()}
        return logs if return_dict else (loss_value if len(logs) == 1 else list(logs.values()))

    def fit(
        self,
        x=None,
        y=None,
        batch_size: int | None = None,
        epochs: int = 1,
        verbose="auto",
        callbacks: list | None = None,
        validation_split: float = 0.0,
        validation_data=None,
        shuffle: bool = True,
        class_weight=None,
        sample_weight=None,
        initial_epoch: int = 0,
        steps_per_epoch: int | None = None,
        validation_steps: int | None = None,
        validation_batch_size: int | None = None,
        validation_freq: int = 1,
    ) -> cbks.History:
        """Train for ``epochs`` epochs; returns a History whose ``.history`` keys match Keras's."""
        self._require_compiled()
        if class_weight is not None:
            raise ValueError("Sequential.fit: class_weight is not supported by tinynn; pass sample_weight instead")
        verbose = 1 if verbose == "auto" else int(verbose)
        batch_size = self._check_batch_size(batch_size)
        train, val = self._training_sources(x, y, sample_weight, batch_size, steps_per_epoch,
                                            validation_split, validation_data, validation_steps, shuffle)
        steps = steps_per_epoch if steps_per_epoch is not None else getattr(train, "num_batches", None)
        history = cbks.History()
        callback_list = list(callbacks or [])
        if verbose and not any(isinstance(c, cbks.ProgbarLogger) for c in callback_list):
            callback_list.append(cbks.ProgbarLogger(verbose))
        cb = cbks.CallbackList([history, *callback_list], self, {"epochs": epochs, "steps": steps, "verbose": verbose})
        self.stop_training = False
        cb.on_train_begin()
        for epoch in range(initial_epoch, epochs):
            cb.on_epoch_begin(epoch)
            self.reset_metrics()
            total, count, step = 0.0, 0, 0
            for step, (xb, yb, swb) in enumerate(train.epoch(), start=1):
                loss_value = self._train_step(xb, yb, swb)
                n = len(xb)
                total, count = total + loss_value * n, count + n
                cb.on_train_batch_end(step - 1, {"loss": total / count, **self._metric_logs()})
            if count == 0:
                raise ValueError("Sequential.fit: the training data produced no batches")
            logs = {"loss": total / count, **self._metric_logs()}
            if val is not None and (epoch + 1 - initial_epoch) % validation_freq == 0:
                val_logs = self._evaluate_source(val)
                logs.update({"val_" + k: v for k, v in val_logs.items()})
            cb.params["steps_done"] = step
            cb.on_epoch_end(epoch, logs)
            if self.stop_training:
                break
        cb.on_train_end()
        self.history = history
        return history

    def fit_generator(self, generator, steps_per_epoch=None, epochs=1, verbose=1, callbacks=None,
                      validation_data=None, validation_steps=None, initial_epoch=0, **kwargs) -> cbks.History:
        """Deprecated Keras-2 alias of ``fit`` for generators (the seeds use it)."""
        warnings.warn("fit_generator is deprecated: fit accepts generators directly", DeprecationWarning, stacklevel=2)
        return self.fit(generator, steps_per_epoch=steps_per_epoch, epochs=epochs, verbose=verbose,
                        callbacks=callbacks, validation_data=validation_data, validation_steps=validation_steps,
                        initial_epoch=initial_epoch, **kwargs)

    @staticmethod
    def _check_batch_size(batch_size) -> int:
        if batch_size is None:
            return 32
        if not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool) or batch_size <= 0:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        return int(batch_size)

    def _training_sources(self, x, y, sample_weight, batch_size, steps_per_epoch, validation_split,
                          validation_data, validation_steps, shuffle):
        if data_utils.is_batch_source(x):
            if y is not None:
                raise ValueError("Sequential.fit: when x is a generator it yields (x, y) batches; do not pass y")
            if validation_split:
                raise ValueError("Sequential.fit: validation_split needs arrays, not a generator")
            train = data_utils.BatchStream(x, steps_per_epoch, "fit")
        else:
            x_arr, y_arr, sw = self._arrays(x, y, sample_weight, "fit")
            val_arrays = None
            if validation_split:
                (x_arr, y_arr, sw), val_arrays = data_utils.split_validation(x_arr, y_arr, sw, validation_split)
            train = _ArraySource(x_arr, y_arr, sw, batch_size, shuffle, steps_per_epoch)
            if val_arrays is not None and validation_data is None:
                return train, _ArraySource(*val_arrays, batch_size, False, None)
        if validation_data is None:
            return train, None
        if data_utils.is_batch_source(validation_data):
            return train, data_utils.BatchStream(validation_data, validation_steps, "validation")
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
            raise ValueError("validation_data must be (x_val, y_val), (x_val, y_val, sample_weight) or a generator")
        vx, vy, vsw = self._arrays(*data_utils.unpack_batch(validation_data), "validation_data")
        return train, _ArraySource(vx, vy, vsw, batch_size, False, validation_steps)

    def _arrays(self, x, y, sample_weight, what):
        if x is None or y is None:
            raise ValueError(f"Sequential.{what}: both x and y are required")
        x = data_utils.as_array(x, f"{what} x")
        y = data_utils.as_array(y, f"{what} y")
        if len(x) != len(y):
            raise ValueError(f"Sequential.{what}: x has {len(x)} samples but y has {len(y)}")
        if len(x) == 0:
            raise ValueError(f"Sequential.{what}: received empty arrays (0 samples)")
        if sample_weight is not None:
            sample_weight = data_utils.as_array(sample_weight, f"{what} sample_weight")
            if len(sample_weight) != len(x):
                raise ValueError(
                    f"Sequential.{what}: sample_weight has {len(sample_weight)} entries for {len(x)} samples"
                )
        return x, y, sample_weight

    def _evaluate_source(self, source) -> dict:
        self.reset_metrics()
        total, count = 0.0, 0
        for xb, yb, swb in source.epoch():
            loss_value, _ = self.compute_loss_and_gradients(xb, yb, swb, training=False, want_gradients=False)
            self._update_metrics(yb, self._last_pred, self._last_mask, swb)
            total, count = total + loss_value * len(xb), count + len(xb)
        if count == 0:
            raise ValueError("evaluation data produced no batches")
        return {"loss": total / count, **self._metric_logs()}

    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", sample_weight=None, steps=None,
                 return_dict: bool = False):
        """Loss (and metrics) in inference mode, averaged over samples as Keras does."""
        self._require_compiled()
        batch_size = self._check_batch_size(batch_size)
        if data_utils.is_batch_source(x):
            source = data_utils.BatchStream(x, steps, "evaluate")
        else:
            source = _ArraySource(*self._arrays(x, y, sample_weight, "evaluate"), batch_size, False, steps)
        logs = self._evaluate_source(source)
        if verbose:
            print(cbks.format_logs(logs))
        if return_dict:
            return logs
        return logs["loss"] if len(logs) == 1 else list(logs.values())

    def predict(self, x, batch_size=None, verbose=0, steps=None) -> np.ndarray:
        """Outputs for ``x`` in inference mode, batch by batch (any number of samples)."""
        batch_size = self._check_batch_size(batch_size)
        if data_utils.is_batch_source(x):
            outs = [self(xb) for xb, _, _ in data_utils.BatchStream(x, steps, "predict").epoch()]
        else:
            x = data_utils.as_array(x, f"Sequential {self.name!r} predict input")
            if len(x) == 0:
                raise ValueError(f"Sequential {self.name!r}: predict received 0 samples (input shape {x.shape})")
            outs = [self(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]
        return np.concatenate(outs, axis=0)

    def predict_on_batch(self, x) -> np.ndarray:
        return self(x)

    # ------------------------------------------------------------------ introspection and io
    def summary(self, print_fn=None, line_length: int | None = None) -> None:
        from .summary import summary_text

        (print_fn or print)(summary_text(self, line_length))

    def get_layer(self, name: str | None = None, index: int | None = None) -> Layer:
        if index is not None:
            return self.layers[index]
        for layer in self.layers:
            if layer.name == name:
                return layer
        names = [layer.name for layer in self.layers]
        raise ValueError(f"Sequential {self.name!r} has no layer named {name!r}; layers: {names}")

    def get_config(self) -> dict:
        cfg = {"name": self.name, "layers": [serialize(layer) for layer in self.layers]}
        if self.input_layer is not None:
            cfg["input_shape"] = list(self.input_layer.shape_arg)
            cfg["batch_size"] = self.input_layer.batch_size
        elif self.built:
            cfg["input_shape"] = list(self.layers[0].input_shape[1:])
        return cfg

    @classmethod
    def from_config(cls, cfg: dict) -> Sequential:
        model = cls(name=cfg.get("name"))
        if cfg.get("input_shape") is not None:
            model.add(InputLayer(shape=tuple(cfg["input_shape"]), batch_size=cfg.get("batch_size")))
        for layer_cfg in cfg["layers"]:
            model.add(deserialize(layer_cfg))
        return model

    def get_compile_config(self) -> dict | None:
        """What ``compile`` was given, serialised: ``{'optimizer', 'loss', 'metrics'}``; None before compile."""
        if self.loss is None:
            return None
        metrics = [m if isinstance(m, str) else m.name for m in self._metric_specs]
        return {"optimizer": optimizers_mod.serialize(self.optimizer), "loss": losses_mod.serialize(self.loss),
                "metrics": metrics}

    def save(self, filepath, include_optimizer: bool = True) -> None:
        """Save config, weights (and optimizer state): ``.npz`` (tinynn's own), ``.keras`` or Keras 2 ``.h5``
        (:mod:`tinynn.saving`; atomic, no pickle)."""
        saving.save_model(self, filepath, include_optimizer=include_optimizer)

    def save_weights(self, filepath) -> None:
        saving.save_weights(self, filepath)

    def load_weights(self, filepath) -> None:
        saving.load_weights(self, filepath)


class _ArraySource:
    """Batches of in-memory arrays; reshuffled every epoch when ``shuffle``."""

    def __init__(self, x, y, sample_weight, batch_size, shuffle, steps):
        self.x, self.y, self.sw = x, y, sample_weight
        self.batch_size, self.shuffle, self.steps = batch_size, shuffle, steps
        self.num_batches = -(-len(x) // batch_size) if steps is None else steps

    def epoch(self):
        batches = data_utils.array_batches(len(self.x), self.batch_size, self.shuffle, global_rng())
        if self.steps is not None:
            batches = batches[: self.steps]
        for idx in batches:
            if not self.shuffle:
                idx = slice(int(idx[0]), int(idx[-1]) + 1)
            yield self.x[idx], self.y[idx], None if self.sw is None else self.sw[idx]


Model = Sequential


saving.register_model_class(Sequential)


def load_model(filepath, compile: bool = True) -> Sequential:
    """Load a model saved with ``model.save`` (config, weights and optimizer state) or by Keras."""
    return saving.load_model(filepath, compile=compile)
