"""SimpleRNN, LSTM, GRU, Bidirectional, Masking without Keras: gradchecks of every option, masking and
dropout semantics, stateful layers, configs, and the errors for bad input."""

import numpy as np
import pytest

from tinynn import layers
from tinynn.gradcheck import check_layer, numeric_gradient

GRAD_TOL = 1e-6
RNNS = {
    "SimpleRNN": lambda **kw: layers.SimpleRNN(3, **kw),
    "LSTM": lambda **kw: layers.LSTM(3, **kw),
    "GRU": lambda **kw: layers.GRU(3, **kw),
    "GRU_reset_before": lambda **kw: layers.GRU(3, reset_after=False, **kw),
}
N_STATES = {"SimpleRNN": 1, "LSTM": 2, "GRU": 1, "GRU_reset_before": 1}
OPTIONS = [
    {},
    {"return_sequences": True},
    {"go_backwards": True},
    {"go_backwards": True, "return_sequences": True},
    {"return_state": True},
    {"return_state": True, "return_sequences": True},
    {"use_bias": False},
    {"activation": "relu"},
    {"activation": "softsign"},  # no numba kernel: the NumPy reference path
    {"zero_output_for_mask": True, "return_sequences": True},
]


def randomize(layer, rng, scale=0.5):
    layer.set_weights([rng.normal(0.0, scale, size=w.shape) for w in layer.get_weights()])


def valid_length_mask(rng, B, T, pre_padding=False):
    """Random valid lengths 0..T per sample, padded after (or before) the valid steps."""
    lengths = rng.integers(0, T + 1, size=B)
    steps = np.arange(T)[None, :]
    return steps >= (T - lengths[:, None]) if pre_padding else steps < lengths[:, None]


def assert_gradcheck(layer, x, **kwargs):
    results = check_layer(layer, x, **kwargs)
    assert results, "nothing was checked"
    for r in results:
        assert r.relative_error < GRAD_TOL, str(r)
    return results


def built_random(make, x, seed, **kwargs):
    layer = make(dtype="float64", **kwargs)
    layer(x)
    randomize(layer, np.random.default_rng(seed))
    return layer


# --------------------------------------------------------------------------- gradchecks
@pytest.mark.parametrize("kind", sorted(RNNS))
@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "default")
@pytest.mark.parametrize("masked", [False, True])
def test_rnn_gradcheck(kind, options, masked):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 5, 4))
    mask = valid_length_mask(rng, 3, 5, pre_padding=True) if masked else None
    if masked:
        mask[0] = [False, True, False, True, True]  # holes in the middle too
    layer = built_random(RNNS[kind], x, 1, **options)
    assert_gradcheck(layer, x, mask=mask, seed=2)


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_other_activations_gradcheck(kind):
    """Non-default activation pairs, both through the numba kernels and through the reference path."""
    x = np.random.default_rng(3).normal(size=(2, 4, 3))
    for act, rec in [("tanh", "hard_sigmoid"), ("sigmoid", "tanh"), ("linear", "sigmoid"), ("elu", "softsign")]:
        layer = built_random(RNNS[kind], x, 4, activation=act, recurrent_activation=rec, return_sequences=True)
        assert_gradcheck(layer, x)


class TrainingAdapter:
    """Presents a layer to ``check_layer`` with ``training=True`` (check_layer itself uses inference)."""

    def __init__(self, layer):
        self._layer = layer

    def __getattr__(self, name):
        return getattr(self._layer, name)

    def __call__(self, x, training=False, mask=None):
        return self._layer(x, training=True, mask=mask)

    def forward(self, x, training=False, mask=None):
        return self._layer.forward(x, training=True, mask=mask)


@pytest.mark.parametrize("kind", sorted(RNNS))
@pytest.mark.parametrize("rates", [(0.4, 0.0), (0.0, 0.5), (0.3, 0.5)])
def test_dropout_gradcheck(kind, rates):
    """Fixed dropout masks (as Keras: one per call, per gate with recurrent_dropout) differentiate exactly."""
    rng = np.random.default_rng(5)
    B, T, F = 3, 4, 5
    x = rng.normal(size=(B, T, F))
    layer = built_random(RNNS[kind], x, 6, dropout=rates[0], recurrent_dropout=rates[1], return_sequences=True)
    n_in, n_rec = layer._masks_per_call()
    dm = [(rng.random((B, F)) >= rates[0]) / (1 - rates[0]) for _ in range(n_in)]
    rm = [(rng.random((B, 3)) >= rates[1]) / (1 - rates[1]) for _ in range(n_rec)]
    layer.set_dropout_masks(dm or None, rm or None)
    y_train = layer(x, training=True)
    assert not np.allclose(y_train, layer(x, training=False)), "dropout had no effect"
    assert_gradcheck(TrainingAdapter(layer), x, mask=valid_length_mask(rng, B, T))


