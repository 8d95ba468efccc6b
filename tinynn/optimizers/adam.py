"""Adam and AdamW: ``keras.optimizers.Adam`` / ``keras.optimizers.AdamW``."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..kernels import optimizer_steps
from ..sparse import densify, square
from .base import LR_0_001, LearningRate, Optimizer, tf_cast, weak


class Adam(Optimizer):
    """Adam (Keras 3 ``adam.py``), in the "epsilon-hat" form.

    With g the (clipped) gradient, η the learning rate, t = iterations + 1, m and v starting at 0::

        m ← m + (g - m)·(1-β₁)
        v ← v + (g² - v)·(1-β₂)
        amsgrad:  v̂ ← max(v̂, v), and v̂ replaces v below
        α = η·sqrt(1 - β₂ᵗ) / (1 - β₁ᵗ)
        w ← w - (m·α) / (sqrt(v) + ε)

    ε is outside the square root and not bias-corrected: this is the textbook Adam with
    ε_textbook = ε / sqrt(1 - β₂ᵗ). β₁ and β₂ in the powers enter through ``ops.cast``, so for float64
    variables they are float32-rounded (as in Keras); the (1-β) factors are exact.

    Args:
        learning_rate: η, default 0.001.
        beta_1: β₁, default 0.9.
        beta_2: β₂, default 0.999.
        epsilon: ε, default 1e-7.
        amsgrad: use the AMSGrad variant, default False.
        **kwargs: the base optimizer's arguments (clipnorm, weight_decay, ...).
    """

    _config_keys = ("beta_1", "beta_2", "epsilon", "amsgrad")

    def __init__(
        self,
        learning_rate: LearningRate = LR_0_001,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-7,
        amsgrad: bool = False,
        **kwargs: Any,
    ):
        super().__init__(learning_rate, **kwargs)
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.amsgrad = amsgrad

    @property
    def _slot_names(self) -> tuple[str, ...]:
        return ("momentum", "velocity") + (("velocity_hat",) if self.amsgrad else ())

    def update_step(self, g: np.ndarray, w: np.ndarray, lr: np.generic, slots: dict[str, np.ndarray]) -> None:
        dt = w.dtype
        t = dt.type(self.iterations + 1)
        beta_1_power = np.power(tf_cast(self.beta_1, dt), t)
        beta_2_power = np.power(tf_cast(self.beta_2, dt), t)
        one = dt.type(1)
        alpha = lr * np.sqrt(one - beta_2_power) / (one - beta_1_power)
        m, v = slots["momentum"], slots["velocity"]
        if not self.amsgrad and optimizer_steps.fits(w, g, m, v):  # the lines below in one pass
            if optimizer_steps.adam(w, g, m, v, weak(1 - self.beta_1, dt), weak(1 - self.beta_2, dt), alpha,
                                    weak(self.epsilon, dt)):  # fmt: skip
                return
        m += (densify(g) - m) * weak(1 - self.beta_1, dt)  # ops.subtract densifies IndexedSlices
        v += (densify(square(g)) - v) * weak(1 - self.beta_2, dt)  # squared per occurrence, then summed
        if self.amsgrad:
            v_hat = slots["velocity_hat"]
            np.maximum(v_hat, v, out=v_hat)
            v = v_hat
        w -= (m * alpha) / (np.sqrt(v) + weak(self.epsilon, dt))


class AdamW(Adam):
    """AdamW (Keras 3 ``adamw.py``): :class:`Adam` with decoupled weight decay λ, applied before each step::

        w ← w - w·λ·η          (pre-step w; λ is float32-rounded for float64 variables, as in Keras)

    followed by the Adam update. ``weight_decay`` defaults to 0.004 and may not be None.
    """

    def __init__(
        self,
        learning_rate: LearningRate = LR_0_001,
        weight_decay: float = 0.004,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-7,
        amsgrad: bool = False,
        **kwargs: Any,
    ):
        super().__init__(
            learning_rate,
            beta_1=beta_1,
            beta_2=beta_2,
            epsilon=epsilon,
            amsgrad=amsgrad,
            weight_decay=weight_decay,
            **kwargs,
        )
        if self.weight_decay is None:
            raise ValueError("Argument `weight_decay` must be a float. Received: weight_decay=None")
