r"""Embedding lookup in plain NumPy: rows of a table W (V, D) picked by integer ids, and the table's gradient.

For ids i of any shape S (already wrapped into [0, V))::

    y = W[i]                              (S..., D)      a gather
    δW[v] = Σ_{n: i_n = v} δy_n           (V, D)         a scatter-add, rows in order n = 0, 1, …

The gradient reaches the optimizers as one row per occurrence (:class:`tinynn.sparse.IndexedSlices`); its dense
form is the scatter-add. The fast scatter-add (:mod:`tinynn.kernels.embedding`) adds the rows in the same
order, so the two agree exactly.
"""

from __future__ import annotations

import numpy as np

__all__ = ["embedding_forward", "scatter_add"]


def embedding_forward(W, i):
    """y = W[i]: one row of the table per id."""
    return np.take(W, i, axis=0)


def scatter_add(grad, i, dy):
    """``grad[i[n]] += dy[n]`` for every n, in place (``np.add.at`` adds repeated ids one after the other)."""
    np.add.at(grad, i, dy)
    return grad
