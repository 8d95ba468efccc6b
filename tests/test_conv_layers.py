"""Conv1D family and 1-D pooling layers on their own: finite-difference gradchecks (float64), shapes, masks,
channels_first, configs, and clear ValueErrors for bad input raised before any numba kernel runs."""

import numpy as np
import pytest
from spies import count_calls

from tinynn import config, layers
from tinynn.gradcheck import check_layer
from tinynn.kernels import conv as kc
from tinynn.kernels import pooling as kp

GRADCHECK_TOL = 1e-6

CONV_CASES = [
    (lambda: layers.Conv1D(4, 3, activation="tanh"), (2, 9, 3)),
    (lambda: layers.Conv1D(3, 4, strides=2, padding="same", activation="relu"), (2, 10, 2)),
    (lambda: layers.Conv1D(6, 3, padding="causal", dilation_rate=3, groups=3, activation="sigmoid"), (2, 8, 6)),
    (lambda: layers.Conv1D(4, 2, strides=3, groups=2, use_bias=False), (3, 11, 4)),
    (lambda: layers.Conv1D(3, 5, padding="same", dilation_rate=2, data_format="channels_first"), (2, 2, 7)),
    (lambda: layers.Conv1D(2, 2, padding="valid"), (1, 2, 1)),  # the shortest legal input (L = K)
    (lambda: layers.DepthwiseConv1D(3, strides=2, dilation_rate=2, padding="same", depth_multiplier=2), (2, 11, 3)),
    (lambda: layers.DepthwiseConv1D(4, activation="tanh", data_format="channels_first"), (2, 3, 6)),
    (lambda: layers.SeparableConv1D(5, 3, padding="same", depth_multiplier=2, activation="tanh"), (2, 7, 3)),
    (lambda: layers.SeparableConv1D(2, 2, strides=2, dilation_rate=3, use_bias=False), (2, 12, 2)),
    (lambda: layers.SeparableConv1D(3, 3, data_format="channels_first", activation="relu"), (2, 2, 9)),
]
POOL_CASES = [
    (lambda: layers.MaxPooling1D(), (2, 9, 3)),
    (lambda: layers.MaxPooling1D(3, strides=2, padding="same"), (2, 10, 3)),
    (lambda: layers.MaxPooling1D(4, strides=1, data_format="channels_first"), (2, 3, 7)),
    (lambda: layers.AveragePooling1D(3), (2, 10, 2)),
    (lambda: layers.AveragePooling1D(4, strides=3, padding="same"), (2, 10, 2)),
    (lambda: layers.AveragePooling1D(2, strides=1, padding="same", data_format="channels_first"), (2, 3, 5)),
    (lambda: layers.GlobalMaxPooling1D(), (2, 6, 3)),
    (lambda: layers.GlobalMaxPooling1D(keepdims=True, data_format="channels_first"), (2, 3, 6)),
    (lambda: layers.GlobalAveragePooling1D(), (2, 6, 3)),
    (lambda: layers.GlobalAveragePooling1D(keepdims=True, data_format="channels_first"), (2, 3, 6)),
]


def as_dtype(layer, dtype):
    """The same layer config in another dtype."""
    return type(layer).from_config({**layer.get_config(), "dtype": dtype})


def _ids(cases):
    return [f"{make().__class__.__name__}-{i}" for i, (make, _) in enumerate(cases)]


@pytest.mark.parametrize("make,shape", CONV_CASES + POOL_CASES, ids=_ids(CONV_CASES + POOL_CASES))
def test_gradcheck(make, shape):
    layer = as_dtype(make(), "float64")
    x = np.random.default_rng(0).standard_normal(shape)
    layer(x)  # build, then give every weight (biases too) random values
    rng = np.random.default_rng(1)
    layer.set_weights([rng.standard_normal(w.shape) for w in layer.get_weights()])
    results = check_layer(layer, x, seed=2)
    assert len(results) == 1 + len(layer.get_weights())
    for r in results:
        assert r.relative_error < GRADCHECK_TOL, str(r)


def test_gradcheck_masked_global_average():
    layer = layers.GlobalAveragePooling1D(dtype="float64")
    mask = np.array([[1, 0, 1, 1, 0], [0, 0, 0, 1, 0], [1, 1, 1, 1, 1]], bool)
    for r in check_layer(layer, np.random.default_rng(0).standard_normal((3, 5, 4)), mask=mask):
        assert r.relative_error < GRADCHECK_TOL, str(r)


