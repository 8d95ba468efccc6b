"""Model classes the loaders may build. Models register themselves; this package never imports them.

``tinynn.models`` calls :func:`register_model_class` for ``Sequential`` and the functional ``Model`` (also under
Keras's name ``Functional``, which nested models carry in a functional config) when it is imported. A loader
turns a file into ``(class_name, config)`` — the model's own ``get_config()`` format — and builds it with
``model_class(class_name).from_config(config)``. What the package asks of a registered class and its instances
(all public):

- ``cls.from_config(config)`` / ``model.get_config()``: JSON-ready dicts, weights excluded;
- ``model.name``, ``model.layers`` (Keras's order: the Keras weight layouts address layers through it),
  ``model.built``, ``model.weights`` / ``get_weights()`` / ``set_weights()``, ``model.trainable_weights``;
- ``model.get_compile_config()`` (None before ``compile``; else ``{'optimizer', 'loss', 'metrics'}`` and
  ``'loss_weights'`` when given, in serialised form; ``loss``/``metrics``/``loss_weights`` one per output as a
  list or dict keyed by output name), ``model.compile(...)``, ``model.optimizer``.

An instance of a registered class is a *model*; inside another model it is a nested model (:func:`is_model`),
which the Keras weight layouts address layer by layer.
"""

from __future__ import annotations

_MODEL_CLASSES: dict[str, type] = {}


def register_model_class(cls: type, name: str | None = None) -> type:
    """Make ``cls`` loadable under ``name`` (default: its class name). Returns ``cls`` (usable as a decorator)."""
    for method in ("from_config",):
        if not callable(getattr(cls, method, None)):
            raise TypeError(f"register_model_class: {cls.__name__} has no {method}()")
    _MODEL_CLASSES[name or cls.__name__] = cls
    return cls


def model_class(name) -> type:
    """The registered class called ``name``; ``ValueError`` listing the known ones otherwise."""
    cls = _MODEL_CLASSES.get(name) if isinstance(name, str) else None
    if cls is None:
        raise ValueError(f"model class {name!r} is not one tinynn can build (known: {sorted(_MODEL_CLASSES)})")
    return cls


def model_class_names() -> list[str]:
    return sorted(_MODEL_CLASSES)


def is_model(obj) -> bool:
    """Whether ``obj`` is an instance of a registered model class (a model, or a model nested in another)."""
    return isinstance(obj, tuple(_MODEL_CLASSES.values()))
