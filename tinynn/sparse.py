"""Row-sparse gradients, as TensorFlow's ``tf.IndexedSlices``: the gradient of an embedding lookup.

For ``y[n] = W[ids[n]]`` the gradient w.r.t. ``W`` is a list of per-occurrence rows::

    dW = Σ_n  e_{ids[n]} ⊗ dy[n]          (values = dy rows, indices = ids, one entry per occurrence)

Its dense form sums the rows of repeated ids in occurrence order (a scatter-add, as TF's
``unsorted_segment_sum``). Keras's optimizers on the TensorFlow backend receive the IndexedSlices and run
their update through sparse-aware ops (``keras/src/backend/tensorflow/sparse.py``); the functions below are
those ops, so that an optimizer's ``update_step`` reads as Keras's, line by line:

=====================================  =====================================================================
Keras op on IndexedSlices ``g``         result (``v`` the values, ``i`` the indices, ``D`` a dense array)
=====================================  =====================================================================
``ops.square(g)``                       slices ``v²``: **squared per occurrence**, before duplicates add up
``ops.multiply(c, g)`` (scalar c)       slices ``c·v``
``ops.divide(g, D)``                    slices ``v / D[i]``: each occurrence divided by its row of D
``ops.add/subtract(g, D)``, ``g * s``   dense: ``densify(g)`` first (the scatter-add), then the dense op
``assign_sub(w, g)``                    ``w[i[n]] -= v[n]`` for n = 0, 1, … **one occurrence at a time**
``assign_add(w, g)``                    ``w[i[n]] += v[n]`` likewise
=====================================  =====================================================================

So RMSprop accumulates ``Σ_n (1-ρ)·g_n²`` for a row used n times (not ``(1-ρ)·(Σ_n g_n)²``) and then
subtracts the n per-occurrence steps ``η·g_n / sqrt(v+ε)`` from the row one after the other: in float32 the
rounding of a row hit thousands of times in a batch (the padding id 0 of left-padded sequences) depends on
that order. TF's CPU kernels run the scatter in occurrence order when op determinism is enabled (or with
one intra-op thread); with several threads it splits the occurrences between them and the rounding of a
repeated row varies from run to run (the parity tests enable op determinism).

Every function also accepts a dense ``np.ndarray`` and then is the plain NumPy op.
"""

from __future__ import annotations

import numpy as np

from . import config
from .kernels import embedding as fast_embedding
from .kernels import sparse as fast_sparse
from .kernels.reference import sparse as reference_sparse


class IndexedSlices:
    """``values[k]`` is the gradient row for ``W[indices[k]]``; duplicates add up in :meth:`to_dense`.

    The optimizers' ops (:func:`square`, :func:`scale`, :func:`divide`) are recorded, not applied, while they
    form the chain ``±(c·v^{1|2}) / D[i]`` of :mod:`tinynn.kernels.reference.sparse`; :func:`densify`,
    :func:`assign_sub` and :func:`assign_add` then run the chain and the scatter in one pass. ``values`` gives
    the rows after the chain (computed in NumPy, in the same order: the same numbers)."""

    def __init__(self, values: np.ndarray, indices: np.ndarray, dense_shape: tuple[int, ...], *,
                 squared: bool = False, c=None, D=None):  # fmt: skip
        self._rows = values
        self.indices = np.asarray(indices, dtype=np.intp)
        self.dense_shape = tuple(dense_shape)
        self._chain = (bool(squared), c, D)
        self._values: np.ndarray | None = None if self.pending else values
        self._dense: np.ndarray | None = None

    @property
    def pending(self) -> bool:
        """True while recorded ops wait to be applied to the rows."""
        squared, c, D = self._chain
        return squared or c is not None or D is not None

    @property
    def values(self) -> np.ndarray:
        if self._values is None:
            self._values = reference_sparse.chain_values(self._rows, self.indices, *self._chain)
        return self._values

    @property
    def shape(self) -> tuple[int, ...]:
        return self.dense_shape

    @property
    def dtype(self) -> np.dtype:
        return self._rows.dtype

    def to_dense(self) -> np.ndarray:
        """The scatter-add ``Σ_k e_{indices[k]} ⊗ values[k]`` in the order k = 0, 1, … (a new array, cached)."""
        if self._dense is None:
            self._dense = _scatter(np.zeros(self.dense_shape, dtype=self.dtype), self, negate=False)
        return self._dense

    def __array__(self, dtype=None, copy=None):
        dense = self.to_dense()
        return dense if dtype is None else dense.astype(dtype)

    def map_values(self, fn) -> IndexedSlices:
        """The same occurrences with ``fn`` applied to their values (TF's sparse elementwise ops)."""
        return IndexedSlices(fn(self.values), self.indices, self.dense_shape)

    def astype(self, dtype, copy: bool = False) -> IndexedSlices:
        return self.map_values(lambda v: v.astype(dtype, copy=copy))

    def _then(self, squared: bool = False, c=None, D=None) -> IndexedSlices:
        """These slices with one more op recorded, if the chain's order square → scale → divide allows it;
        otherwise the rows are computed first and the op starts a new chain."""
        was_squared, was_c, was_D = self._chain
        fits = (not squared or not self.pending) and (c is None or (was_c is None and was_D is None)) and (
            D is None or was_D is None)  # fmt: skip
        if not fits:
            return IndexedSlices(self.values, self.indices, self.dense_shape)._then(squared, c, D)
        return IndexedSlices(self._rows, self.indices, self.dense_shape, squared=was_squared or squared,
                             c=was_c if c is None else c, D=was_D if D is None else D)  # fmt: skip


