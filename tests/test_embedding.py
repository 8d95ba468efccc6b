"""Embedding without Keras: lookups, id casting and wrapping, the scatter-add gradient, masks, errors."""

import warnings

import numpy as np
import pytest

from tinynn import layers
from tinynn.gradcheck import check_layer


def make(input_dim=5, output_dim=3, **kw):
    layer = layers.Embedding(input_dim, output_dim, dtype="float64", **kw)
    layer.build((None, None))
    layer.built = True
    layer.set_weights([np.arange(input_dim * output_dim, dtype=float).reshape(input_dim, output_dim)])
    return layer


def test_lookup_wraps_negative_ids_and_truncates_floats():
    layer = make()
    W = layer.embeddings
    np.testing.assert_array_equal(layer(np.array([[0, 4, -1, -5]])), W[[[0, 4, 4, 0]]])
    np.testing.assert_array_equal(layer(np.array([1.7, -0.5, 3.999, -1.2])), W[[1, 0, 3, 4]])
    assert layer(np.array([[1, 2], [3, 4]])).shape == (2, 2, 3)
    assert layer(np.array([True, False])).shape == (2, 3)


def test_gradient_is_a_dense_scatter_add_aligned_with_weights():
    layer = make()
    ids = np.array([[1, 1, 3], [-4, 0, 1]])  # -4 wraps to 1
    layer(ids)
    dy = np.random.default_rng(0).normal(size=(2, 3, 3))
    assert layer.backward(dy) is None
    (g,) = layer.gradients
    dense = np.asarray(g)
    assert dense.shape == layer.embeddings.shape and dense.dtype == layer.embeddings.dtype
    want = np.zeros((5, 3))
    for (b, t), i in np.ndenumerate(ids):
        want[i % 5] += dy[b, t]
    np.testing.assert_allclose(dense, want, rtol=1e-15)
    np.testing.assert_array_equal(dense[[2, 4]], 0)
    for r in check_layer(layer, ids, seed=1):  # the table gradient against finite differences
        assert r.relative_error < 1e-7, str(r)


def test_mask_zero():
    layer = make(mask_zero=True)
    ids = np.array([[3, 0, 2, 0], [0, 0, 0, 1]])
    np.testing.assert_array_equal(layer.compute_mask(ids, None), ids != 0)
    np.testing.assert_array_equal(layer(ids)[0, 1], layer.embeddings[0])  # masked positions still look up row 0
    assert make().compute_mask(ids, None) is None
    assert layer.supports_masking and not make().supports_masking


def test_config_defaults_and_input_length_warning():
    layer = layers.Embedding(10, 4)
    cfg = layer.get_config()
    assert cfg["input_dim"] == 10 and cfg["output_dim"] == 4 and cfg["mask_zero"] is False
    assert cfg["embeddings_initializer"]["class_name"] == "RandomUniform"
    layer(np.zeros((2, 3), int))
    assert np.all(np.abs(layer.embeddings) <= 0.05)
    assert layers.Embedding.from_config(cfg).get_config() == cfg
    with pytest.warns(DeprecationWarning, match="input_length"):
        layers.Embedding(10, 4, input_length=7)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        layers.Embedding(10, 4)


def test_bad_ids_raise_before_lookup():
    layer = make(name="tokens")
    with pytest.raises(ValueError, match=r"'tokens'.*id 5 is out of range.*\[0, 5\)"):
        layer(np.array([[0, 5]]))
    with pytest.raises(ValueError, match=r"'tokens'.*id -6 is out of range"):
        layer(np.array([[-6, 1]]))
    with pytest.raises(ValueError, match=r"'tokens'.*id 5 is out of range"):
        layer(np.array([5.5]))
    with pytest.raises(ValueError, match=r"'tokens'.*non-finite"):
        layer(np.array([1.0, np.nan]))
    with pytest.raises(ValueError, match=r"'tokens'.*integer ids.*<U1"):
        layer(np.array(["a", "b"]))
    with pytest.raises(ValueError, match=r"'tokens'.*scalar"):
        layer(np.int64(3))
    with pytest.raises(ValueError, match="input_dim must be a positive integer"):
        layers.Embedding(0, 3)
    with pytest.raises(ValueError, match="output_dim must be a positive integer"):
        layers.Embedding(3, 2.5)


def test_gradient_is_indexed_slices_with_one_row_per_occurrence():
    """As Keras's tf.IndexedSlices: the optimizers square the rows before summing duplicates."""
    from tinynn.sparse import IndexedSlices, densify, square

    layer = make()
    ids = np.array([[1, 1, 3], [-4, 0, 2]])  # id 1 three times (-4 wraps to 1)
    layer(ids)
    dy = np.random.default_rng(2).normal(size=(2, 3, 3))
    layer.backward(dy)
    (g,) = layer.gradients
    assert isinstance(g, IndexedSlices)
    np.testing.assert_array_equal(g.indices, [1, 1, 3, 1, 0, 2])
    np.testing.assert_array_equal(g.values, dy.reshape(-1, 3))
    rows = dy.reshape(-1, 3)[[0, 1, 3]]
    np.testing.assert_allclose(np.asarray(g)[1], rows.sum(0), rtol=1e-15)
    squares = densify(square(g))
    np.testing.assert_allclose(squares[1], (rows**2).sum(0), rtol=1e-15)
    np.testing.assert_array_equal(squares[4], 0)
    f32 = g.astype(np.float32)  # the optimizers cast; the rows and the fast dense form stay
    assert type(f32) is type(g) and np.asarray(f32).dtype == np.float32


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("split", [False, True])
def test_the_numba_gather_gives_the_bits_of_its_numpy_twin(split, dtype):
    """kernels.embedding.gather = reference embedding_forward (np.take) bit for bit, whole or with its rows split
    between the cores; ids outside the table are refused before the numba loop runs."""
    from unittest import mock

    from tinynn.kernels import embedding as k_embedding
    from tinynn.kernels.reference.embedding import embedding_forward

    rng = np.random.default_rng(17)
    W = rng.normal(size=(13, 6)).astype(dtype)
    W[4] = -0.0
    idx = rng.integers(0, 13, 101)
    with mock.patch.object(k_embedding, "GATHER_SPLIT", 0 if split else 1 << 20), \
            mock.patch.object(k_embedding, "_gather", wraps=k_embedding._gather) as loop:
        y = k_embedding.gather(W, idx)
    assert loop.called == split
    np.testing.assert_array_equal(y.view(np.uint8), embedding_forward(W, idx).view(np.uint8))
    for bad in (np.array([0, 13]), np.array([-1, 2])):
        with pytest.raises(ValueError, match="gather"):
            k_embedding.gather(W, bad)
