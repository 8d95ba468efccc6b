"""A functional model as a JSON-friendly dict, in Keras 3's functional config format, and back.

    {"name": "model", "trainable": true,
     "layers": [{"class_name": "Dense", "config": {...}, "name": "dense",
                 "inbound_nodes": [{"args": [{"class_name": "__keras_tensor__",
                                              "config": {"shape": [null, 4], "dtype": "float32",
                                                         "keras_history": ["input_a", 0, 0]}}],
                                    "kwargs": {}}]},
                ...],
     "input_layers": [["input_a", 0, 0], ...], "output_layers": [["dense", 0, 0], ...]}

Each layer lists the calls that made the graph (``inbound_nodes``); a tensor is named by the layer that made
it, which of that layer's calls (counting only calls inside this model), and which output. A layer called on
a list has ``"args": [[t1, t2]]``; ``initial_state`` and ``mask`` tensors go in ``kwargs``. Loading replays the
calls in dependency order, so shared layers, merges and nested models come back with the same structure.

The layer entries are tinynn's ``{'class_name', 'config'}``; ``layer_to_config`` / ``layer_from_config`` map
them to another vocabulary (e.g. Keras's layer configs) without touching the graph part. Loading never
executes code from the config: only known layer classes are instantiated.
"""

from __future__ import annotations

from collections.abc import Callable

from .graph import KerasTensor, flatten

MODEL_CLASS_NAMES = ("Functional", "Model", "Sequential")
#: the model classes by config class name; tinynn.models registers Model and Sequential (this module never
#: imports tinynn.models, so there is no import cycle)
_MODEL_CLASSES: dict[str, type] = {}


def register_model_classes(model: type, sequential: type) -> None:
    """Tell the config code which classes build ``"Functional"``/``"Model"`` and ``"Sequential"`` entries."""
    _MODEL_CLASSES.update({"Functional": model, "Model": model, "Sequential": sequential})


def _model_config_name(layer) -> str | None:
    """'Sequential' or 'Functional' for a (nested) model, None for a plain layer."""
    for name in ("Sequential", "Functional"):
        cls = _MODEL_CLASSES.get(name)
        if cls is not None and isinstance(layer, cls):
            return name
    return None


def _serialize_layer(layer) -> dict:
    from .layers import serialize

    name = _model_config_name(layer)
    if name is not None:
        return {"class_name": name, "config": layer.get_config()}
    return serialize(layer)


def _tensor_config(t: KerasTensor, own: set) -> dict:
    layer, node_index, tensor_index = t._keras_history
    skipped = sum(1 for n in layer._inbound_nodes[:node_index] if id(n) not in own)
    return {"class_name": "__keras_tensor__",
            "config": {"shape": list(t.shape), "dtype": t.dtype,
                       "keras_history": [layer.name, node_index - skipped, tensor_index]}}


def _structure(value, fn):
    if isinstance(value, dict):
        return {k: _structure(v, fn) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_structure(v, fn) for v in value]
    return fn(value)


def functional_config(model, layer_to_config: Callable | None = None) -> dict:
    """``model.get_config()`` for a functional model (see the module docstring)."""
    to_config = layer_to_config or _serialize_layer
    graph = model._graph
    own = {id(n) for nodes in graph.nodes_by_depth.values() for n in nodes}

    def history(t: KerasTensor) -> list:
        return _tensor_config(t, own)["config"]["keras_history"]

    layers = []
    for layer in model.layers:
        entry = dict(to_config(layer))
        entry["name"] = layer.name
        nodes = []
        for node in layer._inbound_nodes:
            if id(node) not in own or node.is_input:
                continue
            args = [_structure(node.args, lambda t: _tensor_config(t, own))]
            kwargs = {k: (_structure(v, lambda t: _tensor_config(t, own)) if k != "training" else v)
                      for k, v in node.kwargs.items()}
            nodes.append({"args": args, "kwargs": kwargs})
        entry["inbound_nodes"] = nodes
        layers.append(entry)
    return {
        "name": model.name,
        "trainable": model.trainable,
        "layers": layers,
        "input_layers": _structure(model._inputs_struct, history),
        "output_layers": _structure(model._outputs_struct, history),
    }


def _is_history(value) -> bool:
    return (isinstance(value, (list, tuple)) and len(value) == 3 and isinstance(value[0], str)
            and all(isinstance(v, int) for v in value[1:]))


def _default_layer_from_config(spec: dict):
    from .layers import deserialize

    name = spec.get("class_name")
    if name in _MODEL_CLASSES:
        return _MODEL_CLASSES[name].from_config(dict(spec["config"]))
    return deserialize(spec)


