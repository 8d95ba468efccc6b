"""Adagrad: ``keras.optimizers.Adagrad``."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..sparse import assign_add, assign_sub, divide, scale, square
from .base import LR_0_001, LearningRate, Optimizer, tf_cast, weak


class Adagrad(Optimizer):
    """Adagrad (Keras 3 ``adagrad.py``): per-parameter rates from the sum of all past squared gradients.

    With g the (clipped) gradient and η the learning rate, the accumulator starting at A₀::

        A ← A + g²
        w ← w - (η·g) / sqrt(A + ε)                (ε inside the square root)

    A₀ enters through a Constant initializer (``ops.cast``), so for float64 variables it is the
    float32-rounded value (as in Keras).

    For an IndexedSlices g (rows g_n for ids i_n) both updates are TF scatters, one occurrence at a time in
    order: ``A[i_n] ← A[i_n] + g_n²``, then ``w[i_n] ← w[i_n] - (η·g_n) / sqrt(A[i_n] + ε)`` with the new A.

    Args:
        learning_rate: η, default 0.001.
        initial_accumulator_value: A₀, default 0.1.
        epsilon: ε, default 1e-7.
        **kwargs: the base optimizer's arguments (clipnorm, weight_decay, ...).
    """

    _config_keys = ("initial_accumulator_value", "epsilon")

    def __init__(
        self,
        learning_rate: LearningRate = LR_0_001,
        initial_accumulator_value: float = 0.1,
        epsilon: float = 1e-7,
        **kwargs: Any,
    ):
        super().__init__(learning_rate, **kwargs)
        self.initial_accumulator_value = initial_accumulator_value
        self.epsilon = epsilon

    @property
    def _slot_names(self) -> tuple[str, ...]:
        return ("accumulator",)

    def _slot_initial_value(self, slot: str, dtype: np.dtype) -> np.generic:
        return tf_cast(self.initial_accumulator_value, dtype)

    def update_step(self, g: np.ndarray, w: np.ndarray, lr: np.generic, slots: dict[str, np.ndarray]) -> None:
        A = slots["accumulator"]
        assign_add(A, square(g))
        assign_sub(w, divide(scale(lr, g), np.sqrt(A + weak(self.epsilon, w.dtype))))
