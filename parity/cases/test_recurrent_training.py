"""Whole-training parity of the seeds' recurrent models (at small sizes) against Keras: same initial weights,
shuffle=False, several epochs with validation_split; every History entry and the final weights match.

Covers LSTM on masked (zero-padded) ids, stacked LSTMs, a reversed-sequence LSTM, Bidirectional(LSTM),
SimpleRNN stacks, GRU (reset_after True and False) behind Conv1D/MaxPooling1D, and a per-step model whose
loss Keras averages over the valid (unmasked) steps only. Dropout is left out: TF's random masks cannot be
reproduced (dropout is compared with injected masks in test_recurrent_parity.py).

RMSprop everywhere (the seeds' optimizer). With an Embedding this also checks that its gradient reaches the
optimizer as IndexedSlices (one row per id occurrence, squared before duplicates are summed, as in Keras).
"""

import numpy as np
import pytest

import tinynn as tn
from parity.training import training_parity
from tinynn import layers, optimizers

VOCAB, LENGTH = 20, 10


def _ids(rng, n, pad="post"):
    """Token ids 1..VOCAB-1 with zero padding after (or before) random valid lengths 1..LENGTH."""
    ids = rng.integers(1, VOCAB, size=(n, LENGTH))
    lengths = rng.integers(1, LENGTH + 1, size=n)
    steps = np.arange(LENGTH)[None, :]
    valid = steps < lengths[:, None] if pad == "post" else steps >= LENGTH - lengths[:, None]
    return np.where(valid, ids, 0)


def _embedding(dtype, mask_zero=True):
    return layers.Embedding(VOCAB, 6, mask_zero=mask_zero, input_shape=(LENGTH,), dtype=dtype)


MODELS = {
    # name: (layers factory, loss, metrics, input kind)
    "lstm_masked_ids": (lambda d: [_embedding(d), layers.LSTM(5, dtype=d),
                                   layers.Dense(1, activation="sigmoid", dtype=d)],
                        "binary_crossentropy", ["acc"], "ids"),
    "stacked_lstm": (lambda d: [_embedding(d, mask_zero=False), layers.LSTM(5, return_sequences=True, dtype=d),
                                layers.LSTM(4, dtype=d), layers.Dense(1, activation="sigmoid", dtype=d)],
                     "binary_crossentropy", ["acc"], "ids"),
    "reversed_lstm": (lambda d: [_embedding(d), layers.LSTM(5, go_backwards=True, dtype=d),
                                 layers.Dense(1, activation="sigmoid", dtype=d)],
                      "binary_crossentropy", ["acc"], "ids_pre"),
    "bidirectional_lstm": (lambda d: [_embedding(d), layers.Bidirectional(layers.LSTM(4, dtype=d)),
                                      layers.Dense(1, activation="sigmoid", dtype=d)],
                           "binary_crossentropy", ["acc"], "ids"),
    "bidirectional_gru_seq": (lambda d: [_embedding(d),
                                         layers.Bidirectional(layers.GRU(3, return_sequences=True, dtype=d),
                                                              merge_mode="sum"),
                                         layers.LSTM(3, dtype=d), layers.Dense(1, dtype=d)],
                              "mse", ["mae"], "ids"),
    "simple_rnn_stack": (lambda d: [_embedding(d), layers.SimpleRNN(5, return_sequences=True, dtype=d),
                                    layers.SimpleRNN(4, dtype=d), layers.Dense(1, dtype=d)],
                         "mse", ["mae"], "ids"),
    "conv_gru": (lambda d: [layers.Conv1D(4, 3, activation="relu", input_shape=(16, 3), dtype=d),
                            layers.MaxPooling1D(2, dtype=d), layers.GRU(5, dtype=d), layers.Dense(1, dtype=d)],
                 "mae", None, "floats"),
    "conv_gru_reset_before": (lambda d: [layers.Conv1D(4, 3, activation="relu", input_shape=(16, 3), dtype=d),
                                         layers.MaxPooling1D(2, dtype=d), layers.GRU(5, reset_after=False, dtype=d),
                                         layers.Dense(1, dtype=d)],
                              "mae", None, "floats"),
    "masked_per_step": (lambda d: [layers.Masking(0.0, input_shape=(LENGTH, 3), dtype=d),
                                   layers.LSTM(4, return_sequences=True, dtype=d), layers.Dense(2, dtype=d)],
                        "mse", ["mae"], "masked_floats"),
}


def _data(kind, rng, n):
    if kind in ("ids", "ids_pre"):
        x = _ids(rng, n, "post" if kind == "ids" else "pre")
        return x, (rng.random((n, 1)) > 0.5) * 1.0
    if kind == "floats":
        return rng.normal(size=(n, 16, 3)), rng.normal(size=(n, 1))
    x = rng.normal(size=(n, LENGTH, 3))
    lengths = rng.integers(1, LENGTH + 1, size=n)
    x[np.arange(LENGTH)[None, :] >= lengths[:, None]] = 0.0  # post-padding, masked by Masking(0.0)
    return x, rng.normal(size=(n, LENGTH, 2))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_recurrent_model_trains_like_keras(name, dtype):
    make, loss, metrics, kind = MODELS[name]
    rng = np.random.default_rng(sorted(MODELS).index(name))
    model = tn.Sequential(make(dtype))
    model.set_weights([rng.normal(0, 0.4, w.shape) for w in model.get_weights()])  # non-zero biases too
    model.compile(optimizer=optimizers.RMSprop(learning_rate=0.01), loss=loss, metrics=metrics)
    x, y = _data(kind, rng, 30)
    x = x if kind.startswith("ids") else x.astype(dtype)
    training_parity(model, x, y.astype(dtype), epochs=3, batch_size=8, validation_split=0.2).assert_ok()
