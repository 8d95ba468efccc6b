"""Keras file interop against real Keras 3: Keras → file → tinynn → file → Keras, for every layer family.

A Keras model with random weights (biases included) is saved by Keras; tinynn reads it without TensorFlow
(``tinynn.saving``) and must predict what Keras predicts (float32 1e-5, float64 1e-10, relative to the
magnitude of Keras's output, as in the layer parity tests); tinynn writes it back, Keras loads that file
and must hold bit-identical weights and predict exactly what the original did. ``.weights.h5`` files go
both ways too, and ``parity.bridge.from_keras`` / ``to_keras`` convert live models. A compiled model's
optimizer state travels with it: training resumed on the other side matches training continued in place.
"""

from __future__ import annotations

import warnings

import keras
import numpy as np
import pytest
from keras import layers as K

import tinynn as tn
from parity import backend
from parity.bridge import from_keras, to_keras
from parity.harness import assert_checks, compare
from parity.training import keras_floatx, training_parity


def _int_input(vocab):
    return lambda rng, shape: rng.integers(0, vocab, shape).astype("int32")


def _float_input(masked_tail=0):
    def make(rng, shape):
        x = rng.normal(size=shape)
        if masked_tail:
            x[: shape[0] // 2, -masked_tail:] = 0.0  # whole padded steps for Masking
        return x

    return make


# name: (Keras layers after the Input, input shape, input dtype, input maker); every layer type tinynn has
CASES = {
    "dense": (lambda: [K.Dense(6, activation="relu"), K.Dropout(0.3), K.Dense(3, activation="softmax")],
              (5,), None, _float_input()),
    "dense_activation_reshape": (lambda: [K.Dense(6, activation="gelu", use_bias=False), K.Reshape((2, 3)),
                                          K.Activation("tanh"), K.Flatten(), K.Dense(1, activation="sigmoid")],
                                 (4,), None, _float_input()),
    "conv_pooling": (lambda: [K.Conv1D(4, 3, padding="causal", dilation_rate=2, activation="relu"),
                              K.MaxPooling1D(2, padding="same"), K.SeparableConv1D(6, 3, depth_multiplier=2),
                              K.DepthwiseConv1D(2, strides=2, activation="tanh"), K.AveragePooling1D(2),
                              K.Conv1D(4, 1, groups=2), K.GlobalAveragePooling1D(), K.Dense(2)],
                     (20, 4), None, _float_input()),
    "conv_global_max": (lambda: [K.Conv1D(3, 5, strides=2, padding="same"), K.GlobalMaxPooling1D(keepdims=True),
                                 K.Flatten()],
                        (11, 2), None, _float_input()),
    "embedding_rnns": (lambda: [K.Embedding(12, 5, mask_zero=True), K.LSTM(4, return_sequences=True),
                                K.GRU(3, return_sequences=True), K.SimpleRNN(3, go_backwards=True), K.Dense(2)],
                       (7,), "int32", _int_input(12)),
    "gru_reset_before": (lambda: [K.GRU(3, reset_after=False, return_sequences=True), K.GlobalAveragePooling1D()],
                         (6, 3), None, _float_input()),
    "masking_bidirectional": (lambda: [K.Masking(0.0), K.Bidirectional(K.LSTM(3, return_sequences=True)),
                                       K.Bidirectional(K.GRU(2), merge_mode="sum"), K.Dense(1)],
                              (6, 3), None, _float_input(masked_tail=2)),
    "bidirectional_custom_backward": (
        lambda: [K.Bidirectional(K.SimpleRNN(3, return_sequences=True),
                                 backward_layer=K.SimpleRNN(3, return_sequences=True, go_backwards=True,
                                                            activation="relu"), merge_mode="ave"),
                 K.Flatten()],
        (5, 2), None, _float_input()),
}  # fmt: skip


def keras_model(case: str, dtype: str = "float32", seed: int = 0):
    make_layers, shape, input_dtype, make_input = CASES[case]
    with keras_floatx(dtype):
        model = keras.Sequential([keras.Input(shape, dtype=input_dtype or dtype), *make_layers()])
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0, 0.5, w.shape).astype(w.dtype) for w in model.get_weights()])
    x = make_input(rng, (6, *shape))
    return model, (x if input_dtype else x.astype(dtype))


def keras_predict(model, x, dtype: str) -> np.ndarray:
    """Keras's outputs in inference mode, called eagerly (``model.predict`` would also cast float inputs to
    floatx, float32 by default, even for a float64 model; and it compiles a graph per model, which is slow)."""
    return backend.numpy(model(x, training=False))


