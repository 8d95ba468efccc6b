"""What every format does with a model: build it from a config under a memory budget, check weights against
it before changing anything, compile it, restore its optimizer. Formats only read and write bytes."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np

from .. import config as tn_config
from .. import initializers, losses, optimizers
from ..layers import registry as layer_registry
from .errors import FileFormatError
from .registry import model_class, model_class_names


def require_built(model, what: str) -> None:
    if not getattr(model, "built", False):
        raise ValueError(
            f"{type(model).__name__} {model.name!r} is not built, so {what}() has nothing to work on: give the first "
            "layer input_shape=, start with layers.Input(shape=...), call model.build(shape) or call it on data"
        )


#: the tensor entries of a functional config's calls (``inbound_nodes``): data, not a class
TENSOR_ENTRY = "__keras_tensor__"


def check_classes(config, path: str, kind: str) -> None:
    """Every ``{class_name, config}`` object in a native config must be a tinynn layer, initializer or (nested)
    model class, or a functional config's tensor entry; all unknown ones (Lambda included) are named in one
    error, before anything is built."""
    known = set(layer_registry()) | set(initializers.class_registry()) | set(model_class_names()) | {TENSOR_ENTRY}
    unknown: list[str] = []

    def walk(value) -> None:
        if isinstance(value, dict):
            name = value.get("class_name")
            if "config" in value and name is not None and (not isinstance(name, str) or name not in known):
                unknown.append(repr(name))
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(config)
    if unknown:
        note = " (a Lambda's function would be code, which tinynn never runs)" if "'Lambda'" in unknown else ""
        raise FileFormatError(path, kind, f"unknown classes {', '.join(unknown)} in its config{note}; tinynn knows "
                                          f"the layers {sorted(layer_registry())}")


def build(class_name: str, config: dict, weight_bytes: int, path: str, kind: str):
    """``model_class(class_name).from_config(config)``, creating at most ``weight_bytes`` of weights."""
    try:
        cls = model_class(class_name)
        with tn_config.weight_memory_limit(weight_bytes, f"{path!r} stores"):
            model = cls.from_config(config)
    except FileFormatError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError, IndexError, OverflowError, RecursionError) as err:
        problem = str(err) if isinstance(err, ValueError) else f"its config is invalid ({type(err).__name__}: {err})"
        raise FileFormatError(path, kind, problem) from err
    if not model.built:
        raise FileFormatError(path, kind, "its model has no input shape, so its weights cannot be placed")
    return model


def check_weights(model, declared: Sequence[tuple[tuple, np.dtype]], path: str, kind: str,
                  where: Sequence[str] | None = None) -> None:
    """The file's arrays (``(shape, dtype)`` each, in ``model.get_weights()`` order) must fit the model exactly:
    same count, same shapes, floating-point dtypes. Checked before any array is read."""
    weights = model.weights
    if len(declared) != len(weights):
        raise FileFormatError(path, kind, f"it holds {len(declared)} weight arrays, the model has {len(weights)} "
                                          f"{[tuple(w.shape) for w in weights]}: the architectures differ")
    names = [n for layer in model.layers for n in layer.weight_names]
    for i, ((shape, dtype), w) in enumerate(zip(declared, weights)):
        label = where[i] if where else f"weight {i}"
        owner = names[i] if i < len(names) else f"weight {i}"
        if tuple(shape) != tuple(w.shape):
            raise FileFormatError(path, kind, f"{label} has shape {tuple(shape)}, the model's {owner!r} is "
                                              f"{tuple(w.shape)}: the architectures differ")
        if np.dtype(dtype).kind != "f" or np.dtype(dtype).itemsize > 8:
            raise FileFormatError(path, kind, f"{label} has dtype {np.dtype(dtype)}, expected floating point")


def declared_bytes(declared: Sequence[tuple[tuple, np.dtype]]) -> int:
    return sum(math.prod(shape) * np.dtype(dtype).itemsize for shape, dtype in declared)


def _losses(spec):
    """A loss (name or serialised), or one per output: a list (None: no loss) or a dict keyed by output name."""
    if isinstance(spec, (list, tuple)):
        return [None if s is None else losses.get(s) for s in spec]
    if isinstance(spec, dict) and "class_name" not in spec:
        return {k: None if s is None else losses.get(s) for k, s in spec.items()}
    return losses.get(spec)


def compile_model(model, compile_config: dict, path: str, kind: str) -> None:
    """``model.compile`` from a (tinynn) compile config ``{'optimizer', 'loss', 'metrics'}`` (and
    ``'loss_weights'``); loss, loss weights and metrics may be given per output (lists or dicts)."""
    try:
        if not isinstance(compile_config, dict):
            raise ValueError(f"the compile config is {compile_config!r:.200}, expected a dict")
        metrics = compile_config.get("metrics") or []
        model.compile(optimizer=optimizers.get(compile_config["optimizer"]), loss=_losses(compile_config["loss"]),
                      loss_weights=compile_config.get("loss_weights"),
                      metrics=list(metrics) if isinstance(metrics, (list, tuple)) else metrics)
    except (ValueError, TypeError, KeyError, NotImplementedError, AttributeError) as err:
        raise FileFormatError(path, kind, f"cannot compile the model from its compile config ({err}); load it with "
                                          "compile=False to skip compiling") from err


def restore_optimizer(model, state: dict | None, why: str, path: str) -> None:
    """``set_state`` when ``state`` is given; else warn (``why``) that the optimizer starts fresh, as Keras does."""
    if state is None:
        warnings.warn(f"{path!r}: {why}: the optimizer starts fresh", UserWarning, stacklevel=4)
        return
    model.optimizer.set_state(state)
