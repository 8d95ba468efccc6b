"""Bad graphs and bad arguments get a clear ValueError — naming the layer (or argument), what was expected and
what was given — when the model is built or the call is made, never as a crash or a late error inside fit.

Covers: an input no output depends on, an output not computed from the inputs, layers called on tensors of
incompatible shapes (hypothesis draws them for every merge layer), Concatenate over mismatched axes, ``wrt``
naming a tensor of another model, a failed ``Sequential.add`` and ``set_weights`` leaving the model unchanged,
and the argument errors of compile / fit / evaluate / predict.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import tinynn as tn
from tinynn import layers


def test_input_not_connected_to_any_output_is_refused_at_build_time():
    a, b = layers.Input(shape=(3,), name="used"), layers.Input(shape=(2,), name="unused")
    with pytest.raises(ValueError, match=r"input 'unused' of shape \(None, 2\) is not connected to any output"):
        tn.Model([a, b], layers.Dense(1)(a))


def test_output_not_computed_from_the_inputs_is_refused_at_build_time():
    a, other = layers.Input(shape=(3,), name="a"), layers.Input(shape=(4,), name="other")
    d = layers.Dense(2, name="from_other")
    with pytest.raises(ValueError, match=r"graph disconnected.*shape \(None, 4\).*'from_other'"):
        tn.Model(a, [layers.Dense(1)(a), d(other)])


def test_layer_called_on_a_tensor_of_the_wrong_size_fails_at_the_call():
    dense = layers.Dense(2, name="head")
    dense(layers.Input(shape=(3,)))
    with pytest.raises(ValueError, match=r"'head'.*axis -1 of size 3.*\(None, 5\)"):
        dense(layers.Input(shape=(5,)))
    with pytest.raises(ValueError, match=r"'lstm_x'.*\(batch, timesteps, features\).*\(None, 4\)"):
        layers.LSTM(2, name="lstm_x")(layers.Input(shape=(4,)))


ELEMENTWISE = ["Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum"]


@given(name=st.sampled_from(ELEMENTWISE), a=st.integers(2, 6), b=st.integers(2, 6), steps=st.booleans())
@example(name="Maximum", a=3, b=5, steps=True)
@example(name="Add", a=4, b=2, steps=False)
def test_elementwise_merge_of_incompatible_shapes_names_layer_and_shapes(name, a, b, steps):
    if a == b:
        b = a + 1
    shape_a, shape_b = ((7, a), (7, b)) if steps else ((a,), (b,))
    x, y = layers.Input(shape=shape_a), layers.Input(shape=shape_b)
    layer = getattr(layers, name)(name=f"bad_{name.lower()}")
    with pytest.raises(ValueError, match=rf"'bad_{name.lower()}' \({name}\).*incompatible shapes.*\(None, .*{a}\)"):
        layer([x, y])


@given(axis=st.sampled_from([-1, 1, 2]), other=st.sampled_from([1, 2]), size=st.integers(2, 5))
@example(axis=-1, other=1, size=3)
@example(axis=1, other=2, size=4)
def test_concatenate_over_mismatched_axes(axis, other, size):
    resolved = axis % 3
    if other == resolved:
        other = 3 - other
    s1, s2 = [4, 6], [4, 6]
    s2[other - 1] = s2[other - 1] + size  # differs on an axis that is not the concatenation axis
    with pytest.raises(ValueError, match=rf"'joint' \(Concatenate\).*axis {other} differs"):
        layers.Concatenate(axis=axis, name="joint")([layers.Input(shape=s1), layers.Input(shape=s2)])


def test_merge_layers_need_a_list_and_the_right_count():
    x = layers.Input(shape=(3,))
    with pytest.raises(ValueError, match="expects a list of input tensors"):
        layers.Add()(x)
    with pytest.raises(ValueError, match=r"'sub' \(Subtract\) must be called on exactly 2 inputs"):
        layers.Subtract(name="sub")([x, x, x])
    with pytest.raises(ValueError, match=r"'d' \(Dot\).*axis 1 of the first input has size 3.*size 4"):
        layers.Dot(axes=1, name="d")([x, layers.Input(shape=(4,))])
    with pytest.raises(ValueError, match=r"'m' \(Multiply\) cannot merge tensors with different batch sizes: \[\(2,"):
        layers.Multiply(name="m")([np.zeros((2, 3)), np.zeros((3, 3))])  # eager: different batch sizes


def test_vjp_wrt_a_tensor_of_another_model():
    a = layers.Input(shape=(3,))
    model = tn.Model(a, layers.Dense(1)(layers.Dense(2)(a)))
    stranger = layers.Dense(2, name="stranger")(layers.Input(shape=(3,)))
    with pytest.raises(ValueError, match=r"wrt\[0\].*'stranger'.*not a tensor of this model"):
        model.vjp(np.zeros((2, 3)), np.ones((2, 1)), wrt=[stranger])
    with pytest.raises(ValueError, match=r"output_gradients\[0\] must be a real array of the output's shape \(2, 1\)"):
        model.vjp(np.zeros((2, 3)), np.ones((2, 2)), wrt=[a])
    with pytest.raises(ValueError, match="symbolic tensor"):
        model.vjp(np.zeros((2, 3)), np.ones((2, 1)), wrt=["dense"])


def test_model_needs_symbolic_inputs_and_outputs():
    a = layers.Input(shape=(3,))
    with pytest.raises(ValueError, match="inputs= and outputs="):
        tn.Model()
    with pytest.raises(ValueError, match="must be symbolic tensors"):
        tn.Model(np.zeros((2, 3)), layers.Dense(1)(a))
    with pytest.raises(ValueError, match=r"expects 2 arrays, one per input \['a', 'b'\]"):
        b = layers.Input(shape=(2,), name="b")
        a2 = layers.Input(shape=(3,), name="a")
        tn.Model([a2, b], layers.Concatenate()([a2, b])).predict(np.zeros((2, 3)))


def test_failed_add_leaves_the_sequential_unchanged():
    model = tn.Sequential([layers.Input(shape=(5, 3)), layers.LSTM(4), layers.Dense(2)])
    before = (list(model.layers), model.output, model.get_weights())
    with pytest.raises(ValueError, match=r"'late_lstm'.*\(batch, timesteps, features\).*\(None, 2\)"):
        model.add(layers.LSTM(3, name="late_lstm"))
    assert model.layers == before[0] and model.output is before[1]
    assert model.count_params() == sum(w.size for w in before[2])
    model.add(layers.Dense(1))
    assert model.output.shape == (None, 1)


def test_failed_set_weights_changes_nothing():
    model = tn.Sequential([layers.Input(shape=(3,)), layers.Dense(4), layers.Dense(2)])
    before = model.get_weights()
    bad = [np.ones_like(w) for w in before]
    bad[-1] = np.ones(3)
    with pytest.raises(ValueError, match=r"entry 3 \(dense.*/bias\) must have shape \(2,\), got \(3,\); no weight"):
        model.set_weights(bad)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    bad[-1] = np.array(["a", "b"])
    with pytest.raises(ValueError, match="must be numeric"):
        model.set_weights(bad)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


def _compiled():
    a, b = layers.Input(shape=(3,), name="a"), layers.Input(shape=(2,), name="b")
    h = layers.Concatenate()([a, b])
    model = tn.Model([a, b], [layers.Dense(1, name="p")(h), layers.Dense(2, name="v")(h)])
    model.compile("sgd", ["mse", "mae"])
    return model


X = [np.zeros((8, 3)), np.zeros((8, 2))]
Y = [np.zeros((8, 1)), np.zeros((8, 2))]


@pytest.mark.parametrize("call, message", [
    (lambda m: m.fit(X, Y, validation_split=1.5), r"validation_split must be a float in \[0, 1\), got 1.5"),
    (lambda m: m.fit(X, Y, epochs=2.5), r"epochs must be an integer >= 0, got 2.5"),
    (lambda m: m.fit(X, Y, batch_size=0), r"Model.fit: batch_size must be a positive integer .* got 0"),
    (lambda m: m.fit(X, Y, verbose=3), r"verbose must be 'auto', 0, 1 or 2, got 3"),
    (lambda m: m.fit(X, Y, shuffle="yes"), r"shuffle must be True or False"),
    (lambda m: m.fit(X, Y, steps_per_epoch=0), r"steps_per_epoch must be an integer >= 1 or None"),
    (lambda m: m.fit(X, Y, callbacks=[print]), r"callbacks must be tinynn.callbacks.Callback instances"),
    (lambda m: m.fit(X, Y, validation_data=(X,)), r"validation_data must be \(x_val, y_val\)"),
    (lambda m: m.fit(X, Y[:1]), r"y is a list of 1 but the model has 2 outputs \['p', 'v'\]"),
    (lambda m: m.fit(X, {"q": Y[0]}), r"y has keys \['q'\] that are not output names \['p', 'v'\]"),
    (lambda m: m.fit(X, [Y[0], np.zeros((5, 2))]), r"x has 8 samples but y\['v'\] has 5"),
    (lambda m: m.evaluate(X, Y, batch_size=1.5), r"Model.evaluate: batch_size must be a positive integer"),
    (lambda m: m.predict(X, steps=0), r"Model.predict: steps must be an integer >= 1 or None"),
    (lambda m: m.predict({"a": X[0]}), r"the dict has no entry for input\(s\) \['b'\]"),
    (lambda m: m.compile("nope", "mse"), r"Unknown optimizer: 'nope'. Known optimizers: \["),
    (lambda m: m.compile("sgd", ["mse"]), r"loss is a list of 1 but the model has 2 output\(s\) \['p', 'v'\]"),
    (lambda m: m.compile("sgd", {"p": "mse", "w": "mae"}), r"loss has keys \['w'\] that are not output names"),
    (lambda m: m.compile("sgd", ["mse", "nope"]), r"Unknown loss 'nope'; tinynn knows \["),
    (lambda m: m.compile("sgd", ["mse", "mse"], loss_weights=[1.0]), r"`loss_weights` must match the number"),
    (lambda m: m.compile("sgd", ["mse", "mse"], loss_weights=["x", 1]), r"each loss weight must be a number"),
    (lambda m: m.compile("sgd", ["mse", "mse"], metrics=["mae"]), r"invalid `metrics`.*\['p', 'v'\]"),
    (lambda m: m.compile("sgd", ["mse", "mse"], metrics=[["nope"], []]) or m.fit(X, Y, verbose=0),
     r"Unknown metric 'nope'; tinynn knows \["),
    (lambda m: m.compile("sgd", ["mse", "mse"], sample_weights=None), r"unrecognized arguments \['sample_weights'\]"),
])
def test_argument_errors_name_the_argument_and_the_accepted_values(call, message):
    with pytest.raises(ValueError, match=message):
        call(_compiled())
