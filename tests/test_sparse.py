"""tinynn.sparse: IndexedSlices densify by scatter-add and square per occurrence, as TF's optimizers do."""

import numpy as np

from tinynn import optimizers
from tinynn.sparse import DenseGradient, IndexedSlices, square


def test_dense_form_sums_duplicates_and_square_is_per_occurrence():
    values = np.array([[1.0, 2.0], [3.0, -1.0], [0.5, 0.5]])
    g = IndexedSlices(values, [2, 0, 2], (4, 2))
    assert np.array_equal(np.asarray(g), [[3, -1], [0, 0], [1.5, 2.5], [0, 0]])
    dense = DenseGradient.from_slices(g)
    assert np.array_equal(square(dense), [[9, 1], [0, 0], [1.25, 4.25], [0, 0]])
    assert np.array_equal(square(np.asarray(g)), np.square(np.asarray(g)))


def test_rmsprop_accumulates_per_occurrence_squares_for_slices():
    values = np.array([[1.0, 2.0], [3.0, -1.0]])
    w = np.zeros((3, 2))
    opt = optimizers.RMSprop(learning_rate=0.1, rho=0.9)
    opt.apply([IndexedSlices(values, [1, 1], (3, 2))], [w])
    v = opt.get_state()["velocity_0"]
    assert np.allclose(v[1], 0.1 * (values**2).sum(0))  # Σ g², not (Σ g)² = [16, 1]
