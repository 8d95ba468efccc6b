"""Whole-training parity on left-padded integer sequences (``pad_sequences``' default, padding value 0), the
data of the tutorials' text models: the seed-000 convnet and the recurrent seed models, with and without
``mask_zero``, 3 epochs, RMSprop, ``shuffle=False``, every History entry and the final weights compared
(1e-9 relative in float64, 1e-4 in float32).

What makes padded data hard, and how these reduced sizes keep it:

* the padding id 0 occurs hundreds of times per batch (here ~40 % of 16·80 ids), so its Embedding row gets that
  many gradient rows; Keras's optimizers apply them one occurrence at a time (:mod:`tinynn.sparse`);
* windows that lie in the padding are identical, so the max poolings see exact ties, which they resolve by
  position (MaxPooling1D: the first maximum; GlobalMaxPooling1D: the gradient split among all maxima); the data
  below is checked to contain fully padded windows of the second convolution and tied global maxima;
* real ids repeat too (~670 real ids per batch of 16 reviews from 199 ids), so other rows get several
  occurrences.

The convnet's ``mask_zero`` runs also use a GEMM that rounds each row slightly differently depending on its
position (as OpenBLAS's Haswell/Zen kernels do in float32 and its SSE kernels in float64): identical windows
must still give identical outputs (:mod:`tinynn.kernels.windows`), or the ties break and the run drifts by
~1e-2. Keras's side runs with TF op determinism (:mod:`parity.cases.determinism`).
"""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest

import tinynn as tn
from parity.training import training_parity
from tinynn import layers, optimizers
from tinynn.kernels import blas
from tinynn.kernels import conv as conv_kernels
from tinynn.preprocessing.sequence import pad_sequences

from .determinism import tf_op_determinism

VOCAB = 200


def _left_padded(rng, n: int, length: int, shortest: int) -> np.ndarray:
    """n reviews of shortest..length real ids (1..VOCAB-1), left-padded with 0 to ``length`` by pad_sequences."""
    reviews = [rng.integers(1, VOCAB, rng.integers(shortest, length + 1)).tolist() for _ in range(n)]
    return pad_sequences(reviews, maxlen=length)


def _randomize(model, rng):
    """Non-zero biases and random kernels around the initializers' scale (the Embedding keeps its init)."""
    weights = model.get_weights()
    model.set_weights([weights[0]] + [w + rng.normal(0, 0.05, w.shape).astype(w.dtype) for w in weights[1:]])


def _seed000_convnet(dtype, mask_zero, length):
    """Embedding(10000, 128) -> Conv1D(32, 7, relu) -> MaxPooling1D(5) -> Conv1D(32, 7, relu) -> GMP -> Dense(1),
    at Embedding(200, 16) and 8 filters."""
    return tn.Sequential([
        layers.Embedding(VOCAB, 16, mask_zero=mask_zero, input_shape=(length,), dtype=dtype),
        layers.Conv1D(8, 7, activation="relu", dtype=dtype),
        layers.MaxPooling1D(5, dtype=dtype),
        layers.Conv1D(8, 7, activation="relu", dtype=dtype),
        layers.GlobalMaxPooling1D(dtype=dtype),
        layers.Dense(1, activation="sigmoid", dtype=dtype),
    ])  # fmt: skip


def _position_dependent_gemm(a, b, out=None):
    """The conv GEMM with row r scaled by 1 + (r mod 3)·ε: identical rows come out up to 2 ulp apart."""
    result = _GEMM(a, b, out)
    eps = np.finfo(result.dtype).eps
    result *= (1 + (np.arange(result.shape[1]) % 3) * eps).astype(result.dtype)[None, :, None]
    return result


_GEMM = blas.grouped_matmul


def _tied_global_maxima(model, x) -> int:
    """How many (sequence, filter) pairs of the initial model have their global max at two or more steps."""
    h = x
    for layer in model.layers[:4]:
        h = layer(h)
    return int(np.sum(np.sum(h == h.max(axis=1, keepdims=True), axis=1) >= 2))


