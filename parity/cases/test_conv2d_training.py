"""Whole-training parity of the seeds' image convnets (small inputs, the seeds' layer sizes) against Keras: same
initial weights, shuffle=False, 3 epochs, validation_split; every History entry and the final weights match
(1e-9 relative in float64, 1e-4 in float32)."""

import numpy as np
import pytest

import tinynn as tn
from parity.training import training_parity
from tinynn import layers, optimizers


def _randomize(model, seed, scale=0.2):
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0, scale, w.shape) for w in model.get_weights()])  # non-zero biases too


def _mnist_convnet(dtype):
    """Seed 001's MNIST convnet with its filter counts, on 18×18 inputs (16 → 8 → 6 → 3 → 1 pixels)."""
    return tn.Sequential([
        layers.Conv2D(32, (3, 3), activation="relu", input_shape=(18, 18, 1), dtype=dtype),
        layers.MaxPooling2D((2, 2), dtype=dtype),
        layers.Conv2D(64, (3, 3), activation="relu", dtype=dtype),
        layers.MaxPooling2D((2, 2), dtype=dtype),
        layers.Conv2D(64, (3, 3), activation="relu", dtype=dtype),
        layers.Flatten(dtype=dtype),
        layers.Dense(64, activation="relu", dtype=dtype),
        layers.Dense(10, activation="softmax", dtype=dtype),
    ])  # fmt: skip


def _separable_stack(dtype):
    """Seed 003's SeparableConv2D stack with its filter counts, on 32×32×3 inputs (30, 28 → 14 → 12, 10 → 5 → 3, 1)."""
    return tn.Sequential([
        layers.SeparableConv2D(32, 3, activation="relu", input_shape=(32, 32, 3), dtype=dtype),
        layers.SeparableConv2D(64, 3, activation="relu", dtype=dtype),
        layers.MaxPooling2D(2, dtype=dtype),
        layers.SeparableConv2D(64, 3, activation="relu", dtype=dtype),
        layers.SeparableConv2D(128, 3, activation="relu", dtype=dtype),
        layers.MaxPooling2D(2, dtype=dtype),
        layers.SeparableConv2D(64, 3, activation="relu", dtype=dtype),
        layers.SeparableConv2D(128, 3, activation="relu", dtype=dtype),
        layers.GlobalAveragePooling2D(dtype=dtype),
        layers.Dense(32, activation="relu", dtype=dtype),
        layers.Dense(10, activation="softmax", dtype=dtype),
    ])  # fmt: skip


def _every_other_option(dtype):
    """The options the seed models leave out, trained end to end: padding, strides, groups, dilation, depth
    multipliers, same-padded average pooling, zero padding, upsampling, a global max and keepdims."""
    return tn.Sequential([
        layers.ZeroPadding2D(((1, 0), (2, 1)), input_shape=(9, 8, 4), dtype=dtype),
        layers.Conv2D(6, (3, 2), strides=(2, 1), padding="same", groups=2, activation="tanh", dtype=dtype),
        layers.AveragePooling2D(3, strides=(1, 2), padding="same", dtype=dtype),
        layers.DepthwiseConv2D(2, dilation_rate=(2, 1), depth_multiplier=2, activation="sigmoid", dtype=dtype),
        layers.UpSampling2D((2, 1), dtype=dtype),
        layers.SeparableConv2D(5, 3, strides=2, padding="same", use_bias=False, dtype=dtype),
        layers.GlobalMaxPooling2D(keepdims=True, dtype=dtype),
        layers.Flatten(dtype=dtype),
        layers.Dense(3, activation="softmax", dtype=dtype),
    ])  # fmt: skip


CASES = {
    "mnist_convnet_rmsprop": (_mnist_convnet, (18, 18, 1), 10, lambda: optimizers.RMSprop(learning_rate=1e-3)),
    "separable_stack_rmsprop": (_separable_stack, (32, 32, 3), 10, lambda: optimizers.RMSprop(learning_rate=1e-3)),
    "every_other_option_sgd": (_every_other_option, (9, 8, 4), 3,
                               lambda: optimizers.SGD(learning_rate=0.05, momentum=0.9, nesterov=True)),
}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_image_convnets_train_like_keras(case, dtype):
    make, shape, classes, optimizer = CASES[case]
    rng = np.random.default_rng(len(case))
    n = 40
    x = rng.random((n, *shape)).astype(dtype)  # pixel-like values in [0, 1)
    y = np.eye(classes)[rng.integers(0, classes, n)].astype(dtype)  # one-hot, as the seeds' to_categorical
    model = make(dtype)
    _randomize(model, 0)
    model.compile(optimizer=optimizer(), loss="categorical_crossentropy", metrics=["accuracy"])
    training_parity(model, x, y, epochs=3, batch_size=8, validation_split=0.2).assert_ok()
