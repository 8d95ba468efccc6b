"""Finite-difference gradient checks for any layer or model.

For a random upstream gradient ``g`` (never all ones: symmetric upstream gradients hide gate bugs) the
scalar ``L(x, θ) = Σ g ⊙ f(x; θ)`` has ``∂L/∂x = backward(g)`` and ``∂L/∂θ_i = gradients[i]``. Each
is compared with the central difference

    ∂L/∂v ≈ (L(v + h) - L(v - h)) / (2h),   h = 1e-6 (float64),

entry by entry (or on a random subset of entries for large arrays). The error reported is
``max|analytic - numeric| / max(max|numeric|, 1)``; in float64 it is ~1e-8 for smooth functions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass
class GradcheckResult:
    name: str
    max_abs_error: float
    relative_error: float

    def __str__(self) -> str:
        return f"{self.name}: max |Δ| = {self.max_abs_error:.2e}, relative {self.relative_error:.2e}"


def _numeric_grad(
    loss: Callable[[], float], array: np.ndarray, indices: np.ndarray, eps: float
) -> np.ndarray:
    flat = array.reshape(-1)
    grad = np.zeros(len(indices))
    for k, i in enumerate(indices):
        old = flat[i]
        flat[i] = old + eps
        plus = loss()
        flat[i] = old - eps
        minus = loss()
        flat[i] = old
        grad[k] = (plus - minus) / (2 * eps)
    return grad


def numeric_gradient(loss: Callable[[], float], array: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central differences of ``loss()`` w.r.t. every entry of ``array`` (perturbed in place, restored)."""
    return _numeric_grad(loss, array, np.arange(array.size), eps).reshape(array.shape)


def _pick(size: int, max_entries: int, rng: np.random.Generator) -> np.ndarray:
    if size <= max_entries:
        return np.arange(size)
    return np.sort(rng.choice(size, max_entries, replace=False))


def _result(name: str, analytic: np.ndarray, numeric: np.ndarray) -> GradcheckResult:
    diff = float(np.max(np.abs(analytic - numeric))) if numeric.size else 0.0
    scale = max(float(np.max(np.abs(numeric))) if numeric.size else 0.0, 1.0)
    return GradcheckResult(name, diff, diff / scale)


def _as_list(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def check_layer(
    layer,
    x: np.ndarray,
    *,
    mask: np.ndarray | None = None,
    upstream: np.ndarray | list | None = None,
    eps: float = 1e-6,
    max_entries: int = 60,
    seed: int = 0,
    check_input: bool = True,
) -> list[GradcheckResult]:
    """Compare ``layer.backward`` with central differences, w.r.t. the input and every weight.

    The layer must be float64 (``dtype='float64'``). Returns one result per checked array: 'input'
    first, then the weights in ``get_weights()`` order. Layers with several outputs (return_state)
    get one random upstream gradient per output.
    """
    rng = np.random.default_rng(seed)
    x = np.array(x, dtype=np.float64 if np.asarray(x).dtype.kind == "f" else np.asarray(x).dtype)
    outputs = layer(x, training=False, mask=mask)
    if upstream is None:
        upstream = [rng.standard_normal(np.shape(o)) for o in _as_list(outputs)]
    upstream_list = _as_list(upstream)

    def loss() -> float:
        outs = _as_list(layer.forward(x, training=False, mask=mask))
        return float(sum(np.sum(g * o) for g, o in zip(upstream_list, outs)))

    layer.forward(x, training=False, mask=mask)
    dx = layer.backward(upstream if isinstance(outputs, (list, tuple)) else upstream_list[0])
    grads = [np.array(g, copy=True) for g in layer.gradients]
    results = []
    if check_input and x.dtype.kind == "f":
        idx = _pick(x.size, max_entries, rng)
        results.append(_result("input", np.asarray(dx).reshape(-1)[idx], _numeric_grad(loss, x, idx, eps)))
    for name, w, g in zip(layer.weight_names, layer.weights, grads):
        idx = _pick(w.size, max_entries, rng)
        results.append(_result(name, g.reshape(-1)[idx], _numeric_grad(loss, w, idx, eps)))
    return results


def check_model(model, x: np.ndarray, y: np.ndarray, *, eps: float = 1e-6, max_entries: int = 40, seed: int = 0):
    """Gradcheck a compiled model's loss with respect to every trainable weight (float64 model)."""
    rng = np.random.default_rng(seed)

    def loss() -> float:
        return float(model.compute_loss_and_gradients(x, y, training=False, want_gradients=False)[0])

    _, grads = model.compute_loss_and_gradients(x, y, training=False)
    grads = [np.array(g, copy=True) for g in grads]
    results = []
    for name, w, g in zip(model.trainable_weight_names, model.trainable_weights, grads):
        idx = _pick(w.size, max_entries, rng)
        results.append(_result(name, g.reshape(-1)[idx], _numeric_grad(loss, w, idx, eps)))
    return results
