"""Row-sparse gradients, as TensorFlow's ``tf.IndexedSlices``: the gradient of an embedding lookup.

For ``y[n] = W[ids[n]]`` the gradient w.r.t. ``W`` is a list of per-occurrence rows::

    dW = Σ_n  e_{ids[n]} ⊗ dy[n]          (values = dy rows, indices = ids, one entry per occurrence)

Its dense form sums the rows of repeated ids (a scatter-add). Keras's TensorFlow optimizers receive the
IndexedSlices and apply elementwise ops such as ``square`` to the *values*, before the duplicates are summed:
RMSprop, Adam and Adagrad accumulate ``Σ_n g_n²`` for a row used n times, not ``(Σ_n g_n)²``; clipping by norm
measures ``‖values‖``, and clipping by value clips each occurrence. :class:`IndexedSlices` keeps the
occurrences so that tinynn's optimizers can do the same; everything else sees the dense array through
``np.asarray``.
"""

from __future__ import annotations

import numpy as np

from . import config
from .kernels import embedding as fast_embedding
from .kernels.reference import embedding as reference_embedding


class IndexedSlices:
    """``values[k]`` is the gradient row for ``W[indices[k]]``; duplicates add up in :meth:`to_dense`."""

    def __init__(self, values: np.ndarray, indices: np.ndarray, dense_shape: tuple[int, ...]):
        self.values = values
        self.indices = np.asarray(indices, dtype=np.intp)
        self.dense_shape = tuple(dense_shape)
        self._dense: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        return self.dense_shape

    @property
    def dtype(self) -> np.dtype:
        return self.values.dtype

    def to_dense(self) -> np.ndarray:
        """The scatter-add ``Σ_k e_{indices[k]} ⊗ values[k]`` (the numba kernel for 2-D tables in the 'fast' kernel
        mode once compiled, ``np.add.at`` otherwise: the same additions in the same order)."""
        if self._dense is None:
            dense = np.zeros(self.dense_shape, dtype=self.values.dtype)
            fast = config.kernel_mode() == "fast" and dense.ndim == 2 and self.values.ndim == 2 and \
                fast_embedding.ready(dense)
            (fast_embedding if fast else reference_embedding).scatter_add(dense, self.indices, self.values)
            self._dense = dense
        return self._dense

    def __array__(self, dtype=None, copy=None):
        dense = self.to_dense()
        return dense if dtype is None else dense.astype(dtype)

    def map_values(self, fn) -> IndexedSlices:
        """The same occurrences with ``fn`` applied to their values (TF's sparse elementwise ops)."""
        return IndexedSlices(fn(self.values), self.indices, self.dense_shape)

    def astype(self, dtype, copy: bool = False) -> IndexedSlices:
        return self.map_values(lambda v: v.astype(dtype, copy=copy))


class DenseGradient(np.ndarray):
    """A dense gradient that remembers the per-occurrence square sum of the IndexedSlices it came from."""

    occurrence_square: np.ndarray | None = None

    @classmethod
    def from_slices(cls, g: IndexedSlices) -> DenseGradient:
        out = g.to_dense().view(cls)
        out.occurrence_square = g.map_values(np.square).to_dense()
        return out


def square(g: np.ndarray) -> np.ndarray:
    """``g²`` elementwise; for a gradient that came from IndexedSlices, ``Σ_n g_n²`` per row as TF computes it."""
    if type(g) is DenseGradient and g.occurrence_square is not None:
        return g.occurrence_square
    return np.square(g)


def squared_norm(g) -> float:
    """``‖g‖²`` as TF measures it (over the values, for IndexedSlices)."""
    values = g.values if isinstance(g, IndexedSlices) else g
    return np.sum(np.square(values))
