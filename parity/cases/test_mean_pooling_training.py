"""Whole-training parity against Keras of a layer followed by a global average pooling, where tinynn's pooling
hands the layer its gradient as a broadcast view (``backward_broadcast``) and the layer's activation gradient
reads one row per sequence or image (Dense and Conv1D: bias_activation's ``_backward_broadcast``; Conv2D: its
fused backward's ``activation_gradient_broadcast_rows``, by im2col and by Winograd). Same initial weights,
shuffle=False, validation_split: every History entry and the final weights match (1e-9 relative in float64, 1e-4
in float32)."""

import numpy as np
import pytest

import tinynn as tn
from parity.training import training_parity
from tinynn import layers, optimizers
from tinynn.kernels import bias_activation, blas, conv2d

CASES = {
    # name: (input shape, the layer and its pooling, the kernel that reads the broadcast gradient)
    "dense_steps": ((12, 5), lambda dt: [layers.Dense(6, activation="relu", dtype=dt),
                                         layers.GlobalAveragePooling1D(dtype=dt)], None),
    "dense_steps_fast": ((12, 5), lambda dt: [layers.Dense(6, activation="relu", dtype=dt),
                                              layers.GlobalAveragePooling1D(dtype=dt)],
                         (bias_activation, "_backward_broadcast")),
    "conv1d": ((14, 4), lambda dt: [layers.Conv1D(6, 3, padding="causal", activation="relu", dtype=dt),
                                    layers.GlobalAveragePooling1D(dtype=dt)], (bias_activation, "_backward_broadcast")),
    "conv2d": ((9, 8, 3), lambda dt: [layers.Conv2D(6, 3, padding="same", activation="relu", dtype=dt),
                                      layers.GlobalAveragePooling2D(dtype=dt)],
               (conv2d, "activation_gradient_broadcast_rows")),
    "conv2d_winograd": ((6, 5, 32), lambda dt: [layers.Conv2D(32, 3, activation="tanh", dtype=dt),
                                                layers.GlobalAveragePooling2D(dtype=dt)],
                        (conv2d, "activation_gradient_broadcast_rows")),
}  # fmt: skip


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_a_layer_then_mean_pooling_trains_like_keras(case, dtype, monkeypatch):
    shape, pair, kernel = CASES[case]
    calls = []
    if case == "dense_steps_fast":
        monkeypatch.setattr(blas, "PARALLEL_WORK", 0)  # Dense's fast path (its fused tail) on this small layer
    if kernel is not None:
        real = getattr(*kernel)
        monkeypatch.setattr(*kernel, lambda *a: calls.append(1) or real(*a))
    rng = np.random.default_rng(len(case))
    x = rng.normal(size=(45, *shape)).astype(dtype)
    y = rng.integers(0, 3, 45)
    model = tn.Sequential([layers.Input(shape=shape, dtype=dtype), *pair(dtype),
                           layers.Dense(3, activation="softmax", dtype=dtype)])  # fmt: skip
    if case == "conv2d_winograd":
        assert conv2d.uses_winograd(model.layers[0].kernel.shape, (1, 1), (1, 1), 1)
    model.set_weights([rng.normal(0, 0.3, w.shape) for w in model.get_weights()])  # non-zero biases too
    model.compile(optimizer=optimizers.Adam(learning_rate=0.01), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    training_parity(model, x, y, epochs=3, batch_size=8, validation_split=0.2).assert_ok()
    assert bool(calls) == (kernel is not None)
