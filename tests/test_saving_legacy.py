"""Keras 2 legacy ``.h5`` files without Keras (tinynn.saving.keras_legacy): the layout Keras 2 writes, round trips
for every layer family, the name conventions per class, Keras 2's config dialect, and the refusals. Files written
and read by real Keras 2 (tf_keras) and Keras 3 are in parity/cases/test_legacy_h5.py."""

from __future__ import annotations

import importlib.util
import json
import os

import h5py
import numpy as np
import pytest
from test_saving_keras import MODELS, _input, _same_weights

import tinynn as tn
from tinynn import layers
from tinynn.saving import FileFormatError, keras_legacy


def _names(group) -> list[str]:
    return [n.decode() for n in group.attrs["weight_names"]]


def test_layout_is_keras2s(tmp_path):
    model = tn.Sequential([layers.Input((7,)), layers.Embedding(10, 3, name="embedding"),
                           layers.SeparableConv1D(4, 2, name="separable_conv1d"),
                           layers.DepthwiseConv1D(2, name="depthwise_conv1d"),
                           layers.Bidirectional(layers.LSTM(2, return_sequences=True, name="lstm"),
                                                name="bidirectional"),
                           layers.GRU(2, name="gru"), layers.Dense(1)])
    model.compile(tn.optimizers.RMSprop(learning_rate=0.01), "mse", metrics=["mae"])
    model.save(tmp_path / "m.h5")
    with h5py.File(tmp_path / "m.h5", "r") as f:
        config = json.loads(f.attrs["model_config"])
        training = json.loads(f.attrs["training_config"])
        assert f.attrs["keras_version"].decode().startswith("3.")  # Keras 3's formulas (see the next test)
        first, *rest = config["config"]["layers"]
        assert first["class_name"] == "InputLayer" and first["config"]["batch_input_shape"] == [None, 7]
        assert first["config"]["dtype"] == "int32" and rest[0]["config"]["dtype"] == "float32"  # dtype strings
        assert "seed" not in rest[3]["config"]["layer"]["config"]  # a Keras-3-only option Keras 2 rejects
        assert training["optimizer_config"]["class_name"] == "RMSprop" and training["metrics"] == ["mae"]
        weights = f["model_weights"]
        assert [n.decode() for n in weights.attrs["layer_names"]] == [layer.name for layer in model.layers]
        assert _names(weights["embedding"]) == ["embedding/embeddings:0"]
        assert _names(weights["separable_conv1d"]) == ["separable_conv1d/depthwise_kernel:0",
                                                       "separable_conv1d/pointwise_kernel:0", "separable_conv1d/bias:0"]
        assert _names(weights["depthwise_conv1d"]) == ["depthwise_conv1d/depthwise_kernel:0", "depthwise_conv1d/bias:0"]
        assert _names(weights["gru"]) == ["gru/gru_cell/kernel:0", "gru/gru_cell/recurrent_kernel:0",
                                          "gru/gru_cell/bias:0"]
        assert _names(weights["bidirectional"])[3] == "bidirectional/backward_lstm/lstm_cell/kernel:0"
        stored = [weights[layer.name][name][()] for layer in model.layers for name in _names(weights[layer.name])]
    assert all(a.tobytes() == b.tobytes() for a, b in zip(model.get_weights(), stored))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_round_trip_is_exact(tmp_path, name):
    make, kind = MODELS[name]
    model = make()
    model.save(tmp_path / "m.h5")
    loaded = tn.load_model(tmp_path / "m.h5")
    assert [layer.get_config() for layer in loaded.layers] == [layer.get_config() for layer in model.layers]
    assert _same_weights(model, loaded)
    x = _input(model, kind)
    assert np.array_equal(model.predict(x), loaded.predict(x))
    model.save_weights(tmp_path / "w.h5")  # Keras 2's weights-only file: model_weights at the root
    other = make()
    other.set_weights([w + 1 for w in other.get_weights()])
    other.load_weights(tmp_path / "w.h5")
    assert _same_weights(model, other)


def _rewrite(path, edit) -> None:
    with h5py.File(path, "r+") as f:
        edit(f)


