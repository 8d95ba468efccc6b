"""Training a layer followed by a global average pooling: the pooling hands the layer its gradient dy / P (P the
steps or pixels pooled) as a broadcast view (``backward_broadcast``, called by the chain's backward when the layer
has ``accepts_broadcast_dy``), and the layer's activation gradient reads one row per sequence or image instead of P
copies written out: Dense and Conv1D through bias_activation's ``_backward_broadcast``, Conv2D through its fused
backward (``activation_gradient_broadcast_rows``). An SGD step is bit for bit that of the same model with the
pair's hand-over switched off."""

import numpy as np
import pytest
from spies import count_calls

import tinynn as tn
from tinynn import config, layers
from tinynn.kernels import bias_activation, blas, conv2d, warmup

# (layer kind, activation, use_bias, dtype, data_format); the kernel runs for the numba activations but sigmoid in
# Conv2D (which keeps its logits, so its tail is not fused) and for channels_last poolings only
CASES = [
    ("Dense", "relu", True, "float64", "channels_last"), ("Dense", "linear", False, "float32", "channels_last"),
    ("Dense", "relu", True, "float32", "channels_last"), ("Dense", "tanh", True, "float64", "channels_last"),
    ("Conv1D", "relu", True, "float32", "channels_last"), ("Conv1D", "tanh", False, "float64", "channels_last"),
    ("Conv1D", "relu", True, "float64", "channels_first"), ("Conv1D", "elu", True, "float32", "channels_last"),
    ("Conv2D", "relu", True, "float32", "channels_last"), ("Conv2D", "linear", False, "float64", "channels_last"),
    ("Conv2D", "tanh", True, "float64", "channels_last"), ("Conv2D", "sigmoid", True, "float32", "channels_last"),
    ("Conv2D", "relu", True, "float64", "channels_first"),
]  # fmt: skip


def _pair(kind, activation, use_bias, dtype, data_format):
    """(the layer, its pooling, input shape) with random non-zero weights and biases."""
    init = dict(kernel_initializer=tn.initializers.RandomNormal(seed=3),
                bias_initializer=tn.initializers.RandomNormal(seed=4))  # fmt: skip
    common = dict(activation=activation, use_bias=use_bias, dtype=dtype, **init)
    if kind == "Dense":
        return layers.Dense(7, **common), layers.GlobalAveragePooling1D(dtype=dtype), (11, 5)
    if kind == "Conv1D":
        shape = (11, 5) if data_format == "channels_last" else (5, 11)
        return (layers.Conv1D(7, 3, data_format=data_format, **common),
                layers.GlobalAveragePooling1D(data_format=data_format, dtype=dtype), shape)  # fmt: skip
    shape = (9, 8, 3) if data_format == "channels_last" else (3, 9, 8)
    return (layers.Conv2D(7, 3, padding="same", data_format=data_format, **common),
            layers.GlobalAveragePooling2D(data_format=data_format, dtype=dtype), shape)  # fmt: skip


def _expects_kernel(kind, activation, data_format) -> bool:
    if data_format != "channels_last":
        return False
    if kind == "Dense":
        return activation in ("relu", "linear")  # Dense's fused tail
    return activation != "elu" and not (kind == "Conv2D" and activation == "sigmoid")


@pytest.mark.parametrize(("kind", "activation", "use_bias", "dtype", "data_format"), CASES)
def test_training_through_mean_pooling_hands_the_layer_one_row_per_sample(kind, activation, use_bias, dtype,
                                                                          data_format, monkeypatch):
    monkeypatch.setattr(blas, "PARALLEL_WORK", 0)  # Dense's fast path on a small layer
    calls = count_calls(monkeypatch, bias_activation, "_backward_broadcast")
    calls_2d = count_calls(monkeypatch, conv2d, "activation_gradient_broadcast_rows")
    rng = np.random.default_rng(24)

    def model():
        layer, pool, shape = _pair(kind, activation, use_bias, dtype, data_format)
        net = tn.Sequential([layers.Input(shape=shape), layer, pool,
                             layers.Dense(1, dtype=dtype, kernel_initializer=tn.initializers.RandomNormal(seed=5))])
        net.compile(optimizer=tn.optimizers.SGD(0.1), loss="mse")
        return net, shape

    (fused, shape), (plain, _) = model(), model()
    x, y = rng.normal(size=(6, *shape)).astype(dtype), rng.normal(size=(6, 1)).astype(dtype)
    plain.train_on_batch(x, y)  # builds the graph
    plain._graph._chain_pooled = [False] * len(plain.layers)
    before = [w.copy() for w in plain.get_weights()]
    fused.set_weights(before)
    calls.clear(), calls_2d.clear()
    for net in (fused, plain):
        net.train_on_batch(x, y)
    for a, b in zip(fused.get_weights(), plain.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert not any(np.array_equal(a, b) for a, b in zip(fused.get_weights()[:1], before[:1]))  # it trained
    assert len(calls if kind != "Conv2D" else calls_2d) == _expects_kernel(kind, activation, data_format)
    assert not (calls_2d if kind != "Conv2D" else calls)


@pytest.mark.parametrize("kind", ["Dense", "Conv1D", "Conv2D"])
def test_a_layer_on_its_numpy_twins_takes_the_view_as_it_is(kind, monkeypatch):
    """While a layer's fast kernels compile in the background it runs its NumPy twins, and the pooling after it may
    already run fast: its reference backward then gets the broadcast view (read-only; linear returns it as dz) and
    must neither write into it nor differ from the model with the hand-over switched off."""
    real = warmup.fast_ready
    monkeypatch.setattr(warmup, "fast_ready", lambda layer, *a, **k: layer.name != "twin" and real(layer, *a, **k))
    rng = np.random.default_rng(5)

    def model():
        layer, pool, shape = _pair(kind, "linear", True, "float64", "channels_last")
        layer.name = "twin"
        net = tn.Sequential([layers.Input(shape=shape), layer, pool, layers.Dense(1, dtype="float64")])
        net.compile(optimizer=tn.optimizers.SGD(0.1), loss="mse")
        return net, shape

    (fused, shape), (plain, _) = model(), model()
    x, y = rng.normal(size=(4, *shape)), rng.normal(size=(4, 1))
    plain.train_on_batch(x, y)
    plain._graph._chain_pooled = [False] * len(plain.layers)
    fused.set_weights(plain.get_weights())
    pool = fused.layers[1]
    views = []
    real_broadcast = pool.backward_broadcast
    monkeypatch.setattr(pool, "backward_broadcast", lambda dy: views.append(real_broadcast(dy)) or views[-1])
    for net in (fused, plain):
        net.train_on_batch(x, y)
    layer = fused.layers[0]
    assert config.kernel_mode() == "fast" and (not layer._fast if kind == "Dense" else layer._reference)
    assert len(views) == 1 and 0 in views[0].strides and not views[0].flags.writeable
    for a, b in zip(fused.get_weights(), plain.get_weights()):
        np.testing.assert_array_equal(a, b)