@pytest.mark.parametrize("make,shape", CONV_CASES + POOL_CASES, ids=_ids(CONV_CASES + POOL_CASES))
def test_output_shape_dtype_and_no_mutation(make, shape):
    for dtype in ("float32", "float64"):
        layer = as_dtype(make(), dtype)
        x = np.random.default_rng(0).standard_normal(shape).astype(dtype)
        x_copy = x.copy()
        y = layer(x)
        assert y.shape[1:] == tuple(layer.compute_output_shape((None, *shape[1:]))[1:])
        assert y.dtype == dtype
        dy = np.random.default_rng(1).standard_normal(y.shape).astype(dtype)
        dy_copy = dy.copy()
        dx = layer.backward(dy)
        assert dx.shape == x.shape and dx.dtype == dtype
        assert all(g.dtype == dtype and g.shape == w.shape for g, w in zip(layer.gradients, layer.weights))
        np.testing.assert_array_equal(x, x_copy)
        np.testing.assert_array_equal(dy, dy_copy)


@pytest.mark.parametrize(
    "make",
    [
        lambda fmt: layers.Conv1D(4, 3, strides=2, padding="same", groups=2, activation="relu", data_format=fmt),
        lambda fmt: layers.SeparableConv1D(3, 3, padding="same", depth_multiplier=2, data_format=fmt),
        lambda fmt: layers.DepthwiseConv1D(2, dilation_rate=2, data_format=fmt),
        lambda fmt: layers.MaxPooling1D(3, strides=2, padding="same", data_format=fmt),
        lambda fmt: layers.AveragePooling1D(3, strides=2, padding="same", data_format=fmt),
        lambda fmt: layers.GlobalAveragePooling1D(data_format=fmt, keepdims=True),
        lambda fmt: layers.GlobalMaxPooling1D(data_format=fmt, keepdims=True),
    ],
)
def test_channels_first_equals_transposed_channels_last(make):
    """Keras-TF cannot run a channels_first Conv1D on CPU, so this is how channels_first is pinned down."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 9, 4))
    last, first = as_dtype(make("channels_last"), "float64"), as_dtype(make("channels_first"), "float64")
    y_last = last(x)
    first(x.transpose(0, 2, 1))
    weights = [rng.standard_normal(w.shape) for w in last.get_weights()]
    last.set_weights(weights)
    first.set_weights(weights)
    y_last, y_first = last(x), first(x.transpose(0, 2, 1))
    np.testing.assert_allclose(y_first, y_last.transpose(0, 2, 1) if y_last.ndim == 3 else y_last, rtol=1e-12)
    dy = rng.standard_normal(y_last.shape)
    dx_last = last.backward(dy)
    dx_first = first.backward(dy.transpose(0, 2, 1))
    np.testing.assert_allclose(dx_first, dx_last.transpose(0, 2, 1), rtol=1e-12, atol=1e-14)
    for a, b in zip(first.gradients, last.gradients):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def test_weight_layouts_are_keras():
    x = np.zeros((2, 10, 6), np.float32)
    conv = layers.Conv1D(4, 3, groups=2)
    conv(x)
    assert [w.shape for w in conv.get_weights()] == [(3, 3, 4), (4,)]
    dw = layers.DepthwiseConv1D(5, depth_multiplier=3)
    dw(x)
    assert [w.shape for w in dw.get_weights()] == [(5, 6, 3), (18,)]
    assert dw.weight_names[0].endswith("/kernel")
    sep = layers.SeparableConv1D(7, 2, depth_multiplier=2)
    sep(x)
    assert [w.shape for w in sep.get_weights()] == [(2, 6, 2), (1, 12, 7), (7,)]
    assert [n.split("/")[-1] for n in sep.weight_names] == ["depthwise_kernel", "pointwise_kernel", "bias"]


def test_glorot_fans_of_conv_kernels():
    """fan_in = K·in, fan_out = K·out: the limit sqrt(6/(fan_in+fan_out)) bounds the kernel."""
    conv = layers.Conv1D(64, 9)
    conv(np.zeros((1, 20, 32), np.float32))
    limit = np.sqrt(6 / (9 * 32 + 9 * 64))
    assert np.abs(conv.kernel).max() <= limit and np.abs(conv.kernel).max() > 0.9 * limit
    assert np.all(conv.bias == 0)


def test_masks():
    x = np.random.default_rng(0).standard_normal((2, 6, 3)).astype(np.float32)
    mask = np.array([[1, 1, 1, 0, 0, 0], [1, 0, 1, 1, 1, 1]], bool)
    for layer in (layers.Conv1D(2, 3), layers.MaxPooling1D(), layers.AveragePooling1D(2), layers.GlobalMaxPooling1D()):
        assert layer.supports_masking is False
        layer(x)
        assert layer.compute_mask(x, mask) is None
    gmp = layers.GlobalMaxPooling1D()
    np.testing.assert_array_equal(gmp(x, mask=mask), gmp(x))  # Keras drops the mask: padded steps count
    gap = layers.GlobalAveragePooling1D()
    assert gap.compute_mask(x, mask) is None
    y = gap(x, mask=mask)
    np.testing.assert_allclose(y[0], x[0, :3].mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(y[1], x[1, [0, 2, 3, 4, 5]].mean(axis=0), rtol=1e-6)
    all_masked = gap(x, mask=np.zeros((2, 6), bool))
    assert np.all(np.isnan(all_masked))  # 0/0, as in Keras
    np.testing.assert_array_equal(gap.backward(np.ones((2, 3), np.float32)), 0)  # masked steps get no gradient


def test_config_round_trip():
    for layer in (
        layers.Conv1D(4, 3, strides=2, padding="CAUSAL", groups=2, activation="relu", name="c"),
        layers.SeparableConv1D(3, (5,), depth_multiplier=2, dilation_rate=2),
        layers.DepthwiseConv1D(3, padding="same", depth_multiplier=2, use_bias=False),
        layers.MaxPooling1D(3, padding="Same"),
        layers.AveragePooling1D(4, strides=2),
        layers.GlobalAveragePooling1D(keepdims=True),
        layers.GlobalMaxPooling1D(data_format="channels_first"),
    ):
        cfg = layer.get_config()
        clone = type(layer).from_config(cfg)
        assert clone.get_config() == cfg
    assert layers.MaxPooling1D(3).get_config()["strides"] == [3]
    assert layers.Conv1D(1, 2, padding="CAUSAL").padding == "causal"


# --------------------------------------------------------------------------- bad input
@pytest.fixture
def no_kernels(monkeypatch):
    """Any call into the numba kernels fails the test: errors must come first."""

    def boom(*args, **kwargs):
        raise AssertionError("a kernel ran before the input was checked")

    for module, names in ((kc, ["im2col", "col2im", "shift_add", "spread"]), (kp, ["_max_fwd", "_avg_fwd"])):
        for name in names:
            monkeypatch.setattr(module, name, boom)


def _built(layer, shape):
    layer.ensure_built((None, *shape[1:]))
    return layer


@pytest.mark.parametrize(
    "make,good,bad,words",
    [
        (lambda: layers.Conv1D(4, 3, name="c1"), (2, 9, 3), (2, 9), ["c1", "Conv1D", "rank 3", "(2, 9)"]),
        (lambda: layers.Conv1D(4, 3, name="c2"), (2, 9, 3), (2, 9, 5), ["c2", "Conv1D", "size 3", "(2, 9, 5)"]),
        (lambda: layers.Conv1D(4, 3, dilation_rate=3, name="c3"), (2, 9, 3), (2, 6, 3), ["c3", "(2, 6, 3)", "7"]),
        (lambda: layers.SeparableConv1D(2, 5, name="s1"), (2, 9, 3), (2, 4, 3), ["s1", "SeparableConv1D", "(2, 4, 3)"]),
        (lambda: layers.DepthwiseConv1D(2, name="d1"), (2, 9, 3), (2, 9, 3, 1), ["d1", "DepthwiseConv1D", "rank 3"]),
        (lambda: layers.MaxPooling1D(4, name="p1"), (2, 9, 3), (2, 3, 3), ["p1", "MaxPooling1D", "(2, 3, 3)", "4"]),
        (lambda: layers.AveragePooling1D(2, name="p2"), (2, 9, 3), (9, 3), ["p2", "AveragePooling1D", "rank 3"]),
        (lambda: layers.GlobalMaxPooling1D(name="g1"), (2, 9, 3), (2, 9), ["g1", "GlobalMaxPooling1D", "rank 3"]),
        (lambda: layers.GlobalAveragePooling1D(name="g2"), (2, 9, 3), (2, 0, 3), ["g2", "step", "(2, 0, 3)"]),
    ],
)
def test_bad_input_after_build(no_kernels, make, good, bad, words):
    layer = _built(make(), good)
    with pytest.raises(ValueError) as err:
        layer(np.zeros(bad, np.float32))
    for w in words:
        assert w in str(err.value), (w, str(err.value))


@pytest.mark.parametrize(
    "make,shape,words",
    [
        (lambda: layers.Conv1D(4, 3, name="b1"), (2, 2, 3), ["b1", "(2, 2, 3)", "receptive field of 3"]),
        (lambda: layers.Conv1D(4, 2, groups=2, name="b2"), (2, 5, 3), ["b2", "divisible by groups=2", "3 input"]),
        (lambda: layers.Conv1D(4, 2, name="b3"), (2, 5), ["b3", "rank 3", "(2, 5)"]),
        (lambda: layers.SeparableConv1D(2, 3, dilation_rate=2, name="b4"), (1, 4, 2), ["b4", "(1, 4, 2)", "5 steps"]),
        (lambda: layers.AveragePooling1D(3, name="b5"), (1, 2, 2), ["b5", "(1, 2, 2)", "pool_size=3"]),
    ],
)
def test_bad_input_on_first_call(no_kernels, make, shape, words):
    with pytest.raises(ValueError) as err:
        make()(np.zeros(shape, np.float32))
    for w in words:
        assert w in str(err.value), (w, str(err.value))


def test_same_and_causal_accept_one_step(no_kernels):
    """With 'same'/'causal' padding a single step is legal (the output has ceil(1/s) = 1 step)."""
    assert layers.Conv1D(2, 9, padding="same").compute_output_shape((None, 1, 3)) == (None, 1, 2)
    assert layers.Conv1D(2, 9, padding="causal", dilation_rate=3).compute_output_shape((None, 1, 3)) == (None, 1, 2)
    assert layers.MaxPooling1D(5, padding="same").compute_output_shape((None, 1, 3)) == (None, 1, 3)
    assert layers.Conv1D(2, 4, strides=3, padding="valid").compute_output_shape((None, 4, 3)) == (None, 1, 2)
    with pytest.raises(ValueError, match="empty output"):
        layers.Conv1D(2, 4, strides=3).compute_output_shape((None, 3, 3))


@pytest.mark.parametrize(
    "make,words",
    [
        (lambda: layers.Conv1D(4, 2.5), ["kernel_size", "2.5"]),
        (lambda: layers.Conv1D(4.0, 3), ["filters", "4.0"]),
        (lambda: layers.Conv1D(0, 3), ["filters", "0"]),
        (lambda: layers.Conv1D(4, 3, strides=(1, 2)), ["strides"]),
        (lambda: layers.Conv1D(4, 3, strides=2, dilation_rate=2), ["strides > 1", "dilation_rate > 1"]),
        (lambda: layers.Conv1D(5, 3, groups=2), ["filters=5", "groups=2"]),
        (lambda: layers.Conv1D(4, 3, padding="full"), ["padding", "full"]),
        (lambda: layers.Conv1D(4, 3, data_format="channels_middle"), ["data_format"]),
        (lambda: layers.SeparableConv1D(4, 3, padding="causal"), ["padding", "causal"]),
        (lambda: layers.DepthwiseConv1D(3, padding="causal"), ["padding", "causal"]),
        (lambda: layers.DepthwiseConv1D(3, depth_multiplier=0), ["depth_multiplier"]),
        (lambda: layers.MaxPooling1D(1.5), ["pool_size", "1.5"]),
        (lambda: layers.MaxPooling1D(2, strides=0), ["strides"]),
        (lambda: layers.AveragePooling1D(2, padding="causal"), ["padding", "causal"]),
        (lambda: layers.GlobalMaxPooling1D(data_format="NCW"), ["data_format"]),
    ],
)
def test_bad_arguments(make, words):
    with pytest.raises(ValueError) as err:
        make()
    for w in words:
        assert w in str(err.value), (w, str(err.value))


def test_average_pooling_needs_pool_size():
    with pytest.raises(TypeError):
        layers.AveragePooling1D()  # as in Keras: no default pool_size


def test_global_average_bad_mask_shape(no_kernels):
    with pytest.raises(ValueError) as err:
        layers.GlobalAveragePooling1D(name="gm")(np.zeros((2, 5, 3)), mask=np.ones((2, 4), bool))
    assert "gm" in str(err.value) and "(2, 5)" in str(err.value) and "(2, 4)" in str(err.value)


@pytest.mark.parametrize("make,shape", CONV_CASES, ids=_ids(CONV_CASES))
def test_logits_are_the_pre_activation_of_the_last_forward_call(make, shape):
    """``logits`` = z + b: the fused bias+activation path forms it on request, after any later weight update."""
    layer = as_dtype(make(), "float64")
    x = np.random.default_rng(0).standard_normal(shape)
    layer(x)
    rng = np.random.default_rng(1)
    layer.set_weights([rng.standard_normal(w.shape) for w in layer.get_weights()])
    linear = type(layer).from_config({**layer.get_config(), "activation": None})
    linear(x)
    linear.set_weights(layer.get_weights())
    y = layer(x, training=True)
    if type(layer) is layers.Conv1D and layer.activation.name not in ("linear", "sigmoid"):
        with pytest.raises(ValueError, match="'(tanh|relu)' ran fused with the convolution"):
            layer.logits  # noqa: B018 - fast mode: the activation ran inside the kernel, only y is kept
        with config.kernels("reference"):
            y = layer(x, training=True)
    for w in layer.weights:
        w += 1.0  # an optimizer step (in place) after the forward pass must not change its logits
    np.testing.assert_allclose(layer.logits, linear(x), rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(layer.activation(layer.logits), y, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("activation", ["relu", "gelu"])  # the fused bias+activation path and NumPy's
def test_backward_rejects_an_upstream_gradient_of_another_shape(activation):
    layer = layers.Conv1D(3, 2, activation=activation, name="c")
    y = layer(np.ones((2, 5, 4)), training=True)
    expected = r"Layer 'c' \(Conv1D\): backward expects dy of shape \(2, 4, 3\).*got \(1, 4, 3\)"
    with pytest.raises(ValueError, match=expected):
        layer.backward(np.ones((1, *y.shape[1:])))  # would broadcast silently


@pytest.mark.parametrize("activation", ["relu", "tanh", "hard_sigmoid", None, "sigmoid"])
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_a_conv1d_inference_call_runs_its_tail_fused_with_the_same_bits(activation, data_format):
    """Fast mode, inference: Conv1D applies bias and activation to each chunk of the convolution's output (not
    sigmoid, whose logits the losses read): the same bits as the separate tail; its logits are then known for
    'linear' only (a clear error otherwise). A training call fuses the same way, with the same bits."""
    from unittest import mock

    from tinynn.layers import conv as conv_layers

    rng = np.random.default_rng(15)
    layer = layers.Conv1D(5, 3, padding="same", activation=activation, data_format=data_format)
    x = rng.normal(size=(3, 4, 11) if data_format == "channels_first" else (3, 11, 4)).astype(np.float32)
    layer(x)
    layer.set_weights([rng.normal(size=w.shape).astype(np.float32) for w in layer.get_weights()])
    with mock.patch.object(kc, "conv1d_forward", wraps=kc.conv1d_forward) as spy:
        y = layer(x)
    fused = activation != "sigmoid"
    assert (spy.call_args.kwargs.get("activation_code") is not None) == fused
    with mock.patch.object(conv_layers, "activation_code", return_value=None):  # the separate tail
        y_separate = layer(x)
    np.testing.assert_array_equal(y, y_separate)
    layer(x)
    if fused and activation is not None:
        with pytest.raises(ValueError, match="fused"):
            layer.logits  # noqa: B018
    elif activation is None:
        np.testing.assert_array_equal(layer.logits, y)  # linear: y is z + b
    y_train = layer(x, training=True)  # a training call fuses the same way (its backward reads y)
    np.testing.assert_array_equal(y_train, y)
    if fused and activation is not None:
        with pytest.raises(ValueError, match="fused"):
            layer.logits  # noqa: B018
    else:
        np.testing.assert_allclose(layer.activation(layer.logits), y_train, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("fmt", ["channels_last", "channels_first"])
def test_max_pooling_backward_after_an_inference_call(fmt):
    """An inference call keeps no argmax steps; a backward after it finds them from that call's input: the same
    gradient as after a training call, also when calls of other shapes and modes come in between."""
    rng = np.random.default_rng(0)
    pool = layers.MaxPooling1D(3, strides=2, padding="same", data_format=fmt)
    for shape in ((4, 11, 5), (2, 7, 3), (4, 11, 5)):
        x = np.round(rng.standard_normal(shape) * 2)  # ties: the first maximum must get the gradient
        if fmt == "channels_first":
            x = x.transpose(0, 2, 1).copy()
        pool(rng.standard_normal((3, 9, 6)), training=True)  # leaves argmax steps of another input behind
        y = pool(x)
        dy = rng.standard_normal(y.shape)
        dx = pool.backward(dy)
        np.testing.assert_array_equal(pool(x, training=True), y)
        np.testing.assert_array_equal(pool.backward(dy), dx)


@pytest.mark.parametrize(("conv", "shape"), [
    (dict(filters=4, kernel_size=3, activation="relu"), (5, 9, 3)),
    (dict(filters=3, kernel_size=4, strides=2, padding="same", activation="tanh"), (4, 10, 2)),
    (dict(filters=2, kernel_size=3, padding="causal", dilation_rate=2, activation="linear", use_bias=False),
     (3, 8, 5)),
    (dict(filters=3, kernel_size=2, activation="sigmoid", data_format="channels_first"), (4, 2, 7)),
])  # fmt: skip
@pytest.mark.parametrize("keepdims", [False, True])
def test_predict_pools_conv1d_in_one_pass_as_the_two_layers_do(conv, shape, keepdims, monkeypatch):
    """predict / predict_on_batch run Conv1D -> GlobalAveragePooling1D as one pass (Conv1D.forward_pooled: the
    convolution as a K×1 2-D one, pooled chunk by chunk, the (B, Lo, F) output never written out; forced into
    chunks of one step and pieces of a few here) and give what the reference mode's two layers give, for each
    padding, strides, dilation and data format; a backward after it asks for a forward."""
    import tinynn as tn
    from tinynn import config
    from tinynn.kernels import conv2d, parallel

    monkeypatch.setenv("TINYNN_NUM_THREADS", "2")
    monkeypatch.setattr(parallel, "PARALLEL_WORK", 0)
    monkeypatch.setattr(conv2d, "PIECE_WORK", 1)
    monkeypatch.setattr(conv2d, "FORWARD_CHUNK_BYTES", 1)
    f64 = {"dtype": "float64"}
    fmt = conv.get("data_format", "channels_last")
    net = tn.Sequential([layers.Input(shape=shape[1:]), layers.Conv1D(**conv, bias_initializer="random_normal", **f64),
                         layers.GlobalAveragePooling1D(data_format=fmt, keepdims=keepdims, **f64),
                         layers.Dense(2, **f64)])  # fmt: skip
    layer, pool = net.layers[0], net.layers[1]
    assert layer.pools_with(pool)
    x = np.random.default_rng(14).normal(size=shape)
    with config.kernels("reference"):
        expected = net.predict_on_batch(x)
    calls = count_calls(monkeypatch, conv2d, "conv2d_forward_pooled")
    np.testing.assert_allclose(net.predict_on_batch(x), expected, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(net.predict(x, batch_size=2), expected, rtol=1e-12, atol=1e-14)
    assert len(calls) == 1 + -(-shape[0] // 2)  # one per batch: the fused pass ran
    with pytest.raises(ValueError, match="forward"):
        layer.backward(np.ones(layer.compute_output_shape(shape)))


def test_conv1d_pools_only_what_forward_pooled_takes(monkeypatch):
    """No fused pass for a grouped convolution, no activation code (softmax), a GlobalAveragePooling1D of the other
    data format, a masked input, the reference kernel mode, or training; the results are the layers' own."""
    import tinynn as tn
    from tinynn import config
    from tinynn.kernels import conv2d

    calls = count_calls(monkeypatch, conv2d, "conv2d_forward_pooled")
    f64 = {"dtype": "float64"}
    x = np.random.default_rng(15).normal(size=(3, 9, 4))

    def model(conv, pool=None):
        return tn.Sequential([layers.Input(shape=(9, 4)), conv, pool or layers.GlobalAveragePooling1D(**f64)])

    grouped = model(layers.Conv1D(4, 3, groups=2, activation="relu", **f64))
    softmax = model(layers.Conv1D(4, 3, activation="softmax", **f64))
    other = model(layers.Conv1D(4, 3, **f64), layers.GlobalAveragePooling1D(data_format="channels_first", **f64))
    assert not other.layers[0].pools_with(other.layers[1])
    ids = np.array([[1, 2, 0, 0, 0, 0], [3, 1, 2, 0, 0, 0], [1, 1, 1, 1, 1, 1]])
    masked = tn.Sequential([layers.Input(shape=(6,)), layers.Embedding(4, 4, mask_zero=True, **f64),
                            layers.Conv1D(4, 3, activation="relu", **f64), layers.GlobalAveragePooling1D(**f64)])
    for net, xs in ((grouped, x), (softmax, x), (other, x), (masked, ids)):
        got = net.predict_on_batch(xs)
        with config.kernels("reference"):
            np.testing.assert_allclose(got, net.predict_on_batch(xs), rtol=1e-12, atol=1e-14)
    assert calls == []
    plain = model(layers.Conv1D(4, 3, activation="relu", **f64))
    plain.compile(optimizer="sgd", loss="mse")
    plain.train_on_batch(x, np.zeros((3, 4)))  # training: the layers one by one, backward included
    assert calls == []
    plain.predict_on_batch(x)
    assert calls == [1]