@pytest.mark.parametrize("kind", sorted(RNNS))
@pytest.mark.parametrize("masked", [False, True])
def test_initial_state_gradient(kind, masked):
    """backward returns (dx, [d initial states]) when initial_state was given; check it numerically."""
    rng = np.random.default_rng(7)
    x = rng.normal(size=(3, 4, 2))
    mask = valid_length_mask(rng, 3, 4) if masked else None
    layer = built_random(RNNS[kind], x, 8, return_sequences=True, return_state=True)
    states = [rng.normal(size=(3, 3)) for _ in range(N_STATES[kind])]
    outs = layer(x, mask=mask, initial_state=states)
    ups = [rng.normal(size=o.shape) for o in outs]

    def loss():
        return sum(float(np.sum(g * o)) for g, o in zip(ups, layer(x, mask=mask, initial_state=states)))

    layer(x, mask=mask, initial_state=states)
    dx, dstates = layer.backward(ups)
    assert len(dstates) == len(states)
    for s, ds in zip(states, dstates):
        np.testing.assert_allclose(ds, numeric_gradient(loss, s), rtol=0, atol=1e-7)
    np.testing.assert_allclose(dx, numeric_gradient(loss, x), rtol=0, atol=1e-7)


@pytest.mark.parametrize("merge_mode", ["concat", "sum", "mul", "ave", None])
@pytest.mark.parametrize("inner", ["LSTM", "GRU", "SimpleRNN"])
@pytest.mark.parametrize("return_sequences", [False, True])
def test_bidirectional_gradcheck(merge_mode, inner, return_sequences):
    rng = np.random.default_rng(9)
    x = rng.normal(size=(3, 5, 2))
    layer = layers.Bidirectional(RNNS[inner](dtype="float64", return_sequences=return_sequences),
                                 merge_mode=merge_mode)
    layer(x)
    randomize(layer, rng)
    results = assert_gradcheck(layer, x, mask=valid_length_mask(rng, 3, 5))
    assert len(results) == 1 + len(layer.get_weights())


def test_bidirectional_return_state_and_initial_state_gradcheck():
    rng = np.random.default_rng(10)
    x = rng.normal(size=(2, 4, 3))
    layer = layers.Bidirectional(layers.LSTM(2, dtype="float64", return_sequences=True, return_state=True))
    layer(x)
    randomize(layer, rng)
    assert_gradcheck(layer, x)
    states = [rng.normal(size=(2, 2)) for _ in range(4)]
    outs = layer(x, initial_state=states)
    ups = [rng.normal(size=o.shape) for o in outs]

    def loss():
        return sum(float(np.sum(g * o)) for g, o in zip(ups, layer(x, initial_state=states)))

    layer(x, initial_state=states)
    dx, dstates = layer.backward(ups)
    for s, ds in zip(states, dstates):
        np.testing.assert_allclose(ds, numeric_gradient(loss, s), rtol=0, atol=1e-7)


def test_masking_layer_gradient():
    """Unmasked entries: identity (gradchecked); masked steps: output 0 and zero gradient, as tf.where's.

    (A finite difference at a masked step is meaningless: any perturbation unmasks the step.)"""
    rng = np.random.default_rng(11)
    layer = layers.Masking(mask_value=0.25, dtype="float64")
    assert_gradcheck(layer, rng.normal(size=(3, 6, 2)))
    x = rng.normal(size=(3, 6, 2))
    x[0, 2] = 0.25
    x[2, 4:] = 0.25
    x[1, 1, 0] = 0.25  # one feature equal to mask_value is not enough
    y = layer(x)
    mask = layer.compute_mask(x, None)
    assert not mask[0, 2] and not mask[2, 4:].any() and mask.sum() == 18 - 3
    np.testing.assert_array_equal(y[~mask], 0)
    np.testing.assert_array_equal(y[mask], x[mask])
    dy = rng.normal(size=y.shape)
    np.testing.assert_array_equal(layer.backward(dy), np.where(mask[..., None], dy, 0))