def test_names_decide_the_order_when_they_identify_every_variable(tmp_path):
    """A file listing an LSTM's recurrent kernel first (square kernels: shapes cannot tell) loads by name."""
    model = tn.Sequential([layers.Input((4, 3)), layers.LSTM(3, name="lstm")])
    model.set_weights([np.random.default_rng(0).normal(size=w.shape) for w in model.get_weights()])
    model.save(tmp_path / "m.h5")

    def swap(f):
        group = f["model_weights/lstm"]
        names = list(group.attrs["weight_names"])
        group.attrs["weight_names"] = np.array([names[1], names[0], names[2]])

    _rewrite(tmp_path / "m.h5", swap)
    assert _same_weights(model, tn.load_model(tmp_path / "m.h5"))

    def rename(f):  # names that say nothing: Keras's order (legacy: trainable first) decides
        group = f["model_weights/lstm"]
        for i, old in enumerate(list(group.attrs["weight_names"])):
            group.move(old.decode(), f"w{i}")
        group.attrs["weight_names"] = np.array([b"w0", b"w1", b"w2"])

    _rewrite(tmp_path / "m.h5", rename)
    assert _same_weights(model, tn.load_model(tmp_path / "m.h5"))


def test_keras2_names_of_each_class():
    lstm = layers.Bidirectional(layers.LSTM(2), name="bi")
    lstm.build((None, 3, 2))
    depthwise = layers.DepthwiseConv1D(2, name="dw")
    depthwise.build((None, 5, 2))
    roles = [keras_legacy.keras2_weight_name(lstm, r) for r in ["forward_lstm/kernel", "backward_lstm/bias"]]
    assert roles == ["bi/forward_lstm/lstm_cell/kernel:0", "bi/backward_lstm/lstm_cell/bias:0"]
    assert keras_legacy.keras2_weight_name(depthwise, "kernel") == "dw/depthwise_kernel:0"


def _with_configs(path, model_config: dict, training_config: dict | None) -> None:
    def edit(f):
        f.attrs["model_config"] = np.bytes_(json.dumps(model_config).encode())
        if training_config is not None:
            f.attrs["training_config"] = np.bytes_(json.dumps(training_config).encode())

    _rewrite(path, edit)


def test_keras2_dialect(tmp_path):
    """What Keras 2.x writes and Keras 3 does not: batch_input_shape on the first layer (no InputLayer), an
    Embedding's input_length, implementation/time_major on RNNs, the unused kernel_* options of separable convs,
    a 'Policy' dtype, 'Custom>RMSprop' with lr and decay, a LossFunctionWrapper with reduction 'auto' and fn,
    and metrics nested per output in MeanMetricWrapper."""
    model = tn.Sequential([layers.Input((6,)), layers.Embedding(9, 4), layers.SeparableConv1D(3, 2),
                           layers.LSTM(2), layers.Dense(1, activation="sigmoid")])
    model.compile("rmsprop", "binary_crossentropy")
    model.save(tmp_path / "m.h5")
    init = {"class_name": "GlorotUniform", "config": {"seed": None}}
    model_config = {"class_name": "Sequential", "config": {"name": "sequential_4", "layers": [
        {"class_name": "Embedding", "config": {"name": "embedding", "trainable": True, "batch_input_shape": [None, 6],
                                               "dtype": "float32", "input_dim": 9, "output_dim": 4,
                                               "input_length": 6, "mask_zero": False}},
        {"class_name": "SeparableConv1D", "config": {
            "name": "separable_conv1d", "dtype": {"class_name": "Policy", "config": {"name": "float32"}},
            "filters": 3, "kernel_size": [2], "groups": 1, "kernel_initializer": init, "kernel_regularizer": None,
            "kernel_constraint": None, "depthwise_initializer": init, "pointwise_initializer": init}},
        {"class_name": "LSTM", "config": {"name": "lstm", "units": 2, "implementation": 2, "time_major": False,
                                          "unroll": False}},
        {"class_name": "Dense", "config": {"name": "dense", "units": 1, "activation": "sigmoid"}},
    ]}}  # fmt: skip
    training_config = {
        "loss": {"class_name": "BinaryCrossentropy", "config": {"reduction": "auto", "name": "binary_crossentropy",
                                                                "from_logits": False, "label_smoothing": 0.0,
                                                                "axis": -1, "fn": "binary_crossentropy"}},
        "metrics": [[{"class_name": "MeanMetricWrapper", "config": {"name": "accuracy", "dtype": "float32",
                                                                    "fn": "binary_accuracy"}}]],
        "weighted_metrics": None, "loss_weights": None,
        "optimizer_config": {"class_name": "Custom>RMSprop", "config": {
            "name": "RMSprop", "lr": 0.0010000000474974513, "decay": 0.0, "rho": 0.9, "momentum": 0.0,
            "epsilon": 1e-07, "centered": False, "jit_compile": True, "is_legacy_optimizer": False,
            "use_ema": False, "ema_momentum": 0.99, "ema_overwrite_frequency": 100}},
    }  # fmt: skip
    _with_configs(tmp_path / "m.h5", model_config, training_config)
    loaded = tn.load_model(tmp_path / "m.h5")
    assert loaded.name == "sequential_4" and loaded.input_layer.shape == (None, 6)
    assert [type(layer).__name__ for layer in loaded.layers] == ["Embedding", "SeparableConv1D", "LSTM", "Dense"]
    assert _same_weights(model, loaded)
    assert type(loaded.optimizer).__name__ == "RMSprop" and loaded.optimizer.learning_rate == np.float32(1e-3)
    assert type(loaded.loss).__name__ == "BinaryCrossentropy"
    assert loaded.get_compile_config()["metrics"] == ["accuracy"]


