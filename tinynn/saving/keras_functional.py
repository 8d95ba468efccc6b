"""Keras functional model configs ↔ tinynn functional configs, dict to dict (the ``Model`` translator).

A functional config lists the layers, each with the calls that made the graph (``inbound_nodes``), and names
the model's inputs and outputs as ``[layer name, node index, tensor index]`` (:mod:`tinynn.functional_config`
has tinynn's side). Keras writes it in two dialects, both read here:

- Keras 3 (``.keras``; Keras 3's legacy ``.h5`` writer too): a node is ``{"args": [...], "kwargs": {...}}`` whose
  tensors are ``{"class_name": "__keras_tensor__", "config": {"shape", "dtype", "keras_history"}}``; tuples are
  ``{"class_name": "__tuple__", "config": {"value": [...]}}``. A nested *functional* model starts with a node of
  its own, so the model's ``input_layers``/``output_layers`` count it (``["sub", 1, 0]`` is its first call) while
  the ``keras_history`` of other layers' calls does not (``["sub", 0, 0]``); a nested ``Sequential`` has no such
  node.
- Keras 2 (``.h5``; also Keras 1): a node is a list of ``[layer, node, tensor, kwargs]`` entries, one per input
  tensor, the call's keyword arguments repeated on each (tensors in them as ``[layer, node, tensor]``); a nested
  functional model, and a nested ``Sequential`` that knows its input shape, start with a node of their own,
  counted in every reference (``tf_keras``'s ``_should_skip_first_node``). Keras 3 cannot read such references to
  a nested ``Sequential``; tinynn can. A single input or output is written as a one-element list. tinynn writes
  this format (readable by Keras 2 and 3) for graphs without nested models and without tensors in a call's
  keyword arguments; other graphs get Keras 3's format in ``.h5`` too, as Keras 3's legacy writer does.

Every layer entry is mapped with :func:`keras_config.layer_from_keras` / ``layer_to_keras``; a nested
``Sequential`` or functional model goes through its own model translator (so a nested ``Sequential`` is written
in Keras's ``Sequential`` format); ``InputLayer`` entries are converted here (``batch_shape``, ``dtype``). Keras
operations that only compute masks (the ``NotEqual`` of an Embedding's ``mask_zero``: module ``keras.src.ops...``,
which Keras 3's legacy writer leaves out) are passed on, for tinynn's reader to skip (it computes masks
itself); an operation whose output a layer reads as data is refused by name. Every problem of the layers is
named in one ``ValueError``.
"""

from __future__ import annotations

from . import keras_config
from .keras_config import KERAS2, KERAS3, UnknownClass, layer_from_keras, layer_to_keras

TENSOR = "__keras_tensor__"
#: the call arguments a node may carry besides its inputs (tensors only in initial_state and mask)
_TENSOR_KWARGS = ("initial_state", "mask")
_KNOWN_KWARGS = (*_TENSOR_KWARGS, "training")


# ---------------------------------------------------------------------------------------------- helpers
def _is_ref(value) -> bool:
    """``[layer name, node index, tensor index]``."""
    return (isinstance(value, (list, tuple)) and len(value) == 3 and isinstance(value[0], str)
            and all(isinstance(v, int) and not isinstance(v, bool) for v in value[1:]))


def _check_ref(value, where: str) -> list:
    if not _is_ref(value) or value[1] < 0 or value[2] < 0:
        raise ValueError(f"{where}: a tensor reference must be [layer name, node index >= 0, tensor index >= 0], got "
                         f"{value!r:.200}")
    return list(value)


def _tensor(ref: list, shape=None, dtype=None) -> dict:
    """tinynn's (and Keras 3's) tensor entry; shape and dtype only where the file gives them (Keras 2 does not)."""
    config = {"keras_history": ref}
    if shape is not None:
        config["shape"] = shape
    if dtype is not None:
        config["dtype"] = dtype
    return {"class_name": TENSOR, "config": config}


