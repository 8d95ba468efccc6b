"""Keras 2 legacy ``.h5`` model files against real Keras: Keras 3's legacy writer (what ``model.save('m.h5')``
does in Keras 3.15) and genuine Keras 2 (``tf_keras`` 2.x). For every 1D layer family, in float32 and float64:

* Keras saves ``.h5`` → tinynn loads it (no TensorFlow involved in reading): the same weights, bit for bit, and
  predictions within 1e-5 / 1e-10 relative to Keras's;
* tinynn saves ``.h5`` → Keras loads it: bit-identical weights and exactly Keras's predictions; ``save_weights``
  to a Keras 2 weights-only ``.h5`` → Keras's ``load_weights`` reads it;
* a compiled model: Keras's training config (optimizer, loss, metrics) and optimizer state travel, so that
  training resumed on the other side matches training continued in place (Keras 3), and tinynn restores
  Keras 2's optimizer variables (a layout without the learning rate) exactly.
"""

from __future__ import annotations

import contextlib

import keras
import numpy as np
import pytest

import tinynn as tn
from parity import backend
from parity.harness import assert_checks, compare, paired
from parity.training import keras_floatx

# name: (layers after the Input, given the layers module of one Keras; input shape; integer input vocabulary)
CASES = {
    "core_conv_pooling": (lambda K: [
        K.Conv1D(4, 3, padding="causal", dilation_rate=2, activation="relu"), K.MaxPooling1D(2, padding="same"),
        K.SeparableConv1D(6, 3, depth_multiplier=2), K.DepthwiseConv1D(2, strides=2, activation="tanh"),
        K.AveragePooling1D(2), K.Conv1D(4, 1, groups=2), K.GlobalMaxPooling1D(keepdims=True), K.Flatten(),
        K.Dense(6, activation="elu"), K.Dropout(0.3), K.Reshape((2, 3)), K.Activation("softsign"),
        K.GlobalAveragePooling1D(), K.Dense(2, activation="softmax")], (20, 4), None),
    "embedding_rnns": (lambda K: [
        K.Embedding(12, 5, mask_zero=True), K.LSTM(4, return_sequences=True), K.GRU(3, return_sequences=True),
        K.GRU(3, reset_after=False, return_sequences=True), K.SimpleRNN(3, go_backwards=True), K.Dense(2)],
        (7,), 12),
    "masking_bidirectional": (lambda K: [
        K.Masking(0.0), K.Bidirectional(K.LSTM(3, return_sequences=True)),
        K.Bidirectional(K.GRU(2, return_sequences=True), merge_mode="sum"),
        K.Bidirectional(K.SimpleRNN(2), backward_layer=K.SimpleRNN(2, go_backwards=True, activation="relu"),
                        merge_mode="ave"), K.Dense(1)], (6, 3), None),
}  # fmt: skip
#: Keras 2 (tf_keras) builds and loads recurrent models slowly (seconds per layer): its cases pack every family
#: into two models; the recurrent one runs in float64 only and is not loaded back by Keras 2 (Keras 3 does that)
KERAS2_CASES = {
    "embedding_conv_pooling_core": (lambda K: [
        K.Embedding(12, 4, input_length=20), K.Conv1D(4, 3, padding="causal", dilation_rate=2, activation="relu"),
        K.MaxPooling1D(2, padding="same"), K.SeparableConv1D(6, 3, depth_multiplier=2),
        K.DepthwiseConv1D(2, strides=2, activation="tanh"), K.AveragePooling1D(2), K.Conv1D(4, 1, groups=2),
        K.GlobalMaxPooling1D(keepdims=True), K.Flatten(), K.Dense(6, activation="elu"), K.Dropout(0.3),
        K.Reshape((2, 3)), K.Activation("softsign"), K.GlobalAveragePooling1D(), K.Dense(2, activation="softmax")],
        (20,), 12),
    "masking_recurrent": (lambda K: [
        K.Masking(0.0), K.Bidirectional(K.LSTM(3, return_sequences=True), merge_mode="sum"),
        K.GRU(3, reset_after=False, return_sequences=True), K.GRU(2, return_sequences=True),
        K.SimpleRNN(2, go_backwards=True), K.Dense(1)], (6, 3), None),
}  # fmt: skip


def tf_keras_module():
    return pytest.importorskip("tf_keras", reason="Keras 2 (pip install --no-deps tf-keras; `make test` does)")


@contextlib.contextmanager
def floatx(module, dtype: str):
    if module is keras:
        with keras_floatx(dtype):
            yield
        return
    old = module.backend.floatx()
    module.backend.set_floatx(dtype)
    try:
        yield
    finally:
        module.backend.set_floatx(old)


