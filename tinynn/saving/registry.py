"""Model classes the loaders may build. Models register themselves; this package never imports them.

``tinynn.models`` calls :func:`register_model_class` for ``Sequential`` when it is imported (a future
functional ``Model`` does the same). A loader turns a file into ``(class_name, config)`` — the model's own
``get_config()`` format — and builds it with ``model_class(class_name).from_config(config)``. What the
package asks of a registered class and its instances (all public):

- ``cls.from_config(config)`` / ``model.get_config()``: JSON-ready dicts, weights excluded;
- ``model.name``, ``model.layers`` (Keras's order: the Keras weight layouts address layers through it),
  ``model.built``, ``model.weights`` / ``get_weights()`` / ``set_weights()``, ``model.trainable_weights``;
- ``model.get_compile_config()`` (None before ``compile``; else ``{'optimizer', 'loss', 'metrics'}`` in
  serialised form), ``model.compile(...)``, ``model.optimizer``.
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
