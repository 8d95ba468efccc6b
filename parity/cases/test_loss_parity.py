"""Every loss's value and gradient against Keras (computed in the test on the Keras backend in use).

Both paths are covered: probabilities (clipped, what Keras does on plain arrays) and the logits shortcut
(what Keras does when the prediction is the output of its sigmoid/softmax); every reduction
(``sum_over_batch_size``, ``sum``, ``none``: then the gradient is that of ``Σ u ⊙ values`` for a random
``u``) and Huber's ``delta``. float32 cases are measured against Keras's float64 computation of the same
case (see :mod:`parity.harness`).
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from parity import backend
from parity.harness import assert_checks, compare
from parity.options import examples
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


def ours_value_and_grad(loss, y_true, y_pred, from_logits=False, sample_weight=None, upstream=None):
    """tinynn's loss value and its gradient wrt ``y_pred`` (of ``Σ upstream ⊙ values`` for reduction 'none')."""
    y_arr, pred = loss.prepare(y_true, y_pred)
    if from_logits:
        values, dv = loss.values_and_grad_from_logits(y_arr, pred)
    else:
        values, dv = loss.values_and_grad(y_arr, pred)
    value, dvalues = loss.reduce(values, sample_weight)
    if upstream is not None:
        dvalues = dvalues * upstream
    return value, (dvalues[..., None] * dv).reshape(np.shape(y_pred))


def keras_value_and_grad(name, y_true, y_pred, dtype, activation=None, sample_weight=None, upstream=None, **kwargs):
    """Keras's loss value and its gradient wrt the prediction (or wrt the logits before ``activation``)."""
    import keras

    with keras_floatx(dtype):
        loss = getattr(keras.losses, KERAS_NAMES[name])(**kwargs)

        def fn(z):
            pred = getattr(keras.activations, activation)(z) if activation else z
            weight = None if sample_weight is None else backend.tensor(sample_weight)
            value = loss(backend.tensor(y_true), pred, sample_weight=weight)
            scalar = value if upstream is None else keras.ops.sum(keras.ops.cast(value, "float64")
                                                                 * backend.tensor(upstream))
            return scalar, value

        value, (grad,), _ = backend.gradients(fn, [backend.tensor(y_pred)], [])
    return backend.numpy(value), backend.numpy(grad)


def as64(a):
    """An array cast exactly to float64 (integers, e.g. sparse labels, stay as they are)."""
    a = np.asarray(a)
    return a.astype("float64") if np.issubdtype(a.dtype, np.floating) else a


def assert_matches_keras(ours, name, y_true, y_pred, dtype, **kwargs):
    """tinynn's (value, gradient) against Keras's; a float32 case against Keras's float64 computation."""
    ref = keras_value_and_grad(name, y_true, y_pred, dtype, **kwargs)
    ref64 = (None, None)
    if dtype == "float32":
        kw64 = {k: (as64(v) if k in ("sample_weight", "upstream") and v is not None else v) for k, v in kwargs.items()}
        ref64 = keras_value_and_grad(name, as64(y_true), as64(y_pred), "float64", **kw64)
    assert_checks([compare("value", ours[0], ref[0], dtype, ref64=ref64[0]),
                   compare("grad", ours[1], ref[1], dtype, ref64=ref64[1])])


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
@examples(dict(name="mse", shape=[4, 3], dtype="float32", weighted=True, seed=1))
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
    assert_matches_keras(ours, name, y_true, y_pred, dtype, sample_weight=sw)


@given(
    name=st.sampled_from(["binary_crossentropy", "categorical_crossentropy", "sparse_categorical_crossentropy"]),
    batch=st.integers(1, 6),
    classes=st.integers(2, 5),
    scale=st.sampled_from([1.0, 10.0, 30.0]),
    dtype=st.sampled_from(DTYPES),
    seed=st.integers(0, 2**16),
)
@examples(dict(name="categorical_crossentropy", batch=6, classes=5, scale=30.0, dtype="float32", seed=3))
def test_logits_shortcut_matches_keras(name, batch, classes, scale, dtype, seed):
    """Keras reads the logits of its sigmoid/softmax (no clipping): large logits expose the difference."""
    rng = np.random.default_rng(seed)
    z = (scale * rng.normal(size=(batch, classes))).astype(dtype)
    y_true = PROB_LOSSES[name](rng, (batch, classes))
    if name != "sparse_categorical_crossentropy":
        y_true = y_true.astype(dtype)
    activation = "sigmoid" if name == "binary_crossentropy" else "softmax"
    ours = ours_value_and_grad(losses.get(name), y_true, z, from_logits=True)
    assert_matches_keras(ours, name, y_true, z, dtype, activation=activation)


