"""Constructor argument checks shared by every layer: each raises a ValueError naming the layer, the argument,
what is accepted and what was given (``who`` is the layer's prefix, ``Layer 'name' (Class)``)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

DATA_FORMATS = ("channels_last", "channels_first")


def is_int(value) -> bool:
    """An integer (Python or NumPy), not a bool."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def positive_int(value, name: str, who: str) -> int:
    """``value`` as an int > 0."""
    if not is_int(value) or value <= 0:
        raise ValueError(f"{who}: {name} must be a positive integer, got {value!r}")
    return int(value)


def positive_int_tuple(value, n: int, name: str, who: str) -> tuple[int, ...]:
    """Keras's ``standardize_tuple``: an int or an n-sequence of positive ints, as an n-tuple."""
    if is_int(value):
        values = (int(value),) * n
    else:
        try:
            values = tuple(value)
        except TypeError as err:
            raise ValueError(f"{who}: {name} must be an int or a tuple of {n} ints, got {value!r}") from err
        if len(values) != n or not all(is_int(v) for v in values):
            raise ValueError(f"{who}: {name} must be an int or a tuple of {n} ints, got {value!r}")
        values = tuple(int(v) for v in values)
    if any(v <= 0 for v in values):
        raise ValueError(f"{who}: {name} must be positive, got {value!r}")
    return values


def one_of(value, choices: Sequence, name: str, who: str, lower: bool = True):
    """``value`` (lower-cased if it is a string and ``lower``) if it is one of ``choices``."""
    key = value.lower() if lower and isinstance(value, str) else value
    if not isinstance(key, (str, type(None))) or key not in choices:
        raise ValueError(f"{who}: {name} must be one of {tuple(choices)}, got {value!r}")
    return key


def data_format(value, who: str) -> str:
    """'channels_last' (the default, for None) or 'channels_first'."""
    return "channels_last" if value is None else one_of(value, DATA_FORMATS, "data_format", who)


def rate(value, name: str, who: str) -> float:
    """A dropout rate: a number, clipped to [0, 1] as Keras does."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise ValueError(f"{who}: {name} must be a float in [0, 1], got {value!r}")
    return min(1.0, max(0.0, float(value)))
