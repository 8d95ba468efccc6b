"""RMSprop: ``keras.optimizers.RMSprop``."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..kernels import optimizer_steps
from ..sparse import assign_sub, densify, divide, scale, square
from .base import LR_0_001, LearningRate, Optimizer, weak


class RMSprop(Optimizer):
    """RMSprop (Keras 3 ``rmsprop.py``): divide the gradient by a running RMS of recent gradients.

    With g the (clipped) gradient, η the learning rate and every accumulator starting at 0::

        v ← ρ·v + (1-ρ)·g²
        centered=False:  d = v + ε
        centered=True:   a ← ρ·a + (1-ρ)·g;   d = (v - a²) + ε
        Δ = (η·g) / sqrt(d)                        (ε is INSIDE the square root)
        momentum μ > 0:  m ← μ·m + Δ;   w ← w - m
        otherwise:       w ← w - Δ

    Args:
        learning_rate: η, default 0.001.
        rho: ρ, default 0.9.
        momentum: μ, default 0.0.
        epsilon: ε, default 1e-7.
        centered: subtract the squared running mean of g from v, default False.
        **kwargs: the base optimizer's arguments (clipnorm, weight_decay, ...).

    For an IndexedSlices g (an Embedding's gradient, rows g_n for ids i_n) Keras's ops give, per row r::

        v[r] ← ρ·v[r] + Σ_{n: i_n = r} (1-ρ)·g_n²          (squared per occurrence, then summed in order)
        a[r] ← ρ·a[r] + Σ_{n: i_n = r} (1-ρ)·g_n           (centered)
        Δ_n = (η·g_n) / sqrt(d[i_n])                         (one step per occurrence)
        momentum:  m ← μ·m + Σ_n Δ_n (dense);  w ← w - m
        otherwise: w[i_n] ← w[i_n] - Δ_n  for n = 0, 1, …   (TF's scatter_sub, one occurrence at a time)
    """

    _config_keys = ("rho", "momentum", "epsilon", "centered")

    def __init__(
        self,
        learning_rate: LearningRate = LR_0_001,
        rho: float = 0.9,
        momentum: float = 0.0,
        epsilon: float = 1e-7,
        centered: bool = False,
        **kwargs: Any,
    ):
        super().__init__(learning_rate, **kwargs)
        self.rho = rho
        self.momentum = momentum
        self.epsilon = epsilon
        self.centered = centered

    @property
    def _slot_names(self) -> tuple[str, ...]:
        # Keras creates all velocities, then all momentums, then all average gradients; per variable here.
        return (
            ("velocity",)
            + (("momentum",) if self.momentum > 0 else ())
            + (("average_gradient",) if self.centered else ())
        )

    def update_step(self, g: np.ndarray, w: np.ndarray, lr: np.generic, slots: dict[str, np.ndarray]) -> None:
        dt = w.dtype
        rho, one_minus_rho, eps = weak(self.rho, dt), weak(1 - self.rho, dt), weak(self.epsilon, dt)
        v = slots["velocity"]
        if not self.centered and not self.momentum > 0:  # these lines in one pass: over w, or per table row
            if optimizer_steps.fits(w, g, v) and optimizer_steps.rmsprop(w, g, v, rho, one_minus_rho, eps, lr):
                return
            if optimizer_steps.fits_rows(w, g, v) and optimizer_steps.rmsprop_rows(w, g, v, rho, one_minus_rho, eps,
                                                                                   lr):  # fmt: skip
                return
        v[...] = rho * v + densify(scale(one_minus_rho, square(g)))
        if self.centered:
            a = slots["average_gradient"]
            a[...] = rho * a + densify(scale(one_minus_rho, g))
            d = (v - np.square(a)) + eps
        else:
            d = v + eps
        increment = divide(scale(lr, g), np.sqrt(d))
        if self.momentum > 0:
            m = slots["momentum"]
            m[...] = weak(self.momentum, dt) * m + densify(increment)
            w -= m
        else:
            assign_sub(w, increment)
