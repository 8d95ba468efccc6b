"""Operands for the BLAS product tests: a, b and out as blocks of larger arrays, as the kernels pass them."""

from __future__ import annotations

import numpy as np


def operands_on_views(rng: np.random.Generator, M: int, K: int, N: int, trans_a: bool, trans_b: bool, dtype,
                      views: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(a, b, out_big, out) for out (M, N) = op(a) @ op(b): a and b random, as row slices / column blocks of larger
    arrays when ``views`` (unit stride along rows, a longer row stride), ``out`` the block [1:1+M, 2:2+N] of the
    random ``out_big`` (so a test can check nothing outside it was written). Drawn in that order from ``rng``."""

    def operand(rows, cols):
        if not views:
            return rng.normal(size=(rows, cols)).astype(dtype)
        big = rng.normal(size=(rows + 3, cols + 5)).astype(dtype)
        return big[2:2 + rows, 3:3 + cols]

    a = operand(K, M) if trans_a else operand(M, K)
    b = operand(N, K) if trans_b else operand(K, N)
    out_big = rng.normal(size=(M + 2, N + 4)).astype(dtype)
    return a, b, out_big, out_big[1:1 + M, 2:2 + N]
