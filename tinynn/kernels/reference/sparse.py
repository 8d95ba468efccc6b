r"""The optimizers' ops on row-sparse gradients (:class:`tinynn.sparse.IndexedSlices`) in plain NumPy.

An optimizer step on an Embedding's gradient (rows v_n for ids i_n, one per occurrence) is a short chain of
elementwise ops on the rows, then a scatter into a dense array, one occurrence at a time in order n = 0, 1, …
(TF's ``scatter_add`` / ``scatter_sub`` / ``unsorted_segment_sum``)::

    t_n = v_n            (the rows as given)
    t_n ← t_n²           if squared           (ops.square)
    t_n ← c·t_n          if c is given        (ops.multiply by a scalar)
    t_n ← t_n / D[i_n]   if D is given        (ops.divide by a dense array of the variable's shape)
    t_n ← -t_n           if negate            (assign_sub; w - t and w + (-t) round alike)
    out[i_n] ← out[i_n] + t_n   for n = 0, 1, …

The numba version (one pass over the rows, no temporaries) is :mod:`tinynn.kernels.sparse`.
"""

from __future__ import annotations

import numpy as np

__all__ = ["chain_values", "scatter_chain"]


def chain_values(v, i, squared=False, c=None, D=None, negate=False):
    """t (N, ...): the rows after the chain of ops above (every op rounds as NumPy's, in the variable's dtype)."""
    t = np.square(v) if squared else v
    if c is not None:
        t = c * t
    if D is not None:
        t = t / D[i]
    if negate:
        t = -t
    return t


def scatter_chain(out, i, v, squared=False, c=None, D=None, negate=False):
    """``out[i_n] += t_n`` for n = 0, 1, … in place (``np.add.at`` applies repeated ids one after the other)."""
    np.add.at(out, i, chain_values(v, i, squared, c, D, negate))
    return out
