"""The functional API on tinynn alone: symbolic tensors and nodes, Model and Sequential sharing one executor,
shared layers and nested models (finite differences), multi-output predict, dict/list data, vjp, summary and the
functional config. Parity with Keras is in parity/cases/test_graph_parity.py and test_merge_parity.py."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

import tinynn as tn
from tinynn import graph, layers
from tinynn.gradcheck import check_model


def f64(layer_cls, *args, **kwargs):
    return layer_cls(*args, dtype="float64", **kwargs)


def test_input_returns_a_symbolic_tensor_with_keras_repr():
    x = layers.Input(shape=(4,), name="features")
    assert isinstance(x, graph.KerasTensor) and x.shape == (None, 4) and x.dtype == "float32"
    assert repr(x) == "<KerasTensor shape=(None, 4), dtype=float32, sparse=False, ragged=False, name=features>"
    ids = layers.Input(shape=(7,), dtype="int32", batch_size=3)
    assert ids.shape == (3, 7) and ids.dtype == "int32"
    y = layers.Dense(5)(x)
    assert y.shape == (None, 5) and y._keras_history.layer.name.startswith("dense")
    with pytest.raises(ValueError, match="symbolic"):
        np.asarray(y)


def test_model_and_layer_io_properties_follow_keras():
    a, b = layers.Input(shape=(3,), name="a"), layers.Input(shape=(2,), name="b")
    shared = layers.Dense(4, name="shared")
    ha, hb = shared(a), shared(layers.Dense(3, name="proj")(b))
    cat = layers.Concatenate(name="cat")
    out = cat([ha, hb])
    model = tn.Model(inputs=[a, b], outputs=out, name="m")
    assert model.inputs == [a, b] and model.input == [a, b] and model.output is out and model.outputs == [out]
    assert shared.output is ha and shared.input is a  # Keras 3: a shared layer's first call
    assert cat.input == [ha, hb]
    assert [layer.name for layer in model.layers] == ["b", "a", "proj", "shared", "cat"]  # Keras's order
    assert model.get_layer("proj") is model.layers[2]
    with pytest.raises(AttributeError, match="never been called"):
        _ = layers.Dense(2).output
    assert not isinstance(tn.Model, type(tn.Sequential)) or tn.Model is not tn.Sequential
    assert issubclass(tn.Sequential, tn.Model) and tn.models.Model is tn.Model


def test_sequential_exposes_its_chain_and_the_seed_listing_works():
    model = tn.Sequential([layers.Input(shape=(10, 3)), layers.Conv1D(4, 3, activation="relu"),
                           layers.MaxPooling1D(2), layers.LSTM(5), layers.Dense(1)])
    assert model.input.shape == (None, 10, 3) and model.output.shape == (None, 1)
    layer_outputs = [layer.output for layer in model.layers[:3]]
    activation_model = tn.models.Model(inputs=model.input, outputs=layer_outputs)
    x = np.random.default_rng(0).normal(size=(7, 10, 3)).astype("float32")
    activations = activation_model.predict(x, batch_size=3)
    assert [a.shape for a in activations] == [(7, 8, 4), (7, 4, 4), (7, 5)]
    # the same arrays the layers compute inside the full model, to float32 rounding relative to each array's scale:
    # predict's last batch of one sample runs the LSTM's products as ?gemv, the full batch as ?gemm (an elementwise
    # rtol alone failed ~1 in 15 random initialisations on an output near 0: 2e-6 of it, 9e-8 of the array's scale)
    h = x
    for layer, a in zip(model.layers[:3], activations):
        h = layer(h)
        np.testing.assert_allclose(a, h, rtol=1e-6, atol=1e-6 * np.max(np.abs(h)))
    added = tn.Sequential()
    added.add(layers.Input(shape=(4,)))
    added.add(layers.Dense(3))
    assert added.input.shape == (None, 4) and added.built and added.count_params() == 15
    unbuilt = tn.Sequential([layers.Dense(2)])
    with pytest.raises(AttributeError, match="no defined input"):
        _ = unbuilt.input
    unbuilt.predict(np.zeros((2, 5)))
    assert unbuilt.input.shape == (None, 5) and unbuilt.layers[0].output.shape == (None, 2)


def _complex_model():
    """Shared LSTM on two sequences, a nested Sequential called twice, a nested functional model, a Bidirectional
    reading a tensor that another layer reads too, merges, two outputs."""
    a, b = layers.Input(shape=(5, 3), name="a", dtype="float64"), layers.Input(shape=(4, 3), name="b", dtype="float64")
    lstm = f64(layers.LSTM, 4, return_sequences=True, name="shared_lstm")
    ha, hb = lstm(a), lstm(b)
    inner = tn.Sequential([f64(layers.Dense, 3, activation="tanh"), f64(layers.Dense, 2)], name="inner_seq")
    pa = inner(f64(layers.GlobalAveragePooling1D)(ha))
    pb = inner(f64(layers.GlobalMaxPooling1D)(hb))
    x_in = layers.Input(shape=(2,), dtype="float64")
    sub = tn.Model(x_in, f64(layers.Dense, 2, activation="sigmoid")(x_in), name="sub")
    o1 = sub(f64(layers.Add)([pa, pb]))
    o2 = f64(layers.Dense, 1)(f64(layers.Concatenate)([pa, layers.Bidirectional(f64(layers.GRU, 2))(hb)]))
    return tn.Model([a, b], [o1, o2])


def test_shared_layers_and_nested_models_have_exact_gradients():
    """Finite differences on every weight of a graph with a shared LSTM (one cache per call), a nested Sequential
    called twice (its weights' gradient summed over both calls) and a nested Model, and vjp w.r.t. an input."""
    model = _complex_model()
    model.compile("sgd", ["binary_crossentropy", "mse"], loss_weights=[0.7, 1.3])
    rng = np.random.default_rng(0)
    x = [rng.normal(size=(6, 5, 3)), rng.normal(size=(6, 4, 3))]
    y = [(rng.random((6, 2)) > 0.5) * 1.0, rng.normal(size=(6, 1))]
    results = check_model(model, x, y)
    assert len(results) == len(model.trainable_weights) == 17
    for r in results:
        assert r.relative_error < 1e-7, str(r)
    g = [rng.normal(size=(6, 2)), rng.normal(size=(6, 1))]
    (dxa,) = model.vjp(x, g, wrt=[model.inputs[0]])

    def f(xa):
        return sum(float(np.sum(o * gg)) for o, gg in zip(model.predict([xa, x[1]]), g))

    idx = [(0, 0, 0), (3, 2, 1), (5, 4, 2)]
    for i in idx:
        e = np.zeros_like(x[0])
        e[i] = 1e-6
        numeric = (f(x[0] + e) - f(x[0] - e)) / 2e-6
        assert abs(numeric - dxa[i]) < 1e-7 * max(1.0, abs(numeric))


def test_vjp_leaves_weights_gradients_and_optimizer_alone():
    model = _complex_model()
    model.compile("adam", ["mse", "mse"])
    rng = np.random.default_rng(1)
    x = [rng.normal(size=(3, 5, 3)), rng.normal(size=(3, 4, 3))]
    y = [rng.normal(size=(3, 2)), rng.normal(size=(3, 1))]
    _, grads = model.compute_loss_and_gradients(x, y)
    grads = [np.array(g, copy=True) for g in grads]
    weights = model.get_weights()
    lstm_out = model.get_layer("shared_lstm").output
    got = model.vjp(x, [None, np.ones((3, 1))], wrt=[lstm_out, model.inputs[1]])
    assert got[0].shape == (3, 5, 4) and got[1].shape == (3, 4, 3)
    assert all(np.array_equal(a, b) for a, b in zip(weights, model.get_weights()))
    after = [g for layer in model.layers for g, t in zip(layer.gradients, layer.trainable_mask) if t]
    assert all(np.array_equal(a, np.asarray(b)) for a, b in zip(grads, after))
    assert model.optimizer.iterations == 0
    # an output that gets no gradient contributes nothing; a tensor no graded output depends on gets zeros
    only_first = model.vjp(x, [np.ones((3, 2)), None], wrt=[model.inputs[1]])
    assert np.any(only_first[0] != 0)
    ids = layers.Input(shape=(6,), dtype="int32")
    text = tn.Model(ids, layers.Dense(1)(layers.GlobalAveragePooling1D()(layers.Embedding(9, 3)(ids))))
    grads_ids = text.vjp(np.ones((2, 6), dtype="int32"), np.ones((2, 1)), wrt=[text.inputs[0], text.layers[1].output])
    assert grads_ids[0] is None and grads_ids[1].shape == (2, 6, 3)


def test_predict_returns_keras_structures_for_any_batch_size():
    a = layers.Input(shape=(3,), name="a")
    h = layers.Dense(4)(a)
    as_list = tn.Model(a, [layers.Dense(1, name="one")(h), layers.Dense(2, name="two")(h)])
    as_dict = tn.Model({"a": a}, {"y": layers.Dense(1)(h), "z": layers.Dense(2)(h)})
    x = np.random.default_rng(0).normal(size=(7, 3))
    out = as_list.predict(x, batch_size=3)
    assert isinstance(out, list) and [o.shape for o in out] == [(7, 1), (7, 2)]
    out = as_dict.predict({"a": x}, batch_size=4)
    assert isinstance(out, dict) and sorted(out) == ["y", "z"] and out["z"].shape == (7, 2)
    single_in_list = tn.Model(a, [h])
    assert isinstance(single_in_list.predict(x), np.ndarray)  # Keras unpacks a one-output list
    seq = tn.Sequential([layers.Input(shape=(5, 2)), layers.LSTM(3, return_state=True)])
    out = seq.predict(np.zeros((7, 5, 2)), batch_size=3)
    assert isinstance(out, tuple) and [o.shape for o in out] == [(7, 3)] * 3  # what Keras returns
    bi = tn.Sequential([layers.Input(shape=(5, 2)), layers.Bidirectional(layers.GRU(3), merge_mode=None)])
    assert [o.shape for o in bi.predict(np.zeros((5, 5, 2)), batch_size=2)] == [(5, 3), (5, 3)]
    with pytest.raises(ValueError, match=r'Layer "dense.*" expects 1 input\(s\), but it received 3 input tensors'):
        tn.Sequential([layers.Input(shape=(5, 2)), layers.LSTM(3, return_state=True), layers.Dense(1)])


def test_multi_input_data_by_list_or_name_and_training_history_keys():
    a, b = layers.Input(shape=(3,), name="a"), layers.Input(shape=(2,), name="b")
    h = layers.Concatenate()([layers.Dense(4, activation="relu")(a), b])
    model = tn.Model([a, b], [layers.Dense(1, activation="sigmoid", name="p")(h), layers.Dense(2, name="v")(h)])
    model.compile("adam", loss={"p": "binary_crossentropy", "v": "mse"}, loss_weights={"p": 2.0, "v": 1.0},
                  metrics={"p": "accuracy"})
    rng = np.random.default_rng(0)
    x = [rng.normal(size=(20, 3)), rng.normal(size=(20, 2))]
    y = [(rng.random((20, 1)) > 0.5) * 1.0, rng.normal(size=(20, 2))]
    h1 = model.fit(x, y, epochs=2, batch_size=6, validation_split=0.25, verbose=0)
    h2 = model.fit({"a": x[0], "b": x[1]}, {"p": y[0], "v": y[1]}, epochs=1, verbose=0)
    assert sorted(h1.history) == ["loss", "p_accuracy", "p_loss", "v_loss", "val_loss", "val_p_accuracy",
                                  "val_p_loss", "val_v_loss"]
    assert sorted(h2.history) == ["loss", "p_accuracy", "p_loss", "v_loss"]
    values = model.evaluate(x, y, verbose=0)
    logs = model.evaluate(x, y, verbose=0, return_dict=True)
    assert values == [logs["loss"], logs["p_loss"], logs["v_loss"], logs["p_accuracy"]]  # Keras's order
    assert np.isclose(logs["loss"], 2 * logs["p_loss"] + logs["v_loss"], rtol=1e-6)


def test_frozen_nested_model_is_not_trained():
    base = tn.Sequential([layers.Input(shape=(4,)), layers.Dense(3, activation="relu")], name="base")
    base.trainable = False
    model = tn.Sequential([layers.Input(shape=(4,)), base, layers.Dense(1)])
    model.compile("sgd", "mse")
    before = base.get_weights()
    model.fit(np.random.default_rng(0).normal(size=(8, 4)), np.ones((8, 1)), epochs=1, verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(before, base.get_weights()))
    assert len(model.trainable_weights) == 2 and len(model.weights) == 4


def test_summary_shows_connected_to_for_graphs():
    a, b = layers.Input(shape=(4,), name="a"), layers.Input(shape=(3,), name="b")
    shared = layers.Dense(5, name="shared")
    out = layers.Add(name="add")([shared(a), shared(layers.Dense(4, name="p")(b))])
    model = tn.Model([a, b], out, name="g")
    buf = io.StringIO()
    model.summary(print_fn=buf.write)
    text = buf.getvalue()
    assert "Connected to" in text and "a[0][0]," in text and "p[0][0]" in text and "shared[1][0]" in text
    assert all(len(line) == 76 for line in text.splitlines()[1:-3])


def test_summary_is_keras_text():
    keras = pytest.importorskip("keras")

    def build(lib):
        L = lib.layers
        a, b = L.Input(shape=(4,), name="a"), L.Input(shape=(3,), name="b")
        shared = L.Dense(5, name="shared")
        ha, hb = shared(a), L.Dense(5, name="dense_b")(b)
        m = L.Concatenate(name="concatenate")([ha, hb, shared(L.Dense(4, name="dense_p")(b))])
        chain = lib.Model(a, L.Dense(2, name="head")(ha), name="chain")
        return (lib.Model([a, b], [L.Dense(1, activation="sigmoid", name="out1")(m),
                                   L.Dense(3, name="out2")(L.Add(name="add")([ha, hb]))], name="functional"), chain)

    for ours, theirs in zip(build(tn), build(keras)):
        lines_ours, lines_keras = [], []
        ours.summary(print_fn=lines_ours.append)
        theirs.summary(print_fn=lambda s, _lines=lines_keras, **kw: _lines.append(s))
        assert "\n".join(lines_ours).splitlines() == "\n".join(lines_keras).splitlines()


def test_functional_config_round_trips_through_json():
    ids = layers.Input(shape=(6,), dtype="int32", name="ids")
    emb = layers.Embedding(20, 4, mask_zero=True, name="emb")(ids)
    enc = layers.LSTM(3, return_state=True, name="enc")
    seq, h, c = enc(emb)
    dec = layers.LSTM(3, name="dec")(emb, initial_state=[h, c])
    inner = tn.Sequential([layers.Dense(2, name="in_dense")], name="inner")
    out = layers.Concatenate(name="cat")([inner(dec), inner(seq)])
    model = tn.Model(ids, {"out": out, "state": h}, name="enc_dec")
    cfg = json.loads(json.dumps(model.get_config()))
    assert cfg["input_layers"] == ["ids", 0, 0]
    assert cfg["output_layers"] == {"out": ["cat", 0, 0], "state": ["enc", 0, 1]}
    dec_cfg = next(entry for entry in cfg["layers"] if entry["name"] == "dec")
    kw = dec_cfg["inbound_nodes"][0]["kwargs"]["initial_state"]
    assert [t["config"]["keras_history"] for t in kw] == [["enc", 0, 1], ["enc", 0, 2]]
    clone = tn.Model.from_config(cfg)
    assert [type(layer) for layer in clone.layers] == [type(layer) for layer in model.layers]
    clone.set_weights(model.get_weights())
    x = np.random.default_rng(0).integers(0, 20, size=(5, 6))
    x[:, :2] = 0
    a, b = model.predict(x), clone.predict(x)
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_model_used_as_a_layer_in_a_sequential_and_a_graph():
    base = tn.Sequential([layers.Input(shape=(5,)), layers.Dense(4, activation="tanh")], name="feature_base")
    seq = tn.Sequential([base, layers.Dense(1)])
    seq.compile("sgd", "mse")
    x = np.random.default_rng(0).normal(size=(6, 5))
    seq.fit(x, np.zeros((6, 1)), epochs=1, verbose=0)
    i = layers.Input(shape=(5,))
    graph_model = tn.Model(i, layers.Dense(1)(base(i)))
    np.testing.assert_allclose(graph_model.layers[1](x), base(x))
    assert graph_model.layers[1] is base and len(graph_model.weights) == 4


def test_shared_stateful_layer_keeps_the_states_of_its_last_call_after_training():
    a, b = layers.Input(batch_shape=(2, 3, 2)), layers.Input(batch_shape=(2, 3, 2))
    rnn = layers.SimpleRNN(3, stateful=True)
    model = tn.Model([a, b], layers.Add()([rnn(a), rnn(b)]))
    model.compile(tn.optimizers.SGD(0.0), "mse")  # weights unchanged: only the states move
    x = [np.ones((2, 3, 2)), 2 * np.ones((2, 3, 2))]
    model.train_on_batch(x, np.zeros((2, 3)))
    after_training = [s.copy() for s in rnn.states]
    rnn.reset_state()
    model.predict(x, batch_size=2)
    assert all(np.allclose(s, t) for s, t in zip(after_training, rnn.states))


class _Widening(layers.Layer):
    """Returns (batch, 4) on its first calls, then (batch, 5) once ``wide`` is set (a layer with a bug)."""

    wide = False

    def build(self, input_shape):
        pass

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], 4)

    def forward(self, x, training=False, mask=None):
        return np.zeros((x.shape[0], 5 if self.wide else 4), x.dtype)


