"""``tinynn.layers`` mirrors ``keras.layers`` for the layers tinynn implements."""

from .base import InputSpec, Layer
from .conv import Conv1D, DepthwiseConv1D, SeparableConv1D
from .conv2d import Conv2D, DepthwiseConv2D, SeparableConv2D
from .core import Activation, Dense, Dropout, Flatten, Input, InputLayer, Reshape
from .embedding import Embedding
from .masking import Masking
from .merge import (
    Add,
    Average,
    Concatenate,
    Dot,
    Maximum,
    Minimum,
    Multiply,
    Subtract,
    add,
    average,
    concatenate,
    dot,
    maximum,
    minimum,
    multiply,
    subtract,
)
from .pooling import AveragePooling1D, GlobalAveragePooling1D, GlobalMaxPooling1D, MaxPooling1D
from .pooling2d import AveragePooling2D, GlobalAveragePooling2D, GlobalMaxPooling2D, MaxPooling2D
from .recurrent import GRU, LSTM, Bidirectional, SimpleRNN
from .reshaping2d import UpSampling2D, ZeroPadding2D

__all__ = [
    "AveragePooling1D",
    "Conv1D",
    "DepthwiseConv1D",
    "GlobalAveragePooling1D",
    "GlobalMaxPooling1D",
    "MaxPooling1D",
    "SeparableConv1D",
    "AveragePooling2D",
    "Conv2D",
    "DepthwiseConv2D",
    "GlobalAveragePooling2D",
    "GlobalMaxPooling2D",
    "MaxPooling2D",
    "SeparableConv2D",
    "UpSampling2D",
    "ZeroPadding2D",
    "Bidirectional",
    "Embedding",
    "GRU",
    "LSTM",
    "Masking",
    "Add",
    "Average",
    "Concatenate",
    "Dot",
    "Maximum",
    "Minimum",
    "Multiply",
    "Subtract",
    "add",
    "average",
    "concatenate",
    "dot",
    "maximum",
    "minimum",
    "multiply",
    "subtract",
    "SimpleRNN",
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


def serialize(layer: Layer) -> dict:
    """``{'class_name': 'Dense', 'config': {...}}`` — JSON-friendly, no code."""
    return {"class_name": type(layer).__name__, "config": layer.get_config()}


def deserialize(spec: dict) -> Layer:
    """Rebuild a layer from :func:`serialize`'s output; only known tinynn layer classes are accepted."""
    if not isinstance(spec, dict) or "class_name" not in spec:
        raise ValueError(f"Cannot deserialize layer from {spec!r}: expected {{'class_name': ..., 'config': ...}}")
    cls = registry().get(spec["class_name"])
    if cls is None:
        raise ValueError(f"Unknown layer class {spec['class_name']!r}; tinynn knows {sorted(registry())}")
    return cls.from_config(dict(spec.get("config", {})))
