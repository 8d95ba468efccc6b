"""tinynn layers and models <-> Keras 3 layers and models with the same config and weights.

``keras_layer_for(layer)`` builds the Keras twin of one tinynn layer from its ``get_config()``: the
argument names are Keras's, so most layers translate one to one; layers whose config needs more than
that register a translator with :func:`register`. ``to_keras(model)`` and ``from_keras(keras_model)``
convert whole Sequential models (config and weights) in either direction.
"""

from __future__ import annotations

from collections.abc import Callable

_TRANSLATORS: dict[str, Callable] = {}
_DROP_KEYS = ("name", "trainable")


def register(class_name: str):
    """Decorator: ``@register('Bidirectional') def f(layer) -> keras layer``."""

    def deco(fn):
        _TRANSLATORS[class_name] = fn
        return fn

    return deco


def keras_kwargs(layer) -> dict:
    """The layer's config as Keras constructor arguments (initializers dropped: weights are copied)."""
    cfg = layer.get_config()
    return {
        k: (tuple(v) if isinstance(v, list) else v)
        for k, v in cfg.items()
        if k not in _DROP_KEYS and not k.endswith("_initializer")
    }


def keras_layer_for(layer):
    """A fresh, unbuilt Keras layer computing the same function as the tinynn ``layer``."""
    import keras

    name = type(layer).__name__
    if name in _TRANSLATORS:
        return _TRANSLATORS[name](layer)
    cls = getattr(keras.layers, name, None)
    if cls is None:
        raise ValueError(f"parity.bridge: no Keras counterpart known for tinynn layer {name!r}")
    return cls(**keras_kwargs(layer))


def _model_input_shape(model) -> tuple:
    if model.input_layer is not None:
        return tuple(model.input_layer.shape_arg)
    if model.built:
        return tuple(model.layers[0].input_shape[1:])
    raise ValueError("parity.bridge.to_keras: the model is not built (no input shape)")


def to_keras(model):
    """A Keras ``Sequential`` with the same layers (config) and the same weights as a tinynn one."""
    import keras

    first = model.layers[0]
    input_dtype = "int32" if type(first).__name__ == "Embedding" else first.dtype
    inputs = keras.Input(shape=_model_input_shape(model), dtype=input_dtype)
    keras_model = keras.Sequential([inputs] + [keras_layer_for(layer) for layer in model.layers])
    keras_model.set_weights(model.get_weights())
    return keras_model


@register("Bidirectional")
def _bidirectional(layer):
    """Keras builds its own forward/backward copies of the wrapped layer, as tinynn does."""
    import keras

    kwargs = {"merge_mode": layer.merge_mode, "dtype": layer.dtype}
    if layer._custom_backward:
        kwargs["backward_layer"] = keras_layer_for(layer.backward_layer)
    return keras.layers.Bidirectional(keras_layer_for(layer.forward_layer), **kwargs)


def from_keras(keras_model):
    """A tinynn ``Sequential`` with the same layers (config) and the same weights as a Keras ``Sequential``.

    The Keras config is mapped by :func:`tinynn.saving.model_from_keras_config` (the code that reads
    ``.keras`` and ``.h5`` files); every layer tinynn does not implement is named in one ``ValueError``.
    """
    import keras

    from tinynn import saving

    if not isinstance(keras_model, keras.Sequential):
        raise ValueError(
            f"parity.bridge.from_keras: only keras.Sequential models are supported, got {type(keras_model).__name__}"
        )
    spec = {"class_name": "Sequential", "config": keras_model.get_config()}
    model = saving.model_from_keras_config(spec, where=f"parity.bridge.from_keras({keras_model.name!r})")
    if not model.built:
        model.build((None, *tuple(keras_model.input_shape)[1:]))
    model.set_weights(keras_model.get_weights())
    return model