def test_sequential_chain_checks_an_inner_input_again_when_its_shape_changes():
    # the chain skips an inner layer's checks only for a repeat of an input it accepted; a new shape is checked
    widen = _Widening()
    model = tn.Sequential([layers.Input(shape=(3,)), widen, layers.Dense(2)])
    x = np.ones((6, 3), np.float32)
    first = model.predict_on_batch(x)
    np.testing.assert_array_equal(model.predict_on_batch(x), first)
    widen.wide = True
    with pytest.raises(ValueError, match=r"Layer 'dense.*\(Dense\).*5"):
        model.predict_on_batch(x)


def test_sequential_predict_on_batch_skips_only_repeated_model_input_checks():
    """A repeat of an accepted input's shape (after the batch axis) and dtype skips the model-input checks: the
    same outputs as the checked path, at any batch size; anything else is still checked in full."""
    rng = np.random.default_rng(0)
    model = tn.Sequential([layers.Input(shape=(5,)), layers.Dense(4, activation="relu"), layers.Dense(3)])
    general = tn.trainer.Trainer.predict_on_batch  # the checked path
    for n in (7, 2, 7, 1):  # the batch size changes between calls
        x = rng.normal(size=(n, 5)).astype(np.float32)
        np.testing.assert_array_equal(model.predict_on_batch(x), general(model, x))
    assert model._predict_accepted is not None
    with pytest.raises(ValueError, match=r"expects input of shape \(batch, 5\).*got \(3, 6\)"):
        model.predict_on_batch(np.zeros((3, 6), np.float32))
    with pytest.raises(ValueError, match="empty batch"):
        model.predict_on_batch(np.zeros((0, 5), np.float32))
    with pytest.raises(ValueError, match="batch axis"):
        model.predict_on_batch(np.zeros((), np.float32))  # 0-d: its shape[1:] is () like a 1-d array's
    with pytest.raises(ValueError, match="expects input of shape"):
        model.predict_on_batch(np.zeros((3, 5, 1), np.float32))
    x = rng.normal(size=(4, 5))  # float64 and a nested list: converted as before
    np.testing.assert_array_equal(model.predict_on_batch(x), general(model, x))
    np.testing.assert_array_equal(model.predict_on_batch(x.tolist()), general(model, x.tolist()))
    model.add(layers.Dense(2))  # a new graph: checked again, then the new output
    assert model.predict_on_batch(x).shape == (4, 2)


def test_sequential_predict_on_batch_without_input_layer_checks_each_new_shape():
    """Built from the first batch (no Input): a batch of another feature shape is not a repeat; it fails in the
    first layer's own check as on the checked path."""
    model = tn.Sequential([layers.Dense(3)])
    model.predict_on_batch(np.ones((2, 4), np.float32))
    model.predict_on_batch(np.ones((5, 4), np.float32))
    with pytest.raises(ValueError, match="Dense"):
        model.predict_on_batch(np.ones((2, 6), np.float32))