def assert_close(what, ours, ref, dtype):
    assert_checks([compare(what, ours, ref, dtype)])


def assert_same_weights(a: list, b: list):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.shape == y.shape and x.dtype == y.dtype and x.tobytes() == y.tobytes()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_round_trips(tmp_path, case, dtype):
    """Keras → .keras → tinynn → .keras → Keras; the same through .weights.h5; from_keras / to_keras."""
    km, x = keras_model(case, dtype)
    ref = keras_predict(km, x, dtype)
    km.save(tmp_path / "keras.keras")

    model = tn.load_model(tmp_path / "keras.keras")  # no TensorFlow involved in reading
    assert [type(layer).__name__ for layer in model.layers] == [type(layer).__name__ for layer in km.layers]
    assert_same_weights(model.get_weights(), km.get_weights())
    assert_close("tinynn predict", model.predict(x), ref, dtype)

    model.save(tmp_path / "tinynn.keras")
    back = keras.models.load_model(tmp_path / "tinynn.keras")
    assert [layer.name for layer in back.layers] == [layer.name for layer in km.layers]
    assert_same_weights(back.get_weights(), km.get_weights())
    np.testing.assert_array_equal(keras_predict(back, x, dtype), ref)

    # .weights.h5 both ways, each into a model of the same architecture holding other weights
    km.save_weights(tmp_path / "keras.weights.h5")
    other = tn.load_model(tmp_path / "tinynn.keras")
    other.set_weights([w + 1 for w in other.get_weights()])
    other.load_weights(tmp_path / "keras.weights.h5")
    assert_same_weights(other.get_weights(), km.get_weights())
    other.save_weights(tmp_path / "tinynn.weights.h5")
    back.set_weights([w + 1 for w in back.get_weights()])
    back.load_weights(tmp_path / "tinynn.weights.h5")
    assert_same_weights(back.get_weights(), km.get_weights())

    # live models: parity.bridge
    bridged = from_keras(km)
    assert_same_weights(bridged.get_weights(), km.get_weights())
    assert_close("from_keras predict", bridged.predict(x), ref, dtype)
    again = to_keras(bridged)
    assert_same_weights(again.get_weights(), km.get_weights())
    np.testing.assert_array_equal(keras_predict(again, x, dtype), ref)


def test_compiled_archive_loads_compiled_and_trains_like_keras(tmp_path):
    """compile_config (optimizer, loss, metrics) travels too: the loaded model trains as Keras does."""
    with keras_floatx("float64"):
        km = keras.Sequential([keras.Input((5,)), K.Dense(6, activation="relu"), K.Dense(3, activation="softmax")])
    rng = np.random.default_rng(5)
    km.set_weights([rng.normal(0, 0.5, w.shape) for w in km.get_weights()])  # no dropout: its masks are TF's
    km.compile(optimizer=keras.optimizers.RMSprop(learning_rate=0.01, momentum=0.5), loss="categorical_crossentropy",
               metrics=["acc"])
    km.save(tmp_path / "compiled.keras")
    model = tn.load_model(tmp_path / "compiled.keras")
    assert type(model.optimizer).__name__ == "RMSprop" and model.optimizer.get_config()["momentum"] == 0.5
    assert type(model.loss).__name__ == "CategoricalCrossentropy"
    x = rng.normal(size=(30, 5))
    y = np.eye(3)[rng.integers(0, 3, 30)]
    training_parity(model, x, y, epochs=2, batch_size=8).assert_ok()


def test_tinynn_compiled_archive_compiles_in_keras(tmp_path):
    km, x = keras_model("dense", seed=7)
    model = from_keras(km)
    model.compile(optimizer=tn.optimizers.Adam(learning_rate=0.02, amsgrad=True), loss="mse", metrics=["mae"])
    model.save(tmp_path / "m.keras")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. Keras's "Skipping variable loading for optimizer": none expected
        back = keras.models.load_model(tmp_path / "m.keras")
    assert type(back.optimizer).__name__ == "Adam" and back.optimizer.amsgrad
    assert float(back.optimizer.learning_rate) == pytest.approx(0.02)
    np.testing.assert_array_equal(back.predict(x, verbose=0), km.predict(x, verbose=0))


