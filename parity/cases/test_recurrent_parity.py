"""SimpleRNN, LSTM, GRU, Bidirectional and Masking against Keras 3: forward, dx, dW and d initial_state.

Random weights (biases included), random upstream gradients on the output and on every returned state,
masks with random valid lengths (post- or pre-padding, holes, fully masked samples), every flag.
Dropout: the same masks are injected into both sides (Keras's cell reads them from
``get_dropout_mask``/``get_recurrent_dropout_mask``). Stateful layers: two consecutive calls, alone and
inside Bidirectional, with and without masks. Bidirectional also with a custom ``backward_layer``.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from parity import backend, bridge
from parity.harness import (
    assert_checks,
    compare,
    keras_float64_twin,
    keras_vjp,
    layer_parity,
    paired,
    randomize_weights,
    record_keras_error,
    result_scale,
)
from parity.options import covers, examples
from tinynn import activations as tn_activations
from tinynn import layers

KINDS = ["SimpleRNN", "LSTM", "GRU", "GRU_reset_before"]
N_STATES = {"SimpleRNN": 1, "LSTM": 2, "GRU": 1, "GRU_reset_before": 1}
GATES = {"SimpleRNN": 1, "LSTM": 4, "GRU": 3, "GRU_reset_before": 3}
# (activation, recurrent_activation): the numba kernels' activations, and softsign/elu (reference path)
ACTIVATION_PAIRS = [("tanh", "sigmoid")] * 3 + [("relu", "hard_sigmoid"), ("linear", "tanh"), ("softsign", "sigmoid"),
                                                 ("elu", "softsign")]


DTYPES = ["float64", "float32"]
MASK_STYLES = [None, "post", "pre", "holes"]


def kernel_path(kind: str, pair: tuple) -> str:
    """'numba' if tinynn runs this kind with these activations through its numba kernel, else 'numpy'; the LSTM
    with Keras's default activations has its own fused numba gate loop ('numba fused'), the others the generic one."""
    from tinynn.kernels import fastmath

    used = pair[:1] if kind == "SimpleRNN" else pair
    fast = all(fastmath.activation_code(tn_activations.get(a)) is not None for a in used)
    if fast and kind == "LSTM" and tuple(pair) == ("tanh", "sigmoid"):
        return "numba fused"
    return "numba" if fast else "numpy"


KIND_DTYPE = [(k, d) for k in KINDS for d in DTYPES]
KIND_PATH = sorted({(k, kernel_path(k, p)) for k in KINDS for p in ACTIVATION_PAIRS})
mask_style = (lambda kw: kw["data"][3], MASK_STYLES)
kind_dtype = (lambda kw: (kw["kind"], kw["dtype"]), KIND_DTYPE)


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
    return x, mask, seed, style


