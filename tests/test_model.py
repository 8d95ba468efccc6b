"""Sequential's Keras-like API, tested on tinynn alone (Keras parity of training lives in tests/parity)."""

import io
import warnings

import numpy as np
import pytest

import tinynn as tn
from tinynn import callbacks, layers, optimizers
from tinynn.gradcheck import check_model


def small_model(dtype="float32", out=3, activation="softmax", input_layer=True):
    first = [layers.Input(shape=(4,))] if input_layer else []
    kwargs = {} if input_layer else {"input_shape": (4,)}
    return tn.Sequential(first + [layers.Dense(5, activation="relu", dtype=dtype, **kwargs),
                                  layers.Dense(out, activation=activation, dtype=dtype)])


def data(n=50, seed=0, classes=3):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    return x, np.eye(classes)[rng.integers(0, classes, n)]


def test_construction_styles_build_the_same_architecture():
    a = small_model(input_layer=True)
    b = small_model(input_layer=False)
    c = tn.Sequential()
    c.add(layers.Dense(5, activation="relu", input_dim=4))
    c.add(layers.Dense(3, activation="softmax"))
    for m in (a, b, c):
        assert m.built and [w.shape for w in m.get_weights()] == [(4, 5), (5,), (5, 3), (3,)]
        assert m.count_params() == 43
    assert tn.models.Sequential is tn.Sequential


