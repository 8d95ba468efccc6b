"""Keras 3 files without Keras (tinynn.saving.keras_v3, keras_config): the file layout, tinynn round trips, and
every refusal (Lambda, unknown classes, unsupported options, mismatched architectures, malformed files). Round
trips through real Keras are in parity/cases/test_interop.py."""

from __future__ import annotations

import builtins
import json
import zipfile

import h5py
import numpy as np
import pytest

import tinynn as tn
from tinynn import layers, saving
from tinynn.saving import keras_v3


def _randomize(model, seed=0):
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0, 0.5, w.shape) for w in model.get_weights()])
    return model


def dense_stack(dtype="float32"):
    return _randomize(tn.Sequential([
        layers.Input(shape=(5,)), layers.Dense(4, activation="relu", dtype=dtype),
        layers.Dropout(0.25, dtype=dtype), layers.Dense(3, activation="softmax", dtype=dtype),
    ]))  # fmt: skip


MODELS = {
    "dense": (dense_stack, "float"),
    "dense64": (lambda: dense_stack("float64"), "float"),
    "conv": (lambda: _randomize(tn.Sequential([
        layers.Input(shape=(12, 3)), layers.Conv1D(4, 3, padding="causal", dilation_rate=2, activation="tanh"),
        layers.DepthwiseConv1D(2, depth_multiplier=2), layers.MaxPooling1D(2, padding="same"),
        layers.SeparableConv1D(3, 2, activation="relu"), layers.AveragePooling1D(2), layers.Flatten(),
        layers.Reshape((3, -1)), layers.GlobalAveragePooling1D(), layers.Activation("gelu"),
    ])), "float"),  # fmt: skip
    "recurrent": (lambda: _randomize(tn.Sequential([
        layers.Input(shape=(7,)), layers.Embedding(15, 4, mask_zero=True),
        layers.LSTM(3, return_sequences=True), layers.GRU(2, reset_after=False, return_sequences=True),
        layers.SimpleRNN(3, go_backwards=True), layers.Dense(2),
    ])), "int"),  # fmt: skip
    "bidirectional": (lambda: _randomize(tn.Sequential([
        layers.Input(shape=(6, 3)), layers.Masking(0.0),
        layers.Bidirectional(layers.LSTM(3, return_sequences=True), merge_mode="sum"),
        layers.Bidirectional(layers.GRU(2)), layers.Dense(1, activation="sigmoid"),
    ])), "float"),  # fmt: skip
}


def _input(model, kind, seed=1):
    rng = np.random.default_rng(seed)
    shape = (4, *model.input_layer.shape[1:])
    if kind == "int":
        return rng.integers(0, 15, shape)
    x = rng.normal(size=shape).astype(model.layers[0].dtype)
    x[:, -1:] = 0.0  # masked steps for Masking
    return x


def _same_weights(a, b):
    wa, wb = a.get_weights(), b.get_weights()
    return len(wa) == len(wb) and all(x.dtype == y.dtype and x.tobytes() == y.tobytes() for x, y in zip(wa, wb))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_keras_archive_round_trip_is_exact(tmp_path, name):
    make, kind = MODELS[name]
    model = make()
    model.save(tmp_path / "m.keras")  # tinynn.saving dispatches .keras paths to keras_v3
    loaded = tn.load_model(tmp_path / "m.keras")
    assert [type(layer) for layer in loaded.layers] == [type(layer) for layer in model.layers]
    assert [layer.get_config() for layer in loaded.layers] == [layer.get_config() for layer in model.layers]
    assert _same_weights(model, loaded)
    x = _input(model, kind)
    assert np.array_equal(model.predict(x), loaded.predict(x))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_weights_h5_round_trip_is_exact(tmp_path, name):
    make, kind = MODELS[name]
    model, other = make(), _randomize(make(), seed=5)
    assert not _same_weights(model, other)
    model.save_weights(tmp_path / "w.weights.h5")
    other.load_weights(tmp_path / "w.weights.h5")
    assert _same_weights(model, other)


