"""``tinynn.layers`` mirrors ``keras.layers`` for the layers tinynn implements."""

from .base import InputSpec, Layer
from .core import Activation, Dense, Dropout, Flatten, Input, InputLayer, Reshape

__all__ = [
    "Activation",
    "Dense",
    "Dropout",
    "Flatten",
    "Input",
    "InputLayer",
    "InputSpec",
    "Layer",
    "Reshape",
]


def registry() -> dict[str, type]:
    """Every public layer class by its class name (used by loading and the parity coverage guard)."""
    return {
        name: obj
        for name, obj in globals().items()
        if isinstance(obj, type) and issubclass(obj, Layer) and obj is not Layer and name in __all__
    }