def _scatter(w: np.ndarray, g: IndexedSlices, negate: bool) -> np.ndarray:
    """``w[i_n] += ±t_n`` for n = 0, 1, … in place, t the rows after g's chain: the fused numba kernel for 2-D
    tables in the 'fast' kernel mode, the NumPy twin (``np.add.at``) otherwise; the same numbers either way."""
    fast = config.kernel_mode() == "fast" and w.ndim == 2 and g._rows.ndim == 2
    plain = not g.pending and not negate
    if fast and plain and fast_embedding.ready(w):  # ready: not while it compiles in the background
        fast_embedding.scatter_add(w, g.indices, g._rows)
    elif fast and not plain and fast_sparse.ready(w):
        fast_sparse.scatter_chain(w, g.indices, g._rows, *g._chain, negate=negate)
    else:
        reference_sparse.scatter_chain(w, g.indices, g._rows, *g._chain, negate=negate)
    return w


def scatter_add(w: np.ndarray, g: IndexedSlices) -> np.ndarray:
    """``w[i[n]] += v[n]`` for n = 0, 1, … in place (TF's ``scatter_add`` / ``unsorted_segment_sum`` order);
    returns w."""
    return _scatter(w, g, negate=False)


def densify(g) -> np.ndarray:
    """The dense array of a gradient (the scatter-add of IndexedSlices; a dense gradient as it is)."""
    return g.to_dense() if isinstance(g, IndexedSlices) else g


def square(g):
    """``ops.square``: per occurrence for IndexedSlices (``v²``), elementwise otherwise."""
    return g._then(squared=True) if isinstance(g, IndexedSlices) else np.square(g)


def scale(c: np.generic, g):
    """``ops.multiply(c, g)`` for a scalar ``c``: ``c·v`` per occurrence for IndexedSlices."""
    return g._then(c=c) if isinstance(g, IndexedSlices) else c * g


def divide(g, d: np.ndarray):
    """``ops.divide(g, d)`` for a dense ``d`` of the variable's shape: each occurrence ``v[n] / d[i[n]]``.

    (Keras adds the rows where ``d`` is 0 or NaN to the slices before dividing; on TF that branch fails with
    an InvalidArgumentError, so there is no Keras result to follow: tinynn divides the occurrences only.)"""
    return g._then(D=d) if isinstance(g, IndexedSlices) else g / d


def assign_sub(w: np.ndarray, g) -> None:
    """``variable.assign_sub(g)``: for IndexedSlices TF's ``scatter_sub``, one occurrence at a time in order."""
    if isinstance(g, IndexedSlices):
        _scatter(w, g, negate=True)  # w - t and w + (-t) round alike (negation is exact)
    else:
        w -= g


def assign_add(w: np.ndarray, g) -> None:
    """``variable.assign_add(g)``: for IndexedSlices TF's ``scatter_add``, one occurrence at a time in order."""
    if isinstance(g, IndexedSlices):
        _scatter(w, g, negate=False)
    else:
        w += g


def squared_norm(g) -> float:
    """``‖g‖²`` as TF measures it (over the values, for IndexedSlices)."""
    values = g.values if isinstance(g, IndexedSlices) else g
    return np.sum(np.square(values))
