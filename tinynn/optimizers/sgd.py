"""Stochastic gradient descent, optionally with (Nesterov) momentum: ``keras.optimizers.SGD``."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..sparse import assign_sub, densify, scale
from .base import LR_0_01, LearningRate, Optimizer, tf_cast


class SGD(Optimizer):
    """Gradient descent with optional momentum μ (Keras 3 ``sgd.py``).

    With g the (clipped) gradient and η the learning rate, per step::

        μ = 0:        w ← w - g·η
        μ > 0:        m ← m·μ - g·η                  (m starts at 0; a velocity, not an average)
                      w ← w + m                      (nesterov=False)
                      w ← w + (m·μ - g·η)            (nesterov=True, with the new m)

    μ enters through ``ops.cast``, so for float64 variables it is the float32-rounded μ (as in Keras).

    For an IndexedSlices g (rows g_n for ids i_n): with μ = 0 each occurrence is subtracted on its own,
    ``w[i_n] ← w[i_n] - g_n·η`` for n = 0, 1, … (TF's scatter_sub); with μ > 0 ``g·η`` is the dense sum
    ``Σ_n g_n·η`` (each product rounded before the sum), as TF densifies the slices in ``m·μ - g·η``.

    Args:
        learning_rate: η, default 0.01.
        momentum: μ, a float in [0, 1], default 0.0.
        nesterov: use Nesterov momentum, default False.
        **kwargs: the base optimizer's arguments (clipnorm, weight_decay, ...).
    """

    _config_keys = ("momentum", "nesterov")

    def __init__(
        self,
        learning_rate: LearningRate = LR_0_01,
        momentum: float = 0.0,
        nesterov: bool = False,
        **kwargs: Any,
    ):
        super().__init__(learning_rate, **kwargs)
        if not isinstance(momentum, float) or momentum < 0 or momentum > 1:
            raise ValueError(f"`momentum` must be a float between [0, 1]. Received: momentum={momentum!r}")
        self.momentum = momentum
        self.nesterov = nesterov

    @property
    def _slot_names(self) -> tuple[str, ...]:
        return ("momentum",) if self.momentum != 0 else ()

    def update_step(self, g: np.ndarray, w: np.ndarray, lr: np.generic, slots: dict[str, np.ndarray]) -> None:
        if self.momentum == 0:
            assign_sub(w, scale(lr, g))
            return
        mu = tf_cast(self.momentum, w.dtype)
        m = slots["momentum"]
        step = densify(scale(lr, g))  # ops.multiply(gradient, learning_rate), densified by the subtraction
        m[...] = m * mu - step
        if self.nesterov:
            w += m * mu - step
        else:
            w += m
