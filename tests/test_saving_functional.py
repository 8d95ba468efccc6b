"""Functional models in every file format, tinynn to tinynn (Keras's side is in parity/cases/test_functional_files.py).

Saved → loaded is bit-identical in every format and dtype, even under another ``floatx``: weights, config,
compile config (losses, loss weights and metrics per output, as lists or dicts), optimizer state, predictions
and the next training step. Also: the legacy ``.h5`` writes calls in Keras 2's list format unless a model is
nested; its reader pairs layers by name and puts the optimizer's slots back in the model's variable order when
another writer listed the layers in another order; a layer's calls are replayed in their order."""

from __future__ import annotations

import io
import json

import h5py
import numpy as np
import pytest

import tinynn as tn
from tinynn import layers as L


def build(dtype: str, outputs: str = "list"):
    """Two inputs, a shared layer, Add and Concatenate, a nested Sequential, a nested functional model called
    twice; two outputs (a list or a dict)."""
    a, b = L.Input((5,), name="a", dtype=dtype), L.Input((3,), name="b", dtype=dtype)
    shared = L.Dense(4, activation="tanh", name="shared", dtype=dtype)
    inner = tn.Sequential([L.Input((4,), dtype=dtype), L.Dense(3, activation="relu", name="inner_hidden", dtype=dtype),
                           L.Dense(2, name="inner_out", dtype=dtype)], name="inner")
    sub_in = L.Input((2,), name="sub_in", dtype=dtype)
    sub = tn.Model(sub_in, L.Dense(2, name="sub_out", dtype=dtype)(sub_in), name="sub")
    ha, hb = shared(a), shared(L.Dense(5, name="b_proj", dtype=dtype)(b))
    merged = L.Add(name="add", dtype=dtype)([ha, hb])
    extra = sub(L.Dense(2, name="b_small", dtype=dtype)(hb))
    kind = sub(inner(merged))
    score = L.Dense(1, activation="sigmoid", name="score", dtype=dtype)(
        L.Concatenate(name="cat", dtype=dtype)([merged, extra]))
    outs = {"score": score, "kind": kind} if outputs == "dict" else [score, kind]
    model = tn.Model([a, b], outs, name="graph")
    rng = np.random.default_rng(0)
    model.set_weights([rng.normal(0, 0.5, w.shape) for w in model.get_weights()])
    return model


COMPILE = {
    "list": {"loss": ["binary_crossentropy", "mse"], "loss_weights": [1.0, 0.25], "metrics": [["accuracy"], ["mae"]]},
    "dict": {"loss": {"kind": "huber", "score": "binary_crossentropy"}, "loss_weights": {"kind": 2.0},
             "metrics": {"score": ["accuracy", "mse"]}},
    "none": {"loss": [None, "mae"], "metrics": [None, ["mse"]]},
}


def data(dtype: str, outputs: str, n: int = 12):
    rng = np.random.default_rng(1)
    x = [rng.normal(size=(n, 5)).astype(dtype), rng.normal(size=(n, 3)).astype(dtype)]
    y = [(rng.random((n, 1)) > 0.5).astype(dtype), rng.normal(size=(n, 2)).astype(dtype)]
    return x, (dict(zip(("score", "kind"), y)) if outputs == "dict" else y)


def trained(dtype: str, compile_as: str):
    outputs = "dict" if compile_as == "dict" else "list"
    with_floatx = tn.config.floatx()
    tn.config.set_floatx(dtype)  # the optimizer's learning-rate variable in this dtype
    try:
        model = build(dtype, outputs)
        model.compile(tn.optimizers.Adam(learning_rate=0.01), **COMPILE[compile_as])
    finally:
        tn.config.set_floatx(with_floatx)
    x, y = data(dtype, outputs)
    model.fit(x, y, epochs=1, batch_size=5, shuffle=False, verbose=0)
    return model, x, y


def same_bytes(a: list, b: list) -> bool:
    return len(a) == len(b) and all(u.dtype == v.dtype and u.shape == v.shape and u.tobytes() == v.tobytes()
                                    for u, v in zip(a, b))


@pytest.mark.parametrize("compile_as", sorted(COMPILE))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", ["m.npz", "m.keras", "m.h5"])
def test_round_trip_then_train_is_bit_identical(tmp_path, name, dtype, compile_as):
    model, x, y = trained(dtype, compile_as)
    model.save(tmp_path / name)
    tn.config.set_floatx("float64" if dtype == "float32" else "float32")  # load under the other floatx
    try:
        loaded = tn.load_model(tmp_path / name)
    finally:
        tn.config.set_floatx("float32")
    assert loaded.get_config() == model.get_config()
    assert loaded.get_compile_config() == model.get_compile_config()
    assert same_bytes(loaded.get_weights(), model.get_weights())
    ours, theirs = model.optimizer.get_state(), loaded.optimizer.get_state()
    assert sorted(ours) == sorted(theirs)
    assert all(ours[k].dtype == theirs[k].dtype and ours[k].tobytes() == theirs[k].tobytes() for k in ours)
    for a, b in zip(_flat(model.predict(x)), _flat(loaded.predict(x))):
        assert a.tobytes() == b.tobytes()
    assert model.train_on_batch(x, y) == loaded.train_on_batch(x, y)
    assert same_bytes(loaded.get_weights(), model.get_weights())


