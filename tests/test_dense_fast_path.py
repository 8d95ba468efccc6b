"""Dense's fast path (blas products in pieces on the cores, the fused bias + activation tail each way) against its
'reference' mode (the NumPy twins), with the splits forced on small shapes."""

import numpy as np
import pytest
from spies import count_calls

from tinynn import config, layers
from tinynn.kernels import bias_activation, blas
from tinynn.kernels.fastmath import RELU


@pytest.mark.parametrize(("activation", "use_bias", "dtype", "threads"), [
    ("relu", True, "float64", "2"), ("relu", False, "float32", "2"), (None, True, "float32", "1"),
    ("linear", False, "float64", "1"), ("relu", True, "float32", "2"),
])
def test_dense_fast_path_matches_the_reference_mode(activation, use_bias, dtype, threads, monkeypatch):
    """y, dx, dW, db of the fast path (forced: every product split, 2 threads) equal the NumPy twins' within the
    stated tolerance; db is summed in the same order as bias_activation_backward's, so it is bit-identical."""
    monkeypatch.setenv("TINYNN_NUM_THREADS", threads)
    monkeypatch.setattr(blas, "PARALLEL_WORK", 0)
    monkeypatch.setattr(blas, "_PARALLEL_WORK", 0)
    monkeypatch.setattr(blas, "_NUMPY_WORK", 0)
    rng = np.random.default_rng(7)
    x = rng.normal(size=(5, 13, 9)).astype(dtype)
    dy = rng.normal(size=(5, 13, 11)).astype(dtype)
    layer = layers.Dense(11, activation=activation, use_bias=use_bias, bias_initializer="random_normal",
                         dtype=dtype)
    layer.build(x.shape)
    results = {}
    for mode in ("reference", "fast"):
        with config.kernels(mode):
            y = layer(x, training=True)
            layer.input_gradient_needed = True
            dx = layer.backward(dy)
            results[mode] = (y, dx, *layer.gradients)
        assert layer._fast == (mode == "fast")
    tol = 1e-10 if dtype == "float64" else 1e-5
    for got, want in zip(results["fast"], results["reference"]):
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol * np.max(np.abs(want)))
    if use_bias and activation == "relu":
        _, want_db = bias_activation.bias_activation_backward(results["fast"][0], dy, RELU)
        np.testing.assert_array_equal(results["fast"][3], want_db)


