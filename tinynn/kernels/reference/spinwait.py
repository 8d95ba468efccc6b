"""NumPy twin of :mod:`tinynn.kernels.spinwait`: wait while ``cell[0] == value``, a bounded number of reads."""

from __future__ import annotations

import os

import numpy as np


def spin_while_equal(cell: np.ndarray, value: int, reads: int, yield_reads: int = 0) -> int:
    """Read ``cell[0]`` until it differs from ``value`` or ``reads`` reads were made, offering the core to other
    threads (``sched_yield``) every ``yield_reads`` reads when that is positive; return the last value read.

    (The numba version bounds the wait by clock ticks instead and releases the GIL while it waits.)"""
    current = int(cell[0])
    for n in range(1, max(int(reads), 1)):
        if current != value:
            break
        if yield_reads > 0 and n % yield_reads == 0 and hasattr(os, "sched_yield"):
            os.sched_yield()
        current = int(cell[0])
    return current
