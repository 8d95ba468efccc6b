"""SimpleRNN, LSTM, GRU, Bidirectional and Masking against Keras 3: forward, dx, dW and d initial_state.

Random weights (biases included), random upstream gradients on the output and on every returned state,
masks with random valid lengths (post- or pre-padding, holes, fully masked samples), every flag.
Dropout: the same masks are injected into both sides (Keras's cell reads them from
``get_dropout_mask``/``get_recurrent_dropout_mask``).
"""

import numpy as np
import tensorflow as tf
from hypothesis import given
from hypothesis import strategies as st

from parity import bridge
from parity.harness import compare, keras_vjp, layer_parity, randomize_weights
from tinynn import layers

KINDS = ["SimpleRNN", "LSTM", "GRU", "GRU_reset_before"]
N_STATES = {"SimpleRNN": 1, "LSTM": 2, "GRU": 1, "GRU_reset_before": 1}
GATES = {"SimpleRNN": 1, "LSTM": 4, "GRU": 3, "GRU_reset_before": 3}
# (activation, recurrent_activation): the numba kernels' activations, and softsign/elu (reference path)
ACTIVATION_PAIRS = [("tanh", "sigmoid")] * 3 + [("relu", "hard_sigmoid"), ("linear", "tanh"), ("softsign", "sigmoid"),
                                                 ("elu", "softsign")]


def make_rnn(kind, units, **kw):
    if kind == "SimpleRNN":
        kw.pop("recurrent_activation", None)
        return layers.SimpleRNN(units, **kw)
    if kind == "LSTM":
        return layers.LSTM(units, **kw)
    return layers.GRU(units, reset_after=(kind == "GRU"), **kw)


@st.composite
def sequences(draw, max_t=6):
    B = draw(st.integers(1, 4))
    T = draw(st.integers(1, max_t))
    F = draw(st.integers(1, 4))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(B, T, F))
    style = draw(st.sampled_from([None, "post", "pre", "holes"]))
    mask = None
    if style is not None:
        lengths = rng.integers(0, T + 1, size=B)  # 0: a fully masked sample
        steps = np.arange(T)[None, :]
        mask = steps < lengths[:, None] if style == "post" else steps >= (T - lengths[:, None])
        if style == "holes":
            mask = rng.random((B, T)) > 0.4
    return x, mask, seed


@given(
    data=sequences(),
    kind=st.sampled_from(KINDS),
    units=st.integers(1, 5),
    return_sequences=st.booleans(),
    return_state=st.booleans(),
    go_backwards=st.booleans(),
    use_bias=st.booleans(),
    with_initial_state=st.booleans(),
    activations=st.sampled_from(ACTIVATION_PAIRS),
    dtype=st.sampled_from(["float64", "float32"]),
)
def test_rnn_parity(data, kind, units, return_sequences, return_state, go_backwards, use_bias, with_initial_state,
                    activations, dtype):
    x, mask, seed = data
    layer = make_rnn(kind, units, return_sequences=return_sequences, return_state=return_state,
                     go_backwards=go_backwards, use_bias=use_bias, activation=activations[0],
                     recurrent_activation=activations[1], dtype=dtype)
    call_kwargs = {}
    if with_initial_state:
        rng = np.random.default_rng(seed + 1)
        call_kwargs["initial_state"] = [rng.normal(size=(x.shape[0], units)).astype(dtype)
                                        for _ in range(N_STATES[kind])]
    layer_parity(layer, x.astype(dtype), seed=seed, mask=mask, call_kwargs=call_kwargs).assert_ok()


@given(
    data=sequences(),
    kind=st.sampled_from(KINDS),
    units=st.integers(1, 4),
    merge_mode=st.sampled_from(["concat", "sum", "mul", "ave", None]),
    return_sequences=st.booleans(),
    return_state=st.booleans(),
    with_initial_state=st.booleans(),
    dtype=st.sampled_from(["float64", "float32"]),
)
def test_bidirectional_parity(data, kind, units, merge_mode, return_sequences, return_state, with_initial_state, dtype):
    x, mask, seed = data
    inner = make_rnn(kind, units, return_sequences=return_sequences, return_state=return_state, dtype=dtype)
    layer = layers.Bidirectional(inner, merge_mode=merge_mode)
    call_kwargs = {}
    if with_initial_state:
        rng = np.random.default_rng(seed + 1)
        call_kwargs["initial_state"] = [rng.normal(size=(x.shape[0], units)).astype(dtype)
                                        for _ in range(2 * N_STATES[kind])]
    layer_parity(layer, x.astype(dtype), seed=seed, mask=mask, call_kwargs=call_kwargs).assert_ok()