def build(module, case: str, dtype: str, seed: int = 0):
    """A Keras (3 or 2) model of ``case`` with random weights (biases included) and an input batch."""
    make_layers, shape, vocab = {**CASES, **KERAS2_CASES}[case]
    with floatx(module, dtype):
        model = module.Sequential([module.Input(shape, dtype="int32" if vocab else dtype), *make_layers(module.layers)])
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0, 0.5, w.shape).astype(w.dtype) for w in model.get_weights()])
    if vocab:
        x = rng.integers(0, vocab, (6, *shape)).astype("int32")
    else:
        x = rng.normal(size=(6, *shape)).astype(dtype)
        x[:3, -2:] = 0.0  # whole padded steps for Masking
    return model, x


def predict(model, x) -> np.ndarray:
    """A model's outputs as NumPy (a Keras 3 model's backend tensor converted on any backend)."""
    y = model(x, training=False)
    return backend.numpy(y) if model.__module__.startswith("keras") else np.asarray(y)


def assert_same_weights(a: list, b: list) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.shape == y.shape and x.dtype == y.dtype and x.tobytes() == y.tobytes()


def round_trip(module, case: str, dtype: str, tmp_path, back_to_keras: bool = True) -> None:
    km, x = build(module, case, dtype)
    ref = predict(km, x)
    km.save(tmp_path / "keras.h5")
    model = tn.load_model(tmp_path / "keras.h5")
    assert [type(layer).__name__ for layer in model.layers] == [type(layer).__name__ for layer in km.layers]
    assert_same_weights(model.get_weights(), km.get_weights())
    assert_checks([compare(f"tinynn predict ({module.__name__} .h5)", model.predict(x), ref, dtype)])
    if not back_to_keras:
        return

    model.save(tmp_path / "tinynn.h5")
    with floatx(module, dtype):
        back = module.models.load_model(tmp_path / "tinynn.h5")
    assert_same_weights(back.get_weights(), km.get_weights())
    np.testing.assert_array_equal(predict(back, x), ref)

    model.set_weights([w * 0.5 for w in model.get_weights()])
    model.save_weights(tmp_path / "tinynn_weights.h5")  # Keras 2's weights-only layout
    back.load_weights(tmp_path / "tinynn_weights.h5")
    assert_same_weights(back.get_weights(), model.get_weights())


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_keras3_legacy_h5_round_trips(tmp_path, case, dtype):
    round_trip(keras, case, dtype, tmp_path)


@pytest.mark.parametrize("case,dtype", [("embedding_conv_pooling_core", "float32"),
                                        ("embedding_conv_pooling_core", "float64"), ("masking_recurrent", "float64")])
def test_keras2_h5_round_trips(tmp_path, case, dtype):
    round_trip(tf_keras_module(), case, dtype, tmp_path, back_to_keras=case == "embedding_conv_pooling_core")


def _data():
    rng = np.random.default_rng(9)
    return rng.normal(size=(24, 5)), np.eye(3)[rng.integers(0, 3, 24)]


def _dense(module, seed=10):
    with floatx(module, "float64"):
        km = module.Sequential([module.Input((5,)), module.layers.Dense(6, activation="tanh"),
                                module.layers.Dense(3, activation="softmax")])
    rng = np.random.default_rng(seed)
    km.set_weights([rng.normal(0, 0.5, w.shape) for w in km.get_weights()])
    return km


