"""Whole-training parity of the four Dense recipes of seed 003 (and a sparse-label variant) against Keras.

Same initial weights, shuffle=False, validation_split: every History entry and the final weights match.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinynn as tn
from parity.training import training_parity
from tinynn import layers, optimizers

RECIPES = {
    # name: (last units, last activation, loss, metrics, label maker)
    "binary": (1, "sigmoid", "binary_crossentropy", ["acc"], lambda r, n, k: (r.random((n, 1)) > 0.5) * 1.0),
    "multiclass": (4, "softmax", "categorical_crossentropy", ["accuracy"],
                   lambda r, n, k: np.eye(k)[r.integers(0, k, n)]),
    "sparse": (4, "softmax", "sparse_categorical_crossentropy", ["acc"], lambda r, n, k: r.integers(0, k, n)),
    "multilabel": (4, "sigmoid", "binary_crossentropy", ["acc"], lambda r, n, k: (r.random((n, k)) > 0.5) * 1.0),
    "regression": (3, None, "mse", ["mae"], lambda r, n, k: r.normal(size=(n, k))),
    "huber_mae": (2, "tanh", "mae", ["mse"], lambda r, n, k: r.normal(size=(n, k))),
}

OPTIMIZERS = [
    lambda: optimizers.RMSprop(learning_rate=0.01),
    lambda: optimizers.SGD(learning_rate=0.05, momentum=0.9, nesterov=True),
    lambda: optimizers.Adam(learning_rate=0.01),
    lambda: optimizers.Adam(learning_rate=0.01, amsgrad=True, clipnorm=0.5),
    lambda: optimizers.AdamW(learning_rate=0.01),
    lambda: optimizers.Adagrad(learning_rate=0.05),
    lambda: optimizers.RMSprop(learning_rate=0.01, momentum=0.5, centered=True),
]


def build(recipe, n_features, hidden, dtype, optimizer):
    units, activation, loss, metrics, _ = RECIPES[recipe]
    model = tn.Sequential([
        layers.Dense(hidden, activation="relu", input_shape=(n_features,), dtype=dtype),
        layers.Dense(hidden, activation="relu", dtype=dtype),
        layers.Dense(units, activation=activation, dtype=dtype),
    ])
    rng = np.random.default_rng(hidden)
    model.set_weights([rng.normal(0, 0.5, w.shape) for w in model.get_weights()])  # non-zero biases too
    model.compile(optimizer=optimizer, loss=loss, metrics=metrics)
    return model


@given(
    recipe=st.sampled_from(sorted(RECIPES)),
    optimizer=st.integers(0, len(OPTIMIZERS) - 1),
    dtype=st.sampled_from(["float64", "float32"]),
    n=st.integers(20, 60),
    batch_size=st.integers(4, 16),
    seed=st.integers(0, 2**16),
)
def test_dense_recipes_train_like_keras(recipe, optimizer, dtype, n, batch_size, seed):
    rng = np.random.default_rng(seed)
    n_features, hidden = 5, 6
    x = rng.normal(size=(n, n_features)).astype(dtype)
    y = RECIPES[recipe][4](rng, n, RECIPES[recipe][0])
    model = build(recipe, n_features, hidden, dtype, OPTIMIZERS[optimizer]())
    training_parity(model, x, y, epochs=3, batch_size=batch_size, validation_split=0.25).assert_ok()


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_each_recipe_float64(recipe):
    """Every recipe at least once in float64, whatever hypothesis samples."""
    rng = np.random.default_rng(7)
    x = rng.normal(size=(37, 5))
    y = RECIPES[recipe][4](rng, 37, RECIPES[recipe][0])
    model = build(recipe, 5, 6, "float64", optimizers.RMSprop(learning_rate=0.01))
    training_parity(model, x, y, epochs=3, batch_size=8, validation_split=0.2).assert_ok()
