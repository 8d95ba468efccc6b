"""tinynn's .npz format (tinynn.saving.npz): bit-identical round trips, optimizer state, no code execution on load."""

import json
import zipfile

import numpy as np
import pytest

import tinynn as tn
from tinynn import layers


def trained_model(dtype="float32"):
    model = tn.Sequential([layers.Input(shape=(4,)), layers.Dense(6, activation="tanh", dtype=dtype),
                           layers.Dropout(0.2), layers.Dense(2, activation="softmax", dtype=dtype)])
    model.compile(tn.optimizers.Adam(learning_rate=0.01), "sparse_categorical_crossentropy", metrics=["acc"])
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 4)).astype(dtype), rng.integers(0, 2, 32)
    model.fit(x, y, epochs=2, verbose=0, shuffle=False)
    return model, x, y


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_round_trip_is_bit_identical(tmp_path, dtype):
    model, x, _ = trained_model(dtype)
    path = tmp_path / "model.npz"
    model.save(path)
    loaded = tn.load_model(path)
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes()
    assert np.array_equal(model.predict(x), loaded.predict(x))
    assert [type(layer) for layer in loaded.layers] == [type(layer) for layer in model.layers]
    assert loaded.layers[1].rate == 0.2


def test_training_continues_identically_after_load(tmp_path):
    model, x, y = trained_model("float64")
    model.layers[1].rate = 0.0  # dropout draws would differ between the two copies' RNG streams
    model.save(tmp_path / "m.npz")
    loaded = tn.load_model(tmp_path / "m.npz")
    assert loaded.optimizer.iterations == model.optimizer.iterations > 0
    a = model.fit(x, y, epochs=2, verbose=0, shuffle=False).history["loss"]
    b = loaded.fit(x, y, epochs=2, verbose=0, shuffle=False).history["loss"]
    assert a == b  # same weights, optimizer moments and step count: exactly the same numbers
    for w1, w2 in zip(model.get_weights(), loaded.get_weights()):
        assert w1.tobytes() == w2.tobytes()


def test_weights_only_round_trip(tmp_path):
    model, x, _ = trained_model()
    model.save_weights(tmp_path / "w.npz")
    other = tn.Sequential([layers.Input(shape=(4,)), layers.Dense(6, activation="tanh"), layers.Dropout(0.2),
                           layers.Dense(2, activation="softmax")])
    other.load_weights(tmp_path / "w.npz")
    assert np.array_equal(model.predict(x), other.predict(x))


def test_loading_never_unpickles(tmp_path):
    path = tmp_path / "evil.npz"
    config = {"format": "tinynn", "version": 1, "class_name": "Sequential", "num_weights": 1,
              "config": {"name": "s", "layers": [], "input_shape": [2]}}
    with open(path, "wb") as fh:
        np.savez(fh, __config__=np.frombuffer(json.dumps(config).encode(), dtype=np.uint8),
                 weight_0=np.array([object()], dtype=object))
    with pytest.raises(ValueError, match=r"evil.npz' as a tinynn .npz model file: .*dtype object.*never pickles"):
        tn.load_model(path)


def test_unknown_layer_class_is_rejected(tmp_path):
    path = tmp_path / "lambda.npz"
    config = {"format": "tinynn", "version": 1, "class_name": "Sequential", "num_weights": 0,
              "config": {"name": "s", "input_shape": [2],
                         "layers": [{"class_name": "Lambda", "config": {"function": "os.system('x')"}}]}}
    with open(path, "wb") as fh:
        np.savez(fh, __config__=np.frombuffer(json.dumps(config).encode(), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"unknown classes 'Lambda' in its config \(a Lambda's function would be code"):
        tn.load_model(path)


def test_not_a_model_file(tmp_path):
    path = tmp_path / "plain.npz"
    np.savez(path, a=np.zeros(3))
    with pytest.raises(ValueError, match=r"plain.npz. as a model file.*neither a config.json \(Keras\)"):
        tn.load_model(path)


@pytest.mark.parametrize("damage", [(b"'descr'", b"('descr'"), (b"'shape'", b"'''shape")])
def test_a_header_numpy_cannot_tokenize_is_a_clear_error(tmp_path, damage):
    """A .npy header that is not a Python literal makes numpy retry it with the tokenizer (as a header written by
    Python 2), which raises ``tokenize.TokenError`` on an unclosed bracket or string; the load names the member."""
    model, _, _ = trained_model()
    path = tmp_path / "m.npz"
    model.save(path)
    with zipfile.ZipFile(path) as archive:
        members = {info.filename: archive.read(info) for info in archive.infolist()}
    old, new = damage
    members["__config__.npy"] = members["__config__.npy"].replace(old, new, 1)
    with zipfile.ZipFile(path, "w") as archive:  # rewritten with the right sizes and CRCs: only the header is wrong
        for name, content in members.items():
            archive.writestr(name, content)
    with pytest.raises(ValueError, match=r"m.npz' as a tinynn .npz model file: member '__config__.npy' has a damaged "
                                         r"\.npy header \(TokenError"):
        tn.load_model(path)