def test_the_pooled_kernel_readiness_check_asks_for_the_signature_the_fused_pass_runs(monkeypatch):
    """In background compile mode Conv1D.forward_pooled waits for the kernel compiled from sample arguments
    (conv2d.forward_pooled_ready): they must have the numba types of the real call, or the background would
    compile a specialisation nobody runs."""
    import numba

    from tinynn.kernels import conv2d

    real, seen = conv2d._forward_rows, []
    monkeypatch.setattr(conv2d, "_forward_rows", lambda *a: seen.append(tuple(map(numba.typeof, a))) or real(*a))
    for dtype in ("float32", "float64"):
        seen.clear()
        x = np.random.default_rng(16).normal(size=(8, 20, 6)).astype(dtype)
        conv = layers.Conv1D(5, 3, padding="same", activation="relu", dtype=dtype)
        assert conv.forward_pooled(x, layers.GlobalAveragePooling1D(dtype=dtype)) is not None
        assert seen and set(seen) == {tuple(map(numba.typeof, conv2d._forward_rows_sample(dtype)))}


@pytest.mark.parametrize("padding, strides, dilation", [("valid", 1, 1), ("same", 2, 1), ("causal", 1, 2)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_predict_runs_an_embedding_and_the_conv1d_after_it_from_the_table(padding, strides, dilation, dtype,
                                                                          monkeypatch):
    """predict / predict_on_batch run Embedding -> Conv1D as one pass (Embedding.forward_into, Conv1D.forward_lookup:
    the convolution's distinct steps read from the table, the (B, L, C) lookup never formed): the same bits as the
    two layers one by one, and the reference mode's numbers; bad ids raise the Embedding's own error; a backward
    after it asks for a forward."""
    import tinynn as tn
    from tinynn import config

    rng = np.random.default_rng(21)
    ids = rng.integers(0, 9, (5, 40))
    ids[:, :12] = 0  # padding: repeated all-equal steps
    net = tn.Sequential([layers.Input(shape=(40,)), layers.Embedding(30, 6, dtype=dtype),
                         layers.Conv1D(4, 3, strides=strides, dilation_rate=dilation, padding=padding,
                                       activation="relu", bias_initializer="random_normal", dtype=dtype),
                         layers.MaxPooling1D(2, dtype=dtype), layers.GlobalMaxPooling1D(dtype=dtype)])  # fmt: skip
    embedding, conv = net.layers[0], net.layers[1]
    assert embedding.feeds(conv)
    calls = count_calls(monkeypatch, kc, "conv1d_forward_lookup")
    fused = net.predict_on_batch(ids)
    assert calls == [1]
    assert np.array_equal(net.predict(ids, batch_size=2), np.concatenate([net.predict_on_batch(ids[k:k + 2])
                                                                           for k in range(0, 5, 2)]))  # fmt: skip
    one_by_one = conv(embedding(ids))
    for layer in net.layers[2:]:
        one_by_one = layer(one_by_one)
    np.testing.assert_array_equal(fused, one_by_one)
    with config.kernels("reference"):
        expected = net.predict_on_batch(ids)
    tol = 1e-12 if dtype == "float64" else 1e-5
    np.testing.assert_allclose(fused, expected, rtol=tol, atol=tol)
    net.predict_on_batch(ids)
    with pytest.raises(ValueError, match="forward"):
        conv.backward(np.ones(conv.compute_output_shape((5, 40, 6)), dtype))
    with pytest.raises(ValueError, match=r"id 30 is out of range"):
        net.predict_on_batch(np.where(ids == 1, 30, ids))


@pytest.mark.parametrize("padding, strides, filters", [("valid", 1, 4), ("same", 2, 4), ("causal", 1, 9)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_training_runs_an_embedding_and_the_conv1d_after_it_from_the_table(padding, strides, filters, dtype,
                                                                           monkeypatch):
    """train_on_batch runs Embedding -> Conv1D as one pair in the forward (the lookups never formed) and in the
    backward (conv1d_backward_lookup): the weights and optimizer slots after three steps have the bits of the two
    layers run one by one (the pair's hand-over switched off), and the reference mode's numbers within the dtype's
    tolerance; each layer's backward after the pair's forward checks its dy as after its own call."""
    import tinynn as tn
    from tinynn import config, optimizers
    from tinynn.layers import Embedding

    rng = np.random.default_rng(23)
    ids = rng.integers(0, 9, (6, 40))
    ids[:, :12] = 0  # padding: repeated all-equal steps
    target = rng.normal(size=(6, 1)).astype(dtype)

    def trained(feeding: bool, mode: str = "fast"):
        net = tn.Sequential([layers.Input(shape=(40,)), layers.Embedding(30, 12, dtype=dtype),
                             layers.Conv1D(filters, 3, strides=strides, padding=padding, activation="relu",
                                           bias_initializer="random_normal", dtype=dtype),
                             layers.MaxPooling1D(2, dtype=dtype), layers.GlobalMaxPooling1D(dtype=dtype),
                             layers.Dense(1, dtype=dtype)])  # fmt: skip
        net.set_weights([np.random.default_rng(24).normal(size=w.shape).astype(dtype) for w in net.get_weights()])
        net.compile(optimizer=optimizers.RMSprop(learning_rate=0.01), loss="mse")
        with monkeypatch.context() as patch, config.kernels(mode):
            if not feeding:
                patch.setattr(Embedding, "feeds", lambda self, layer: False)
            for _ in range(3):
                net.train_on_batch(ids, target)
        return net

    calls = count_calls(monkeypatch, kc, "conv1d_backward_lookup")
    fused = trained(True)
    assert calls == [1, 1, 1]
    one_by_one = trained(False)
    assert calls == [1, 1, 1]
    for a, b in zip(fused.get_weights(), one_by_one.get_weights()):
        np.testing.assert_array_equal(a, b)
    slots, other_slots = fused.optimizer.get_state(), one_by_one.optimizer.get_state()
    assert slots.keys() == other_slots.keys()
    for key in slots:
        np.testing.assert_array_equal(slots[key], other_slots[key])
    tol = 1e-10 if dtype == "float64" else 1e-4
    for a, b in zip(fused.get_weights(), trained(False, "reference").get_weights()):
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)
    embedding, conv = fused.layers[0], fused.layers[1]  # after a paired training step, each backward checks dy
    with pytest.raises(ValueError, match=r"Conv1D.*\(6, 40, 12\)"):
        conv.backward(np.ones((6, 40, 12), dtype))
    with pytest.raises(ValueError, match=r"Embedding.*\(6, 40, 11\)"):
        embedding.backward(np.ones((6, 40, 11), dtype))


def test_an_embedding_feeds_only_what_forward_lookup_takes(monkeypatch):
    """No fused pass after an Embedding with mask_zero, into a grouped or channels_first Conv1D, a sigmoid one, a
    Conv1D that pools with the layer after it, in the reference mode (training too), or when most steps are
    distinct (then the kernel declines and the two layers run); the results are the layers' own."""
    import tinynn as tn
    from tinynn import config

    calls = count_calls(monkeypatch, kc, "conv1d_forward_lookup")
    rng = np.random.default_rng(22)
    ids = rng.integers(0, 5, (3, 12))

    def model(*rest, mask_zero=False):
        return tn.Sequential([layers.Input(shape=(12,)), layers.Embedding(50, 4, mask_zero=mask_zero), *rest,
                              layers.Flatten()])

    cases = [model(layers.Conv1D(4, 3, activation="relu"), mask_zero=True),
             model(layers.Conv1D(4, 3, groups=2, activation="relu")),
             model(layers.Conv1D(4, 3, activation="relu", data_format="channels_first")),
             model(layers.Conv1D(4, 3, activation="sigmoid")),
             model(layers.Conv1D(4, 3, activation="relu"), layers.GlobalAveragePooling1D())]
    assert not cases[0].layers[0].feeds(cases[0].layers[1])
    assert not cases[1].layers[0].feeds(cases[1].layers[1]) and not cases[2].layers[0].feeds(cases[2].layers[1])
    assert not cases[3].layers[1].forward_lookup(cases[3].layers[0].embeddings, ids)
    for net in cases:
        got = net.predict_on_batch(ids)
        with config.kernels("reference"):
            np.testing.assert_allclose(got, net.predict_on_batch(ids), rtol=1e-5, atol=1e-6)
    assert calls == []
    plain = model(layers.Conv1D(4, 3, activation="relu"))
    plain.compile(optimizer="sgd", loss="mse")
    with config.kernels("reference"):
        plain.train_on_batch(ids, np.zeros((3, 40), np.float32))  # the reference mode: the layers one by one
        plain.predict_on_batch(ids)
    assert calls == []
    distinct = rng.permutation(50)[:36].reshape(3, 12)  # every step distinct: the kernel declines
    got = plain.predict_on_batch(distinct)
    assert calls == [1]
    with config.kernels("reference"):
        np.testing.assert_allclose(got, plain.predict_on_batch(distinct), rtol=1e-5, atol=1e-6)
    plain.predict_on_batch(ids)
    assert calls == [1, 1]
    backward_calls = count_calls(monkeypatch, kc, "conv1d_backward_lookup")
    before = [w.copy() for w in plain.get_weights()]
    plain.train_on_batch(distinct, np.ones((3, 40), np.float32))  # training: the kernel declines, the layers run
    assert calls == [1, 1, 1] and backward_calls == []
    assert not all(np.array_equal(a, b) for a, b in zip(before, plain.get_weights()))
