"""Whole-training parity of the seeds' convnets (at small sizes) against Keras: same initial weights,
shuffle=False, 3 epochs, validation_split; every History entry and the final weights match."""

import numpy as np
import pytest

import tinynn as tn
from parity.training import training_parity
from tinynn import layers, optimizers
from tinynn.kernels import conv as conv_kernels
from tinynn.kernels import conv2d as conv2d_kernels


def _randomize(model, seed):
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0, 0.3, w.shape) for w in model.get_weights()])  # non-zero biases too


def _left_padded_binary_data(seed, length, channels, dtype, n=40):
    """(x, y): n normal sequences, each left-padded with zeros from a random start under 20 steps, and 0/1 labels."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, length, channels)).astype(dtype)
    for i, start in enumerate(rng.integers(0, 20, n)):
        x[i, :start] = 0.0  # left padding
    return x, (rng.random((n, 1)) > 0.5) * 1.0


def _fits_like_keras(model, x, y, seed):
    """Random weights (``seed``), RMSprop(0.01) on binary cross-entropy, 3 epochs of batches of 8 with a fifth held out
    for validation: tinynn's fit against Keras's from the same weights."""
    _randomize(model, seed)
    model.compile(optimizer=optimizers.RMSprop(learning_rate=0.01), loss="binary_crossentropy", metrics=["acc"])
    training_parity(model, x, y, epochs=3, batch_size=8, validation_split=0.2).assert_ok()


def _timeseries_model(dtype):
    """Seed 002: Conv1D(16, 5, relu, input_shape=(50, 1)) -> MaxPooling1D(4) -> Flatten -> Dense(1, sigmoid)."""
    return tn.Sequential([
        layers.Conv1D(6, 5, activation="relu", input_shape=(30, 1), dtype=dtype),
        layers.MaxPooling1D(4, dtype=dtype),
        layers.Flatten(dtype=dtype),
        layers.Dense(1, activation="sigmoid", dtype=dtype),
    ])  # fmt: skip


def _text_cnn_body(dtype, channels):
    """Seeds 000/002 after the Embedding: Conv1D(32,7,relu) -> MaxPooling1D(5) -> Conv1D(32,7,relu) -> GMP -> Dense."""
    return [
        layers.Conv1D(5, 7, activation="relu", input_shape=(40, channels), dtype=dtype),
        layers.MaxPooling1D(5, dtype=dtype),
        layers.Conv1D(4, 3, activation="relu", dtype=dtype),
        layers.GlobalMaxPooling1D(dtype=dtype),
        layers.Dense(1, activation="sigmoid", dtype=dtype),
    ]


def _separable_model(dtype):
    """Seed 003's advice (depthwise-separable convs), with every other option of the family in play."""
    return tn.Sequential([
        layers.SeparableConv1D(6, 3, padding="same", depth_multiplier=2, activation="relu", input_shape=(24, 3),
                               dtype=dtype),
        layers.AveragePooling1D(3, strides=2, padding="same", dtype=dtype),
        layers.DepthwiseConv1D(3, dilation_rate=2, padding="same", activation="tanh", dtype=dtype),
        layers.Conv1D(4, 3, strides=2, padding="causal", groups=2, activation="relu", dtype=dtype),
        layers.GlobalAveragePooling1D(dtype=dtype),
        layers.Dense(3, activation="softmax", dtype=dtype),
    ])  # fmt: skip


CASES = {
    "timeseries_sgd": (_timeseries_model, (30, 1), "binary",
                       lambda: optimizers.SGD(learning_rate=0.05, momentum=0.9, nesterov=True)),
    "text_cnn_body_rmsprop": (lambda dt: tn.Sequential(_text_cnn_body(dt, 8)), (40, 8), "binary",
                              lambda: optimizers.RMSprop(learning_rate=0.005, momentum=0.5, centered=True)),
    "separable_sgd": (_separable_model, (24, 3), "multiclass",
                      lambda: optimizers.SGD(learning_rate=0.05, momentum=0.9)),
}  # fmt: skip


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_conv_models_train_like_keras(case, dtype):
    make, shape, task, optimizer = CASES[case]
    rng = np.random.default_rng(len(case))
    n = 45
    x = rng.normal(size=(n, *shape)).astype(dtype)
    if task == "binary":
        y, loss, metrics = (rng.random((n, 1)) > 0.5) * 1.0, "binary_crossentropy", ["acc"]
    else:
        y, loss, metrics = rng.integers(0, 3, n), "sparse_categorical_crossentropy", ["accuracy"]
    model = make(dtype)
    _randomize(model, 0)
    model.compile(optimizer=optimizer(), loss=loss, metrics=metrics)
    training_parity(model, x, y, epochs=3, batch_size=8, validation_split=0.2).assert_ok()


