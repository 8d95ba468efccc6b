"""Keras model configs ↔ tinynn model configs, dict to dict. Nothing here builds a model or runs file code.

Reading (:func:`model_from_keras`) takes the JSON of a Keras file — ``config.json`` of a ``.keras`` archive, the
``model_config`` attribute of a legacy ``.h5`` — and returns ``(tinynn class name, tinynn config)`` in the
format of the model class's own ``get_config()``; the caller builds the model with the registered class's
``from_config``. Writing (:func:`model_to_keras`) goes the other way, in one of two dialects:

- ``"keras3"``: what Keras 3 writes in ``.keras`` archives (``module``/``registered_name`` keys, an
  ``InputLayer`` with ``batch_shape``, a ``DTypePolicy``);
- ``"keras2"``: what Keras 2.x writes in ``.h5`` files (``InputLayer`` with ``batch_input_shape``, dtypes as
  strings); Keras 3's legacy loader reads it too.

Reading accepts both dialects and their differences: ``batch_input_shape`` on the first layer, ``input_length``
on an Embedding, ``implementation``/``time_major=False`` on recurrent layers, the unused ``kernel_*`` options
Keras 2 wrote for separable and depthwise convolutions, dtype policies (``Policy``/``DTypePolicy``), optimizers
named ``Custom>Adam`` (Keras 2.11+), ``lr``, ``decay=0``, losses with ``reduction='auto'`` and ``fn``, metrics
nested per output or wrapped in ``MeanMetricWrapper``.

What is refused, every problem of a model named in one ``ValueError``: ``Lambda`` layers (their function is
Python bytecode in the file), classes from other modules or registered as custom, layer classes tinynn does not
have, options tinynn does not implement unless they are off (``None``/``False``), learning-rate schedules and
weighted metrics. Weight regularizers and constraints only act during training: they are dropped with a warning
(predictions are unaffected; training after loading would not apply them).

Model classes plug in through :func:`register_model_translator`: ``Sequential`` is registered below; the
functional ``Model``'s translator (:mod:`.keras_functional`) is registered by ``tinynn.models``. Compile configs
(:func:`compile_from_keras`, :func:`compile_to_keras`) carry one loss for every output or one per output (a
list, or a dict keyed by output name; ``None`` for an output without loss), ``loss_weights`` and metrics per
output in the same shapes.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .. import initializers, metrics, optimizers
from ..layers import registry as layer_registry
from ..utils import to_snake_case

KERAS3, KERAS2 = "keras3", "keras2"

#: keys of every Keras config that carry no behaviour
_IGNORED_KEYS = {"shared_object_id", "build_config", "registered_name", "module"}
#: options that act on training only (a penalty added to the loss, a projection after each step)
_TRAINING_ONLY = ("_regularizer", "_constraint")
_RECURRENT = ("SimpleRNN", "LSTM", "GRU")
#: Keras-3-only options of tinynn layer configs that Keras 2 does not accept, dropped at these (default) values
_KERAS2_DROPS = {cls: {"seed": None} for cls in _RECURRENT}


# ---------------------------------------------------------------------------------------------- refusals
class UnknownClass(ValueError):
    """A layer class tinynn does not have (the model translator lists the known ones once)."""


def layer_class_names() -> list[str]:
    """The layer classes a Keras layer entry can name (InputLayer entries are the model translator's)."""
    return sorted(set(layer_registry()) - {"InputLayer"})


def reject_unsafe(spec: dict, where: str) -> None:
    """Refuse a Lambda, a class from a non-Keras module or a custom (registered) class, naming it."""
    cls = spec.get("class_name")
    if not isinstance(cls, str):
        raise ValueError(f"{where}: class_name {cls!r} is not a name")
    if cls == "Lambda":
        config = spec.get("config")
        name = config.get("name") if isinstance(config, dict) else None
        raise ValueError(
            f"{where}: refusing Lambda layer {name!r}: its function is Python code stored in the file, and "
            "tinynn never executes code from a file. Replace it by built-in layers"
        )
    module = spec.get("module")
    if module is not None and not str(module).startswith("keras"):
        raise ValueError(f"{where}: refusing {cls!r} from module {module!r}: only built-in Keras classes are read")
    registered = spec.get("registered_name")
    if registered not in (None, cls):
        raise ValueError(f"{where}: refusing custom (registered) class {registered!r}: tinynn cannot know its code")


def _is_spec(value) -> bool:
    """A ``{class_name: str, config: dict or null}`` object, as Keras serialises layers, initializers, ..."""
    return (isinstance(value, dict) and isinstance(value.get("class_name"), str) and "config" in value
            and isinstance(value["config"], (dict, type(None))))


def dtype_name(value, where: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if _is_spec(value) and value["class_name"] in ("DTypePolicy", "FloatDTypePolicy", "Policy"):
        name = (value["config"] or {}).get("name")
        if isinstance(name, str) and not name.startswith("mixed"):
            return name
    raise ValueError(f"{where}: dtype policy {value!r} is not supported (tinynn computes in float32 or float64)")


def accepted_arguments(cls) -> set[str]:
    """Every keyword a class's constructor accepts, through the ``**kwargs`` chain of its bases."""
    names: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        params = inspect.signature(init).parameters.values()
        names.update(p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break
    names.discard("self")
    return names


def _keep_supported(cls, config: dict, where: str) -> dict:
    """``config`` without the options ``cls`` lacks that are off; an error for one that is on."""
    accepted = accepted_arguments(cls)
    kept = {}
    for key, value in config.items():
        if key in accepted:
            kept[key] = value
        elif key in _IGNORED_KEYS or value is None or value is False:
            continue  # an option tinynn lacks, switched off in the file: same function
        else:
            raise ValueError(
                f"{where}: option {key}={value!r} of {cls.__name__} is not supported by tinynn "
                f"(tinynn's {cls.__name__} accepts {sorted(accepted)})"
            )
    return kept


# ---------------------------------------------------------------------------------------------- layers: Keras -> tinynn
def _initializer_from_keras(spec, where: str):
    if spec is None or isinstance(spec, str):
        return spec
    if not _is_spec(spec):
        raise ValueError(f"{where}: initializer {spec!r} is neither a name nor a {{class_name, config}} dict")
    reject_unsafe(spec, where)
    cls = initializers.class_registry().get(spec["class_name"])
    if cls is None:
        raise ValueError(f"{where}: initializer class {spec['class_name']!r} is not implemented by tinynn")
    config = dict(spec["config"] or {})
    if spec["class_name"] == "VarianceScaling" and config.get("distribution") == "normal":
        config["distribution"] = "truncated_normal"  # Keras <= 2.2's name for it (how it wrote glorot_normal)
    return {"class_name": spec["class_name"], "config": _keep_supported(cls, config, where)}


def _legacy_fixes(cls_name: str, config: dict) -> None:
    """Keras 2 options that carry nothing in tinynn (see the module docstring); changes ``config`` in place."""
    if cls_name in _RECURRENT:
        config.pop("implementation", None)
    if cls_name.startswith(("SeparableConv", "DepthwiseConv")):
        if config.get("groups") == 1:
            del config["groups"]
        for key in ("kernel_initializer", "kernel_regularizer", "kernel_constraint"):
            config.pop(key, None)
    for key in ("batch_input_shape", "input_shape", "batch_size", "input_length"):
        config.pop(key, None)  # the model's input shape is read by the model translator


def layer_from_keras(spec: dict, where: str) -> dict:
    """A tinynn layer spec ``{'class_name', 'config'}`` from a Keras layer spec (either dialect)."""
    if not _is_spec(spec):
        raise ValueError(f"{where}: a layer entry must be a {{class_name, config}} dict, got {spec!r}")
    reject_unsafe(spec, where)
    cls_name = spec["class_name"]
    classes = layer_registry()
    cls = classes.get(cls_name)
    if cls is None or cls_name == "InputLayer":
        raise UnknownClass(f"{where}: layer class {cls_name!r} is not implemented by tinynn")
    config = dict(spec["config"] or {})
    where = f"{where}: {cls_name} {config.get('name')!r}"
    _legacy_fixes(cls_name, config)
    dropped = []
    for key, value in list(config.items()):
        if key == "dtype":
            config[key] = dtype_name(value, where)
        elif key.endswith(_TRAINING_ONLY) or key == "activity_regularizer":
            if isinstance(value, dict):
                reject_unsafe(value, f"{where} {key}")
            if value is not None:
                dropped.append(f"{key}={value.get('class_name') if isinstance(value, dict) else value!r}")
            del config[key]
        elif key.endswith("_initializer"):
            config[key] = _initializer_from_keras(value, f"{where} {key}")
        elif _is_spec(value) and (value["class_name"] in classes or key in ("layer", "backward_layer")):
            config[key] = layer_from_keras(value, where)
        elif isinstance(value, dict) and "class_name" in value:
            reject_unsafe(value, f"{where} {key}")
            raise ValueError(f"{where}: option {key}={value.get('class_name')!r} (an object) is not supported")
    if dropped:
        warnings.warn(
            f"{where}: {', '.join(dropped)} dropped: tinynn has no weight regularizers or constraints. "
            "Predictions are unaffected; training this model will not apply them", UserWarning, stacklevel=4,
        )
    return {"class_name": cls_name, "config": _keep_supported(cls, config, where)}


# ---------------------------------------------------------------------------------------------- layers: tinynn -> Keras
def _keras_value(value, dialect: str):
    if isinstance(value, dict) and value.get("class_name") in initializers.class_registry():
        return {"module": "keras.initializers", "class_name": value["class_name"], "config": value.get("config", {}),
                "registered_name": None}
    if _is_spec(value) and value["class_name"] in layer_registry():
        return layer_to_keras(value, dialect)
    return value


def layer_to_keras(spec: dict, dialect: str = KERAS3) -> dict:
    """The Keras layer spec for a tinynn layer spec (``tinynn.layers.serialize`` output)."""
    cls_name = spec["class_name"]
    config = {key: _keras_value(value, dialect) for key, value in spec["config"].items()}
    if dialect == KERAS2:
        for key, default in _KERAS2_DROPS.get(cls_name, {}).items():
            if key in config and config[key] == default:
                del config[key]
    return {"module": "keras.layers", "class_name": cls_name, "config": config, "registered_name": None}


# ---------------------------------------------------------------------------------------------- model translators
@dataclass(frozen=True)
class ModelTranslator:
    """How one model class travels: ``from_keras(keras_spec, where) -> tinynn config`` and
    ``to_keras(tinynn_config, dialect) -> keras_spec`` (both plain dicts)."""

    tinynn_class: str
    keras_classes: tuple[str, ...]
    from_keras: Callable[[dict, str], dict]
    to_keras: Callable[[dict, str], dict]


_BY_KERAS: dict[str, ModelTranslator] = {}
_BY_TINYNN: dict[str, ModelTranslator] = {}


def register_model_translator(translator: ModelTranslator) -> None:
    for name in translator.keras_classes:
        _BY_KERAS[name] = translator
    _BY_TINYNN[translator.tinynn_class] = translator


#: activations whose formula changed between Keras 2 and Keras 3 (tinynn implements Keras 3's)
KERAS2_ONLY_FORMULAS = {"hard_sigmoid": "clip(0.2·x + 0.5, 0, 1) in Keras 2, clip(x/6 + 1/2, 0, 1) in Keras 3"}


def _keras2_formulas(spec, where: str) -> None:
    """Refuse activations that a Keras 2 file computes differently from Keras 3 (and tinynn), naming them."""
    found = []

    def walk(value, layer):
        if isinstance(value, dict):
            layer = (value.get("config") or {}).get("name", layer) if _is_spec(value) else layer
            for key, item in value.items():
                if key.endswith("activation") and item in KERAS2_ONLY_FORMULAS:
                    found.append(f"{key}={item!r} of layer {layer!r}")
                walk(item, layer)
        elif isinstance(value, list):
            for item in value:
                walk(item, layer)

    walk(spec, None)
    if found:
        formulas = "; ".join(f"{name}: {text}" for name, text in KERAS2_ONLY_FORMULAS.items())
        raise ValueError(f"{where}: a Keras 2 file computes {', '.join(found)} with Keras 2's formula ({formulas}); "
                         "tinynn implements Keras 3's, so it would predict differently: refusing")


def model_from_keras(spec: Any, where: str, keras_version: str | None = None) -> tuple[str, dict]:
    """``(tinynn class name, tinynn config)`` for a Keras model spec ``{'class_name', 'config', ...}``.
    ``keras_version``: the version a legacy ``.h5`` file was written by; for Keras 1/2 files activations whose
    formula Keras 3 changed are refused (:data:`KERAS2_ONLY_FORMULAS`)."""
    if not isinstance(spec, dict) or not isinstance(spec.get("class_name"), str):
        raise ValueError(f"{where}: the model config must be a {{class_name, config}} dict, got {spec!r:.200}")
    reject_unsafe(spec, where)
    if keras_version is not None and not keras_version.startswith(("3.", "4.")):
        _keras2_formulas(spec, where)
    translator = _BY_KERAS.get(spec["class_name"])
    if translator is None:
        raise ValueError(
            f"{where}: tinynn can read {sorted(_BY_KERAS)} models, this file holds a {spec['class_name']!r}"
        )
    return translator.tinynn_class, translator.from_keras(spec, where)


def model_to_keras(class_name: str, config: dict, dialect: str = KERAS3) -> dict:
    translator = _BY_TINYNN.get(class_name)
    if translator is None:
        raise ValueError(f"tinynn cannot write a {class_name!r} model in Keras's format (known: {sorted(_BY_TINYNN)})")
    return translator.to_keras(config, dialect)


def keras_class_name(obj) -> str:
    """The class name Keras gives ``obj``: a model's Keras class (``Functional`` for tinynn's ``Model``), else
    the class's own name. Keras's weight files address layers by it (``layers/functional``, ``layers/dense``)."""
    name = type(obj).__name__
    translator = _BY_TINYNN.get(name)
    return translator.keras_classes[0] if translator is not None else name


def translator_for_keras_class(name: str) -> ModelTranslator | None:
    """The translator of Keras model class ``name`` (``'Sequential'``, ``'Functional'``), None for a layer."""
    return _BY_KERAS.get(name) if isinstance(name, str) else None


# ---------------------------------------------------------------------------------------------- Sequential
def _shape_list(value, where: str) -> list:
    if not isinstance(value, (list, tuple)) or not all(v is None or (isinstance(v, int) and v >= 0) for v in value):
        raise ValueError(f"{where}: an input shape must be a list of non-negative integers or null, got {value!r}")
    return list(value)


def _sequential_input(config: dict, build_config: dict, layer_specs: list, where: str):
    """(batch shape or None, layer specs without the InputLayer) of a Keras Sequential config."""
    first_spec = layer_specs[0] if layer_specs and _is_spec(layer_specs[0]) else None
    if first_spec is not None and first_spec["class_name"] == "InputLayer":
        cfg = first_spec["config"] or {}
        batch_shape = cfg.get("batch_shape") or cfg.get("batch_input_shape")
        if batch_shape is None:
            raise ValueError(f"{where}: its InputLayer has no batch_shape")
        return _shape_list(batch_shape, f"{where} InputLayer"), layer_specs[1:]
    for source in (config.get("build_input_shape"), build_config.get("input_shape")):
        if source is not None:
            return _shape_list(source, f"{where} build_input_shape"), layer_specs
    first = (first_spec["config"] or {}) if first_spec is not None else {}
    if first.get("batch_input_shape") is not None:
        return _shape_list(first["batch_input_shape"], f"{where} batch_input_shape"), layer_specs
    if first.get("input_shape") is not None:
        return [first.get("batch_size"), *_shape_list(first["input_shape"], f"{where} input_shape")], layer_specs
    if first.get("input_dim") is not None:
        return [first.get("batch_size"), first["input_dim"]], layer_specs
    if first_spec is not None and first_spec["class_name"] == "Embedding" and first.get("input_length") is not None:
        return [None, first["input_length"]], layer_specs
    return None, layer_specs


def sequential_from_keras(spec: dict, where: str) -> dict:
    config = spec.get("config")
    if isinstance(config, list):  # Keras <= 2.2 wrote a Sequential's config as its list of layers
        config = {"layers": config}
    if not isinstance(config, dict) or not isinstance(config.get("layers", []), list):
        raise ValueError(f"{where}: a Sequential config must hold a list of layers")
    build_config = spec.get("build_config") if isinstance(spec.get("build_config"), dict) else {}
    batch_shape, layer_specs = _sequential_input(config, build_config, list(config.get("layers") or []), where)
    problems, layers, unknown = [], [], False
    for k, layer_spec in enumerate(layer_specs):
        try:
            layers.append(layer_from_keras(layer_spec, f"layer {k}"))
        except ValueError as err:
            problems.append(str(err))
            unknown = unknown or isinstance(err, UnknownClass)
    if unknown:
        problems.append(f"(tinynn's layer classes are {layer_class_names()})")
    if problems:
        raise ValueError(f"{where}: cannot build a tinynn model:\n  " + "\n  ".join(problems))
    out = {"name": config.get("name") or "sequential", "layers": layers}
    if batch_shape is not None:
        out["input_shape"], out["batch_size"] = batch_shape[1:], batch_shape[0]
    return out


def sequential_to_keras(config: dict, dialect: str = KERAS3) -> dict:
    layers = config["layers"]
    if config.get("input_shape") is None or not layers:
        raise ValueError(f"Sequential {config.get('name')!r}: an empty or unbuilt model cannot be written for Keras")
    batch_shape = [config.get("batch_size"), *config["input_shape"]]
    first = layers[0]
    dtype = "int32" if first["class_name"] == "Embedding" else first["config"].get("dtype", "float32")
    keras_layers = [layer_to_keras(layer, dialect) for layer in layers]
    if dialect == KERAS2:
        input_layer = {"class_name": "InputLayer", "config": {
            "batch_input_shape": batch_shape, "dtype": dtype, "sparse": False, "ragged": False,
            "name": f"{first['config'].get('name', 'input')}_input"}}  # fmt: skip
        return {"class_name": "Sequential", "config": {"name": config["name"], "layers": [input_layer, *keras_layers]}}
    input_layer = {"module": "keras.layers", "class_name": "InputLayer", "registered_name": None, "config": {
        "batch_shape": batch_shape, "dtype": dtype, "sparse": False, "ragged": False, "name": "input_layer",
        "optional": False}}  # fmt: skip
    policy = {"module": "keras", "class_name": "DTypePolicy", "config": {"name": first["config"].get("dtype")},
              "registered_name": None}
    return {
        "module": "keras",
        "class_name": "Sequential",
        "config": {"name": config["name"], "trainable": True, "dtype": policy, "layers": [input_layer, *keras_layers]},
        "registered_name": None,
        "build_config": {"input_shape": batch_shape},
    }


register_model_translator(ModelTranslator("Sequential", ("Sequential",), sequential_from_keras, sequential_to_keras))


# ---------------------------------------------------------------------------------------------- compile config
def _known_optimizer(name: str) -> bool:
    try:
        optimizers.get(name)
    except ValueError:
        return False
    return True


def optimizer_from_keras(spec, where: str) -> dict | str:
    """A tinynn optimizer identifier (a name or a ``serialize()`` dict) from a Keras optimizer config."""
    if isinstance(spec, str):
        return spec
    if not _is_spec(spec):
        raise ValueError(f"{where}: optimizer {spec!r:.200} is neither a name nor a {{class_name, config}} dict")
    cls_name = spec["class_name"]
    if cls_name.startswith("Custom>") and _known_optimizer(cls_name[len("Custom>"):]):
        cls_name = cls_name[len("Custom>"):]  # how Keras 2.11+ registered its built-in optimizers
        spec = {**spec, "class_name": cls_name, "registered_name": None}
    reject_unsafe(spec, where)
    config = dict(spec.get("config") or {})
    if "lr" in config:
        config.setdefault("learning_rate", config["lr"])
        del config["lr"]
    for key in ("jit_compile", "is_legacy_optimizer"):
        config.pop(key, None)
    if not config.get("use_ema"):
        for key in ("ema_momentum", "ema_overwrite_frequency"):
            config.pop(key, None)
    if not config.get("decay"):
        config.pop("decay", None)
    if isinstance(config.get("learning_rate"), dict):
        schedule = config["learning_rate"].get("class_name")
        raise ValueError(f"{where}: the learning-rate schedule {schedule!r} is not supported by tinynn")
    return {"class_name": cls_name, "config": config}


def loss_from_keras(spec, where: str) -> dict | str:
    if isinstance(spec, str):
        return spec
    if not _is_spec(spec):
        raise ValueError(f"{where}: loss {spec!r:.200} is neither a name nor a {{class_name, config}} dict")
    reject_unsafe(spec, where)
    config = dict(spec.get("config") or {})
    config.pop("fn", None)  # Keras 2's LossFunctionWrapper records the function behind the class
    if config.get("reduction") == "auto":
        del config["reduction"]
    if config.get("axis", -1) in (-1, [-1]):
        config.pop("axis", None)
    if config.get("dtype") in (None, "float32", "float64"):
        config.pop("dtype", None)
    return {"class_name": spec["class_name"], "config": config}


def per_output(value, convert: Callable, where: str, leaf: Callable = _is_spec):
    """``convert`` applied to one entry (``leaf(value)`` or not a list/dict), or to each entry of a list / each
    value of a dict keyed by output name; ``None`` entries (an output without one) are kept."""
    if isinstance(value, (list, tuple)) and not leaf(value):
        return [None if v is None else convert(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict) and not leaf(value):
        bad = [k for k in value if not isinstance(k, str)]
        if bad:
            raise ValueError(f"{where}: keys {bad} are not output names")
        return {k: None if v is None else convert(v, f"{where}[{k!r}]") for k, v in value.items()}
    return convert(value, where)


def _loss_weight(value, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or abs(value) == float("inf"):
        raise ValueError(f"{where}: a loss weight must be a finite number, got {value!r:.200}")
    return float(value)


def _metric_name(spec, where: str) -> str:
    if isinstance(spec, str):
        candidates = [spec]
    elif _is_spec(spec):
        reject_unsafe(spec, where)
        config = spec.get("config") or {}
        candidates = [config.get("name"), config.get("fn"), to_snake_case(str(spec["class_name"]))]
    else:
        raise ValueError(f"{where}: metric {spec!r} is neither a name nor a {{class_name, config}} dict")
    for name in candidates:
        if isinstance(name, str):
            try:
                metrics.get(name, (2, 1), (2, 1))
            except ValueError:
                continue
            return name
    raise ValueError(f"{where}: metric {spec!r} is not one tinynn implements")


def _metric_names(found, where: str):
    """Metric names: a flat list for every output, or per output (a list of lists, a dict keyed by output)."""
    if found is None:
        return []
    if isinstance(found, str) or _is_spec(found):
        found = [found]
    if isinstance(found, dict):
        return {k: _output_metric_names(v, f"{where}[{k!r}]") for k, v in found.items()}
    if not isinstance(found, list):
        raise ValueError(f"{where}: metrics {found!r:.200} are not a list")
    if len(found) == 1 and isinstance(found[0], list):  # Keras 2 nests the metrics of a single output
        found = found[0]
    if any(m is None or isinstance(m, list) for m in found):  # one entry per output
        return [_output_metric_names(m, f"{where}[{i}]") for i, m in enumerate(found)]
    return [_metric_name(m, where) for m in found]


def _output_metric_names(value, where: str) -> list[str] | None:
    """The metrics of one output: None, one metric or a list of them."""
    if value is None:
        return None
    return [_metric_name(m, where) for m in (value if isinstance(value, list) else [value])]


def compile_from_keras(config: dict, where: str) -> dict | None:
    """tinynn's compile config ``{'optimizer', 'loss', 'metrics'}`` (and ``'loss_weights'`` when given) from
    Keras's ``compile_config`` (.keras) or ``training_config`` (.h5); None when the file holds no optimizer or no
    loss. ``loss``, ``loss_weights`` and ``metrics`` keep their shape: one for every output, a list with one entry
    per output, or a dict keyed by output name."""
    if not isinstance(config, dict):
        raise ValueError(f"{where}: the compile/training config must be a dict, got {type(config).__name__}")
    optimizer = config.get("optimizer", config.get("optimizer_config"))
    loss = config.get("loss")
    if optimizer is None or loss is None:
        return None
    if config.get("weighted_metrics"):
        raise ValueError(f"{where}: weighted_metrics={config['weighted_metrics']!r:.200} is not supported by tinynn")
    native = {"optimizer": optimizer_from_keras(optimizer, f"{where} optimizer"),
              "loss": per_output(loss, loss_from_keras, f"{where} loss"),
              "metrics": _metric_names(config.get("metrics"), f"{where} metric")}
    if config.get("loss_weights") is not None:
        native["loss_weights"] = per_output(config["loss_weights"], _loss_weight, f"{where} loss_weights",
                                            leaf=lambda v: False)
    return native


def _keras_loss(loss, module: bool):
    if isinstance(loss, str):
        return loss
    spec = {"class_name": loss["class_name"], "config": loss["config"]}
    return {"module": "keras.losses", **spec, "registered_name": None} if module else spec


def _keras_losses(loss, module: bool):
    return per_output(loss, lambda entry, _: _keras_loss(entry, module), "loss")


def compile_to_keras(compile_config: dict) -> dict:
    """Keras 3's ``compile_config`` (``.keras``) for tinynn's compile config."""
    metrics = compile_config.get("metrics")
    return {
        "optimizer": compile_config["optimizer"],
        "loss": _keras_losses(compile_config["loss"], module=True),
        "loss_weights": compile_config.get("loss_weights"),
        "metrics": metrics or None,
        "weighted_metrics": None,
        "run_eagerly": False,
        "steps_per_execution": 1,
        "jit_compile": False,
    }


#: optimizer options that Keras 2's optimizers (which read plain class names in .h5 files) do not accept,
#: left out of a legacy training_config at these default values
_KERAS2_OPTIMIZER_DEFAULTS = {"weight_decay": None, "use_ema": False, "ema_momentum": 0.99,
                              "ema_overwrite_frequency": None, "loss_scale_factor": None,
                              "gradient_accumulation_steps": None, "clipnorm": None, "global_clipnorm": None,
                              "clipvalue": None}


def training_config_to_keras(compile_config: dict) -> dict:
    """The ``training_config`` attribute of a legacy ``.h5`` file. The optimizer keeps its plain class name, as
    Keras 3's legacy writer does; options at their defaults that Keras 2 lacks are left out, so Keras 2 can
    compile the model too (its optimizer then starts fresh: Keras 2 stores a different variable layout)."""
    optimizer = compile_config["optimizer"]
    opt_config = {k: v for k, v in optimizer["config"].items()
                  if not (k in _KERAS2_OPTIMIZER_DEFAULTS and v == _KERAS2_OPTIMIZER_DEFAULTS[k])}
    metrics = compile_config.get("metrics") or []
    return {
        "loss": _keras_losses(compile_config["loss"], module=False),
        "metrics": list(metrics) if isinstance(metrics, (list, tuple)) else metrics,
        "weighted_metrics": None,
        "loss_weights": compile_config.get("loss_weights"),
        "optimizer_config": {"class_name": optimizer["class_name"], "config": opt_config},
    }

