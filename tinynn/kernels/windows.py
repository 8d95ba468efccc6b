r"""Identical input windows of a convolution share one output: the numba version.

The rule and the reason (a GEMM may round two identical rows differently, which breaks the exact ties of the
padded region that the max poolings resolve by position) are in :mod:`tinynn.kernels.reference.windows`, the
NumPy twin, which finds equal rows by sorting. Here an open-addressing hash table finds them in one pass over
the bits of x (a multiply-add hash of each row, then an exact comparison of the rows whose hashes agree), and a
second table over the windows' keys of K step ids; the outputs of repeated windows are then copied rows. The
ids are the same canonical "first occurrence" numbers as the twin's, so both give the same ``rep`` and, after
the copy, bitwise the same outputs for the same ``z``. ``tests/test_conv_kernels.py`` checks both.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["row_ids", "share_identical_windows", "window_ids"]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _table_size(n: int) -> int:
    size = 16
    while size < 2 * n:
        size *= 2
    return size


@numba.njit(cache=True, nogil=True)
def _mix(h):  # pragma: no cover - compiled
    """A 64-bit finaliser (splitmix64's), so that the low bits used as the slot depend on every input bit."""
    h ^= h >> np.uint64(30)
    h *= np.uint64(0xBF58476D1CE4E5B9)
    h ^= h >> np.uint64(27)
    h *= np.uint64(0x94D049BB133111EB)
    h ^= h >> np.uint64(31)
    return h


@numba.njit(cache=True, nogil=True)
def _equal_rows(a, b):  # pragma: no cover - compiled
    """Bitwise equality; rows that differ usually differ at once, equal ones are checked in one vector pass."""
    if a[0] != b[0]:
        return False
    diff = a[0] ^ b[0]
    for w in range(a.shape[0]):
        diff |= a[w] ^ b[w]
    return diff == 0


@numba.njit(cache=True, nogil=True)
def _row_ids(bits, multipliers, table, ids):  # pragma: no cover - compiled
    """ids[r] = first r' with bits[r'] == bits[r]; returns the id of an all-zero row or -1.

    table (size a power of two, filled with -1): each used slot holds ``r | (the hash's high 31 bits) << 32``.
    A row equal to the one before it (a run, as in padding) takes its id without hashing."""
    R, W = bits.shape
    mask = table.shape[0] - 1
    zero_id = -1
    for r in range(R):
        row = bits[r]
        if r > 0 and _equal_rows(row, bits[r - 1]):
            ids[r] = ids[r - 1]
            continue
        acc = np.uint64(0)
        nonzero = np.uint64(0)
        for w in range(W):  # a sum of products: LLVM vectorises it (uint64 wraps)
            v = np.uint64(row[w])
            acc += v * multipliers[w]
            nonzero |= v
        h = _mix(acc)
        tag = np.int64(h >> np.uint64(33))  # 31 bits: the entry stays non-negative
        slot = np.int64(h & np.uint64(mask))
        while True:
            entry = table[slot]
            if entry < 0:
                table[slot] = r | (tag << 32)
                ids[r] = r
                break
            j = entry & 0xFFFFFFFF
            if (entry >> 32) == tag and _equal_rows(bits[j], row):
                ids[r] = j
                break
            slot = (slot + 1) & mask
        if nonzero == 0 and zero_id < 0:
            zero_id = ids[r]
    return zero_id


@numba.njit(cache=True, nogil=True)
def _window_ids(ids, zero_id, K, s, d, pl, l_out, table, key, previous, other_key, rep):  # pragma: no cover
    """rep[b·Lo+t] = the first window with the same K step ids; a window whose key equals the previous
    window's (a run of padding) takes its rep without hashing. table as in :func:`_row_ids`."""
    B, L = ids.shape
    mask = table.shape[0] - 1
    for b in range(B):
        for t in range(l_out):
            w = b * l_out + t
            acc = np.uint64(0)
            same_as_previous = t > 0
            for k in range(K):
                i = t * s + k * d - pl
                key[k] = ids[b, i] if 0 <= i < L else zero_id
                same_as_previous = same_as_previous and key[k] == previous[k]
                acc = (acc + np.uint64(key[k] + 1)) * _GOLDEN
            for k in range(K):
                previous[k] = key[k]
            if same_as_previous:
                rep[w] = rep[w - 1]
                continue
            h = _mix(acc)
            tag = np.int64(h >> np.uint64(33))
            slot = np.int64(h & np.uint64(mask))
            while True:
                entry = table[slot]
                if entry < 0:
                    table[slot] = w | (tag << 32)
                    rep[w] = w
                    break
                j = entry & 0xFFFFFFFF
                if (entry >> 32) == tag:
                    bj, tj = j // l_out, j % l_out
                    same = True
                    for k in range(K):
                        i = tj * s + k * d - pl
                        other_key[k] = ids[bj, i] if 0 <= i < L else zero_id
                        if other_key[k] != key[k]:
                            same = False
                            break
                    if same:
                        rep[w] = j
                        break
                slot = (slot + 1) & mask
    return rep


@numba.njit(cache=True, nogil=True)
def _copy_repeated_rows(rows, rep):  # pragma: no cover - compiled
    """rows[w] ← rows[rep[w]] where rep[w] ≠ w (rep[w] < w, so every source row is an original)."""
    F = rows.shape[1]
    for w in range(rows.shape[0]):
        j = rep[w]
        if j != w:
            dst, src = rows[w], rows[j]
            for f in range(F):
                dst[f] = src[f]


def _multipliers(width: int) -> np.ndarray:
    """Odd 64-bit multipliers, one per column (a fixed sequence, so hashes are reproducible)."""
    k = np.arange(1, width + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        return (k * _GOLDEN) | np.uint64(1)


def row_ids(x: np.ndarray) -> tuple[np.ndarray, int]:
    """(id (B, L), zero_id), as :func:`tinynn.kernels.reference.windows.row_ids`."""
    B, L, C = x.shape
    rows = np.ascontiguousarray(x).reshape(B * L, C)
    word = 8 if (C * x.dtype.itemsize) % 8 == 0 else x.dtype.itemsize  # 64-bit words hash twice as fast
    bits = rows.view(np.dtype(f"u{word}"))
    if B * L >= 2**31:
        raise ValueError(f"row_ids: {B * L} steps do not fit the 31-bit row numbers of the hash table")
    size = _table_size(B * L)
    ids = np.empty(B * L, np.int64)
    zero_id = _row_ids(bits, _multipliers(bits.shape[1]), np.full(size, -1, np.int64), ids)
    return ids.reshape(B, L), int(zero_id)


def window_ids(ids: np.ndarray, zero_id: int, K: int, s: int, d: int, pl: int, l_out: int) -> np.ndarray:
    """rep (B·Lo,), as :func:`tinynn.kernels.reference.windows.window_ids`."""
    B, L = ids.shape
    if np.any(ids < 0) or np.any(ids >= B * L) or K < 1 or s < 1 or d < 1 or l_out < 1:
        raise ValueError(f"window_ids: inconsistent step ids {ids.shape} or geometry K={K}, s={s}, d={d}, Lo={l_out}")
    if B * l_out >= 2**31:
        raise ValueError(f"window_ids: {B * l_out} windows do not fit the 31-bit numbers of the hash table")
    size = _table_size(B * l_out)
    rep = np.empty(B * l_out, np.int64)
    return _window_ids(np.ascontiguousarray(ids, np.int64), np.int64(zero_id), int(K), int(s), int(d), int(pl),
                       int(l_out), np.full(size, -1, np.int64), np.empty(K, np.int64), np.empty(K, np.int64),
                       np.empty(K, np.int64), rep)  # fmt: skip


def share_identical_windows(z: np.ndarray, x: np.ndarray, K: int, s: int, d: int, pl: int) -> np.ndarray:
    """z (B, Lo, F), C-contiguous, with every window's output replaced by that of the first identical window."""
    B, l_out, F = z.shape
    if x.ndim != 3 or x.shape[0] != B or not z.flags.c_contiguous:
        raise ValueError(f"share_identical_windows: z {z.shape} does not fit x {x.shape} (or is not contiguous)")
    ids, zero_id = row_ids(x)
    rep = window_ids(ids, zero_id, K, s, d, pl, l_out)
    _copy_repeated_rows(z.reshape(B * l_out, F), rep)
    return z