# --------------------------------------------------------------------------- masking semantics
@pytest.mark.parametrize("kind", sorted(RNNS))
@pytest.mark.parametrize("pre_padding", [False, True])
def test_masked_steps_are_skipped(kind, pre_padding):
    """A padded sequence gives the final state of its valid part alone (post- or pre-padding)."""
    rng = np.random.default_rng(12)
    x = rng.normal(size=(4, 6, 3))
    mask = valid_length_mask(rng, 4, 6, pre_padding)
    mask[:, 0 if not pre_padding else -1] = True  # at least one valid step each
    layer = built_random(RNNS[kind], x, 13, return_state=True)
    out, h = layer(x, mask=mask)[:2]
    for b in range(4):
        valid = x[b:b + 1, mask[b]]
        out_b, h_b = layer(valid)[:2]
        np.testing.assert_allclose(out[b], out_b[0], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(h[b], h_b[0], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", sorted(RNNS))
def test_masked_outputs_repeat_previous_output_and_zero_before_first_valid(kind):
    rng = np.random.default_rng(14)
    x = rng.normal(size=(1, 6, 2))
    mask = np.array([[False, False, True, False, True, False]])
    layer = built_random(RNNS[kind], x, 15, return_sequences=True, return_state=True)
    init = [rng.normal(size=(1, 3)) for _ in range(N_STATES[kind])]
    y, *states = layer(x, mask=mask, initial_state=init)
    np.testing.assert_array_equal(y[0, :2], 0)  # zeros before the first valid step, even with initial_state
    np.testing.assert_array_equal(y[0, 3], y[0, 2])
    np.testing.assert_array_equal(y[0, 5], y[0, 4])
    np.testing.assert_array_equal(states[0][0], y[0, 5])
    # an entirely masked sample keeps its initial state and outputs zeros
    y2, *s2 = layer(x, mask=np.zeros((1, 6), bool), initial_state=init)
    np.testing.assert_array_equal(y2, 0)
    for a, b in zip(s2, init):
        np.testing.assert_array_equal(a, b)


def test_bidirectional_zeros_masked_steps_and_rnn_mask_propagation():
    rng = np.random.default_rng(16)
    x = rng.normal(size=(2, 5, 3))
    mask = np.array([[True, True, True, False, False], [True, False, True, True, True]])
    bi = layers.Bidirectional(layers.GRU(2, return_sequences=True, dtype="float64"))
    y = bi(x, mask=mask)
    np.testing.assert_array_equal(y[~mask], 0)
    assert np.all(np.abs(y[mask]).sum(-1) > 0)
    np.testing.assert_array_equal(bi.compute_mask(x, mask), mask)
    assert layers.Bidirectional(layers.GRU(2)).compute_mask(x, mask) is None
    assert layers.Bidirectional(layers.GRU(2), merge_mode=None).compute_mask(x, mask) == [None, None]
    assert layers.LSTM(2, return_sequences=True).compute_mask(x, mask) is mask
    assert layers.LSTM(2).compute_mask(x, mask) is None
    assert layers.LSTM(2, return_state=True).compute_mask(x, mask) == [None, None, None]


# --------------------------------------------------------------------------- go_backwards, dropout, stateful
def test_go_backwards_output_is_in_processing_order():
    rng = np.random.default_rng(17)
    x = rng.normal(size=(2, 5, 3))
    fwd = layers.LSTM(4, return_sequences=True, dtype="float64")
    fwd(x)
    bwd = layers.LSTM(4, return_sequences=True, go_backwards=True, dtype="float64")
    bwd(x)
    bwd.set_weights(fwd.get_weights())
    np.testing.assert_allclose(bwd(x), fwd(x[:, ::-1]), rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("kind, gates", [("SimpleRNN", 1), ("LSTM", 4), ("GRU", 3)])
def test_dropout_masks_are_per_call_and_per_gate(kind, gates):
    """One input mask (B, n_in) per call reused at every step; G masks when recurrent_dropout > 0."""
    rng = np.random.default_rng(18)
    B, T, F, rate = 64, 4, 40, 0.5
    x = rng.normal(size=(B, T, F))
    for rec_rate, n_masks in [(0.0, 1), (0.3, gates)]:
        layer = RNNS[kind](dtype="float64", dropout=rate, recurrent_dropout=rec_rate, return_sequences=True, seed=3)
        layer(x)
        randomize(layer, rng)
        y = layer(x, training=True)
        dx = layer.backward(rng.normal(size=y.shape))
        # (step 0 is skipped: with h0 = c0 = 0 some gate gradients vanish there, e.g. δz_f = δc̄ ⊙ c0 = 0)
        dropped = dx[:, 1:] == 0
        assert np.array_equal(dropped, np.broadcast_to(dropped[:, :1], dropped.shape)), "mask changed over time"
        frac = dropped[:, 0].mean()
        assert abs(frac - rate**n_masks) < 0.05, (frac, rate**n_masks)
        y2 = layer(x, training=True)
        assert not np.allclose(y, y2), "a new call must draw new masks"
        np.testing.assert_array_equal(layer(x, training=False), layer(x))
    same_seed = [RNNS[kind](dtype="float64", dropout=rate, seed=7) for _ in range(2)]
    for layer in same_seed:
        layer(x)
    same_seed[1].set_weights(same_seed[0].get_weights())
    np.testing.assert_array_equal(same_seed[0](x, training=True), same_seed[1](x, training=True))


@pytest.mark.parametrize("kind", sorted(RNNS))
def test_stateful_two_calls_equal_one_long_call(kind):
    rng = np.random.default_rng(19)
    x = rng.normal(size=(3, 8, 2))
    stateful = RNNS[kind](dtype="float64", stateful=True, batch_size=3, return_sequences=True)
    plain = RNNS[kind](dtype="float64", return_sequences=True)
    stateful(x[:, :4])
    plain(x)
    randomize(stateful, rng)
    plain.set_weights(stateful.get_weights())
    stateful.reset_states()
    y = np.concatenate([stateful(x[:, :4]), stateful(x[:, 4:])], axis=1)
    np.testing.assert_allclose(y, plain(x), rtol=1e-13, atol=1e-13)
    assert len(stateful.get_weights()) == len(plain.get_weights())  # states are not weights
    stateful.reset_states()
    assert all(np.all(s == 0) for s in stateful.states)
    np.testing.assert_allclose(stateful(x[:, :4]), plain(x[:, :4]), rtol=1e-13, atol=1e-13)
    with pytest.raises(ValueError, match="batch"):
        stateful(x[:2, :4])


def test_stateful_bidirectional_and_reset():
    x = np.random.default_rng(20).normal(size=(2, 3, 2))
    bi = layers.Bidirectional(layers.LSTM(2, stateful=True, batch_size=2))
    bi(x)
    assert len(bi.states) == 4 and any(np.any(s != 0) for s in bi.states)
    bi.reset_states()
    assert all(np.all(s == 0) for s in bi.states)
    with pytest.raises(AttributeError):
        layers.Bidirectional(layers.LSTM(2)).reset_states()


# --------------------------------------------------------------------------- weights and config
def test_weight_shapes_and_init():
    x = np.zeros((1, 2, 5), np.float32)
    lstm = layers.LSTM(3)
    lstm(x)
    assert [w.shape for w in lstm.get_weights()] == [(5, 12), (3, 12), (12,)]
    np.testing.assert_array_equal(lstm.bias, [0] * 3 + [1] * 3 + [0] * 6)  # unit_forget_bias
    U = lstm.recurrent_kernel.astype(np.float64)
    np.testing.assert_allclose(U @ U.T, np.eye(3), atol=1e-6)  # orthogonal rows
    no_forget = layers.LSTM(3, unit_forget_bias=False)
    no_forget(x)
    np.testing.assert_array_equal(no_forget.bias, 0)
    gru = layers.GRU(3)
    gru(x)
    assert [w.shape for w in gru.get_weights()] == [(5, 9), (3, 9), (2, 9)]
    gru2 = layers.GRU(3, reset_after=False, use_bias=False)
    gru2(x)
    assert [w.shape for w in gru2.get_weights()] == [(5, 9), (3, 9)]
    rnn = layers.SimpleRNN(3, unroll=True)
    assert rnn(x).shape == (1, 3) and rnn.weight_names == [f"{rnn.name}/kernel", f"{rnn.name}/recurrent_kernel",
                                                            f"{rnn.name}/bias"]


def test_bidirectional_weights_order_and_config_round_trip():
    x = np.random.default_rng(21).normal(size=(2, 3, 4)).astype(np.float32)
    bi = layers.Bidirectional(layers.LSTM(3, name="enc"), merge_mode="sum")
    y = bi(x)
    assert y.shape == (2, 3)
    names = bi.weight_names
    assert names[:3] == [f"{bi.name}/forward_enc/{n}" for n in ("kernel", "recurrent_kernel", "bias")]
    assert names[3:] == [f"{bi.name}/backward_enc/{n}" for n in ("kernel", "recurrent_kernel", "bias")]
    assert bi.backward_layer.go_backwards and not bi.forward_layer.go_backwards
    assert not np.array_equal(bi.forward_layer.kernel, bi.backward_layer.kernel)  # fresh weights
    assert bi.count_params() == 2 * (4 * 12 + 3 * 12 + 12)
    clone = layers.Bidirectional.from_config(bi.get_config())
    clone(x)
    clone.set_weights(bi.get_weights())
    np.testing.assert_array_equal(clone(x), y)
    assert clone.get_config()["merge_mode"] == "sum"
    for kind in RNNS:
        layer = RNNS[kind](return_sequences=True, go_backwards=True, dropout=0.1, stateful=False)
        again = type(layer).from_config(layer.get_config())
        cfg, cfg2 = layer.get_config(), again.get_config()
        assert cfg == cfg2
    assert layers.Bidirectional(layers.GRU(2), merge_mode=None).compute_output_shape((None, 7, 3)) == [
        (None, 2), (None, 2)]
    assert layers.Bidirectional(layers.LSTM(2, return_sequences=True, return_state=True)).compute_output_shape(
        (None, 7, 3)) == [(None, 7, 4), (None, 2), (None, 2), (None, 2), (None, 2)]


# --------------------------------------------------------------------------- bad input
def test_bad_inputs_raise_value_errors_naming_the_layer():
    x = np.zeros((2, 3, 4))
    lstm = layers.LSTM(2, name="enc")
    with pytest.raises(ValueError, match=r"'enc'.*rank 3.*\(2, 4\)"):
        lstm(np.zeros((2, 4)))
    lstm(x)
    with pytest.raises(ValueError, match=r"'enc'.*axis -1 of size 4.*\(2, 3, 5\)"):
        lstm(np.zeros((2, 3, 5)))
    with pytest.raises(ValueError, match=r"'enc'.*mask of shape \(2, 3\).*\(2, 4\)"):
        lstm(x, mask=np.ones((2, 4), bool))
    with pytest.raises(ValueError, match=r"'enc'.*initial_state.*2 array"):
        lstm(x, initial_state=[np.zeros((2, 2))])
    with pytest.raises(ValueError, match=r"'enc'.*initial_state\[1\].*\(2, 2\).*\(3, 2\)"):
        lstm(x, initial_state=[np.zeros((2, 2)), np.zeros((3, 2))])
    with pytest.raises(ValueError, match=r"'enc'.*at least one timestep"):
        lstm(np.zeros((2, 0, 4)))
    with pytest.raises(ValueError, match=r"'enc'.*numeric"):
        lstm(np.array([[["a"] * 4] * 3] * 2))
    with pytest.raises(ValueError, match="stateful.*fixed batch size"):
        layers.GRU(2, stateful=True)(x)
    with pytest.raises(ValueError, match="units must be a positive integer"):
        layers.SimpleRNN(0)
    with pytest.raises(ValueError, match="returns 3 arrays"):
        layer = layers.LSTM(2, return_state=True)
        layer(x)
        layer.backward(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="merge_mode"):
        layers.Bidirectional(layers.LSTM(2), merge_mode="max")
    with pytest.raises(ValueError, match="recurrent layer"):
        layers.Bidirectional(layers.Dense(2))
    with pytest.raises(ValueError, match="go_backwards"):
        layers.Bidirectional(layers.LSTM(2), backward_layer=layers.LSTM(2))
    with pytest.raises(ValueError, match=r"Bidirectional.*4 arrays"):
        layers.Bidirectional(layers.LSTM(2))(x, initial_state=[np.zeros((2, 2))])
    with pytest.raises(ValueError, match="set_dropout_masks expects 1 dropout mask"):
        layer = layers.SimpleRNN(2, dropout=0.5)
        layer(x)
        layer.set_dropout_masks([np.ones((3, 4))])
        layer(x, training=True)


@pytest.mark.parametrize("layer_name", ["SimpleRNN", "LSTM", "GRU"])
def test_inference_forward_keeps_no_gates_and_a_backward_after_it_still_works(layer_name):
    """training=False runs the loops on one step's scratch rows (no cache); a backward after such a call re-runs
    the loop keeping the gates and gives what a training forward's backward gives (no dropout here)."""
    rng = np.random.default_rng(11)
    x, dy = rng.normal(size=(3, 6, 4)), rng.normal(size=(3, 6, 5))
    layer = getattr(layers, layer_name)(5, return_sequences=True, dtype="float64", bias_initializer="random_normal")
    y_inf = layer(x, training=False)
    assert layer._cache["loop"] is None  # the fast loop kept no gates
    dx_inf = layer.backward(dy)
    grads_inf = [g.copy() for g in layer.gradients]
    y_tr = layer(x, training=True)
    dx_tr = layer.backward(dy)
    np.testing.assert_array_equal(y_inf, y_tr)
    np.testing.assert_allclose(dx_inf, dx_tr, rtol=1e-13, atol=1e-13)
    for a, b in zip(grads_inf, layer.gradients):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-13)