def model_from_functional_config(config: dict, layer_from_config: Callable | None = None, model_class=None):
    """Rebuild a functional model from :func:`functional_config`'s dict (see the module docstring)."""
    from .layers.core import InputLayer

    model_class = model_class or _MODEL_CLASSES["Functional"]
    where = f"functional config {config.get('name')!r}" if isinstance(config, dict) else "functional config"
    if not isinstance(config, dict) or not isinstance(config.get("layers"), list):
        raise ValueError(f"{where}: expected a dict with a 'layers' list, 'input_layers' and 'output_layers'")
    for key in ("input_layers", "output_layers"):
        if key not in config:
            raise ValueError(f"{where}: missing {key!r}")
    make = layer_from_config or _default_layer_from_config
    created: dict[str, object] = {}
    pending: list[tuple[str, dict]] = []
    skipped_ops: set[str] = set()
    for k, entry in enumerate(config["layers"]):
        if not isinstance(entry, dict) or not isinstance(entry.get("class_name"), str):
            raise ValueError(f"{where}: every layer entry needs a 'class_name', got {entry!r:.200}")
        layer_config = entry.get("config")
        name = entry.get("name") or (layer_config.get("name") if isinstance(layer_config, dict) else None)
        if not isinstance(name, str) or not isinstance(layer_config, dict):
            raise ValueError(f"{where}: layer entry {k} ({entry['class_name']}) needs a name and a config dict")
        nodes = entry.get("inbound_nodes") or []
        if not isinstance(nodes, list) or not all(isinstance(n, dict) and isinstance(n.get("args", []), list)
                                                  and isinstance(n.get("kwargs") or {}, dict) for n in nodes):
            raise ValueError(f"{where}: the inbound_nodes of layer {name!r} must be a list of calls "
                             "{'args': [...], 'kwargs': {...}}")
        if ".ops" in str(entry.get("module", "")):  # a Keras op (the NotEqual of a mask): tinynn makes masks itself
            skipped_ops.add(name)
            continue
        spec = {k: v for k, v in entry.items() if k != "inbound_nodes"}
        try:
            layer = make(spec)
        except (ValueError, TypeError, KeyError) as err:
            raise ValueError(f"{where}: layer {name!r} ({entry['class_name']}): {err}") from err
        if name in created:
            raise ValueError(f"{where}: two layers are named {name!r}")
        if layer.name != name:
            raise ValueError(f"{where}: the layer entry {name!r} builds a layer named {layer.name!r}")
        created[name] = layer
        for node in entry.get("inbound_nodes") or []:
            pending.append((name, node))
    tensors: dict[tuple, KerasTensor] = {}
    for name, layer in created.items():
        if isinstance(layer, InputLayer):
            tensors[(name, 0, 0)] = layer.output
    calls: dict[str, int] = {name: 0 for name in created}

    def resolve(value, allow_missing: bool = False):
        if isinstance(value, dict) and value.get("class_name") == "__keras_tensor__":
            history = value.get("config", {}).get("keras_history") if isinstance(value.get("config"), dict) else None
            if not _is_history(history):
                raise ValueError(f"{where}: a tensor's keras_history must be [layer name, node index, tensor index], "
                                 f"got {history!r:.200}")
            key = tuple(history)
            if key in tensors:
                return tensors[key]
            if allow_missing and key[0] in skipped_ops:
                return None
            raise KeyError(key)
        if isinstance(value, dict):
            return {k: resolve(v, allow_missing) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [resolve(v, allow_missing) for v in value]
        return value

    while pending:
        progress = False
        blocked: dict[str, tuple] = {}  # a layer's calls are replayed in order: call k+1 waits for call k (as Keras)
        for item in list(pending):
            name, node = item
            if name in blocked:
                continue
            try:
                args = resolve(node.get("args", []))
                kwargs = {k: resolve(v, allow_missing=(k == "mask")) for k, v in (node.get("kwargs") or {}).items()}
            except KeyError as missing:
                blocked[name] = missing.args[0]
                continue
            kwargs.pop("training", None)
            if kwargs.get("mask") is None:
                kwargs.pop("mask", None)
            if len(args) != 1:
                raise ValueError(f"{where}: a call of layer {name!r} has {len(args)} positional arguments; tinynn "
                                 "layers "
                                 "take one (a tensor or a list of tensors)")
            not_tensors = [v for v in flatten(args[0]) if not isinstance(v, KerasTensor)]
            if not_tensors or not flatten(args[0]):
                raise ValueError(f"{where}: a call of layer {name!r} reads {not_tensors[:3] or args[0]!r:.200}, not "
                                 "tensors of the config's layers")
            outputs = created[name](args[0], **kwargs)
            for i, t in enumerate(flatten(outputs)):
                tensors[(name, calls[name], i)] = t
            calls[name] += 1
            pending.remove(item)
            progress = True
        if not progress:
            reads = "; ".join(f"{n!r} reads {list(key)}" for n, key in sorted(blocked.items()))
            raise ValueError(f"{where}: the calls of layer(s) {sorted(blocked)} read tensors that no layer of the "
                             f"config makes ({reads}): a layer or call missing from the config, or a cycle")

    def tensor(ref):
        key = tuple(ref)
        if key not in tensors:
            raise ValueError(f"{where}: input/output {ref!r} is not a tensor of the config's layers")
        return tensors[key]

    def struct(value):
        if _is_history(value):
            return tensor(value)
        if isinstance(value, dict):
            return {k: struct(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [struct(v) for v in value]
        raise ValueError(f"{where}: cannot read input/output reference {value!r}")

    inputs, outputs = struct(config["input_layers"]), struct(config["output_layers"])
    return model_class(inputs=inputs, outputs=outputs, name=config.get("name"),
                       trainable=config.get("trainable", True))