def sequence(B, T, F, style, seed):
    """An explicit ``sequences()`` example (for ``@example``)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(B, T, F))
    mask = None if style is None else rng.random((B, T)) > 0.4
    if style in ("post", "pre"):
        lengths = np.arange(B) % (T + 1)  # 0: a fully masked sample
        steps = np.arange(T)[None, :]
        mask = steps < lengths[:, None] if style == "post" else steps >= (T - lengths[:, None])
    return x, mask, seed, style


RNN_BASE = dict(data=sequence(3, 5, 2, "post", 7), kind="LSTM", units=3, return_sequences=True, return_state=True,
                go_backwards=False, use_bias=True, with_initial_state=False, zero_output_for_mask=False,
                activations=("tanh", "sigmoid"), dtype="float64")


@covers(kind_dtype=kind_dtype, mask_style=mask_style,
        kind_path=(lambda kw: (kw["kind"], kernel_path(kw["kind"], kw["activations"])), KIND_PATH),
        steps=(lambda kw: kw["data"][0].shape[1], [1, 6]),
        batch=(lambda kw: kw["data"][0].shape[0], [1, 4]))
@given(
    data=sequences(),
    kind=st.sampled_from(KINDS),
    units=st.integers(1, 5),
    return_sequences=st.booleans(),
    return_state=st.booleans(),
    go_backwards=st.booleans(),
    use_bias=st.booleans(),
    with_initial_state=st.booleans(),
    zero_output_for_mask=st.booleans(),
    activations=st.sampled_from(ACTIVATION_PAIRS),
    dtype=st.sampled_from(DTYPES),
)
@examples(RNN_BASE,
          dict(kind="LSTM", dtype="float32", activations=("tanh", "sigmoid"), zero_output_for_mask=True),
          dict(kind="LSTM", activations=("softsign", "sigmoid"), go_backwards=True, with_initial_state=True),
          dict(kind="LSTM", activations=("relu", "hard_sigmoid"), data=sequence(2, 5, 3, "holes", 11), units=4),
          dict(kind="GRU", activations=("relu", "hard_sigmoid"), data=sequence(1, 6, 3, "holes", 8), units=5),
          dict(kind="GRU", activations=("softsign", "sigmoid"), dtype="float32"),
          dict(kind="SimpleRNN", activations=("elu", "softsign"), return_state=False),
          dict(kind="GRU_reset_before", activations=("elu", "softsign"), dtype="float32",
               data=sequence(4, 1, 1, "pre", 9), units=1),
          dict(kind="SimpleRNN", activations=("linear", "tanh"), data=sequence(2, 4, 2, None, 10)))
def test_rnn_parity(data, kind, units, return_sequences, return_state, go_backwards, use_bias, with_initial_state,
                    zero_output_for_mask, activations, dtype):
    x, mask, seed, _ = data
    layer = make_rnn(kind, units, return_sequences=return_sequences, return_state=return_state,
                     go_backwards=go_backwards, use_bias=use_bias, activation=activations[0],
                     recurrent_activation=activations[1], zero_output_for_mask=zero_output_for_mask, dtype=dtype)
    call_kwargs = {}
    if with_initial_state:
        rng = np.random.default_rng(seed + 1)
        call_kwargs["initial_state"] = [rng.normal(size=(x.shape[0], units)).astype(dtype)
                                        for _ in range(N_STATES[kind])]
    layer_parity(layer, x.astype(dtype), seed=seed, mask=mask, call_kwargs=call_kwargs).assert_ok()


@covers(kind_dtype=kind_dtype, mask_style=mask_style)
@given(
    data=sequences(),
    kind=st.sampled_from(KINDS),
    units=st.integers(1, 4),
    merge_mode=st.sampled_from(["concat", "sum", "mul", "ave", None]),
    return_sequences=st.booleans(),
    return_state=st.booleans(),
    with_initial_state=st.booleans(),
    dtype=st.sampled_from(DTYPES),
)
@examples(dict(data=sequence(2, 5, 3, "holes", 12), kind="GRU", units=2, merge_mode="sum", return_sequences=True,
               return_state=True, with_initial_state=True, dtype="float64"),
          dict(), dict(kind="GRU_reset_before", merge_mode="ave", dtype="float32", return_sequences=False))
def test_bidirectional_parity(data, kind, units, merge_mode, return_sequences, return_state, with_initial_state, dtype):
    x, mask, seed, _ = data
    inner = make_rnn(kind, units, return_sequences=return_sequences, return_state=return_state, dtype=dtype)
    layer = layers.Bidirectional(inner, merge_mode=merge_mode)
    call_kwargs = {}
    if with_initial_state:
        rng = np.random.default_rng(seed + 1)
        call_kwargs["initial_state"] = [rng.normal(size=(x.shape[0], units)).astype(dtype)
                                        for _ in range(2 * N_STATES[kind])]
    layer_parity(layer, x.astype(dtype), seed=seed, mask=mask, call_kwargs=call_kwargs).assert_ok()


@covers(kind_dtype=kind_dtype, mask_style=mask_style)
@given(
    data=sequences(),
    kind=st.sampled_from(KINDS),
    units=st.integers(1, 4),
    merge_mode=st.sampled_from(["concat", "sum", "mul", "ave", None]),
    return_sequences=st.booleans(),
    backward_activation=st.sampled_from(["relu", "sigmoid", "linear"]),
    backward_use_bias=st.booleans(),
    dtype=st.sampled_from(DTYPES),
)
@examples(dict(data=sequence(3, 4, 2, "pre", 11), kind="SimpleRNN", units=3, merge_mode="concat",
               return_sequences=True, backward_activation="relu", backward_use_bias=False, dtype="float32"),
          dict(), dict(kind="LSTM", merge_mode="ave", return_sequences=False, backward_activation="sigmoid"))
def test_bidirectional_custom_backward_parity(data, kind, units, merge_mode, return_sequences, backward_activation,
                                              backward_use_bias, dtype):
    """``Bidirectional(layer, backward_layer=...)`` whose backward layer has its own activation and bias flag:
    outputs, dx and the gradients of both layers' weights."""
    x, mask, seed, _ = data
    forward = make_rnn(kind, units, return_sequences=return_sequences, dtype=dtype)
    backward = make_rnn(kind, units, return_sequences=return_sequences, go_backwards=True,
                        activation=backward_activation, use_bias=backward_use_bias, dtype=dtype)
    layer = layers.Bidirectional(forward, backward_layer=backward, merge_mode=merge_mode)
    layer_parity(layer, x.astype(dtype), seed=seed, mask=mask).assert_ok()


