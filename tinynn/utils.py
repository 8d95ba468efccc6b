"""Random seeding and small shared helpers."""

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