def test_refusals_are_named_in_one_error(tmp_path):
    model = tn.Sequential([layers.Input((3,)), layers.Dense(2)])
    model.save(tmp_path / "m.h5")
    config = {"class_name": "Sequential", "config": {"name": "s", "layers": [
        {"class_name": "InputLayer", "config": {"batch_input_shape": [None, 8, 8, 1]}},
        {"class_name": "Conv3D", "config": {"name": "c"}},
        {"class_name": "Lambda", "config": {"name": "f", "function": ["code", None, None]}},
        {"class_name": "BatchNormalization", "config": {"name": "b"}}]}}
    _with_configs(tmp_path / "m.h5", config, None)
    with pytest.raises(FileFormatError, match=r"(?s)m.h5' as a Keras 2.*layer 0: layer class 'Conv3D' is not "
                                              r"implemented.*layer 1: refusing Lambda layer 'f'.*layer 2: layer class "
                                              r"'BatchNormalization'.*tinynn's layer classes are"):
        tn.load_model(tmp_path / "m.h5")


def test_keras2_hard_sigmoid_is_refused(tmp_path):
    """Keras 2's hard_sigmoid is clip(0.2x + 0.5), Keras 3's (and tinynn's) clip(x/6 + 1/2): a Keras 2 file using
    it would predict differently, so it is refused; a file tinynn (or Keras 3) wrote with it loads."""
    model = tn.Sequential([layers.Input((3,)), layers.Dense(2, activation="hard_sigmoid", name="gate"),
                           layers.Dense(1, name="out")])
    with pytest.warns(UserWarning, match=r"uses \['hard_sigmoid'\].*Keras 2 would predict differently"):
        model.save(tmp_path / "m.h5")
    assert _same_weights(model, tn.load_model(tmp_path / "m.h5"))
    _rewrite(tmp_path / "m.h5", lambda f: f.attrs.__setitem__("keras_version", np.bytes_(b"2.13.1")))
    with pytest.raises(FileFormatError, match=r"activation='hard_sigmoid' of layer 'gate' with Keras 2's formula"):
        tn.load_model(tmp_path / "m.h5")


def test_weights_only_file_is_not_a_model(tmp_path):
    tn.Sequential([layers.Input((3,)), layers.Dense(2)]).save_weights(tmp_path / "w.h5")
    with pytest.raises(FileFormatError, match="weights only.*load_weights"):
        tn.load_model(tmp_path / "w.h5")


def test_a_real_keras_2_13_file_names_the_classes_tinynn_lacks():
    """catsordogs ships a model saved by Keras 2.13 (Conv2D/MaxPooling2D): one error names every unknown layer;
    once those classes exist the same reader loads it (the config and weight names are generic)."""
    spec = importlib.util.find_spec("catsordogs")
    if spec is None:
        pytest.skip("catsordogs is not installed (pip install --no-deps catsordogs)")
    path = os.path.join(os.path.dirname(spec.origin), "model.h5")
    known = tn.layers.registry()
    if "Conv2D" in known and "MaxPooling2D" in known:
        with pytest.warns(UserWarning, match="kernel_regularizer='L2' dropped"):
            model = tn.load_model(path, compile=False)
        with h5py.File(path, "r") as f:
            kernel = f["model_weights/conv2d_12/conv2d_12/kernel:0"][()]
        assert np.array_equal(model.layers[0].get_weights()[0], kernel)
        return
    with pytest.warns(UserWarning, match="Dense 'dense_8': kernel_regularizer='L2' dropped"):
        with pytest.raises(FileFormatError) as info:
            tn.load_model(path)
    message = str(info.value)
    assert "Keras 2 (legacy HDF5)" in message and "allow_pickle" not in message
    for k, cls in enumerate(["Conv2D", "MaxPooling2D"] * 3):
        assert f"layer {k}: layer class '{cls}' is not implemented" in message


