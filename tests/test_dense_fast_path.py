"""Dense's fast path (blas products in pieces on the cores, the fused bias + activation tail each way) against its
'reference' mode (the NumPy twins), with the splits forced on small shapes."""

import numpy as np
import pytest

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
