"""Random seeding, small shared helpers, and `keras.utils`'s data helpers (`to_categorical`, `pad_sequences`)."""

from __future__ import annotations

import random as _pyrandom
import re

import numpy as np

_GLOBAL_RNG = np.random.default_rng()


def set_random_seed(seed: int) -> None:
    """Seed every random source tinynn uses (weight initializers, dropout, shuffling) and Python/NumPy's.

    Same contract as ``keras.utils.set_random_seed``: after it, building and training a model is
    reproducible run to run. (The numbers differ from Keras's: TF's RNG streams cannot be reproduced
    in NumPy, so parity copies weights instead.)
    """
    global _GLOBAL_RNG
    if not isinstance(seed, (int, np.integer)):
        raise ValueError(f"set_random_seed: expected an integer seed, got {seed!r}")
    _pyrandom.seed(int(seed))
    np.random.seed(int(seed) % 2**32)
    _GLOBAL_RNG = np.random.default_rng(int(seed))


def global_rng() -> np.random.Generator:
    """The generator behind every unseeded random draw in tinynn."""
    return _GLOBAL_RNG


def make_rng(seed: int | None) -> np.random.Generator:
    """A generator for a seeded object: its own stream if ``seed`` is given, else a child of the global one."""
    if seed is None:
        return np.random.default_rng(_GLOBAL_RNG.integers(2**63))
    return np.random.default_rng(int(seed))


def to_snake_case(name: str) -> str:
    """Keras's layer-name rule: 'GlobalMaxPooling1D' -> 'global_max_pooling1d', 'SimpleRNN' -> 'simple_rnn'."""
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def to_categorical(y, num_classes: int | None = None, dtype="float32") -> np.ndarray:
    """One-hot rows: ``out[..., k] = 1 if y[...] == k else 0`` for class ids ``y`` in ``[0, num_classes)``.

    As ``keras.utils.to_categorical``: a trailing axis of size 1 is dropped first (``(N, 1) -> (N, K)``), and
    ``num_classes`` defaults to ``max(y) + 1``. ``dtype`` is Keras 2's argument (float32 by default; Keras 3
    has no ``dtype`` and returns float64 — the values are the same). Labels must be integers (integral floats
    are accepted) inside the range; others raise a ``ValueError`` instead of Keras's silent wrap-around.
    """
    who = "to_categorical"
    y = np.asarray(y)
    if y.dtype.kind not in "biuf":
        raise ValueError(f"{who}: expected integer class ids, got dtype {y.dtype}")
    if y.dtype.kind == "f":
        integral = np.isfinite(y) & (y == np.round(y))
        if not np.all(integral):
            raise ValueError(f"{who}: class ids must be integers, got non-integral values such as "
                             f"{float(y[~integral].flat[0])}")
    shape = y.shape
    if len(shape) > 1 and shape[-1] == 1:
        shape = shape[:-1]
    y = y.astype(np.int64).reshape(-1)
    if num_classes is not None and (not isinstance(num_classes, (int, np.integer)) or isinstance(num_classes, bool)
                                    or num_classes < 0):
        raise ValueError(f"{who}: num_classes must be a positive integer or None, got {num_classes!r}")
    if not num_classes:
        if y.size == 0:
            raise ValueError(f"{who}: cannot infer num_classes from empty labels; pass num_classes")
        num_classes = int(y.max()) + 1
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        bad = int(y.min()) if y.min() < 0 else int(y.max())
        raise ValueError(f"{who}: class id {bad} is outside [0, {num_classes}) for num_classes={num_classes}")
    out = np.zeros((y.size, int(num_classes)), dtype=dtype)
    out[np.arange(y.size), y] = 1
    return out.reshape(*shape, int(num_classes))


#: names Keras keeps in ``keras.utils`` that live in tinynn.preprocessing (imported on first use)
_FROM_PREPROCESSING = {
    "pad_sequences": "sequence",
    "load_img": "image",
    "img_to_array": "image",
    "array_to_img": "image",
    "save_img": "image",
}


def __getattr__(name: str):
    module = _FROM_PREPROCESSING.get(name)
    if module is None:
        raise AttributeError(f"module 'tinynn.utils' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"tinynn.preprocessing.{module}"), name)
