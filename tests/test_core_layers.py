"""Dense, Activation, Flatten, Reshape, Dropout, Input: gradchecks, behaviour and errors (tinynn alone)."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinynn import activations, layers
from tinynn.gradcheck import check_layer

GRAD_TOL = 1e-7


def assert_gradcheck(layer, x, **kwargs):
    results = check_layer(layer, x, **kwargs)
    assert results, "nothing was checked"
    for r in results:
        assert r.relative_error < GRAD_TOL, str(r)


@given(
    units=st.integers(1, 6),
    shape=st.lists(st.integers(1, 4), min_size=2, max_size=4),
    activation=st.sampled_from(sorted(set(activations.ALL) - {"relu", "relu6", "leaky_relu", "hard_sigmoid"})),
    use_bias=st.booleans(),
    seed=st.integers(0, 1000),
)
def test_dense_gradcheck(units, shape, activation, use_bias, seed):
    rng = np.random.default_rng(seed)
    layer = layers.Dense(units, activation=activation, use_bias=use_bias, dtype="float64",
                         bias_initializer="random_normal")
    assert_gradcheck(layer, rng.normal(size=shape), seed=seed)


@pytest.mark.parametrize("activation", ["relu", "relu6", "leaky_relu", "hard_sigmoid"])
def test_piecewise_activations_gradcheck_away_from_kinks(activation):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4, 5)) * 2
    x[np.abs(x) < 0.05] = 0.5  # finite differences are undefined at the kinks
    x[np.abs(np.abs(x) - 3) < 0.05] = 1.0
    assert_gradcheck(layers.Activation(activation, dtype="float64"), x)


def test_softmax_activation_layer_gradcheck_on_rank3():
    x = np.random.default_rng(2).normal(size=(2, 3, 4))
    assert_gradcheck(layers.Activation("softmax", dtype="float64"), x)


def test_flatten_and_reshape_gradcheck():
    x = np.random.default_rng(3).normal(size=(2, 3, 4))
    assert_gradcheck(layers.Flatten(dtype="float64"), x)
    assert_gradcheck(layers.Reshape((4, -1), dtype="float64"), x)
    assert layers.Reshape((4, -1)).compute_output_shape((None, 3, 4)) == (None, 4, 3)


def test_dropout_is_identity_at_inference_and_inverted_in_training():
    x = np.ones((200, 50), dtype="float32")
    layer = layers.Dropout(0.3, seed=1)
    assert layer(x) is not None and np.array_equal(layer(x), x)
    y = layer(x, training=True)
    kept = y != 0
    assert np.allclose(y[kept], 1 / 0.7)
    assert abs(kept.mean() - 0.7) < 0.02
    dx = layer.backward(np.full_like(x, 2.0))
    assert np.array_equal(dx != 0, kept) and np.allclose(dx[kept], 2 / 0.7)


def test_dropout_noise_shape_shares_mask_over_time_and_seed_reproduces():
    x = np.ones((4, 6, 3))
    y = layers.Dropout(0.5, noise_shape=(None, 1, 3), seed=5)(x, training=True)
    assert np.all(y == y[:, :1, :])
    y2 = layers.Dropout(0.5, noise_shape=(None, 1, 3), seed=5)(x, training=True)
    assert np.array_equal(y, y2)
    assert np.all(layers.Dropout(1.0)(x, training=True) == 0)


def test_layers_do_not_mutate_their_inputs():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 4))
    keep = x.copy()
    for layer in (layers.Dense(2, activation="relu"), layers.Activation("softmax"), layers.Dropout(0.5)):
        y = layer(x, training=True)
        layer.backward(np.ones_like(y))
    assert np.array_equal(x, keep)


def test_get_set_weights_copy_and_check_shapes():
    layer = layers.Dense(3)
    layer(np.zeros((1, 2)))
    w = layer.get_weights()
    w[0][...] = 7
    assert not np.any(layer.kernel == 7)
    with pytest.raises(ValueError, match=r"dense.*expected \(2, 3\), got \(3, 2\)"):
        layer.set_weights([np.zeros((3, 2)), np.zeros(3)])
    with pytest.raises(ValueError, match="expects 2 weight arrays"):
        layer.set_weights([np.zeros((2, 3))])
    assert layer.count_params() == 9


@pytest.mark.parametrize(
    "make, x, message",
    [
        (lambda: layers.Dense(3, input_shape=(4,)), np.zeros((2, 5)), r"axis -1 of size 4.*got shape \(2, 5\)"),
        (lambda: layers.Dense(3, input_shape=(4,)), np.zeros((4,)), r"rank >= 2.*got shape \(4,\)"),
        (lambda: layers.Dense(3), np.zeros((0, 4)), "empty batch"),
        (lambda: layers.Dense(3), np.array([["a", "b"]]), "numeric input"),
    ],
)
def test_dense_bad_input_names_layer_and_shapes(make, x, message):
    layer = make()
    layer.build_from_arg()
    with pytest.raises(ValueError, match=message):
        layer(x)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: layers.Dense(0), "units must be a positive integer"),
        (lambda: layers.Dense(3, activation="nope"), "Unknown activation 'nope'"),
        (lambda: layers.Dense(3, kernel_initializer="nope"), "Unknown initializer 'nope'"),
        (lambda: layers.Dense(3, dtype="int32"), "unsupported dtype 'int32'"),
        (lambda: layers.Dense(3, kernel_regularizer="l2"), "Unrecognized keyword arguments passed to Dense"),
        (lambda: layers.Dropout(1.5), "rate must be a number in"),
        (lambda: layers.Reshape((-1, -1)), "invalid target_shape"),
        (lambda: layers.Input(), "a shape is required"),
    ],
)
def test_bad_constructor_arguments(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_reshape_size_mismatch_is_reported():
    with pytest.raises(ValueError, match=r"\(Reshape\): total size of the input \(None, 3, 4\) is 12"):
        layers.Reshape((5,)).ensure_built((None, 3, 4))