def test_fit_history_keys_and_partial_last_batch():
    model = small_model()
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["acc"])
    seen = []

    class Count(callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append(batch)

    x, y = data(50)
    history = model.fit(x, y, batch_size=16, epochs=2, validation_split=0.2, verbose=0, callbacks=[Count()])
    assert set(history.history) == {"loss", "acc", "val_loss", "val_acc"}
    assert all(len(v) == 2 for v in history.history.values())
    assert len(seen) == 2 * 3  # 40 training samples in batches of 16: 16, 16, 8 — the last partial batch kept


def test_validation_split_takes_the_last_samples_before_shuffling():
    model = small_model(dtype="float64")
    model.compile(optimizer=optimizers.SGD(0.0), loss="categorical_crossentropy")
    x, y = data(40)
    h = model.fit(x, y, epochs=1, validation_split=0.25, shuffle=True, verbose=0)
    assert np.isclose(h.history["val_loss"][0], model.evaluate(x[30:], y[30:], verbose=0), rtol=1e-12)


def test_predict_any_batch_size_and_inputs_not_mutated():
    model = small_model()
    x, _ = data(37)
    keep = x.copy()
    p = model.predict(x, batch_size=8)
    assert p.shape == (37, 3) and np.allclose(p, model.predict(x, batch_size=100), atol=1e-6)
    assert np.array_equal(x, keep)
    assert model.predict(x[:1]).shape == (1, 3)


def test_train_and_test_on_batch_and_evaluate_return_types():
    model = small_model()
    model.compile("rmsprop", "categorical_crossentropy", metrics=["accuracy"])
    x, y = data(20)
    loss, acc = model.train_on_batch(x, y)
    assert np.isfinite(loss) and 0 <= acc <= 1
    assert set(model.test_on_batch(x, y, return_dict=True)) == {"loss", "accuracy"}
    assert len(model.evaluate(x, y, verbose=0)) == 2
    model.compile("rmsprop", "mse")
    assert isinstance(model.evaluate(x, y, verbose=0), float)


def test_fit_on_a_generator_and_fit_generator_alias():
    model = small_model()
    model.compile("rmsprop", "categorical_crossentropy", metrics=["acc"])
    x, y = data(64)

    def gen():
        i = 0
        while True:
            yield x[i % 64 : i % 64 + 16], y[i % 64 : i % 64 + 16]
            i += 16

    h = model.fit(gen(), steps_per_epoch=4, epochs=2, validation_data=gen(), validation_steps=2, verbose=0)
    assert set(h.history) == {"loss", "acc", "val_loss", "val_acc"}
    with pytest.warns(DeprecationWarning, match="fit_generator"):
        model.fit_generator(gen(), steps_per_epoch=2, epochs=1, verbose=0)


def test_progress_bar_prints_keras_style_lines(capsys):
    model = small_model()
    model.compile("rmsprop", "categorical_crossentropy", metrics=["acc"])
    x, y = data(20)
    model.fit(x, y, epochs=2, batch_size=10, verbose=1)
    out = capsys.readouterr().out
    assert "Epoch 1/2" in out and "Epoch 2/2" in out
    assert "2/2 ━━━━━━━━━━━━━━━━━━━━" in out and "- loss: " in out and "- acc: " in out


def test_early_stopping_and_restore_best_weights():
    model = small_model(dtype="float64")
    model.compile(optimizers.SGD(learning_rate=5.0), "categorical_crossentropy")  # diverges: val_loss grows
    x, y = data(40)
    stop = callbacks.EarlyStopping(monitor="loss", patience=1, restore_best_weights=True)
    h = model.fit(x, y, epochs=30, verbose=0, callbacks=[stop], batch_size=40)
    assert len(h.history["loss"]) < 30
    assert stop.best == min(h.history["loss"])


def test_model_checkpoint_saves_best(tmp_path):
    model = small_model()
    model.compile("adam", "categorical_crossentropy")
    x, y = data(40)
    path = tmp_path / "best.npz"
    model.fit(x, y, epochs=2, validation_split=0.25, verbose=0,
              callbacks=[callbacks.ModelCheckpoint(path, save_best_only=True)])
    assert tn.load_model(path).count_params() == model.count_params()


def test_summary_matches_keras_layout():
    model = small_model()
    out = io.StringIO()
    model.summary(print_fn=lambda s: out.write(s))
    text = out.getvalue().splitlines()
    assert text[0] == 'Model: "sequential"' or text[0].startswith('Model: "')
    assert all(len(line) == 76 for line in text[1:-3])
    assert "│ dense" in text[4] and "(None, 5)" in text[4] and text[4].rstrip("│ ").endswith("25")
    assert text[-3] == " Total params: 43 (172.00 B)"


def test_weight_exchange_with_plain_lists():
    a, b = small_model(), small_model()
    b.set_weights(a.get_weights())
    x, _ = data(5)
    assert np.array_equal(a.predict(x), b.predict(x))
    with pytest.raises(ValueError, match="expects 4 arrays"):
        b.set_weights(a.get_weights()[:2])


def test_model_gradcheck_for_each_loss():
    for loss, act, out in [("mse", None, 2), ("mae", "tanh", 2), ("huber", None, 2),
                           ("binary_crossentropy", "sigmoid", 2), ("categorical_crossentropy", "softmax", 3),
                           ("sparse_categorical_crossentropy", "softmax", 3)]:
        model = small_model("float64", out=out, activation=act)
        model.compile("sgd", loss)
        rng = np.random.default_rng(1)
        x = rng.normal(size=(6, 4))
        y = (rng.integers(0, out, 6) if loss.startswith("sparse") else
             np.eye(out)[rng.integers(0, out, 6)] if "crossentropy" in loss else rng.normal(size=(6, out)))
        for r in check_model(model, x, y):
            assert r.relative_error < 1e-7, (loss, str(r))


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda m: m.compile("nope", "mse"), "Unknown optimizer|unknown optimizer|'nope'"),
        (lambda m: m.compile("sgd", "nope"), "Unknown loss 'nope'"),
        (lambda m: m.compile("sgd", "mse", metrics=["nope"]) or m.fit(*data(8), verbose=0), "Unknown metric 'nope'"),
        (lambda m: m.fit(*data(8)), "must be compiled first"),
        (lambda m: m.predict(np.zeros((3, 5))), r"expects input of shape \(batch, 4\).*got \(3, 5\)"),
        (lambda m: m.predict(np.zeros((0, 4))), "0 samples|empty"),
        (lambda m: m.compile("sgd", "mse") or m.fit(np.zeros((3, 4)), np.zeros((2, 3))), "3 samples but y has 2"),
        (lambda m: m.compile("sgd", "sparse_categorical_crossentropy") or m.fit(np.zeros((2, 4)), np.array([0, 3])),
         r"label 3 is out of range.*\[0, 2\]"),
        (lambda m: m.compile("sgd", "mse") or m.fit(*data(8), batch_size=0), "batch_size must be a positive"),
    ],
)
def test_bad_model_usage_gives_clear_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call(small_model())