@pytest.mark.parametrize("name", ["binary_crossentropy", "categorical_crossentropy", "sparse_categorical_crossentropy"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_from_logits_argument_matches_keras(name, dtype):
    rng = np.random.default_rng(3)
    z = (5 * rng.normal(size=(7, 3))).astype(dtype)
    y_true = PROB_LOSSES[name](rng, (7, 3))
    if name != "sparse_categorical_crossentropy":
        y_true = y_true.astype(dtype)
    ours = ours_value_and_grad(losses.get(name).__class__(from_logits=True), y_true, z)
    assert_matches_keras(ours, name, y_true, z, dtype, from_logits=True)


@pytest.mark.parametrize("label_smoothing", [0.1, 0.3])
@pytest.mark.parametrize("name", ["binary_crossentropy", "categorical_crossentropy"])
def test_label_smoothing_matches_keras(name, label_smoothing):
    rng = np.random.default_rng(11)
    y_pred = _predictions(name, rng, (6, 4), "float64")
    y_true = PROB_LOSSES[name](rng, (6, 4))
    ours = ours_value_and_grad(losses.get(name).__class__(label_smoothing=label_smoothing), y_true, y_pred)
    assert_matches_keras(ours, name, y_true, y_pred, "float64", label_smoothing=label_smoothing)


def test_rank_mismatch_is_aligned_not_broadcast():
    """y (B,) against ŷ (B, 1) is aligned, as Keras does, never broadcast to (B, B)."""
    rng = np.random.default_rng(0)
    y_pred = rng.random((5, 1))
    y_true = (rng.random(5) > 0.5) * 1.0
    ours = ours_value_and_grad(losses.get("mse"), y_true, y_pred)
    assert_matches_keras(ours, "mse", y_true, y_pred, "float64")


@given(
    name=st.sampled_from(sorted(PROB_LOSSES)),
    reduction=st.sampled_from(["sum_over_batch_size", "sum", "none"]),
    shape=st.lists(st.integers(1, 5), min_size=2, max_size=3),
    weighted=st.booleans(),
    dtype=st.sampled_from(DTYPES),
    seed=st.integers(0, 2**16),
)
@examples(dict(name="mae", reduction="none", shape=[3, 2, 4], weighted=False, dtype="float32", seed=2))
def test_loss_reduction_matches_keras(name, reduction, shape, weighted, dtype, seed):
    """``reduction='sum'`` and ``'none'`` (per-entry values, of shape ``y_pred.shape[:-1]``) as Keras computes
    them, with and without per-sample weights."""
    rng = np.random.default_rng(seed)
    if name in ("categorical_crossentropy", "sparse_categorical_crossentropy") and shape[-1] < 2:
        shape[-1] = 2
    y_pred = _predictions(name, rng, tuple(shape), dtype)
    y_true = PROB_LOSSES[name](rng, tuple(shape))
    if name != "sparse_categorical_crossentropy":
        y_true = y_true.astype(dtype)
    sw = rng.random(shape[0]).astype(dtype) if weighted and len(shape) == 2 else None
    upstream = rng.normal(size=shape[:-1]) if reduction == "none" else None
    loss = getattr(losses, KERAS_NAMES[name])(reduction=reduction)
    ours = ours_value_and_grad(loss, y_true, y_pred, sample_weight=sw, upstream=upstream)
    assert np.shape(ours[0]) == (tuple(shape[:-1]) if reduction == "none" else ())
    assert_matches_keras(ours, name, y_true, y_pred, dtype, sample_weight=sw, upstream=upstream, reduction=reduction)


@given(
    delta=st.sampled_from([0.05, 0.5, 1.0, 2.5]),
    shape=st.lists(st.integers(1, 6), min_size=2, max_size=3),
    dtype=st.sampled_from(DTYPES),
    seed=st.integers(0, 2**16),
)
def test_huber_delta_matches_keras(delta, shape, dtype, seed):
    """Huber's ``delta``: errors of scale 2 put entries on both sides of ±δ for every δ drawn."""
    rng = np.random.default_rng(seed)
    y_pred = (2 * rng.normal(size=shape)).astype(dtype)
    y_true = rng.normal(size=shape).astype(dtype)
    ours = ours_value_and_grad(losses.Huber(delta=delta), y_true, y_pred)
    assert_matches_keras(ours, "huber", y_true, y_pred, dtype, delta=delta)
