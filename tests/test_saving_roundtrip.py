"""Every format round-trips exactly: weights bit-identical in float32 and float64, and the optimizer too, so that
the next training step after loading is bit-identical to the step the saved model would have taken — even when
``floatx`` differs between saving and loading (the learning rate keeps the dtype it was saved in). And
``load_weights`` from every kind of file is all-or-nothing."""

from __future__ import annotations

import numpy as np
import pytest

import tinynn as tn
from tinynn import layers

FORMATS = ["m.npz", "m.keras", "m.h5"]
OPTIMIZERS = {
    "adam_amsgrad": lambda: tn.optimizers.Adam(learning_rate=0.01, amsgrad=True),
    "rmsprop_centered": lambda: tn.optimizers.RMSprop(learning_rate=0.01, momentum=0.5, centered=True),
    "sgd_nesterov": lambda: tn.optimizers.SGD(learning_rate=0.05, momentum=0.9, nesterov=True),
    "adagrad": lambda: tn.optimizers.Adagrad(learning_rate=0.05),
    "adamw": lambda: tn.optimizers.AdamW(learning_rate=0.01, weight_decay=0.05),
}


def _trained(dtype: str, optimizer: str):
    rng = np.random.default_rng(3)
    model = tn.Sequential([layers.Input((6, 3)), layers.Conv1D(4, 2, activation="relu"), layers.GRU(3),
                           layers.Dense(2, activation="softmax")])
    model.set_weights([rng.normal(0, 0.5, w.shape) for w in model.get_weights()])
    model.compile(OPTIMIZERS[optimizer](), "categorical_crossentropy", metrics=["acc"])
    x = rng.normal(size=(8, 6, 3)).astype(dtype)
    y = np.eye(2)[rng.integers(0, 2, 8)].astype(dtype)
    model.fit(x, y, epochs=2, batch_size=4, shuffle=False, verbose=0)
    return model, x, y


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", FORMATS)
def test_save_load_then_train_is_bit_identical(tmp_path, name, dtype, optimizer):
    tn.config.set_floatx(dtype)  # the model, and its optimizer's learning-rate variable, in this dtype
    try:
        model, x, y = _trained(dtype, optimizer)
        model.save(tmp_path / name)
    finally:
        tn.config.set_floatx("float32")
    tn.config.set_floatx("float64" if dtype == "float32" else "float32")  # load under the other floatx
    try:
        loaded = tn.load_model(tmp_path / name)
    finally:
        tn.config.set_floatx("float32")
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        assert a.dtype == b.dtype == np.dtype(dtype) and a.tobytes() == b.tobytes()
    ours, theirs = model.optimizer.get_state(), loaded.optimizer.get_state()
    assert sorted(ours) == sorted(theirs)
    for key in ours:
        assert ours[key].dtype == theirs[key].dtype and ours[key].tobytes() == theirs[key].tobytes(), key
    assert model.train_on_batch(x, y) == loaded.train_on_batch(x, y)
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        assert a.tobytes() == b.tobytes()


SOURCES = ["m.npz", "w.npz", "m.keras", "w.weights.h5", "m.h5", "w.h5"]


def _stack(units: int):
    return tn.Sequential([layers.Input((5,)), layers.Dense(4), layers.Dense(3), layers.Dense(units)])


@pytest.mark.parametrize("name", SOURCES)
def test_load_weights_is_all_or_nothing(tmp_path, name):
    """The last layer does not fit: the error names the file and the model keeps every weight it had."""
    source = _stack(2)
    source.save(tmp_path / name) if name.startswith("m.") else source.save_weights(tmp_path / name)
    other = _stack(3)
    before = [w.copy() for w in other.get_weights()]
    with pytest.raises(ValueError, match=rf"{name}.*(3|2)"):
        other.load_weights(tmp_path / name)
    assert all(np.array_equal(a, b) for a, b in zip(before, other.get_weights()))
    same = _stack(2)
    same.load_weights(tmp_path / name)
    assert all(a.tobytes() == b.tobytes() for a, b in zip(source.get_weights(), same.get_weights()))
