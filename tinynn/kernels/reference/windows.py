r"""Identical input windows of a convolution share one output, in plain NumPy.

A convolution's output at step t is a function of its window alone, ``z[b,t] = f(xp[b, t·s + k·d], k < K)``, so
two bit-identical windows must give bit-identical outputs. A GEMM does not promise that: BLAS kernels compute
rows with different micro-kernels depending on where a row falls in the matrix (the tail of a block, a thread's
share), and in float32 (on some CPUs in float64 too) two identical rows can differ in the last bit. On
left-padded sequences thousands of windows lie entirely in the padding; Keras (oneDNN / Eigen) gives them one
output, and the max poolings after the convolution break those exact ties by position (the first maximum wins,
``reduce_max`` splits the gradient among all maxima). A last-bit difference turns a tie into a strict maximum and
sends the gradient elsewhere. So after the product, every window takes the output of the first window identical
to it (in the order b, t)::

    id[b,i]   = the first row (b', i') in row-major order with x[b',i'] ≡ x[b,i]  (bitwise), as b'·L + i'
    key[b,t]  = (id[b, t·s + k·d - pl]  for k = 0 … K-1)     (a padding tap reads the id of an all-zero row
                                                              of x if there is one, else -1)
    rep[b·Lo+t] = the first window b'·Lo+t' with key[b',t'] = key[b,t]
    z[b,t]    ← z[rep]                                        (a copy: the values are bitwise those of rep)

Windows identical in value are identical in key, and conversely (ids are canonical), so this is exactly the
rule "identical windows, identical outputs" and changes nothing else. The numba version (a hash table instead of
sorting) is :mod:`tinynn.kernels.windows`.
"""

from __future__ import annotations

import numpy as np

__all__ = ["distinct_rows", "first_positions", "row_ids", "share_identical_windows", "verify_ids", "window_ids"]


def _first_of_equal_rows(rows: np.ndarray) -> np.ndarray:
    """first[r] = the smallest r' with rows[r'] bitwise equal to rows[r]."""
    rows = np.ascontiguousarray(rows)
    if rows.shape[0] == 0:
        return np.zeros(0, np.int64)
    as_bytes = rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1])))[:, 0]
    _, first, inverse = np.unique(as_bytes, return_index=True, return_inverse=True)  # first occurrences
    return first[inverse.reshape(-1)].astype(np.int64)


def row_ids(x: np.ndarray) -> tuple[np.ndarray, int]:
    """(id (B, L), zero_id): id[b,i] = b'·L + i' of the first step with the same bits as x[b,i];
    zero_id = the id of an all-(+0) step, or -1 if x has none."""
    B, L, C = x.shape
    flat = x.reshape(B * L, C)
    ids = _first_of_equal_rows(flat)
    zero = np.flatnonzero(~np.any(flat.view(np.dtype(f"u{x.dtype.itemsize}")), axis=1))
    return ids.reshape(B, L), int(ids[zero[0]]) if zero.size else -1


def distinct_rows(x: np.ndarray, ids: np.ndarray, zero_id: int) -> tuple[np.ndarray, np.ndarray]:
    """(firsts (U,), compact (B, L)) for ``(ids, zero_id) = row_ids(x)``: the distinct steps of x other than the
    all-(+0) one, in order of first occurrence (firsts[u] = b·L + i of the u-th), and compact[b,i] = the u of
    step (b,i), -1 for an all-(+0) step. A convolution's products need only the U distinct steps:
    ``Z[u] = x[firsts[u]] @ W`` (:func:`tinynn.kernels.reference.conv.shift_add_rows`)."""
    B, L = ids.shape
    flat = ids.reshape(B * L)
    firsts = np.unique(flat[flat != zero_id])  # canonical ids are first occurrences: sorted = in order of occurrence
    compact = np.full(B * L, -1, np.int64)
    nonzero = flat != zero_id
    compact[nonzero] = np.searchsorted(firsts, flat[nonzero])
    return firsts.astype(np.int64), compact.reshape(B, L)


def first_positions(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(compact (N,), firsts (U,)) for integer ids idx (N,): firsts[u] = the position of the first occurrence of
    the u-th distinct id (in order of first occurrence), compact[r] = the u of idx[r]. After an Embedding,
    ``y = table[idx]``, steps of equal ids are equal, so ``row_ids(y)`` needs to look at the steps ``firsts`` only
    (:func:`tinynn.kernels.windows.lookup_row_ids`)."""
    idx = np.asarray(idx).reshape(-1)
    _, first, inverse = np.unique(idx, return_index=True, return_inverse=True)  # by id value
    order = np.argsort(first)  # value ranks -> ranks by first occurrence
    rank = np.empty_like(order)
    rank[order] = np.arange(order.shape[0])
    return rank[inverse.reshape(-1)].astype(np.int64), first[order].astype(np.int64)


def verify_ids(x: np.ndarray, ids: np.ndarray, r0: int, r1: int) -> bool:
    """Whether every step r in [r0, r1) of x (its B·L steps in row-major order) has the bits of step ids[r]: the
    check that hashed ids group only equal steps."""
    B, L, C = x.shape
    bits = x.reshape(B * L, C).view(np.dtype(f"u{x.dtype.itemsize}"))
    return bool(np.array_equal(bits[r0:r1], bits[ids.reshape(-1)[r0:r1]]))


def window_ids(ids: np.ndarray, zero_id: int, K: int, s: int, d: int, pl: int, l_out: int) -> np.ndarray:
    """rep (B·Lo,): the first window (b'·Lo + t') whose taps read the same step ids as window b·Lo + t."""
    B, L = ids.shape
    i = np.arange(l_out)[:, None] * s + np.arange(K)[None, :] * d - pl  # (Lo, K): the step tap k reads
    inside = (i >= 0) & (i < L)
    key = np.where(inside[None], ids[:, np.clip(i, 0, L - 1)], zero_id)  # (B, Lo, K)
    return _first_of_equal_rows(key.reshape(B * l_out, K))


def share_identical_windows(z: np.ndarray, x: np.ndarray, K: int, s: int, d: int, pl: int) -> np.ndarray:
    """z (B, Lo, F) with every window's output replaced by that of the first identical window (in place)."""
    B, l_out, F = z.shape
    ids, zero_id = row_ids(x)
    rep = window_ids(ids, zero_id, K, s, d, pl, l_out)
    rows = z.reshape(B * l_out, F)
    rows[:] = rows[rep]
    return z
