"""Every loss's value and gradient against Keras (computed in the test with tf.GradientTape).

Both paths are covered: probabilities (clipped, what Keras does on plain arrays) and the logits shortcut
(what Keras does when the prediction is the output of its sigmoid/softmax).
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from parity.harness import compare
from parity.training import keras_floatx
from tinynn import losses

DTYPES = ["float64", "float32"]
PROB_LOSSES = {
    "mse": lambda r, s: r.normal(size=s),
    "mae": lambda r, s: r.normal(size=s),
    "huber": lambda r, s: 2 * r.normal(size=s),
    "binary_crossentropy": lambda r, s: (r.random(s) > 0.5) * 1.0,
    "categorical_crossentropy": lambda r, s: np.eye(s[-1])[r.integers(0, s[-1], s[:-1])],
    "sparse_categorical_crossentropy": lambda r, s: r.integers(0, s[-1], s[:-1]),
}
KERAS_NAMES = {
    "mse": "MeanSquaredError", "mae": "MeanAbsoluteError", "huber": "Huber",
    "binary_crossentropy": "BinaryCrossentropy", "categorical_crossentropy": "CategoricalCrossentropy",
    "sparse_categorical_crossentropy": "SparseCategoricalCrossentropy",
}


def ours_value_and_grad(loss, y_true, y_pred, from_logits=False, sample_weight=None):
    y_arr, pred = loss.prepare(y_true, y_pred)
    if from_logits:
        values, dv = loss.values_and_grad_from_logits(y_arr, pred)
    else:
        values, dv = loss.values_and_grad(y_arr, pred)
    value, dvalues = loss.reduce(values, sample_weight)
    return value, (dvalues[..., None] * dv).reshape(np.shape(y_pred))


def keras_value_and_grad(name, y_true, y_pred, dtype, activation=None, sample_weight=None, **kwargs):
    import keras
    import tensorflow as tf

    with keras_floatx(dtype):
        loss = getattr(keras.losses, KERAS_NAMES[name])(**kwargs)
        z = tf.constant(y_pred)
        with tf.GradientTape() as tape:
            tape.watch(z)
            pred = getattr(keras.activations, activation)(z) if activation else z
            value = loss(tf.constant(y_true), pred, sample_weight=sample_weight)
        grad = tape.gradient(value, z)
    return value.numpy(), grad.numpy()


def _predictions(name, rng, shape, dtype):
    if name in ("binary_crossentropy",):
        p = rng.random(shape)
    elif name in ("categorical_crossentropy", "sparse_categorical_crossentropy"):
        p = rng.random(shape) + 0.05
        p = p / p.sum(-1, keepdims=True)
    else:
        p = rng.normal(size=shape)
    return p.astype(dtype)


@given(
    name=st.sampled_from(sorted(PROB_LOSSES)),
    shape=st.lists(st.integers(1, 5), min_size=2, max_size=3),
    dtype=st.sampled_from(DTYPES),
    weighted=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_loss_on_probabilities_matches_keras(name, shape, dtype, weighted, seed):
    rng = np.random.default_rng(seed)
    if name in ("categorical_crossentropy", "sparse_categorical_crossentropy") and shape[-1] < 2:
        shape[-1] = 2
    y_pred = _predictions(name, rng, tuple(shape), dtype)
    y_true = PROB_LOSSES[name](rng, tuple(shape))
    if name != "sparse_categorical_crossentropy":
        y_true = y_true.astype(dtype)
    # Per-sample weights on rank-2 predictions. (For (B, T, C) predictions Keras multiplies (B, T) values by
    # a (B,) weight along the *last* axis — a crash unless T == B; tinynn weights each sample instead.)
    sw = rng.random(shape[0]).astype(dtype) if weighted and len(shape) == 2 else None
    ours = ours_value_and_grad(losses.get(name), y_true, y_pred, sample_weight=sw)
    ref = keras_value_and_grad(name, y_true, y_pred, dtype, sample_weight=sw)
    assert compare("value", ours[0], ref[0], dtype).passed, (ours[0], ref[0])
    check = compare("grad", ours[1], ref[1], dtype)
    assert check.passed, check


@given(
    name=st.sampled_from(["binary_crossentropy", "categorical_crossentropy", "sparse_categorical_crossentropy"]),
    batch=st.integers(1, 6),
    classes=st.integers(2, 5),
    scale=st.sampled_from([1.0, 10.0, 30.0]),
    dtype=st.sampled_from(DTYPES),
    seed=st.integers(0, 2**16),
)
def test_logits_shortcut_matches_keras(name, batch, classes, scale, dtype, seed):
    """Keras reads the logits of its sigmoid/softmax (no clipping): large logits expose the difference."""
    rng = np.random.default_rng(seed)
    z = (scale * rng.normal(size=(batch, classes))).astype(dtype)
    y_true = PROB_LOSSES[name](rng, (batch, classes))
    if name != "sparse_categorical_crossentropy":
        y_true = y_true.astype(dtype)
    activation = "sigmoid" if name == "binary_crossentropy" else "softmax"
    ours = ours_value_and_grad(losses.get(name), y_true, z, from_logits=True)
    ref = keras_value_and_grad(name, y_true, z, dtype, activation=activation)
    assert compare("value", ours[0], ref[0], dtype).passed, (ours[0], ref[0])
    check = compare("grad wrt logits", ours[1], ref[1], dtype)
    assert check.passed, check


@pytest.mark.parametrize("name", ["binary_crossentropy", "categorical_crossentropy", "sparse_categorical_crossentropy"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_from_logits_argument_matches_keras(name, dtype):
    rng = np.random.default_rng(3)
    z = (5 * rng.normal(size=(7, 3))).astype(dtype)
    y_true = PROB_LOSSES[name](rng, (7, 3))
    if name != "sparse_categorical_crossentropy":
        y_true = y_true.astype(dtype)
    ours = ours_value_and_grad(losses.get(name).__class__(from_logits=True), y_true, z)
    ref = keras_value_and_grad(name, y_true, z, dtype, from_logits=True)
    assert compare("value", ours[0], ref[0], dtype).passed
    assert compare("grad", ours[1], ref[1], dtype).passed


@pytest.mark.parametrize("label_smoothing", [0.1, 0.3])
@pytest.mark.parametrize("name", ["binary_crossentropy", "categorical_crossentropy"])
def test_label_smoothing_matches_keras(name, label_smoothing):
    rng = np.random.default_rng(11)
    y_pred = _predictions(name, rng, (6, 4), "float64")
    y_true = PROB_LOSSES[name](rng, (6, 4))
    ours = ours_value_and_grad(losses.get(name).__class__(label_smoothing=label_smoothing), y_true, y_pred)
    ref = keras_value_and_grad(name, y_true, y_pred, "float64", label_smoothing=label_smoothing)
    assert compare("value", ours[0], ref[0], "float64").passed
    assert compare("grad", ours[1], ref[1], "float64").passed


def test_rank_mismatch_is_aligned_not_broadcast():
    """y (B,) against ŷ (B, 1) is aligned, as Keras does, never broadcast to (B, B)."""
    rng = np.random.default_rng(0)
    y_pred = rng.random((5, 1))
    y_true = (rng.random(5) > 0.5) * 1.0
    ours = ours_value_and_grad(losses.get("mse"), y_true, y_pred)
    ref = keras_value_and_grad("mse", y_true, y_pred, "float64")
    assert compare("value", ours[0], ref[0], "float64").passed