def test_weights_file_has_keras_layout(tmp_path):
    """Keras 3 addresses layers by snake-case class name numbered by repeats, not by the layer's name."""
    model = tn.Sequential([layers.Input(shape=(4, 3)), layers.Dense(2, name="first"), layers.Dense(2, name="second"),
                           layers.LSTM(2, return_sequences=True), layers.Bidirectional(layers.SimpleRNN(2)),
                           layers.Flatten()])  # fmt: skip
    _randomize(model)
    model.save_weights(tmp_path / "w.weights.h5")
    with h5py.File(tmp_path / "w.weights.h5", "r") as f:
        arrays = {}
        f.visititems(lambda n, o: arrays.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset) else None)
        assert f["vars"].attrs["name"].decode() == model.name  # fixed-length bytes: kept in the checksummed header
        assert f["layers/dense_1/vars"].attrs["name"].decode() == "second"
        assert "layers/flatten/vars" in f  # weightless layers get an empty group, as Keras writes
    w = model.get_weights()
    expected = {
        "layers/dense/vars/0": w[0], "layers/dense/vars/1": w[1],
        "layers/dense_1/vars/0": w[2], "layers/dense_1/vars/1": w[3],
        "layers/lstm/cell/vars/0": w[4], "layers/lstm/cell/vars/1": w[5], "layers/lstm/cell/vars/2": w[6],
        "layers/bidirectional/forward_layer/cell/vars/0": w[7],
        "layers/bidirectional/forward_layer/cell/vars/1": w[8],
        "layers/bidirectional/forward_layer/cell/vars/2": w[9],
        "layers/bidirectional/backward_layer/cell/vars/0": w[10],
        "layers/bidirectional/backward_layer/cell/vars/1": w[11],
        "layers/bidirectional/backward_layer/cell/vars/2": w[12],
    }  # fmt: skip
    assert sorted(arrays) == sorted(expected)
    for path, value in expected.items():
        assert np.array_equal(arrays[path], value), path


def test_layer_keys_number_repeated_classes():
    ls = [layers.Dense(1), layers.Conv1D(1, 1), layers.Dense(1), layers.GlobalMaxPooling1D(), layers.Dense(1),
          layers.SimpleRNN(1)]
    assert keras_v3.layer_keys(ls) == ["dense", "conv1d", "dense_1", "global_max_pooling1d", "dense_2", "simple_rnn"]


def test_archive_members_and_config(tmp_path):
    model = dense_stack()
    model.compile(optimizer=tn.optimizers.Adam(learning_rate=0.02), loss="categorical_crossentropy", metrics=["acc"])
    model.save(tmp_path / "m.keras")
    with zipfile.ZipFile(tmp_path / "m.keras") as z:
        assert sorted(z.namelist()) == ["config.json", "metadata.json", "model.weights.h5"]
        config = json.loads(z.read("config.json"))
    assert config["class_name"] == "Sequential"
    first, *rest = config["config"]["layers"]
    assert first["class_name"] == "InputLayer" and first["config"]["batch_shape"] == [None, 5]
    assert [s["class_name"] for s in rest] == ["Dense", "Dropout", "Dense"]
    assert rest[0]["config"]["kernel_initializer"]["module"] == "keras.initializers"
    assert config["compile_config"]["optimizer"]["class_name"] == "Adam"
    loaded = tn.load_model(tmp_path / "m.keras")
    assert type(loaded.optimizer).__name__ == "Adam" and loaded.optimizer.learning_rate == pytest.approx(0.02)
    assert type(loaded.loss).__name__ == "CategoricalCrossentropy"
    uncompiled = tn.load_model(tmp_path / "m.keras", compile=False)
    assert uncompiled.loss is None


def test_load_weights_is_all_or_nothing(tmp_path):
    model = dense_stack()
    model.save_weights(tmp_path / "w.weights.h5")
    other = tn.Sequential([layers.Input(shape=(5,)), layers.Dense(4), layers.Dense(2)])
    before = other.get_weights()
    message = r"'dense_\d+' \(Dense\).*expects weight shapes \[\(4, 2\), \(2,\)\].*\(4, 3\)"
    with pytest.raises(ValueError, match=message):
        other.load_weights(tmp_path / "w.weights.h5")
    assert all(np.array_equal(a, b) for a, b in zip(before, other.get_weights()))


