"""``tinynn.optimizers`` mirrors ``keras.optimizers`` (Keras 3) for SGD, RMSprop, Adam, AdamW and Adagrad.

    opt = optimizers.get("adam")                 # or Adam(learning_rate=1e-3), or a serialize() dict
    opt.apply(grads, variables)                  # updates the variables (NumPy arrays) in place

Each optimizer is step-exact to Keras 3 on the TensorFlow backend, including its float32 roundings
(see :mod:`tinynn.optimizers.base`).
"""

from __future__ import annotations

from typing import Any

from .adagrad import Adagrad
from .adam import Adam, AdamW
from .base import Optimizer
from .rmsprop import RMSprop
from .sgd import SGD

__all__ = ["Adagrad", "Adam", "AdamW", "Optimizer", "RMSprop", "SGD", "deserialize", "get", "serialize"]

_ALL = {cls.__name__.lower(): cls for cls in (SGD, RMSprop, Adam, AdamW, Adagrad)}


def serialize(optimizer: Optimizer) -> dict:
    """Keras's serialized form: ``{'module', 'class_name', 'config', 'registered_name'}``."""
    if not isinstance(optimizer, Optimizer):
        raise ValueError(f"serialize: expected a tinynn Optimizer, got {type(optimizer).__name__}")
    return {
        "module": "keras.optimizers",
        "class_name": type(optimizer).__name__,
        "config": optimizer.get_config(),
        "registered_name": None,
    }


def deserialize(config: dict, custom_objects: dict | None = None) -> Optimizer:
    """An optimizer from ``serialize()``'s dict (class name case-insensitive; extra keys ignored)."""
    if not isinstance(config, dict) or "class_name" not in config:
        raise ValueError(f"deserialize: expected a dict with 'class_name' and 'config', got {config!r}")
    cls = _lookup(config["class_name"])
    return cls.from_config(dict(config.get("config") or {}))


def get(identifier: Any) -> Optimizer | None:
    """An optimizer from a name ('sgd', 'rmsprop', 'adam', 'adamw', 'adagrad'; any case, default
    hyper-parameters), a ``serialize()`` dict, or an instance (returned unchanged). None gives None."""
    if identifier is None:
        return None
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if isinstance(identifier, str):
        return _lookup(identifier)()
    raise ValueError(f"Could not interpret optimizer identifier: {identifier!r}")


def _lookup(name: str) -> type[Optimizer]:
    cls = _ALL.get(str(name).lower())
    if cls is None:
        raise ValueError(f"Unknown optimizer: {name!r}. Known optimizers: {sorted(_ALL)}")
    return cls