@pytest.mark.parametrize("mask_zero", [False, True])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_seed000_convnet_on_left_padded_sequences_trains_like_keras(dtype, mask_zero):
    rng = np.random.default_rng(0)
    length = 80  # conv 74 -> pool 14 -> conv 8: a review of < 20 ids leaves fully padded windows at the end
    x = _left_padded(rng, 64, length, shortest=4)
    y = (rng.random((64, 1)) > 0.5) * 1.0
    assert np.mean(x == 0) > 0.3 and np.sum(np.count_nonzero(x, axis=1) < 20) >= 8  # long padded stretches
    tn.set_random_seed(1)
    model = _seed000_convnet(dtype, mask_zero, length)
    _randomize(model, rng)
    assert _tied_global_maxima(model, x) > 0  # exact ties in the padding reach GlobalMaxPooling1D
    model.compile(optimizer=optimizers.RMSprop(learning_rate=1e-3), loss="binary_crossentropy", metrics=["acc"])
    gemm = mock.patch.object(conv_kernels.blas, "grouped_matmul", _position_dependent_gemm) if mask_zero else None
    with tf_op_determinism():
        if gemm is not None:
            gemm.start()
        try:
            report = training_parity(model, x, y, epochs=3, batch_size=16)
        finally:
            if gemm is not None:
                gemm.stop()
    report.assert_ok()


RECURRENT = {
    # the seeds' recurrent text models (Embedding(10000, 32) and 32 units there), at 8 units
    "lstm": lambda d, m: [layers.Embedding(VOCAB, 8, mask_zero=m, input_shape=(30,), dtype=d),
                          layers.LSTM(8, dtype=d)],
    "bidirectional_lstm": lambda d, m: [layers.Embedding(VOCAB, 8, mask_zero=m, input_shape=(30,), dtype=d),
                                        layers.Bidirectional(layers.LSTM(8, dtype=d), dtype=d)],
    "simple_rnn_stack": lambda d, m: [layers.Embedding(VOCAB, 8, mask_zero=m, input_shape=(30,), dtype=d),
                                      layers.SimpleRNN(8, return_sequences=True, dtype=d),
                                      layers.SimpleRNN(8, dtype=d)],
}  # fmt: skip


# each model with and without mask_zero, and in both dtypes (not all four pairs: a Keras fit of a recurrent model
# costs ~3 s; benchmarks/padded_parity.py runs every combination at the seeds' sizes, 256 x 200 ids)
RECURRENT_RUNS = [("lstm", "float32", False), ("lstm", "float64", True),
                  ("bidirectional_lstm", "float64", False), ("bidirectional_lstm", "float32", True),
                  ("simple_rnn_stack", "float32", False), ("simple_rnn_stack", "float64", True)]  # fmt: skip


@pytest.mark.parametrize("name, dtype, mask_zero", RECURRENT_RUNS)
def test_recurrent_seed_models_on_left_padded_sequences_train_like_keras(name, dtype, mask_zero):
    rng = np.random.default_rng(sorted(RECURRENT).index(name))
    x = _left_padded(rng, 32, 30, shortest=2)
    y = (rng.random((32, 1)) > 0.5) * 1.0
    assert np.mean(x == 0) > 0.3  # the padding id: ~200 occurrences per batch of 16
    tn.set_random_seed(2)
    model = tn.Sequential([*RECURRENT[name](dtype, mask_zero), layers.Dense(1, activation="sigmoid", dtype=dtype)])
    _randomize(model, rng)
    model.compile(optimizer=optimizers.RMSprop(learning_rate=1e-3), loss="binary_crossentropy", metrics=["acc"])
    with tf_op_determinism():
        report = training_parity(model, x, y, epochs=3, batch_size=16)
    report.assert_ok()