def _map_refs(value, fn, where: str):
    """``value`` (references nested in lists and dicts) with every reference replaced by ``fn(ref)``."""
    if _is_ref(value):
        return fn(_check_ref(value, where))
    if isinstance(value, dict):
        return {k: _map_refs(v, fn, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_map_refs(v, fn, f"{where}[{i}]") for i, v in enumerate(value)]
    raise ValueError(f"{where}: expected tensor references [layer name, node index, tensor index], got {value!r:.200}")


def _shift(ref: list, offsets: dict, sign: int, where: str) -> list:
    index = ref[1] + sign * offsets.get(ref[0], 0)
    if index < 0:
        raise ValueError(f"{where}: {ref!r} refers to the built-in node of nested model {ref[0]!r}, which is not a "
                         "call of this model")
    return [ref[0], index, ref[2]]


def _entry_name(entry, k: int, where: str) -> str:
    config = entry.get("config") if isinstance(entry.get("config"), dict) else {}
    name = entry.get("name", config.get("name"))
    if not isinstance(name, str) or not name:
        raise ValueError(f"{where}: layer entry {k} has no name")
    if config.get("name") not in (None, name):
        raise ValueError(f"{where}: layer entry {name!r} holds a config named {config.get('name')!r}")
    return name


def _is_op(entry: dict) -> bool:
    return ".ops" in str(entry.get("module", ""))


#: the module tinynn's reader (``tinynn.functional_config``) recognises Keras operations by, and skips
OPS_MODULE = "keras.src.ops"


def _mask_operations(entries: list, output_layers) -> tuple[set[str], dict[str, str | None]]:
    """(the Keras operations of a config that only compute masks, which tinynn skips as it computes masks itself;
    for every layer or operation read as data, the first layer reading it, None for a model output).

    Keras 3 records the ops a mask needs (``NotEqual`` of an Embedding's ``mask_zero``, ``Any`` of Masking) as
    entries with a ``keras.src.ops`` module; its legacy ``.h5`` writer drops the module, so there an entry whose
    class is not a layer, read only through ``mask`` arguments or by other such entries, is one too."""
    def is_candidate(entry) -> bool:
        cls = entry.get("class_name")
        if _is_op(entry):
            return True
        return ("module" not in entry and isinstance(cls, str) and cls != "InputLayer"
                and cls not in keras_config.layer_class_names()
                and keras_config.translator_for_keras_class(cls) is None)

    candidates = {e.get("name") for e in entries if isinstance(e, dict) and is_candidate(e)}
    readers: dict[str, str | None] = {}

    def note(value, reader) -> None:
        if isinstance(value, dict):
            config = value.get("config") if value.get("class_name") == TENSOR else None
            history = config.get("keras_history") if isinstance(config, dict) else None
            if isinstance(history, list) and history and isinstance(history[0], str):
                readers.setdefault(history[0], reader)
            for key, item in value.items():
                if key != "mask":
                    note(item, reader)
        elif isinstance(value, list):
            if len(value) in (3, 4) and isinstance(value[0], str):  # Keras 2's [layer, node, tensor(, kwargs)]
                readers.setdefault(value[0], reader)
            for item in value:
                note(item, reader)

    for entry in entries:
        if isinstance(entry, dict) and entry.get("name") not in candidates:
            note(entry.get("inbound_nodes") or [], entry.get("name"))
    note(output_layers, None)
    return {name for name in candidates if name not in readers}, readers


# ---------------------------------------------------------------------------------------------- Keras -> tinynn
def _input_from_keras(entry: dict, name: str, where: str) -> dict:
    config = entry.get("config")
    if not isinstance(config, dict):
        raise ValueError(f"{where}: InputLayer {name!r} has no config")
    for key in ("sparse", "ragged", "optional"):
        if config.get(key):
            raise ValueError(f"{where}: InputLayer {name!r} has {key}=True, which tinynn does not support")
    batch_shape = config.get("batch_shape", config.get("batch_input_shape"))
    if batch_shape is None and config.get("shape") is not None:
        batch_shape = [config.get("batch_size"), *config["shape"]]
    if not isinstance(batch_shape, list) or not batch_shape or not all(
            s is None or (isinstance(s, int) and not isinstance(s, bool) and s >= 0) for s in batch_shape):
        raise ValueError(f"{where}: InputLayer {name!r} has batch shape {batch_shape!r:.200}, expected a list of "
                         "non-negative integers or null")
    dtype = keras_config.dtype_name(config.get("dtype"), f"{where}: InputLayer {name!r}")
    out = {"name": name, "shape": batch_shape[1:], "batch_size": batch_shape[0]}
    if dtype is not None:
        out["dtype"] = dtype
    return {"class_name": "InputLayer", "config": out}


def _nested_from_keras(entry: dict, where: str) -> tuple[dict, bool]:
    """(tinynn entry, whether it knows its input shape) of a nested Sequential or functional model."""
    keras_class = keras_config.translator_for_keras_class(entry["class_name"]).keras_classes[0]
    tinynn_class, config = keras_config.model_from_keras(entry, where)
    has_input = tinynn_class != "Sequential" or config.get("input_shape") is not None
    return {"class_name": keras_class, "config": config}, has_input


def _value_from_keras(value, where: str):
    """A Keras 3 node argument: tensors as tinynn's tensor dicts, ``__tuple__`` as a list, plain JSON as is."""
    if isinstance(value, dict):
        cls = value.get("class_name")
        if cls == TENSOR:
            config = value.get("config")
            if not isinstance(config, dict):
                raise ValueError(f"{where}: a tensor entry has no config")
            ref = _check_ref(config.get("keras_history"), f"{where} keras_history")
            return _tensor(ref, config.get("shape"), config.get("dtype"))
        if cls == "__tuple__":
            items = (value.get("config") or {}).get("value")
            if not isinstance(items, list):
                raise ValueError(f"{where}: a __tuple__ entry has no value list")
            return [_value_from_keras(v, f"{where}[{i}]") for i, v in enumerate(items)]
        if cls is not None:
            raise ValueError(f"{where}: call argument {cls!r} is not a tensor; tinynn reads tensors, lists of tensors "
                             "and plain values")
        return {k: _value_from_keras(v, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, list):
        return [_value_from_keras(v, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def _kwargs_checked(kwargs, where: str) -> dict:
    if not isinstance(kwargs, dict):
        raise ValueError(f"{where}: the call's kwargs must be a dict, got {kwargs!r:.200}")
    unknown = sorted(k for k, v in kwargs.items() if k not in _KNOWN_KWARGS and v is not None)
    if unknown:
        raise ValueError(f"{where}: call arguments {unknown} are not supported by tinynn (it knows "
                         f"{list(_KNOWN_KWARGS)})")
    return {k: v for k, v in kwargs.items() if v is not None}


def _legacy_node(node: list, offsets: dict, where: str) -> dict:
    """A Keras 1/2 node (a list of ``[layer, node, tensor(, kwargs)]``) as a Keras 3 / tinynn node."""
    if not node:
        raise ValueError(f"{where}: an empty call")
    tensors, kwargs = [], {}
    for i, item in enumerate(node):
        if not isinstance(item, list) or len(item) not in (3, 4):
            raise ValueError(f"{where}: a call input must be [layer name, node index, tensor index(, kwargs)], got "
                             f"{item!r:.200}")
        ref = _shift(_check_ref(item[:3], f"{where}[{i}]"), offsets, -1, f"{where}[{i}]")
        tensors.append(_tensor(ref))
        kwargs = item[3] if len(item) == 4 else {}
    kwargs = _kwargs_checked(kwargs, where)
    for key in _TENSOR_KWARGS:
        if key in kwargs:
            kwargs[key] = _map_refs(kwargs[key], lambda r: _tensor(_shift(r, offsets, -1, where)), f"{where} {key}")
    return {"args": [tensors[0] if len(tensors) == 1 else tensors], "kwargs": kwargs}


def _node_from_keras(node, offsets: dict, where: str) -> dict:
    if isinstance(node, list):
        return _legacy_node(node, offsets, where)
    if not isinstance(node, dict) or not isinstance(node.get("args", []), list):
        raise ValueError(f"{where}: a call must be {{'args': [...], 'kwargs': {{...}}}} or Keras 2's list, got "
                         f"{node!r:.200}")
    kwargs = _kwargs_checked(node.get("kwargs") or {}, where)
    return {"args": _value_from_keras(node.get("args", []), f"{where} args"),
            "kwargs": _value_from_keras(kwargs, f"{where} kwargs")}


def functional_from_keras(spec: dict, where: str) -> dict:
    """tinynn's functional config (``Model.get_config()`` format) from a Keras ``Functional`` model spec."""
    config = spec.get("config")
    if not isinstance(config, dict) or not isinstance(config.get("layers"), list):
        raise ValueError(f"{where}: a functional model config must hold a list of layers")
    missing = [k for k in ("input_layers", "output_layers") if k not in config]
    if missing:
        raise ValueError(f"{where}: the functional model config has no {' or '.join(missing)}")
    entries = config["layers"]
    if not all(isinstance(e, dict) for e in entries):
        raise ValueError(f"{where}: every layer entry must be a dict")
    legacy = any(isinstance(n, list) for e in entries for n in (e.get("inbound_nodes") or []))
    mask_ops, readers = _mask_operations(entries, config["output_layers"])
    problems, layers, unknown = [], [], False
    own_node: dict[str, bool] = {}  # name -> whether the layer is a nested model starting with a node of its own
    names = []
    for k, entry in enumerate(entries):
        try:
            name = _entry_name(entry, k, where)
            names.append(name)
            cls = entry.get("class_name")
            if _is_op(entry) and name not in mask_ops:
                reader = f"layer {readers[name]!r}" if readers.get(name) else "the model's output"
                raise ValueError(f"{where}: {reader} reads the output of Keras operation {cls!r} {name!r}: tinynn "
                                 "implements layers, not operations (it skips only the operations that compute "
                                 "masks, as it computes masks itself)")
            if name in mask_ops:
                keras_config.reject_unsafe(entry, f"{where}: {cls} {name!r}")
                layer = {"module": OPS_MODULE, "class_name": cls, "config": entry.get("config") or {}}
            elif cls == "InputLayer":
                keras_config.reject_unsafe(entry, f"{where}: InputLayer {name!r}")
                layer = _input_from_keras(entry, name, where)
            elif keras_config.translator_for_keras_class(cls) is not None:
                layer, has_input = _nested_from_keras(entry, f"{where}: {cls} {name!r}")
                own_node[name] = has_input if legacy else layer["class_name"] != "Sequential"
            else:
                layer = layer_from_keras(entry, f"layer {name!r}")
            layer["name"] = name
            layers.append((layer, entry.get("inbound_nodes") or []))
        except ValueError as err:
            problems.append(str(err))
            unknown = unknown or isinstance(err, UnknownClass)
    if unknown:
        problems.append(f"(tinynn's layer classes are {keras_config.layer_class_names()})")
    if problems:
        raise ValueError(f"{where}: cannot build a tinynn model:\n  " + "\n  ".join(problems))
    if len(set(names)) != len(names):
        raise ValueError(f"{where}: layer names {sorted({n for n in names if names.count(n) > 1})} are used twice")
    offsets = {name: 1 for name, has in own_node.items() if has}
    node_offsets = offsets if legacy else {}
    out_layers = []
    for layer, nodes in layers:
        if not isinstance(nodes, list):
            raise ValueError(f"{where}: the inbound_nodes of layer {layer['name']!r} must be a list")
        layer["inbound_nodes"] = [_node_from_keras(node, node_offsets, f"{where}: a call of layer {layer['name']!r}")
                                  for node in nodes]
        out_layers.append(layer)
    ends = {}
    for key in ("input_layers", "output_layers"):
        value = config[key]
        if legacy and isinstance(value, list) and len(value) == 1 and _is_ref(value[0]):
            value = value[0]  # Keras 2 writes a single input/output as a one-element list
        label = f"{where} {key}"
        ends[key] = _map_refs(value, lambda r, label=label: _shift(r, offsets, -1, label), label)
    name = config.get("name")
    return {"name": name if isinstance(name, str) else "functional",
            "trainable": bool(config.get("trainable", True)), "layers": out_layers, **ends}


# ---------------------------------------------------------------------------------------------- tinynn -> Keras
def _input_to_keras(entry: dict, dtype_hint: str | None, dialect: str) -> dict:
    config = entry["config"]
    batch_shape = [config.get("batch_size"), *config["shape"]]
    dtype = config.get("dtype") or dtype_hint or "float32"
    if dialect == KERAS2:
        return {"class_name": "InputLayer", "config": {"batch_input_shape": batch_shape, "dtype": dtype,
                                                       "sparse": False, "ragged": False, "name": entry["name"]}}
    return {"module": "keras.layers", "class_name": "InputLayer", "config": {
        "batch_shape": batch_shape, "dtype": dtype, "sparse": False, "ragged": False, "name": entry["name"],
        "optional": False}, "registered_name": None}  # fmt: skip


def _legacy_ref(tensor: dict) -> list:
    return list(tensor["config"]["keras_history"])


def _legacy_node_to_keras(node: dict) -> list:
    """Keras 2's list format of a call: ``[layer, node, tensor, kwargs]`` per input tensor (written only for
    graphs without nested models, whose references need no renumbering)."""
    kwargs = {key: _structure(value, _legacy_ref) if key in _TENSOR_KWARGS else value
              for key, value in (node.get("kwargs") or {}).items()}
    first = node["args"][0]
    tensors = first if isinstance(first, list) else [first]
    return [[*_legacy_ref(t), kwargs] for t in tensors]


def _structure(value, fn):
    if isinstance(value, dict) and value.get("class_name") == TENSOR:
        return fn(value)
    if isinstance(value, dict):
        return {k: _structure(v, fn) for k, v in value.items()}
    if isinstance(value, list):
        return [_structure(v, fn) for v in value]
    return value


def _has_tensor(value) -> bool:
    found = []
    _structure(value, found.append)
    return bool(found)


def _first_dtype(entries: list, name: str) -> str | None:
    """The dtype recorded where a call reads the output of layer ``name`` (older configs of an InputLayer)."""
    found = []

    def look(t):
        if t["config"]["keras_history"][0] == name and t["config"].get("dtype"):
            found.append(t["config"]["dtype"])
        return t

    for entry in entries:
        for node in entry.get("inbound_nodes") or []:
            _structure(node, look)
    return found[0] if found else None


def functional_to_keras(config: dict, dialect: str = KERAS3) -> dict:
    """The Keras ``Functional`` spec of tinynn's functional config, in the given dialect (see the module docstring).

    In the Keras 2 dialect (legacy ``.h5``) the calls are written in Keras 2's list format, which Keras 2 and
    Keras 3 both read — unless the model nests a model (Keras 2 counts a nested model's built-in node in the
    references to it and Keras 3 does not, so no list-format reference serves both) or a call has tensors among
    its keyword arguments (``initial_state``: Keras 3 passes Keras 2's references on as they are). The calls are
    then written in Keras 3's format, as Keras 3's own legacy writer does (Keras 3 reads the file; Keras 2
    cannot)."""
    entries = config["layers"]
    nested = {e["name"]: keras_config.translator_for_keras_class(e["class_name"]) for e in entries
              if keras_config.translator_for_keras_class(e["class_name"]) is not None}
    tensor_kwargs = any(_has_tensor(node.get("kwargs") or {}) for e in entries for node in e.get("inbound_nodes") or [])
    list_nodes = dialect == KERAS2 and not nested and not tensor_kwargs
    # a nested functional model starts with a node of its own, which Keras 3 counts in input_layers/output_layers
    offsets = {name: 1 for name, translator in nested.items() if translator.tinynn_class != "Sequential"}
    layers = []
    for entry in entries:
        cls, name = entry["class_name"], entry["name"]
        if cls == "InputLayer":
            keras_entry = _input_to_keras(entry, _first_dtype(entries, name), dialect)
        elif name in nested:
            keras_entry = keras_config.model_to_keras(nested[name].tinynn_class, entry["config"], dialect)
        else:
            keras_entry = layer_to_keras({k: v for k, v in entry.items() if k not in ("name", "inbound_nodes")},
                                         dialect)
        nodes = entry.get("inbound_nodes") or []
        if list_nodes:
            nodes = [_legacy_node_to_keras(node) for node in nodes]
        layers.append({**keras_entry, "name": name, "inbound_nodes": nodes})
    ends = {}
    for key in ("input_layers", "output_layers"):
        value = _map_refs(config[key], lambda r, key=key: _shift(r, offsets, +1, key), key)
        ends[key] = [value] if list_nodes and _is_ref(value) else value  # Keras 2: a one-element list
    body = {"name": config["name"], "trainable": config.get("trainable", True), "layers": layers, **ends}
    if dialect == KERAS2:
        return {"class_name": "Functional", "config": body}
    return {"module": "keras.src.models.functional", "class_name": "Functional", "config": body,
            "registered_name": "Functional", "build_config": {"input_shape": None}}


TRANSLATOR = keras_config.ModelTranslator("Model", ("Functional", "Model"), functional_from_keras, functional_to_keras)
