"""Embedding against Keras 3: lookups (negative ids wrap, float ids truncate), the dense table gradient
(Keras's IndexedSlices densified) and the mask_zero mask."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from parity import backend, bridge
from parity.harness import layer_parity
from parity.options import examples
from tinynn import layers


@given(
    input_dim=st.integers(1, 20),
    output_dim=st.integers(1, 6),
    shape=st.lists(st.integers(1, 5), min_size=1, max_size=3),
    id_kind=st.sampled_from(["nonneg", "with_negative", "float"]),
    mask_zero=st.booleans(),
    dtype=st.sampled_from(["float64", "float32"]),
    seed=st.integers(0, 2**16),
)
def test_embedding_parity(input_dim, output_dim, shape, id_kind, mask_zero, dtype, seed):
    rng = np.random.default_rng(seed)
    if id_kind == "nonneg":
        ids = rng.integers(0, input_dim, size=shape)
    elif id_kind == "with_negative":
        ids = rng.integers(-input_dim, input_dim, size=shape)
    else:  # floats in (-1, input_dim): Keras casts them to int32, truncating toward 0
        ids = rng.uniform(-0.999, input_dim - 0.001, size=shape).astype("float32")
    layer = layers.Embedding(input_dim, output_dim, mask_zero=mask_zero, dtype=dtype)
    layer_parity(layer, ids, seed=seed).assert_ok()
    keras_mask = bridge.keras_layer_for(layer).compute_mask(backend.tensor(ids))
    ours = layer.compute_mask(ids, None)
    if mask_zero:
        np.testing.assert_array_equal(ours, backend.numpy(keras_mask))
    else:
        assert ours is None and keras_mask is None


@given(vocab=st.integers(2, 12), seq=st.integers(1, 6), batch=st.integers(1, 4), seed=st.integers(0, 2**16))
@examples(dict(vocab=12, seq=6, batch=4, seed=2))
def test_repeated_ids_accumulate_like_keras(vocab, seq, batch, seed):
    """Many occurrences of few ids: the scatter-add must sum every occurrence (as Keras's densified slices)."""
    ids = np.random.default_rng(seed).integers(0, 2, size=(batch, seq))
    layer_parity(layers.Embedding(vocab, 3, dtype="float64"), ids, seed=seed).assert_ok()


@given(vocab=st.integers(2, 8), optimizer=st.sampled_from(["RMSprop", "Adam", "Adagrad"]),
       dtype=st.sampled_from(["float64", "float32"]), seed=st.integers(0, 2**16))
@examples(dict(vocab=8, optimizer="RMSprop", dtype="float32", seed=3))
def test_optimizer_steps_on_embedding_match_keras(vocab, optimizer, dtype, seed):
    """Keras's optimizers get the table gradient as IndexedSlices (one row per occurrence of an id) and square
    the rows before summing duplicates; tinynn's Embedding gradient carries the rows so that its optimizers
    do the same. Ids repeat here (12 ids, at most 8 values): two steps must match Keras."""
    import keras

    def loss_fn(ids_t, up_t):
        return keras.ops.sum(keras.ops.cast(keras_layer(ids_t), "float64") * up_t), None

    from parity.harness import assert_checks, compare
    from parity.training import keras_floatx, keras_optimizer_for
    from tinynn import optimizers

    rng = np.random.default_rng(seed)
    ids = rng.integers(0, vocab, size=(3, 4))
    layer = layers.Embedding(vocab, 2, dtype=dtype)
    layer(ids)
    w0 = rng.normal(size=(vocab, 2)).astype(dtype)
    layer.set_weights([w0])
    opt = getattr(optimizers, optimizer)(learning_rate=0.1)
    with keras_floatx(dtype):
        keras_layer = bridge.keras_layer_for(layer)
        keras_layer.build((3, 4))
        keras_layer.set_weights([w0])
        keras_opt = keras_optimizer_for(opt)
        for _ in range(2):
            up = rng.normal(size=(3, 4, 2))
            layer(ids)
            layer.backward(up)
            opt.apply(layer.gradients, layer.weights)
            variables = keras_layer.trainable_variables
            _, _, grads = backend.gradients(loss_fn, [backend.tensor(ids), backend.tensor(up)], variables, dense=False)
            keras_opt.apply(grads, variables)
    check = compare("embeddings after 2 steps", layer.embeddings, keras_layer.get_weights()[0], dtype)
    assert_checks([check])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_an_embedding_into_conv1d_predicts_like_keras(dtype, monkeypatch):
    """predict runs Embedding -> Conv1D as one pass from the table (Embedding.forward_into,
    conv1d_forward_lookup: counted here): the seeds' text convnet at a small size, on left-padded ids, against
    Keras's predict with the same weights (1e-10 relative in float64, 1e-5 in float32)."""
    import tinynn as tn
    from tinynn.kernels import conv as conv_kernels

    calls = []
    real = conv_kernels.conv1d_forward_lookup
    monkeypatch.setattr(conv_kernels, "conv1d_forward_lookup", lambda *a, **k: calls.append(1) or real(*a, **k))
    rng = np.random.default_rng(8)
    ids = rng.integers(1, 40, (24, 60))
    for i, start in enumerate(rng.integers(10, 55, 24)):
        ids[i, :start] = 0  # left padding
    model = tn.Sequential([
        layers.Input(shape=(60,)), layers.Embedding(40, 8, dtype=dtype),
        layers.Conv1D(6, 7, padding="same", activation="relu", dtype=dtype), layers.MaxPooling1D(5, dtype=dtype),
        layers.Conv1D(4, 3, activation="relu", dtype=dtype), layers.GlobalMaxPooling1D(dtype=dtype),
        layers.Dense(1, activation="sigmoid", dtype=dtype),
    ])  # fmt: skip
    model.set_weights([rng.normal(0, 0.4, w.shape) for w in model.get_weights()])  # non-zero biases too
    ours = model.predict(ids, batch_size=8)
    assert len(calls) == 3
    theirs = bridge.to_keras(model).predict(ids, batch_size=8, verbose=0)
    tol = 1e-10 if dtype == "float64" else 1e-5
    np.testing.assert_allclose(ours, theirs, rtol=tol, atol=tol)
