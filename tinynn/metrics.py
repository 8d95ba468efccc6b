"""Metrics as Keras 3 computes them during fit/evaluate: sample-weighted running means.

Each metric maps a batch to per-entry values ``v`` and keeps ``Σ v`` and the entry count over the
epoch; ``result() = Σ v / count``. Per-entry values:

    binary_accuracy        [ (ŷ > 0.5) == y ]         (strict: 0.5 counts as class 0)
    categorical_accuracy   [ argmax ŷ == argmax y ]   (first index on ties)
    sparse_categorical_accuracy   [ argmax ŷ == y ]
    mae / mse              mean over the last axis of |ŷ - y| / (ŷ - y)²

'accuracy' / 'acc' are resolved from shapes, not from the loss (Keras's ``get_metric``): a last axis of 1
gives binary accuracy; labels of lower rank than the prediction (or of last axis 1 against a wider
prediction) give sparse categorical accuracy; otherwise categorical accuracy. The metric keeps the name
the user wrote ('acc' -> ``history['acc']``).
"""

from __future__ import annotations

import numpy as np

from .losses import align_ranks


class Metric:
    """Running mean of per-entry values, optionally masked."""

    def __init__(self, name: str | None = None):
        self.name = name or self.default_name
        self.reset_state()

    default_name = "metric"

    def reset_state(self) -> None:
        self.total = 0.0
        self.count = 0.0

    def values(self, y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def update_state(self, y_true, y_pred, sample_weight=None, mask=None) -> None:
        y_pred = np.asarray(y_pred)
        v = np.asarray(self.values(np.asarray(y_true), y_pred), dtype=np.float64)
        w = np.ones_like(v)
        if mask is not None:
            m = np.asarray(mask, dtype=np.float64)
            w = w * m.reshape(m.shape + (1,) * (v.ndim - m.ndim))
        if sample_weight is not None:
            sw = np.asarray(sample_weight, dtype=np.float64)
            w = w * sw.reshape(sw.shape + (1,) * (v.ndim - sw.ndim))
        self.total += float(np.sum(v * w))
        self.count += float(np.sum(w))

    def result(self) -> float:
        return self.total / self.count if self.count else 0.0

    def __call__(self, y_true, y_pred) -> float:
        self.reset_state()
        self.update_state(y_true, y_pred)
        return self.result()


class BinaryAccuracy(Metric):
    default_name = "binary_accuracy"

    def __init__(self, name=None, threshold: float = 0.5):
        self.threshold = threshold
        super().__init__(name)

    def values(self, y_true, y_pred):
        y_true, y_pred = align_ranks(y_true.astype(y_pred.dtype), y_pred)
        return (y_true == (y_pred > self.threshold)).astype(np.float64)


class CategoricalAccuracy(Metric):
    default_name = "categorical_accuracy"

    def values(self, y_true, y_pred):
        return (np.argmax(y_true, axis=-1) == np.argmax(y_pred, axis=-1)).astype(np.float64)


class SparseCategoricalAccuracy(Metric):
    default_name = "sparse_categorical_accuracy"

    def values(self, y_true, y_pred):
        labels = np.asarray(y_true)
        if labels.ndim == y_pred.ndim and labels.shape[-1] == 1:
            labels = labels[..., 0]
        return (labels.astype(np.int64) == np.argmax(y_pred, axis=-1)).astype(np.float64)


class MeanAbsoluteError(Metric):
    default_name = "mean_absolute_error"

    def values(self, y_true, y_pred):
        y_true, y_pred = align_ranks(y_true.astype(y_pred.dtype), y_pred)
        return np.mean(np.abs(y_pred - y_true), axis=-1)


class MeanSquaredError(Metric):
    default_name = "mean_squared_error"

    def values(self, y_true, y_pred):
        y_true, y_pred = align_ranks(y_true.astype(y_pred.dtype), y_pred)
        return np.mean(np.square(y_pred - y_true), axis=-1)


_BY_NAME = {
    "binary_accuracy": BinaryAccuracy,
    "categorical_accuracy": CategoricalAccuracy,
    "sparse_categorical_accuracy": SparseCategoricalAccuracy,
    "mae": MeanAbsoluteError,
    "mean_absolute_error": MeanAbsoluteError,
    "mse": MeanSquaredError,
    "mean_squared_error": MeanSquaredError,
}


def resolve_accuracy(y_true_shape: tuple, y_pred_shape: tuple) -> type[Metric]:
    """Keras's rule for 'accuracy'/'acc' (``trainers/compile_utils.py::get_metric``)."""
    if y_pred_shape[-1] == 1:
        return BinaryAccuracy
    if len(y_true_shape) < len(y_pred_shape) or (y_true_shape[-1] == 1 and y_pred_shape[-1] > 1):
        return SparseCategoricalAccuracy
    return CategoricalAccuracy


def get(identifier, y_true_shape: tuple | None = None, y_pred_shape: tuple | None = None) -> Metric:
    """A fresh metric from a name (or an instance, returned as is); 'acc'/'accuracy' need the shapes."""
    if isinstance(identifier, Metric):
        return identifier
    if not isinstance(identifier, str):
        raise ValueError(f"Cannot interpret metric {identifier!r}: pass a name such as 'accuracy' or a Metric")
    key = identifier.lower()
    if key in ("acc", "accuracy"):
        if y_true_shape is None or y_pred_shape is None:
            raise ValueError("metric 'accuracy' is resolved from the label and prediction shapes; give both")
        return resolve_accuracy(tuple(y_true_shape), tuple(y_pred_shape))(name=identifier)
    cls = _BY_NAME.get(key)
    if cls is None:
        known = ["accuracy", "acc", *sorted(_BY_NAME)]
        raise ValueError(f"Unknown metric {identifier!r}; tinynn knows {known}")
    return cls(name=identifier)