def _embedding_text_cnn(dtype, optimizer):
    model = tn.Sequential([layers.Embedding(30, 8, input_shape=(40,), dtype=dtype), *_text_cnn_body(dtype, 8)])
    _randomize(model, 1)
    model.compile(optimizer=optimizer, loss="binary_crossentropy", metrics=["acc"])
    return model


def _int_data(n=40):
    rng = np.random.default_rng(5)
    return rng.integers(0, 30, size=(n, 40)), (rng.random((n, 1)) > 0.5) * 1.0


def _count_lookup_backwards(monkeypatch) -> list:
    """The training steps whose Embedding -> Conv1D pair ran as one (the lookups never formed: its backward is
    conv1d_backward_lookup)."""
    calls = []
    real = conv_kernels.conv1d_backward_lookup
    monkeypatch.setattr(conv_kernels, "conv1d_backward_lookup", lambda *a, **k: calls.append(1) or real(*a, **k))
    return calls


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_text_cnn_with_embedding_trains_like_keras(dtype, monkeypatch):
    """The seed text convnet end to end: Embedding(vocab, 8) on int sequences -> the conv body above (in the fast
    mode the Embedding and the first Conv1D run as one pair, forward and backward)."""
    x, y = _int_data()
    model = _embedding_text_cnn(dtype, optimizers.SGD(learning_rate=0.05, momentum=0.9))
    calls = _count_lookup_backwards(monkeypatch)
    training_parity(model, x, y, epochs=3, batch_size=8, validation_split=0.2).assert_ok()
    assert len(calls) == 3 * 4  # 32 training samples in batches of 8, three epochs