def _flat(outputs) -> list:
    return [outputs[k] for k in sorted(outputs)] if isinstance(outputs, dict) else list(outputs)


@pytest.mark.parametrize("name", ["w.npz", "w.weights.h5", "w.h5", "m.keras"])
def test_weights_files_load_into_the_same_architecture(tmp_path, name):
    source, _, _ = trained("float32", "list")
    source.save(tmp_path / name) if name.startswith("m.") else source.save_weights(tmp_path / name)
    target = build("float32")
    target.set_weights([w + 1 for w in target.get_weights()])
    target.load_weights(tmp_path / name)
    assert same_bytes(target.get_weights(), source.get_weights())


def _model_config(path) -> dict:
    with h5py.File(path, "r") as h5file:
        return json.loads(h5file.attrs["model_config"])


def test_legacy_h5_calls_keras2_style_unless_a_model_is_nested(tmp_path):
    """Keras 2 counts a nested model's built-in node in references to it, Keras 3 does not: a flat graph's calls
    are written as Keras 2's lists (both read them), a graph with nested models as Keras 3's dicts."""
    a, b = L.Input((3,), name="a"), L.Input((2,), name="b")
    flat = tn.Model([a, b], L.Dense(1, name="out")(L.Concatenate(name="cat")([a, b])), name="flat")
    flat.save(tmp_path / "flat.h5")
    config = _model_config(tmp_path / "flat.h5")
    assert config["class_name"] == "Functional"
    cat = next(e for e in config["config"]["layers"] if e["name"] == "cat")
    assert cat["inbound_nodes"] == [[["a", 0, 0, {}], ["b", 0, 0, {}]]]
    assert config["config"]["input_layers"] == [["a", 0, 0], ["b", 0, 0]]
    assert config["config"]["output_layers"] == [["out", 0, 0]]
    assert tn.load_model(tmp_path / "flat.h5").get_config() == flat.get_config()

    build("float32").save(tmp_path / "nested.h5")
    config = _model_config(tmp_path / "nested.h5")["config"]
    inner = next(e for e in config["layers"] if e["name"] == "inner")
    assert inner["class_name"] == "Sequential" and inner["config"]["layers"][0]["class_name"] == "InputLayer"
    assert all(isinstance(node, dict) for e in config["layers"] for node in e["inbound_nodes"])


def test_legacy_h5_layers_in_another_order_pair_by_name(tmp_path):
    """A writer that listed the layers in another order (layer_names and the optimizer's variables): tinynn pairs
    the layers by name and puts each optimizer slot back on its own variable."""
    model, x, y = trained("float64", "list")
    model.save(tmp_path / "m.h5")
    data = (tmp_path / "m.h5").read_bytes()
    buffer = io.BytesIO(data)
    with h5py.File(buffer, "r+") as h5file:
        weights = h5file["model_weights"]
        names = [n.decode() for n in weights.attrs["layer_names"]]
        reordered = names[::-1]
        weights.attrs["layer_names"] = np.asarray([n.encode() for n in reordered])
        # the optimizer's variables follow the writer's layer order: iterations, learning rate, then per variable
        # (in that order) Adam's momentum and velocity
        opt = h5file["optimizer_weights"]
        slot_names = [n.decode() for n in opt.attrs["weight_names"]]
        head, slots = slot_names[:2], slot_names[2:]
        per_layer, position = {}, 0
        for layer in model.layers:
            n = 2 * sum(layer.trainable_mask)
            per_layer[layer.name] = slots[position:position + n]
            position += n
        assert position == len(slots)
        opt.attrs["weight_names"] = np.asarray([s.encode() for s in head + [s for name in reordered
                                                                          for s in per_layer[name]]])
    (tmp_path / "r.h5").write_bytes(buffer.getvalue())
    loaded = tn.load_model(tmp_path / "r.h5")
    assert same_bytes(loaded.get_weights(), model.get_weights())
    ours, theirs = model.optimizer.get_state(), loaded.optimizer.get_state()
    assert all(ours[k].tobytes() == theirs[k].tobytes() for k in ours)
    assert model.train_on_batch(x, y) == loaded.train_on_batch(x, y)


def test_a_layers_calls_are_replayed_in_their_order():
    """A config listing a shared layer before the layer its first call reads: its second call must not be
    replayed first (it would take the first call's place; the model would compute another function)."""
    x = L.Input((4,), name="x")
    shared, before = L.Dense(4, name="shared"), L.Dense(4, name="before")
    model = tn.Model(x, L.Subtract(name="sub")([shared(before(x)), shared(x)]))
    config = model.get_config()
    config["layers"] = [config["layers"][0]] + sorted(config["layers"][1:], key=lambda e: e["name"] != "shared")
    assert [e["name"] for e in config["layers"]] == ["x", "shared", "before", "sub"]
    rebuilt = tn.Model.from_config(json.loads(json.dumps(config)))
    rebuilt.set_weights(model.get_weights())
    data_x = np.random.default_rng(0).normal(size=(3, 4)).astype("float32")
    assert np.array_equal(rebuilt.predict(data_x), model.predict(data_x))