OPTIMIZERS = {
    "adam_amsgrad": ("Adam", {"learning_rate": 0.01, "amsgrad": True}),
    "adamw": ("AdamW", {"learning_rate": 0.01, "weight_decay": 0.05}),
    "rmsprop_centered": ("RMSprop", {"learning_rate": 0.01, "momentum": 0.5, "centered": True}),
    "sgd_nesterov": ("SGD", {"learning_rate": 0.05, "momentum": 0.9, "nesterov": True}),
    "adagrad": ("Adagrad", {"learning_rate": 0.05}),
}


def _training_data():
    rng = np.random.default_rng(9)
    x = rng.normal(size=(24, 5))
    return x, np.eye(3)[rng.integers(0, 3, 24)]


def _assert_weights_close(ours, ref):
    for w, r in zip(ours, ref):
        assert_checks([compare("weights after resuming", w, r, "float64")])  # 1e-10: stricter than fits' 1e-9


@pytest.mark.parametrize("direction", ["keras_to_tinynn", "tinynn_to_keras"])
@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
def test_training_resumes_across_the_file(tmp_path, optimizer, direction):
    """One side trains an epoch and saves (optimizer state included); the other loads; both train another
    epoch: same weights, so the slots, iterations and learning rate travelled exactly."""
    name, kwargs = OPTIMIZERS[optimizer]
    x, y = _training_data()
    fit = dict(batch_size=8, epochs=1, shuffle=False, verbose=0)
    with keras_floatx("float64"):
        km = keras.Sequential([keras.Input((5,)), K.Dense(6, activation="tanh"), K.Dense(3, activation="softmax")])
        rng = np.random.default_rng(10)
        km.set_weights([rng.normal(0, 0.5, w.shape) for w in km.get_weights()])
        if direction == "keras_to_tinynn":
            km.compile(optimizer=getattr(keras.optimizers, name)(**kwargs), loss="categorical_crossentropy")
            km.fit(x, y, **fit)
            km.save(tmp_path / "m.keras")
            model = tn.load_model(tmp_path / "m.keras")
        else:
            model = from_keras(km)
            model.compile(optimizer=getattr(tn.optimizers, name)(**kwargs), loss="categorical_crossentropy")
            model.fit(x, y, **fit)
            model.save(tmp_path / "m.keras")
            km = keras.models.load_model(tmp_path / "m.keras")
        assert model.optimizer.iterations == int(km.optimizer.iterations) == 3
        km.fit(x, y, **fit)
    model.fit(x, y, **fit)
    _assert_weights_close(model.get_weights(), km.get_weights())


def test_model_built_without_input_layer(tmp_path):
    km = keras.Sequential([K.Dense(3, activation="tanh"), K.Dense(1)])
    km.build((None, 4))
    rng = np.random.default_rng(8)
    km.set_weights([rng.normal(size=w.shape).astype("float32") for w in km.get_weights()])
    km.save(tmp_path / "built.keras")
    x = rng.normal(size=(5, 4)).astype("float32")
    assert_close("predict", tn.load_model(tmp_path / "built.keras").predict(x), km.predict(x, verbose=0), "float32")


def test_unsupported_layers_are_named():
    km = keras.Sequential([keras.Input((5, 5, 5, 1)), K.Conv3D(2, 3), K.BatchNormalization(), K.Flatten(), K.Dense(1)])
    with pytest.raises(ValueError, match=r"(?s)'Conv3D' is not implemented.*'BatchNormalization' is not implemented"):
        from_keras(km)


def test_keras_lambda_file_is_refused(tmp_path):
    km = keras.Sequential([keras.Input((3,)), K.Dense(2), K.Lambda(lambda t: t * 2.0)])
    km.save(tmp_path / "lambda.keras")
    with pytest.raises(ValueError, match=r"Lambda layer 'lambda.*never executes code"):
        tn.load_model(tmp_path / "lambda.keras")
    with pytest.raises(ValueError, match="Lambda"):
        from_keras(km)


def test_functional_model_is_read_from_files_not_bridged(tmp_path):
    """Functional files load (parity/cases/test_functional_files.py); the live bridge converts Sequential only."""
    inputs = keras.Input((3,))
    km = keras.Model(inputs, K.Dense(2)(inputs))
    km.save(tmp_path / "functional.keras")
    x = np.random.default_rng(3).normal(size=(4, 3)).astype("float32")
    assert_close("predict", tn.load_model(tmp_path / "functional.keras").predict(x), km.predict(x, verbose=0),
                 "float32")
    with pytest.raises(ValueError, match="only keras.Sequential"):
        from_keras(km)