class _StandInConv2D(layers.Layer):
    """Conv2D's constructor names and weight layout, no forward: enough to place a Keras 2 file's weights."""

    _config_keys = ("filters", "kernel_size", "strides", "padding", "data_format", "dilation_rate", "groups",
                    "activation", "use_bias")

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid", data_format="channels_last",
                 dilation_rate=(1, 1), groups=1, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        self.filters, self.kernel_size, self.strides = filters, tuple(kernel_size), tuple(strides)
        self.padding, self.data_format, self.dilation_rate = padding, data_format, tuple(dilation_rate)
        self.groups, self.activation, self.use_bias = groups, activation, use_bias

    def build(self, input_shape):
        self.add_weight("kernel", (*self.kernel_size, input_shape[-1], self.filters), "zeros")
        self.add_weight("bias", (self.filters,), "zeros")

    def compute_output_shape(self, s):
        return (s[0], s[1] - self.kernel_size[0] + 1, s[2] - self.kernel_size[1] + 1, self.filters)


class _StandInMaxPooling2D(layers.Layer):
    _config_keys = ("pool_size", "strides", "padding", "data_format")

    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", data_format="channels_last", **kwargs):
        super().__init__(**kwargs)
        self.pool_size, self.strides = tuple(pool_size), tuple(strides or pool_size)
        self.padding, self.data_format = padding, data_format

    def compute_output_shape(self, s):
        return (s[0], s[1] // self.strides[0], s[2] // self.strides[1], s[3])


def test_the_real_keras_2_13_file_loads_once_its_classes_exist(monkeypatch):
    """The reader is generic: with Conv2D and MaxPooling2D registered (stand-ins here, with Keras's constructor
    names and weight layout), the catsordogs file loads completely — config (batch_input_shape, L2 regularizers
    dropped with a warning), weights placed by their Keras 2 names, training config (Custom>Adam, a loss with
    'fn', MeanMetricWrapper) and the Adam state of Keras 2.11+ (iteration:0 and m/v per variable, no lr)."""
    spec = importlib.util.find_spec("catsordogs")
    if spec is None:
        pytest.skip("catsordogs is not installed (pip install --no-deps catsordogs)")
    path = os.path.join(os.path.dirname(spec.origin), "model.h5")
    monkeypatch.setattr(tn.layers, "Conv2D", _StandInConv2D, raising=False)
    monkeypatch.setattr(tn.layers, "MaxPooling2D", _StandInMaxPooling2D, raising=False)
    monkeypatch.setattr(tn.layers, "__all__", [*tn.layers.__all__, "Conv2D", "MaxPooling2D"])
    with pytest.warns(UserWarning, match="kernel_regularizer='L2' dropped"):
        model = tn.load_model(path)
    assert [type(layer).__name__ for layer in model.layers][:2] == ["_StandInConv2D", "_StandInMaxPooling2D"]
    with h5py.File(path, "r") as f:
        group = f["model_weights"]
        stored = [group[f"{layer.name}/{layer.name}/{w}:0"][()] for layer in model.layers if layer.weights
                  for w in ("kernel", "bias")]
        iterations = int(f["optimizer_weights/iteration:0"][()])
        m_dense = f["optimizer_weights/Adam/m/dense_8/kernel:0"][()]
    assert all(a.tobytes() == b.tobytes() for a, b in zip(model.get_weights(), stored))
    assert type(model.optimizer).__name__ == "Adam" and type(model.loss).__name__ == "BinaryCrossentropy"
    assert model.get_compile_config()["metrics"] == ["accuracy"]
    state = model.optimizer.get_state()
    assert int(state["iterations"]) == iterations > 0
    assert state["momentum_6"].tobytes() == m_dense.tobytes()  # dense_8's kernel is the 7th variable
