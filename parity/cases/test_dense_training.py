"""Whole-training parity of the four Dense recipes of seed 003 (and sparse-label, MAE and Huber variants)
against Keras, and of the callbacks that change a run's outcome: EarlyStopping (the epoch it stops at and the
restored best weights) and ModelCheckpoint (the weights in the saved file).

Same initial weights, shuffle=False, validation_split: every History entry and the final weights match.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinynn as tn
from parity.options import examples
from parity.training import training_parity
from tinynn import callbacks, layers, losses, optimizers

RECIPES = {
    # name: (last units, last activation, loss, metrics, label maker)
    "binary": (1, "sigmoid", "binary_crossentropy", ["acc"], lambda r, n, k: (r.random((n, 1)) > 0.5) * 1.0),
    "multiclass": (4, "softmax", "categorical_crossentropy", ["accuracy"],
                   lambda r, n, k: np.eye(k)[r.integers(0, k, n)]),
    "sparse": (4, "softmax", "sparse_categorical_crossentropy", ["acc"], lambda r, n, k: r.integers(0, k, n)),
    "multilabel": (4, "sigmoid", "binary_crossentropy", ["acc"], lambda r, n, k: (r.random((n, k)) > 0.5) * 1.0),
    "regression": (3, None, "mse", ["mae"], lambda r, n, k: r.normal(size=(n, k))),
    "mae_tanh": (2, "tanh", "mae", ["mse"], lambda r, n, k: r.normal(size=(n, k))),
    "huber": (2, None, losses.Huber(delta=0.5), ["mae"], lambda r, n, k: 2 * r.normal(size=(n, k))),
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
    optimizer=st.sampled_from(range(len(OPTIMIZERS))),
    dtype=st.sampled_from(["float64", "float32"]),
    n=st.integers(20, 60),
    batch_size=st.integers(4, 16),
    seed=st.integers(0, 2**16),
)
@examples(dict(recipe="sparse", optimizer=6, dtype="float32", n=60, batch_size=16, seed=3),
          dict(), dict(recipe="huber", optimizer=5, dtype="float64", n=20, batch_size=4))
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


def _small_model(dtype="float64"):
    rng = np.random.default_rng(21)
    x = rng.normal(size=(40, 5))
    y = (rng.random((40, 1)) > 0.5) * 1.0
    model = build("binary", 5, 6, dtype, optimizers.Adam(learning_rate=0.05))
    return model, x.astype(dtype), y


@pytest.mark.parametrize("restore", [True, False])
def test_early_stopping_stops_and_restores_like_keras(restore):
    """A learning rate high enough that val_loss rises early: both stop at the same epoch; with
    restore_best_weights both end with the best epoch's weights (the final-weights check)."""
    model, x, y = _small_model()
    stop = callbacks.EarlyStopping(monitor="val_loss", patience=1, restore_best_weights=restore)
    report = training_parity(model, x, y, epochs=12, batch_size=8, validation_split=0.25, callbacks=[stop])
    report.assert_ok()
    history = [c for c in report.checks if c.what == "history['loss']"]
    assert history, "the History was not compared"
    assert stop.stopped_epoch > 0, "the case must stop early, or restoring is not exercised"


@pytest.mark.parametrize("save_best_only", [True, False])
def test_model_checkpoint_saves_what_keras_saves(tmp_path, save_best_only):
    """The file ModelCheckpoint leaves holds the same weights as Keras's (the best epoch's with
    save_best_only, the last epoch's without)."""
    model, x, y = _small_model()
    checkpoint = callbacks.ModelCheckpoint(tmp_path / "best.weights.h5", monitor="val_loss",
                                           save_best_only=save_best_only, save_weights_only=True)
    report = training_parity(model, x, y, epochs=6, batch_size=8, validation_split=0.25, callbacks=[checkpoint])
    report.assert_ok()
    assert any(c.what.startswith("final checkpoint[0]") for c in report.checks), "the saved weights were not compared"
