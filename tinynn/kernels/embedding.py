r"""Embedding lookup gradient: a scatter-add of the output gradient rows into a dense table.

    y[n] = W[idx[n]]                    (gather; NumPy ``take``)
    δW[v] = Σ_{n : idx[n] = v} δy[n]    (scatter-add, rows in order n = 0, 1, …)

``scatter_add`` is the numba kernel; ``scatter_add_ref`` its NumPy twin (``np.add.at``, which is ~20×
slower). Both add the rows in the same order, so they agree exactly.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["scatter_add", "scatter_add_ref"]


@numba.njit(cache=True, nogil=True)
def _scatter_add(grad, idx, dy):
    D = grad.shape[1]
    for n in range(idx.shape[0]):
        row = idx[n]
        for d in range(D):
            grad[row, d] += dy[n, d]


def scatter_add(grad: np.ndarray, idx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """``grad[idx[n]] += dy[n]`` for every n, in place; grad (V, D), idx (N,) int64 in [0, V), dy (N, D)."""
    _scatter_add(grad, np.ascontiguousarray(idx, dtype=np.int64), np.ascontiguousarray(dy, dtype=grad.dtype))
    return grad


def scatter_add_ref(grad: np.ndarray, idx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    np.add.at(grad, idx, dy)
    return grad