def _inject(cell, dm, rm):
    """Make a Keras cell use the given dropout multipliers (a list: one mask, or one per gate)."""
    as_tf = lambda ms: None if ms is None else (tf.constant(ms[0]) if len(ms) == 1 else [tf.constant(m) for m in ms])  # noqa: E731
    cell.get_dropout_mask = lambda step_input: as_tf(dm)
    cell.get_recurrent_dropout_mask = lambda step_input: as_tf(rm)


@given(
    data=sequences(),
    kind=st.sampled_from(KINDS),
    units=st.integers(1, 4),
    rates=st.sampled_from([(0.3, 0.0), (0.0, 0.4), (0.25, 0.5)]),
    return_sequences=st.booleans(),
    dtype=st.sampled_from(["float64", "float32"]),
)
def test_dropout_parity_with_injected_masks(data, kind, units, rates, return_sequences, dtype):
    x, mask, seed = data
    x = x.astype(dtype)
    B, _, F = x.shape
    rng = np.random.default_rng(seed + 2)
    layer = make_rnn(kind, units, dropout=rates[0], recurrent_dropout=rates[1], return_sequences=return_sequences,
                     dtype=dtype)
    n_in, n_rec = layer._masks_per_call()
    assert (n_in > 0) == (rates[0] > 0) and (n_rec > 0) == (rates[1] > 0)
    per_gate = GATES[kind] if (rates[1] > 0 and GATES[kind] > 1) else 1  # Keras's implementation 1
    assert n_in in (0, per_gate) and n_rec in (0, per_gate)
    dm = [((rng.random((B, F)) >= rates[0]) / (1 - rates[0])).astype(dtype) for _ in range(n_in)] or None
    rm = [((rng.random((B, units)) >= rates[1]) / (1 - rates[1])).astype(dtype) for _ in range(n_rec)] or None
    layer.set_dropout_masks(dm, rm)
    keras_layer = bridge.keras_layer_for(layer)
    _inject(keras_layer.cell, dm, rm)
    layer_parity(layer, x, seed=seed, mask=mask, training=True, keras_layer=keras_layer).assert_ok()


@given(kind=st.sampled_from(KINDS), units=st.integers(1, 4), seed=st.integers(0, 2**16),
       dtype=st.sampled_from(["float64", "float32"]))
def test_stateful_parity(kind, units, seed, dtype):
    """Two consecutive calls of a stateful layer: the second starts from the first one's final state."""
    rng = np.random.default_rng(seed)
    B, T, F = 3, 4, 2
    x1, x2 = (rng.normal(size=(B, T, F)).astype(dtype) for _ in range(2))
    layer = make_rnn(kind, units, stateful=True, batch_size=B, return_sequences=True, dtype=dtype)
    layer(x1)
    weights = randomize_weights(layer, rng)
    keras_layer = bridge.keras_layer_for(layer)
    keras_layer.build((B, T, F))
    keras_layer.set_weights(weights)
    layer.reset_states()
    keras_layer.reset_states()
    checks = [compare("first call", layer(x1), keras_layer(tf.constant(x1)).numpy(), dtype)]
    y2 = layer(x2)
    upstream = [rng.normal(size=y2.shape)]
    dx = layer.backward(upstream[0].astype(dtype))
    ref = keras_vjp(keras_layer, x2, upstream)
    checks.append(compare("second call", y2, ref["outputs"][0], dtype))
    checks.append(compare("dx", dx, ref["dx"], dtype))
    checks += [compare(f"d{k}", g, r, dtype) for k, (g, r) in enumerate(zip(layer.gradients, ref["dw"]))]
    for s, ks in zip(layer.states, keras_layer.states):
        checks.append(compare("state", s, np.asarray(ks), dtype))
    for c in checks:
        assert c.passed, str(c)


@given(data=sequences(), mask_value=st.sampled_from([0.0, 0.5, -1.0]), dtype=st.sampled_from(["float64", "float32"]))
def test_masking_parity(data, mask_value, dtype):
    x, mask, seed = data
    if mask is not None:
        x = np.where(mask[..., None], x, mask_value)  # masked steps: every feature equals mask_value
    x = x.astype(dtype)
    layer = layers.Masking(mask_value=mask_value, dtype=dtype)
    layer_parity(layer, x, seed=seed).assert_ok()
    keras_layer = bridge.keras_layer_for(layer)
    np.testing.assert_array_equal(layer.compute_mask(x, None), keras_layer.compute_mask(tf.constant(x)).numpy())