def _inject(cell, dm, rm):
    """Make a Keras cell use the given dropout multipliers (a list: one mask, or one per gate)."""

    def as_tensors(ms):
        if ms is None:
            return None
        return backend.tensor(ms[0]) if len(ms) == 1 else [backend.tensor(m) for m in ms]

    cell.get_dropout_mask = lambda step_input: as_tensors(dm)
    cell.get_recurrent_dropout_mask = lambda step_input: as_tensors(rm)


@covers(kind_dtype=kind_dtype, mask_style=mask_style)
@given(
    data=sequences(),
    kind=st.sampled_from(KINDS),
    units=st.integers(1, 4),
    rates=st.sampled_from([(0.3, 0.0), (0.0, 0.4), (0.25, 0.5)]),
    return_sequences=st.booleans(),
    dtype=st.sampled_from(DTYPES),
)
@examples(dict(data=sequence(3, 4, 2, "post", 13), kind="GRU_reset_before", units=2, rates=(0.25, 0.5),
               return_sequences=True, dtype="float64"))
def test_dropout_parity_with_injected_masks(data, kind, units, rates, return_sequences, dtype):
    x, mask, seed, _ = data
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
    keras_layer64 = None
    if dtype == "float32":  # the float64 reference gets the same multipliers, exactly cast
        keras_layer64 = keras_float64_twin(keras_layer)
        as64 = lambda ms: None if ms is None else [m.astype("float64") for m in ms]  # noqa: E731
        _inject(keras_layer64.cell, as64(dm), as64(rm))
    layer_parity(layer, x, seed=seed, mask=mask, training=True, keras_layer=keras_layer,
                 keras_layer64=keras_layer64).assert_ok()


def _stateful_states(layer) -> list:
    """The carried states of a stateful layer (both directions of a Bidirectional), tinynn or Keras."""
    if hasattr(layer, "forward_layer"):
        return list(layer.forward_layer.states) + list(layer.backward_layer.states)
    return list(layer.states)


def _keras_two_calls(keras_layer, weights, x1, x2, masks, upstream):
    """Keras's first-call outputs, second-call vjp and carried states after both calls."""
    keras_layer.build(x1.shape)
    keras_layer.set_weights(weights)
    keras_layer.reset_states()
    kw = {} if masks[0] is None else {"mask": backend.tensor(masks[0])}
    y1 = backend.numpy(keras_layer(backend.tensor(x1), **kw))
    ref = keras_vjp(keras_layer, x2, upstream, mask=masks[1])
    return y1, ref, [backend.numpy(s) for s in _stateful_states(keras_layer)]


@covers(kind_dtype=kind_dtype,
        kind_wrapped=(lambda kw: (kw["kind"], kw["bidirectional"]), [(k, b) for k in KINDS for b in (False, True)]))
@given(kind=st.sampled_from(KINDS), units=st.integers(1, 4), masked=st.booleans(), bidirectional=st.booleans(),
       seed=st.integers(0, 2**16), dtype=st.sampled_from(DTYPES))
@examples(dict(units=2, seed=3),  # every kind in both dtypes, alone in float64 and wrapped in float32
          *[dict(kind=k, dtype=d, bidirectional=d == "float32", masked=(i + j) % 2 == 0)
            for i, k in enumerate(KINDS) for j, d in enumerate(DTYPES)])