def test_unbuilt_model_explains_how_to_build():
    model = tn.Sequential([layers.Dense(3)])
    with pytest.raises(ValueError, match="not built.*input_shape"):
        model.count_params()
    model.summary(print_fn=lambda s: None)  # summary of an unbuilt model works, showing '?'
    model.predict(np.zeros((2, 7)))  # building from data works
    assert model.count_params() == 24


def test_lr_alias_from_the_seeds_warns_but_works():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        opt = optimizers.RMSprop(lr=1e-4)
    assert any("lr" in str(w.message) for w in caught)
    assert np.isclose(float(opt.learning_rate), 1e-4)


@pytest.mark.parametrize("first", ["Dense", "Conv1D", "SeparableConv1D", "DepthwiseConv1D", "LSTM", "Bidirectional"])
def test_first_layer_skips_the_input_gradient_and_weight_gradients_are_unchanged(first):
    """The data needs no gradient: Sequential tells its first layer, which then returns None for dx.

    The weight gradients must equal the ones a plain layer-by-layer backward (computing every dx) gives.
    """
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 9, 4))
    f64 = {"dtype": "float64"}
    make = {
        "Dense": lambda: layers.Dense(5, activation="tanh", **f64),
        "Conv1D": lambda: layers.Conv1D(5, 3, activation="relu", **f64),
        "SeparableConv1D": lambda: layers.SeparableConv1D(5, 3, depth_multiplier=2, **f64),
        "DepthwiseConv1D": lambda: layers.DepthwiseConv1D(3, depth_multiplier=2, **f64),
        "LSTM": lambda: layers.LSTM(5, return_sequences=True, dropout=0.3, recurrent_dropout=0.2, seed=1, **f64),
        "Bidirectional": lambda: layers.Bidirectional(layers.GRU(3, return_sequences=True, **f64), **f64),
    }[first]
    model = tn.Sequential([layers.Input((9, 4)), make(), layers.Flatten(**f64), layers.Dense(2, **f64)])
    model.compile(optimizer="sgd", loss="mse")
    y = rng.normal(size=(6, 2))
    seen = []
    first_layer = model.layers[0]
    plain_backward = first_layer.backward

    def recording_backward(dy):
        seen.append(first_layer.input_gradient_needed)
        dx = plain_backward(dy)
        seen.append(dx)
        return dx

    first_layer.backward = recording_backward
    if first == "LSTM":  # the same dropout masks in both passes
        first_layer.set_dropout_masks([np.full((6, 4), 1 / 0.7)] * 4, [np.full((6, 5), 1 / 0.8)] * 4)
    _, grads = model.compute_loss_and_gradients(x, y)
    assert seen[0] is False and seen[1] is None  # told, and skipped
    assert first_layer.input_gradient_needed  # restored for direct calls
    # the same gradients by hand, with dx computed everywhere
    acts = [x]
    for layer in model.layers:
        acts.append(layer(acts[-1], training=True))
    dy = 2 * (acts[-1] - y) / y.size
    for layer in reversed(model.layers):
        dy = plain_backward(dy) if layer is first_layer else layer.backward(dy)
    assert dy is not None and dy.shape == x.shape
    by_hand = [g for layer in model.layers for g in layer.gradients]
    assert len(by_hand) == len(grads)
    for a, b in zip(grads, by_hand):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
