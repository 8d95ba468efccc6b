"""NumPy twin of :mod:`tinynn.kernels.spinwait`: wait while ``cell[0] == value``, a bounded number of reads."""

from __future__ import annotations

import numpy as np


def spin_while_equal(cell: np.ndarray, value: int, reads: int) -> int:
    """Read ``cell[0]`` until it differs from ``value`` or ``reads`` reads were made; return the last value read.

    (The numba version bounds the wait by clock ticks instead and releases the GIL while it waits.)"""
    current = int(cell[0])
    for _ in range(max(int(reads), 1) - 1):
        if current != value:
            break
        current = int(cell[0])
    return current