def test_text_cnn_with_embedding_rmsprop_trains_like_keras(monkeypatch):
    """RMSprop squares the Embedding gradient per id occurrence, as Keras's IndexedSlices path does."""
    x, y = _int_data()
    model = _embedding_text_cnn("float64", optimizers.RMSprop(learning_rate=0.01))
    calls = _count_lookup_backwards(monkeypatch)
    training_parity(model, x, y, epochs=3, batch_size=8, validation_split=0.2).assert_ok()
    assert len(calls) == 3 * 4


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_long_conv1d_training_passes_by_the_2d_kernels_train_like_keras(dtype, monkeypatch):
    """Conv1D's training passes over FUSED_MIN_ROWS output steps or more run by the 2-D kernels (the forward with
    its bias and activation fused, the backward's dz formed chunk by chunk): the threshold is lowered here so that
    this small model (64 filters: the fewest the path takes) takes it in both convolutions. Left-padded inputs with
    'same' padding give identical windows, whose exact ties the max pooling resolves by position; the second
    convolution takes the global average pooling's gradient as a broadcast view."""
    monkeypatch.setattr(conv_kernels, "FUSED_MIN_ROWS", 1)
    calls = []
    real = conv2d_kernels.conv2d_backward_fused
    monkeypatch.setattr(conv2d_kernels, "conv2d_backward_fused", lambda *a, **k: calls.append(1) or real(*a, **k))
    length = 30
    x, y = _left_padded_binary_data(11, length, 2, dtype)
    assert np.mean(x == 0) > 0.25
    model = tn.Sequential([
        layers.Conv1D(64, 5, padding="same", activation="relu", input_shape=(length, 2), dtype=dtype),
        layers.MaxPooling1D(3, dtype=dtype),
        layers.Conv1D(64, 3, activation="tanh", dtype=dtype),
        layers.GlobalAveragePooling1D(dtype=dtype),
        layers.Dense(1, activation="sigmoid", dtype=dtype),
    ])  # fmt: skip
    _fits_like_keras(model, x, y, seed=2)
    assert len(calls) >= 2 * 3 * 4  # both convolutions, every batch of every epoch


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_winograd_conv1d_training_trains_like_keras(dtype, monkeypatch):
    """Five-tap, stride-1 Conv1Ds with enough channels, filters and steps run Winograd's F(2, 3) + F(2, 2) (forward,
    dW and dx; the thresholds are lowered here so that this small model takes it in both convolutions, counted: the
    first one's dW without dx, the second one's with it).
    Left-padded inputs give repeated all-zero steps and identical windows (their outputs shared by position
    afterwards); the second convolution gets the global average pooling's gradient and passes dx back through the
    max pooling."""
    from tinynn.kernels import winograd1d

    for name in ("MIN_CHANNELS", "MIN_FILTERS", "MIN_ROWS"):
        monkeypatch.setattr(winograd1d, name, 1)
    calls = {"winograd_conv1d_backward_filter_fused": 0, "winograd_conv1d_backward_filter": 0}  # dW without / with dx

    def counted(name):
        real = getattr(winograd1d, name)
        return lambda *a, **k: calls.update({name: calls[name] + 1}) or real(*a, **k)

    for name in list(calls):
        monkeypatch.setattr(winograd1d, name, counted(name))
    length = 31
    x, y = _left_padded_binary_data(12, length, 3, dtype)
    model = tn.Sequential([
        layers.Conv1D(6, 5, padding="causal", activation="relu", input_shape=(length, 3), dtype=dtype),
        layers.MaxPooling1D(3, dtype=dtype),
        layers.Conv1D(5, 5, padding="same", activation="tanh", dtype=dtype),
        layers.GlobalAveragePooling1D(dtype=dtype),
        layers.Dense(1, activation="sigmoid", dtype=dtype),
    ])  # fmt: skip
    _fits_like_keras(model, x, y, seed=3)
    assert min(calls.values()) >= 3 * 4  # every batch of every epoch, both convolutions


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_winograd_width_conv2d_training_trains_like_keras(dtype, monkeypatch):
    """3×3, stride-1 Conv2Ds run Winograd's F(2, 3) along the width in their forward (the thresholds lowered here
    so that this small model takes it in both convolutions, counted; the backward is im2col's), 'same' with an odd
    output width and 'valid' with an even one. Images with zero columns on the left (as padded images have) give
    tied zeros in the max pooling after the first convolution's ReLU; the second convolution gets the global average
    pooling's gradient."""
    from tinynn.kernels import winograd_width

    for name in ("MIN_CHANNELS", "MIN_FILTERS", "INTEL_MIN_FILTERS", "MIN_WORK"):
        monkeypatch.setattr(winograd_width, name, 1)
    calls = []
    real = winograd_width.winograd_width_conv2d
    monkeypatch.setattr(winograd_width, "winograd_width_conv2d", lambda *a, **k: calls.append(1) or real(*a, **k))
    rng = np.random.default_rng(5)
    x = rng.normal(size=(40, 9, 11, 3)).astype(dtype)
    for i, start in enumerate(rng.integers(0, 6, 40)):
        x[i, :, :start] = 0.0  # zero columns on the left
    y = (rng.random((40, 1)) > 0.5) * 1.0
    model = tn.Sequential([
        layers.Conv2D(6, 3, padding="same", activation="relu", input_shape=(9, 11, 3), dtype=dtype),
        layers.MaxPooling2D(2, dtype=dtype),
        layers.Conv2D(5, 3, activation="tanh", dtype=dtype),
        layers.GlobalAveragePooling2D(dtype=dtype),
        layers.Dense(1, activation="sigmoid", dtype=dtype),
    ])  # fmt: skip
    _fits_like_keras(model, x, y, seed=4)
    assert len(calls) >= 2 * 3 * 4  # both convolutions, every batch of every epoch