@pytest.mark.parametrize(("activation", "use_bias", "keepdims"), [
    ("relu", True, False), ("relu", False, True), ("linear", True, True), (None, False, False),
])  # fmt: skip
def test_predict_pools_dense_on_a_sequence_in_one_pass_as_the_two_layers_do(activation, use_bias, keepdims,
                                                                             monkeypatch):
    """predict / predict_on_batch run Dense -> GlobalAveragePooling1D on (B, T, n_in) as one pass (Dense.forward_pooled:
    a 1×1 convolution pooled chunk by chunk, the (B, T, units) output never written; forced here for a small output,
    into chunks of one step and ranges of a few, on 2 threads) and give what the reference mode's two layers give;
    a backward after it asks for a forward."""
    import tinynn as tn
    from tinynn.kernels import conv2d, parallel
    from tinynn.layers import core

    monkeypatch.setenv("TINYNN_NUM_THREADS", "2")
    monkeypatch.setattr(core, "POOLED_MIN_ROWS", 0)
    monkeypatch.setattr(parallel, "PARALLEL_WORK", 0)
    monkeypatch.setattr(conv2d, "PIECE_WORK", 1)
    monkeypatch.setattr(conv2d, "FORWARD_CHUNK_BYTES", 1)
    f64 = {"dtype": "float64"}
    net = tn.Sequential([layers.Input(shape=(7, 5)),
                         layers.Dense(6, activation=activation, use_bias=use_bias, bias_initializer="random_normal",
                                      **f64),
                         layers.GlobalAveragePooling1D(keepdims=keepdims, **f64), layers.Dense(2, **f64)])
    dense, pool = net.layers[0], net.layers[1]
    assert dense.pools_with(pool)
    x = np.random.default_rng(21).normal(size=(5, 7, 5))
    with config.kernels("reference"):
        expected = net.predict_on_batch(x)
    calls = count_calls(monkeypatch, conv2d, "conv2d_forward_pooled")
    np.testing.assert_allclose(net.predict_on_batch(x), expected, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(net.predict(x, batch_size=2), expected, rtol=1e-12, atol=1e-14)
    assert len(calls) == 1 + 3  # one per batch: the fused pass ran
    with pytest.raises(ValueError, match="forward"):
        dense.backward(np.ones((5, 7, 6)))


def test_dense_pools_only_what_forward_pooled_takes(monkeypatch):
    """No fused pass for an activation the fused tail leaves to NumPy (tanh), a GlobalAveragePooling1D over the other
    axis (channels_first), a masked input, the reference kernel mode, training, or an output under
    POOLED_MIN_ROWS rows; the results are the layers' own."""
    import tinynn as tn
    from tinynn.kernels import conv2d
    from tinynn.layers import core

    calls = count_calls(monkeypatch, conv2d, "conv2d_forward_pooled")
    f64 = {"dtype": "float64"}
    x = np.random.default_rng(22).normal(size=(3, 9, 4))

    def model(dense, pool=None):
        return tn.Sequential([layers.Input(shape=(9, 4)), dense, pool or layers.GlobalAveragePooling1D(**f64)])

    small = model(layers.Dense(5, activation="relu", **f64))
    tanh = model(layers.Dense(5, activation="tanh", **f64))
    other = model(layers.Dense(5, **f64), layers.GlobalAveragePooling1D(data_format="channels_first", **f64))
    assert not other.layers[0].pools_with(other.layers[1])
    ids = np.array([[1, 2, 0, 0, 0, 0], [3, 1, 2, 0, 0, 0], [1, 1, 1, 1, 1, 1]])
    masked = tn.Sequential([layers.Input(shape=(6,)), layers.Embedding(4, 4, mask_zero=True, **f64),
                            layers.Dense(5, activation="relu", **f64), layers.GlobalAveragePooling1D(**f64)])
    for net, xs in ((small, x), (tanh, x), (other, x), (masked, ids)):
        got = net.predict_on_batch(xs)
        with config.kernels("reference"):
            np.testing.assert_allclose(got, net.predict_on_batch(xs), rtol=1e-12, atol=1e-14)
    assert calls == []  # small: 3·9 rows are under POOLED_MIN_ROWS
    monkeypatch.setattr(core, "POOLED_MIN_ROWS", 0)
    for net, xs in ((tanh, x), (other, x), (masked, ids)):
        net.predict_on_batch(xs)
    assert calls == []
    small.compile(optimizer="sgd", loss="mse")
    small.train_on_batch(x, np.zeros((3, 5)))  # training: the layers one by one, backward included
    assert calls == []
    small.predict_on_batch(x)
    assert calls == [1]


def test_dense_forward_pooled_runs_the_kernel_signature_its_readiness_check_asks_for(monkeypatch):
    """In background compile mode Dense.forward_pooled waits for the kernel compiled from sample arguments
    (conv2d.forward_pooled_ready): the real call must have their numba types, or the background would compile a
    specialisation nobody runs."""
    import numba

    from tinynn.kernels import conv2d
    from tinynn.layers import core

    monkeypatch.setattr(core, "POOLED_MIN_ROWS", 0)
    real, seen = conv2d._forward_rows, []
    monkeypatch.setattr(conv2d, "_forward_rows", lambda *a: seen.append(tuple(map(numba.typeof, a))) or real(*a))
    for dtype in ("float32", "float64"):
        seen.clear()
        x = np.random.default_rng(23).normal(size=(8, 20, 6)).astype(dtype)
        dense = layers.Dense(5, activation="relu", dtype=dtype)
        assert dense.forward_pooled(x, layers.GlobalAveragePooling1D(dtype=dtype)) is not None
        assert seen and set(seen) == {tuple(map(numba.typeof, conv2d._forward_rows_sample(dtype)))}