def test_load_weights_rejects_extra_and_missing_layers(tmp_path):
    dense_stack().save_weights(tmp_path / "w.weights.h5")
    fewer = tn.Sequential([layers.Input(shape=(5,)), layers.Dense(4)])
    with pytest.raises(ValueError, match=r"weights for layers \['dense_1'\].*architectures differ"):
        fewer.load_weights(tmp_path / "w.weights.h5")
    more = tn.Sequential([layers.Input(shape=(5,)), layers.Dense(4), layers.Dense(3), layers.Dense(2)])
    with pytest.raises(ValueError, match=r"expects 2 arrays at 'layers/dense_2/vars'.*no such group"):
        more.load_weights(tmp_path / "w.weights.h5")


def _archive_with(tmp_path, mutate, name="m.keras"):
    """A tinynn-written archive whose config.json has been edited by ``mutate(config)``."""
    model = dense_stack()
    model.save(tmp_path / "orig.keras")
    with zipfile.ZipFile(tmp_path / "orig.keras") as z:
        members = {n: z.read(n) for n in z.namelist()}
    config = json.loads(members["config.json"])
    mutate(config)
    members["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(tmp_path / name, "w") as z:
        for n, data in members.items():
            z.writestr(n, data)
    return tmp_path / name


def test_lambda_layer_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "executed"
    # what Keras stores for a Lambda: the function's bytecode (here a stand-in that would write a file)
    code = f"open({str(marker)!r}, 'w').write('pwned')"
    lam = {"module": "keras.layers", "class_name": "Lambda", "registered_name": None,
           "config": {"name": "evil", "function": {"class_name": "__lambda__", "config": {"code": code}}}}
    path = _archive_with(tmp_path, lambda c: c["config"]["layers"].insert(2, lam))
    with pytest.raises(ValueError, match=r"Lambda layer 'evil'.*never executes code"):
        tn.load_model(path)
    assert not marker.exists()


def test_unknown_layer_classes_are_all_named(tmp_path):
    def mutate(config):
        config["config"]["layers"][1]["class_name"] = "Conv3D"
        config["config"]["layers"][3]["class_name"] = "BatchNormalization"

    with pytest.raises(ValueError, match=r"(?s)'Conv3D' is not implemented.*'BatchNormalization' is not implemented"):
        tn.load_model(_archive_with(tmp_path, mutate))


@pytest.mark.parametrize(
    "mutate,message",
    [
        (lambda c: c["config"]["layers"][1].update(module="my_package.layers"), r"module 'my_package.layers'"),
        (lambda c: c["config"]["layers"][1].update(registered_name="Custom>Dense"), r"custom \(registered\) class"),
        (lambda c: c["config"]["layers"][1]["config"].update(lora_rank=4), r"option lora_rank=4 of Dense"),
        (lambda c: c["config"]["layers"][1]["config"].update(
            dtype={"class_name": "DTypePolicy", "config": {"name": "mixed_float16"}}), r"dtype policy"),
        (lambda c: c["config"]["layers"][1]["config"].update(
            kernel_initializer={"module": "keras.initializers", "class_name": "Identity", "config": {}}),
         r"initializer class 'Identity'"),
        (lambda c: c["config"]["layers"][1]["config"].update(activation="mystery"), r"Unknown activation 'mystery'"),
        (lambda c: c.update(class_name="MyModel"),
         r"tinynn can read \['Functional', 'Model', 'Sequential'\] models.*'MyModel'"),
        (lambda c: c.update(class_name="Functional"), r"functional model config has no input_layers or output_layers"),
    ],
)
def test_unsupported_configs_are_refused_clearly(tmp_path, mutate, message):
    with pytest.raises(ValueError, match=message):
        tn.load_model(_archive_with(tmp_path, mutate))


def test_regularizers_are_dropped_with_a_warning(tmp_path):
    """A regularizer only adds a training penalty: the model loads and predicts; the warning says what is lost."""
    def mutate(config):
        config["config"]["layers"][1]["config"]["kernel_regularizer"] = {
            "module": "keras.regularizers", "class_name": "L2", "config": {"l2": 0.01}, "registered_name": None}

    with pytest.warns(UserWarning, match=r"Dense 'dense.*kernel_regularizer='L2' dropped.*Predictions are unaffected"):
        loaded = tn.load_model(_archive_with(tmp_path, mutate))
    assert _same_weights(loaded, dense_stack())


def test_options_that_are_off_are_accepted(tmp_path):
    """Keras writes regularizers/constraints/quantization as null: tinynn lacks them, and they change nothing."""
    def mutate(config):
        config["config"]["layers"][1]["config"].update(kernel_regularizer=None, bias_constraint=None,
                                                       quantization_config=None, lora_enabled=False)

    loaded = tn.load_model(_archive_with(tmp_path, mutate))
    assert _same_weights(loaded, dense_stack())


def test_malformed_files_are_refused(tmp_path):
    (tmp_path / "not_zip.keras").write_bytes(b"hello")
    with pytest.raises(ValueError, match=r"not_zip.keras'.*none of these formats"):
        tn.load_model(tmp_path / "not_zip.keras")
    with zipfile.ZipFile(tmp_path / "empty.keras", "w") as z:
        z.writestr("metadata.json", "{}")
    with pytest.raises(ValueError, match=r"neither a config.json \(Keras\) nor a __config__.npy"):
        tn.load_model(tmp_path / "empty.keras")
    with zipfile.ZipFile(tmp_path / "npz.keras", "w") as z:
        z.writestr("config.json", "{}")
        z.writestr("model.weights.npz", b"")
    with pytest.raises(ValueError, match="weights_format='npz'"):
        tn.load_model(tmp_path / "npz.keras")
    (tmp_path / "bad.weights.h5").write_bytes(b"not hdf5")
    with pytest.raises(ValueError, match=r"bad.weights.h5'.*none of these formats"):
        dense_stack().load_weights(tmp_path / "bad.weights.h5")
    with h5py.File(tmp_path / "legacy.weights.h5", "w") as f:
        f.create_group("model_weights")
    with pytest.raises(ValueError, match=r"Keras 2 \(legacy HDF5\).*stores weights for 0 layers"):
        dense_stack().load_weights(tmp_path / "legacy.weights.h5")


def test_path_suffixes(tmp_path):
    model = dense_stack()
    with pytest.raises(ValueError, match=r"a .keras archive holds a whole model"):
        model.save_weights(tmp_path / "w.keras")
    model.save(tmp_path / "m.h5")  # Keras 2's legacy format, as Keras 3's model.save('m.h5') writes it
    with h5py.File(tmp_path / "m.h5", "r") as f:
        assert json.loads(f.attrs["model_config"])["class_name"] == "Sequential"
    model.save(tmp_path / "m.zip")  # any other name: tinynn's .npz format
    with zipfile.ZipFile(tmp_path / "m.zip") as z:
        assert "__config__.npy" in z.namelist()


def test_unbuilt_model_cannot_be_saved(tmp_path):
    with pytest.raises(ValueError, match="is not built"):
        tn.Sequential([layers.Dense(2)]).save(tmp_path / "m.keras")


def test_missing_h5py_gives_install_hint(tmp_path, monkeypatch):
    dense_stack().save_weights(tmp_path / "w.weights.h5")
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "h5py":
            raise ImportError("No module named 'h5py'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ImportError, match="pip install h5py"):
        dense_stack().load_weights(tmp_path / "w.weights.h5")


def test_model_from_config_needs_no_file():
    """The mapping is plain data -> tinynn constructors (what parity.bridge.from_keras uses too)."""
    model = dense_stack("float64")
    spec = saving.keras_model_config(model)
    rebuilt = saving.model_from_keras_config(json.loads(json.dumps(spec)))
    assert [layer.get_config() for layer in rebuilt.layers] == [layer.get_config() for layer in model.layers]
    assert rebuilt.layers[0].dtype == "float64"
