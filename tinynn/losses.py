"""Losses with their gradients, computed as Keras 3 computes them.

Every loss first reduces the last axis to per-entry values ``v`` (shape ``y_pred.shape[:-1]``), then
applies the ``sum_over_batch_size`` reduction::

    L = Σ v ⊙ w / N          N = number of entries of v (not Σ w: weight-0 samples still count)

where ``w`` is the sample weight (ones by default; a per-sample weight (B,) weights every entry of its
sample. Keras would instead broadcast (B,) against the last axis of (B, T) values, which fails unless
T == B; tinynn deliberately weights per sample there). When ``y_pred`` carries a mask ``m`` (an RNN with
return_sequences, Embedding(mask_zero), Masking), Keras rescales it to ``m · N / Σm`` (Keras 3.15's ``apply_mask``
uses ``divide_no_nan``: no ε, and 0 when nothing is valid), so the loss is the mean over valid entries:
``L = Σ v ⊙ m / Σm``.

Per-entry values and their derivatives ``∂v/∂ŷ`` (``ŷ`` = y_pred, ``y`` = y_true, C = size of the last axis):

    mse     v = Σ (ŷ - y)² / C                      ∂v/∂ŷ = 2 (ŷ - y) / C
    mae     v = Σ |ŷ - y| / C                       ∂v/∂ŷ = sign(ŷ - y) / C
    huber   v = Σ h(ŷ - y) / C, h(e) = e²/2 if |e| <= δ else δ|e| - δ²/2;   ∂v/∂ŷ = clip(e, -δ, δ) / C
    binary_crossentropy (probabilities): p = clip(ŷ, ε, 1-ε), v = -Σ [y log p + (1-y) log(1-p)] / C
        ∂v/∂ŷ = -(y/p - (1-y)/(1-p)) / C inside the clip range, 0 outside
    binary_crossentropy (logits z):      v = Σ [max(z,0) - z y + log(1 + e^-|z|)] / C,  ∂v/∂z = (σ(z) - y) / C
    categorical_crossentropy (probabilities): q = ŷ / Σŷ, qc = clip(q, ε, 1-ε), v = -Σ y log qc
        g = -y / qc (0 outside the clip range);   ∂v/∂ŷ_k = g_k / Σŷ - Σ_j g_j ŷ_j / (Σŷ)²
    categorical_crossentropy (logits z):  v = logsumexp(z) Σy - Σ y z,  ∂v/∂z = softmax(z) - y
        (TF's kernel gradient; it equals the true derivative when Σy = 1, which one-hot labels satisfy)
    sparse_categorical_crossentropy (probabilities): pc = clip(ŷ, ε, 1-ε), v = -log(pc_y / Σ pc)
        ∂v/∂ŷ = (1/Σpc - onehot(y)/pc) inside the clip range, 0 outside   (clip first, then renormalise)
    sparse_categorical_crossentropy (logits z): v = logsumexp(z) - z_y,   ∂v/∂z = softmax(z) - onehot(y)

**The logits shortcut.** When ``y_pred`` is the direct output of a sigmoid (BCE) or softmax (CCE, SCCE)
layer, Keras computes these losses from the cached logits, without clipping; tinynn's model does the same
via :meth:`Loss.values_and_grad_from_logits`.
"""

from __future__ import annotations

import numpy as np

from . import config
from .activations import expit

EPSILON = config.EPSILON