def test_stateful_parity(kind, units, masked, bidirectional, seed, dtype):
    """Two consecutive calls of a stateful layer (alone or inside Bidirectional, with or without a mask):
    the second starts from the first one's final states; outputs, dx, dW and the carried states match."""
    rng = np.random.default_rng(seed)
    B, T, F = 3, 4, 2
    x1, x2 = (rng.normal(size=(B, T, F)).astype(dtype) for _ in range(2))
    masks = (None, None)
    if masked:  # post-padding, a sample fully masked in one call, holes in the other
        masks = (np.arange(T)[None, :] < np.array([4, 2, 0])[:, None], rng.random((B, T)) > 0.4)
    layer = make_rnn(kind, units, stateful=True, batch_size=B, return_sequences=True, dtype=dtype)
    if bidirectional:
        layer = layers.Bidirectional(layer)
    layer(x1, mask=masks[0])
    weights = randomize_weights(layer, rng)
    layer.reset_states()
    y1 = layer(x1, mask=masks[0])
    y2 = layer(x2, mask=masks[1])
    upstream = [rng.normal(size=y2.shape)]
    dx = layer.backward(upstream[0].astype(dtype))
    keras_layer = bridge.keras_layer_for(layer)
    try:
        k1, ref, k_states = _keras_two_calls(keras_layer, weights, x1, x2, masks, upstream)
        ref64 = None
        if dtype == "float32":  # the reference: Keras's float64 computation of the same case
            ref64 = _keras_two_calls(keras_float64_twin(keras_layer), [w.astype("float64") for w in weights],
                                     x1.astype("float64"), x2.astype("float64"), masks, upstream)
    except Exception as error:  # noqa: BLE001 - Keras's side only
        if record_keras_error(error, dtype):
            return

    def r64(part, *keys):
        """A piece of the float64 reference (None for float64 cases)."""
        if ref64 is None:
            return None
        value = ref64[part]
        for key in keys:
            value = value[key]
        return value

    checks = [compare("first call", y1, k1, dtype, ref64=r64(0)),
              compare("second call", y2, ref["outputs"][0], dtype, ref64=r64(1, "outputs", 0)),
              compare("dx", dx, ref["dx"], dtype, ref64=r64(1, "dx"))]
    # float32: each weight gradient relative to the scale of the whole float64 gradient (likewise the states)
    dw_scale, state_scale = (None, None) if ref64 is None else (result_scale(ref64[1]["dw"]), result_scale(ref64[2]))
    for k, (g, r) in enumerate(paired("weight gradients", layer.gradients, ref["dw"], checks)):
        checks.append(compare(f"d{k}", g, r, dtype, ref64=r64(1, "dw", k), scale=dw_scale))
    for k, (s, ks) in enumerate(paired("states", _stateful_states(layer), k_states, checks)):
        checks.append(compare("state", s, ks, dtype, ref64=r64(2, k), scale=state_scale))
    assert_checks(checks)


@covers(mask_style=mask_style)
@given(data=sequences(), mask_value=st.sampled_from([0.0, 0.5, -1.0]), dtype=st.sampled_from(DTYPES))
def test_masking_parity(data, mask_value, dtype):
    x, mask, seed, _ = data
    if mask is not None:
        x = np.where(mask[..., None], x, mask_value)  # masked steps: every feature equals mask_value
    x = x.astype(dtype)
    layer = layers.Masking(mask_value=mask_value, dtype=dtype)
    layer_parity(layer, x, seed=seed).assert_ok()
    keras_layer = bridge.keras_layer_for(layer)
    np.testing.assert_array_equal(layer.compute_mask(x, None),
                                  backend.numpy(keras_layer.compute_mask(backend.tensor(x))))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("B, T, style, go_backwards, return_sequences, with_initial_state",
                         [(8, 6, "holes", False, True, True), (8, 6, "post", True, False, False),
                          (1, 6, "holes", True, True, False)])
def test_wide_lstm_inference_parity(B, T, style, go_backwards, return_sequences, with_initial_state, dtype,
                                    monkeypatch):
    """LSTM(128) at inference, where the fast loop splits the hidden units between two threads that meet at every
    step (``kernels.recurrent._lstm_inference_units``; the other cases are too small for it): outputs, states, dx
    and every weight gradient against Keras, with masks, go_backwards and an initial state; batch 1 too."""
    from tinynn.kernels import recurrent as fast_recurrent

    monkeypatch.setenv("TINYNN_NUM_THREADS", "2")  # two threads even on a machine with one core, however busy
    monkeypatch.setattr(fast_recurrent, "_busy_machine", lambda threads: False)
    monkeypatch.setattr(fast_recurrent, "UNIT_SPLIT_PAUSE", 0.0)  # (threads that stopped meeting: no pause)
    monkeypatch.setattr(fast_recurrent, "_unit_split_paused_until", 0.0)
    monkeypatch.setattr(fast_recurrent, "_PARALLEL_LOOP_WORK", 0)  # a batch of 1 over 6 steps is split too
    units = 128
    assert fast_recurrent._unit_threads(T, B, units) == 2
    x, mask, seed, _ = sequence(B, T, 3, style, 17)
    if style == "holes":
        mask[:, 0] = False  # a masked first step: the initial state is carried
    layer = layers.LSTM(units, return_sequences=return_sequences, return_state=True, go_backwards=go_backwards,
                        dtype=dtype)
    call_kwargs = {}
    if with_initial_state:
        rng = np.random.default_rng(seed + 1)
        call_kwargs["initial_state"] = [rng.normal(size=(B, units)).astype(dtype) for _ in range(2)]
    layer_parity(layer, x.astype(dtype), seed=seed, mask=mask, call_kwargs=call_kwargs).assert_ok()