OPTIMIZERS = {"adam_amsgrad": ("Adam", {"learning_rate": 0.01, "amsgrad": True}),
              "rmsprop_centered": ("RMSprop", {"learning_rate": 0.01, "momentum": 0.5, "centered": True})}


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
def test_training_resumes_from_a_keras3_h5(tmp_path, optimizer):
    """Keras trains an epoch and saves .h5 (training config and optimizer state); tinynn loads it; both train
    another epoch: the same weights (1e-10), so iterations, learning rate and slots travelled exactly."""
    name, kwargs = OPTIMIZERS[optimizer]
    x, y = _data()
    fit = dict(batch_size=8, epochs=1, shuffle=False, verbose=0)
    with keras_floatx("float64"):
        km = _dense(keras)
        km.compile(optimizer=getattr(keras.optimizers, name)(**kwargs), loss="categorical_crossentropy",
                   metrics=["acc"])
        km.fit(x, y, **fit)
        km.save(tmp_path / "m.h5")
        model = tn.load_model(tmp_path / "m.h5")
        assert model.optimizer.iterations == int(km.optimizer.iterations) == 3
        assert model.get_compile_config()["metrics"] == ["acc"]
        km.fit(x, y, **fit)
    model.fit(x, y, **fit)
    checks = []
    for w, r in paired("weights", model.get_weights(), km.get_weights(), checks):
        checks.append(compare("weights after resuming (.h5)", w, r, "float64"))
    assert_checks(checks)


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
def test_keras3_reads_tinynns_training_config(tmp_path, optimizer):
    """tinynn trains and saves .h5; Keras compiles the model from the file with the same optimizer, loss and
    iteration count. (Keras 3.15's legacy loader builds the optimizer before the model's variables exist and
    so restores only its iteration count and learning rate, for its own files as for these; training on after
    loading any legacy .h5 then fails in Keras with "Unknown variable". The slots' layout is the one the test
    above reads from Keras's files.)"""
    name, kwargs = OPTIMIZERS[optimizer]
    x, y = _data()
    model = tn.Sequential([tn.layers.Input((5,)), tn.layers.Dense(6, activation="tanh", dtype="float64"),
                           tn.layers.Dense(3, activation="softmax", dtype="float64")])
    model.set_weights(_dense(keras).get_weights())
    model.compile(optimizer=getattr(tn.optimizers, name)(**kwargs), loss="categorical_crossentropy", metrics=["acc"])
    model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    model.save(tmp_path / "m.h5")
    km = keras.models.load_model(tmp_path / "m.h5")
    assert type(km.optimizer).__name__ == name and type(km.loss).__name__ == "CategoricalCrossentropy"
    assert km.optimizer.get_config()["amsgrad" if name == "Adam" else "centered"]
    assert int(km.optimizer.iterations) == model.optimizer.iterations == 3
    assert np.asarray(km.optimizer.learning_rate).tobytes() == model.optimizer.get_state()["learning_rate"].tobytes()
    assert_same_weights(km.get_weights(), model.get_weights())


def test_keras2_training_config_and_optimizer_state(tmp_path):
    """A model compiled and trained by Keras 2 (its Custom>RMSprop, MeanMetricWrapper metrics, a loss with
    reduction 'auto'): tinynn compiles it alike and restores iterations and every slot bit for bit."""
    tf_keras = tf_keras_module()
    x, y = _data()
    km = _dense(tf_keras)
    with floatx(tf_keras, "float64"):
        km.compile(optimizer=tf_keras.optimizers.RMSprop(learning_rate=0.01, momentum=0.5, centered=True),
                   loss=tf_keras.losses.CategoricalCrossentropy(), metrics=["acc", "mae"])
        km.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
        km.save(tmp_path / "k2.h5")
    model = tn.load_model(tmp_path / "k2.h5")
    assert type(model.optimizer).__name__ == "RMSprop" and model.optimizer.get_config()["centered"]
    assert type(model.loss).__name__ == "CategoricalCrossentropy"
    assert model.get_compile_config()["metrics"] == ["acc", "mae"]
    state = model.optimizer.get_state()
    assert int(state["iterations"]) == int(km.optimizer.iterations) == 3
    slots = {"velocity": km.optimizer._velocities, "momentum": km.optimizer._momentums,
             "average_gradient": km.optimizer._average_gradients}
    for slot, variables in slots.items():
        for i, variable in enumerate(variables):
            assert state[f"{slot}_{i}"].tobytes() == np.asarray(variable).tobytes(), (slot, i)


def test_keras2_hard_sigmoid_is_refused(tmp_path):
    """Keras 2 computes hard_sigmoid as clip(0.2x + 0.5), Keras 3 and tinynn as clip(x/6 + 1/2): the formulas
    differ (checked here on Keras 2's own output), so tinynn refuses such a Keras 2 file instead of predicting
    something else."""
    tf_keras = tf_keras_module()
    km = tf_keras.Sequential([tf_keras.Input((3,)), tf_keras.layers.Dense(2, activation="hard_sigmoid")])
    km.set_weights([np.eye(3, 2), np.zeros(2)])
    x = np.array([[1.0, -2.0, 0.0]], dtype="float32")
    np.testing.assert_allclose(predict(km, x), np.clip(0.2 * x[:, :2] + 0.5, 0, 1), rtol=1e-6)
    assert not np.allclose(predict(km, x), np.clip(x[:, :2] / 6 + 0.5, 0, 1))
    km.save(tmp_path / "k2.h5")
    with pytest.raises(ValueError, match=r"activation='hard_sigmoid' of layer 'dense.*with Keras 2's formula"):
        tn.load_model(tmp_path / "k2.h5")
