"""Inputs for the pooling kernels' twin-agreement tests (1-D and 2-D)."""

from __future__ import annotations

import numpy as np


def pool_input(rng: np.random.Generator, shape: tuple, values: str) -> tuple[np.ndarray, np.ndarray]:
    """(x for max pooling, x for average pooling): "ties" rounds (many equal values: the first maximum must win),
    "nans" also puts NaN in a fifth of the max pooling input (NaN is the largest value, the first NaN wins)."""
    x = rng.standard_normal(shape)
    if values != "normal":
        x = np.round(x)
    x_max = x.copy()
    if values == "nans":
        x_max[rng.random(shape) < 0.2] = np.nan
    return x_max, x