def align_ranks(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Keras's ``squeeze_or_expand_to_same_rank``: fix a rank difference of one on a size-1 last axis.

    y (B,) with ŷ (B, 1) becomes y (B, 1); never broadcast to (B, B).
    """
    if y_true.ndim == y_pred.ndim + 1 and y_true.shape[-1] == 1:
        if y_pred.ndim == 1:
            y_pred = y_pred[..., None]
        else:
            y_true = y_true[..., 0]
    if y_pred.ndim == y_true.ndim + 1 and y_pred.shape[-1] == 1:
        if y_true.ndim == 1:
            y_true = y_true[..., None]
        else:
            y_pred = y_pred[..., 0]
    return y_true, y_pred


class Loss:
    """Base class. Subclasses implement ``values_and_grad(y_true, y_pred) -> (v, ∂v/∂ŷ)``."""

    name = "loss"
    #: activation whose logits Keras substitutes for the prediction ('sigmoid', 'softmax' or None)
    logits_activation: str | None = None
    sparse_labels = False

    def __init__(self, reduction: str = "sum_over_batch_size", name: str | None = None):
        if reduction not in ("sum_over_batch_size", "sum", "none", "mean"):
            raise ValueError(f"{type(self).__name__}: unknown reduction {reduction!r}")
        self.reduction = "sum_over_batch_size" if reduction == "mean" else reduction
        if name is not None:
            self.name = name

    # --------------------------------------------------------------- per entry
    def prepare(self, y_true, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        y_pred = np.asarray(y_pred)
        y_true = np.asarray(y_true, dtype=y_pred.dtype)
        y_true, y_pred = align_ranks(y_true, y_pred)
        if y_true.shape != y_pred.shape:
            raise ValueError(
                f"{type(self).__name__}: y_true shape {y_true.shape} does not match y_pred shape {y_pred.shape}"
            )
        return y_true, y_pred

    def values_and_grad(self, y_true: np.ndarray, y_pred: np.ndarray):
        raise NotImplementedError

    def values_and_grad_from_logits(self, y_true: np.ndarray, logits: np.ndarray):
        raise NotImplementedError(f"{type(self).__name__} has no logits form")

    # --------------------------------------------------------------- reduction
    def reduce(self, values: np.ndarray, sample_weight=None, mask=None) -> tuple[float, np.ndarray]:
        """Return (L, ∂L/∂v) for the configured reduction (see the module docstring)."""
        dtype = values.dtype
        weight = np.ones_like(values)
        if mask is not None:
            valid = np.asarray(mask).astype(bool).reshape(values.shape)
            if self.reduction == "sum_over_batch_size":
                # Keras's apply_mask: valid entries weigh total/valid (divide_no_nan: 0 when none is valid)
                n_valid = dtype.type(np.count_nonzero(valid))
                mask_weight = dtype.type(values.size) / n_valid if n_valid else dtype.type(0)
                weight = np.where(valid, mask_weight, dtype.type(0))
            else:
                weight = valid.astype(dtype)
        if sample_weight is not None:
            sw = np.asarray(sample_weight, dtype=dtype)
            while sw.ndim < values.ndim:
                sw = sw[..., None]
            weight = weight * sw
        if self.reduction == "none":
            return values * weight, weight
        total_loss = np.sum(values * weight)
        if self.reduction == "sum":
            return total_loss, weight
        n = dtype.type(values.size)
        return total_loss / n, weight / n

    def __call__(self, y_true, y_pred, sample_weight=None):
        """The reduced loss on NumPy predictions (the clipped-probability path, like Keras on arrays)."""
        y_true, y_pred = self.prepare(y_true, y_pred)
        values, _ = self.values_and_grad(y_true, y_pred)
        return self.reduce(values, sample_weight)[0]

    def get_config(self) -> dict:
        return {"name": self.name, "reduction": self.reduction}


def _log_softmax(z: np.ndarray) -> np.ndarray:
    """``z - logsumexp(z)`` along the last axis, shifted by the max for stability."""
    shifted = z - np.max(z, axis=-1, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))


class MeanSquaredError(Loss):
    name = "mean_squared_error"

    def values_and_grad(self, y_true, y_pred):
        e = y_pred - y_true
        c = y_pred.dtype.type(y_pred.shape[-1])
        return np.mean(np.square(e), axis=-1), 2 * e / c


class MeanAbsoluteError(Loss):
    name = "mean_absolute_error"

    def values_and_grad(self, y_true, y_pred):
        e = y_pred - y_true
        c = y_pred.dtype.type(y_pred.shape[-1])
        return np.mean(np.abs(e), axis=-1), np.sign(e) / c


class Huber(Loss):
    name = "huber_loss"

    def __init__(self, delta: float = 1.0, reduction="sum_over_batch_size", name=None):
        super().__init__(reduction, name)
        self.delta = float(delta)

    def values_and_grad(self, y_true, y_pred):
        e = y_pred - y_true
        d = y_pred.dtype.type(self.delta)
        half = y_pred.dtype.type(0.5)
        abs_e = np.abs(e)
        values = np.where(abs_e <= d, half * np.square(e), d * abs_e - half * np.square(d))
        c = y_pred.dtype.type(y_pred.shape[-1])
        grad = np.where(abs_e <= d, e, d * np.sign(e)) / c
        return np.mean(values, axis=-1), grad

    def get_config(self):
        return {**super().get_config(), "delta": self.delta}


class _SmoothedCrossentropy(Loss):
    """Shared arguments of BCE and CCE: ``from_logits`` and ``label_smoothing`` (y ← y(1-ls) + ls/K)."""

    def __init__(self, from_logits=False, label_smoothing=0.0, reduction="sum_over_batch_size", name=None):
        super().__init__(reduction, name)
        self.from_logits, self.label_smoothing = bool(from_logits), float(label_smoothing)

    def _smooth(self, y_true):
        if self.label_smoothing:
            ls = y_true.dtype.type(self.label_smoothing)
            return y_true * (1 - ls) + ls / self._smoothing_classes(y_true)
        return y_true

    def _smoothing_classes(self, y_true):
        raise NotImplementedError

    def get_config(self):
        return {**super().get_config(), "from_logits": self.from_logits, "label_smoothing": self.label_smoothing}


class BinaryCrossentropy(_SmoothedCrossentropy):
    name = "binary_crossentropy"
    logits_activation = "sigmoid"

    def _smoothing_classes(self, y_true):
        return y_true.dtype.type(2)

    def values_and_grad(self, y_true, y_pred):
        if self.from_logits:
            return self.values_and_grad_from_logits(y_true, y_pred)
        y = self._smooth(y_true)
        eps = y_pred.dtype.type(EPSILON)
        one = y_pred.dtype.type(1)
        p = np.clip(y_pred, eps, one - eps)
        values = -(y * np.log(p) + (one - y) * np.log(one - p))
        inside = (y_pred >= eps) & (y_pred <= one - eps)
        c = y_pred.dtype.type(y_pred.shape[-1])
        grad = np.where(inside, -(y / p - (one - y) / (one - p)), 0) / c
        return np.mean(values, axis=-1), grad.astype(y_pred.dtype)

    def values_and_grad_from_logits(self, y_true, z):
        y = self._smooth(y_true)
        values = np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))
        c = z.dtype.type(z.shape[-1])
        return np.mean(values, axis=-1), (expit(z) - y) / c


class CategoricalCrossentropy(_SmoothedCrossentropy):
    name = "categorical_crossentropy"
    logits_activation = "softmax"

    def _smoothing_classes(self, y_true):
        return y_true.dtype.type(y_true.shape[-1])

    def values_and_grad(self, y_true, y_pred):
        if self.from_logits:
            return self.values_and_grad_from_logits(y_true, y_pred)
        y = self._smooth(y_true)
        eps = y_pred.dtype.type(EPSILON)
        s = np.sum(y_pred, axis=-1, keepdims=True)
        q = y_pred / s
        qc = np.clip(q, eps, 1 - eps)
        values = -np.sum(y * np.log(qc), axis=-1)
        g = np.where((q >= eps) & (q <= 1 - eps), -y / qc, 0).astype(y_pred.dtype)
        grad = g / s - np.sum(g * y_pred, axis=-1, keepdims=True) / (s * s)
        return values, grad

    def values_and_grad_from_logits(self, y_true, z):
        y = self._smooth(y_true)
        log_softmax = _log_softmax(z)
        values = -np.sum(y * log_softmax, axis=-1)
        return values, np.exp(log_softmax) - y


class SparseCategoricalCrossentropy(Loss):
    name = "sparse_categorical_crossentropy"
    logits_activation = "softmax"
    sparse_labels = True

    def __init__(self, from_logits=False, reduction="sum_over_batch_size", name=None):
        super().__init__(reduction, name)
        self.from_logits = bool(from_logits)

    def prepare(self, y_true, y_pred):
        y_pred = np.asarray(y_pred)
        labels = np.asarray(y_true)
        if labels.ndim == y_pred.ndim and labels.shape[-1] == 1:
            labels = labels[..., 0]
        if labels.shape != y_pred.shape[:-1]:
            raise ValueError(
                f"{type(self).__name__}: labels of shape {np.shape(y_true)} do not match predictions of shape "
                f"{y_pred.shape} (expected labels of shape {y_pred.shape[:-1]} or {(*y_pred.shape[:-1], 1)})"
            )
        if labels.dtype.kind == "f":
            if not np.all(np.isfinite(labels)) or np.any(labels != np.floor(labels)):
                raise ValueError(f"{type(self).__name__}: labels must be integers, got non-integer values")
        elif labels.dtype.kind not in "iub":
            raise ValueError(f"{type(self).__name__}: labels must be integers, got dtype {labels.dtype}")
        labels = labels.astype(np.int64)
        n_classes = y_pred.shape[-1]
        if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
            bad = labels[(labels < 0) | (labels >= n_classes)].flat[0]
            raise ValueError(
                f"{type(self).__name__}: label {bad} is out of range: expected labels in [0, {n_classes - 1}] "
                f"for predictions with {n_classes} classes"
            )
        return labels, y_pred

    def _onehot(self, labels, like):
        return (labels[..., None] == np.arange(like.shape[-1])).astype(like.dtype)

    def values_and_grad(self, labels, y_pred):
        if self.from_logits:
            return self.values_and_grad_from_logits(labels, y_pred)
        eps = y_pred.dtype.type(EPSILON)
        pc = np.clip(y_pred, eps, 1 - eps)
        s = np.sum(pc, axis=-1, keepdims=True)
        picked = np.take_along_axis(pc, labels[..., None], axis=-1)[..., 0]
        values = -(np.log(picked) - np.log(s[..., 0]))
        inside = (y_pred >= eps) & (y_pred <= 1 - eps)
        grad = np.where(inside, 1 / s - self._onehot(labels, y_pred) / pc, 0).astype(y_pred.dtype)
        return values, grad

    def values_and_grad_from_logits(self, labels, z):
        log_softmax = _log_softmax(z)
        values = -np.take_along_axis(log_softmax, labels[..., None], axis=-1)[..., 0]
        return values, np.exp(log_softmax) - self._onehot(labels, z)

    def get_config(self):
        return {**super().get_config(), "from_logits": self.from_logits}


_ALIASES = {
    "mse": MeanSquaredError, "mean_squared_error": MeanSquaredError, "meansquarederror": MeanSquaredError,
    "mae": MeanAbsoluteError, "mean_absolute_error": MeanAbsoluteError, "meanabsoluteerror": MeanAbsoluteError,
    "huber": Huber, "huber_loss": Huber,
    "binary_crossentropy": BinaryCrossentropy, "binarycrossentropy": BinaryCrossentropy,
    "categorical_crossentropy": CategoricalCrossentropy, "categoricalcrossentropy": CategoricalCrossentropy,
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
    "sparsecategoricalcrossentropy": SparseCategoricalCrossentropy,
}


def get(identifier) -> Loss:
    """Resolve 'mse', 'binary_crossentropy', 'BinaryCrossentropy', a Loss instance or a config dict."""
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, str):
        cls = _ALIASES.get(identifier.lower())
        if cls is None:
            raise ValueError(f"Unknown loss {identifier!r}; tinynn knows {sorted(set(_ALIASES))}")
        return cls()
    if isinstance(identifier, dict) and "class_name" in identifier:
        cls = {c.__name__: c for c in _ALIASES.values()}.get(identifier["class_name"])
        if cls is None:
            raise ValueError(f"Unknown loss class {identifier['class_name']!r}")
        return cls(**identifier.get("config", {}))
    raise ValueError(f"Cannot interpret loss {identifier!r}: pass a name such as 'mse' or a tinynn.losses.Loss")


def serialize(loss: Loss) -> dict:
    return {"class_name": type(loss).__name__, "config": loss.get_config()}


def _function(cls):
    def fn(y_true, y_pred, **kwargs):
        loss = cls(**kwargs, reduction="none")
        y_true, y_pred = loss.prepare(y_true, y_pred)
        return loss.values_and_grad(y_true, y_pred)[0]

    fn.__name__ = cls.name
    fn.__doc__ = f"Per-entry values of {cls.__name__} (last axis reduced, no batch reduction)."
    return fn


mean_squared_error = mse = _function(MeanSquaredError)
mean_absolute_error = mae = _function(MeanAbsoluteError)
huber = _function(Huber)
binary_crossentropy = _function(BinaryCrossentropy)
categorical_crossentropy = _function(CategoricalCrossentropy)
sparse_categorical_crossentropy = _function(SparseCategoricalCrossentropy)
