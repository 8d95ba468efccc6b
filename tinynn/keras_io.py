"""Keras 3 files without Keras: ``.weights.h5`` and ``.keras`` archives, read and written with h5py, zipfile, json.

Nothing here imports TensorFlow or Keras. h5py is an optional dependency (``pip install h5py`` or
``pip install 'tinynn[keras]'``); it is imported only when a Keras file is touched.

The Keras 3 format, as written by ``keras.Model.save`` / ``save_weights`` (checked against Keras 3.15)::

    model.keras                       a zip archive
        metadata.json                 {"keras_version": ..., "date_saved": ...}   (not read back by Keras)
        config.json                   {"class_name": "Sequential", "config": {"layers": [InputLayer, ...]}, ...}
        model.weights.h5              the same layout as a .weights.h5 file:

    model.weights.h5                  HDF5
        vars                          (attrs name=<model name>; the model's own variables: none)
        layers/<key>/vars/0, 1, ...   a layer's variables in get_weights() order (attrs name=<layer name>)
        layers/<key>/cell/vars/0..2   SimpleRNN/LSTM/GRU keep theirs in their cell
        layers/<key>/forward_layer/cell/vars/0..2, layers/<key>/backward_layer/cell/vars/0..2   Bidirectional

``<key>`` is *not* the layer's name: Keras addresses the layers of a model by their class name in snake
case, numbered in order of appearance: ``dense``, ``dense_1``, ``conv1d``, ``lstm``, ``simple_rnn``, ...
(``keras.src.saving.saving_lib._save_container_state``). Weightless layers still get an empty ``vars`` group.

Reading never executes code from a file: the config is plain JSON mapped onto known tinynn classes;
``Lambda`` layers (whose function is stored as Python bytecode) and any class tinynn does not implement are
rejected with a ``ValueError`` naming them. Options tinynn does not implement are accepted only at their
"off" value (``None``/``False``, e.g. ``kernel_regularizer=None``); anything else is an error naming the
layer and the option.
"""

from __future__ import annotations

import datetime
import inspect
import io
import json
import os
import warnings
import zipfile
from typing import Any

import numpy as np

from .utils import to_snake_case

CONFIG_FILE = "config.json"
METADATA_FILE = "metadata.json"
WEIGHTS_FILE = "model.weights.h5"
#: written to metadata.json; Keras only writes this file, it never reads it back
KERAS_FORMAT_VERSION = "3.15.1"
MAX_MEMBER_BYTES = 4 * 2**30  # refuse absurd archive members (zip bombs) before reading them

#: Keras keeps the variables of these layers in their cell (``layers/<key>/cell/vars``), under this name
_CELL_NAMES = {"SimpleRNN": "simple_rnn_cell", "LSTM": "lstm_cell", "GRU": "gru_cell"}
#: Keras options that tinynn does not implement, in the Keras configs of every layer; tolerated when off
_IGNORED_KEYS = {"shared_object_id", "build_config", "registered_name", "module"}


def _h5py():
    try:
        import h5py
    except ImportError as err:  # pragma: no cover - exercised only where h5py is missing
        raise ImportError(
            "Reading or writing Keras .weights.h5/.keras files needs h5py: pip install h5py "
            "(or pip install 'tinynn[keras]')"
        ) from err
    return h5py


# ---------------------------------------------------------------------------------------------- weights layout
def layer_keys(layers: list) -> list[str]:
    """Keras's group key of each layer of a Sequential: snake-case class name, ``_1``, ``_2``... on repeats."""
    used: dict[str, int] = {}
    keys = []
    for layer in layers:
        key = to_snake_case(type(layer).__name__)
        if key in used:
            used[key] += 1
            key = f"{key}_{used[key]}"
        else:
            used[key] = 0
        keys.append(key)
    return keys


def var_groups(layer, path: str) -> list[tuple[str, str, int]]:
    """Where Keras stores ``layer``'s variables: ``[(group path, name attribute, number of arrays)]``, in the
    order of ``layer.get_weights()``. Groups with 0 arrays are written (empty, as Keras does) but not read."""
    cls = type(layer).__name__
    n = len(layer.weights)
    if cls in _CELL_NAMES:
        return [(f"{path}/vars", layer.name, 0), (f"{path}/cell/vars", _CELL_NAMES[cls], n)]
    if cls == "Bidirectional":
        fwd, bwd = layer.forward_layer, layer.backward_layer
        groups = var_groups(fwd, f"{path}/forward_layer") + var_groups(bwd, f"{path}/backward_layer")
        if sum(g[2] for g in groups) != n:
            raise ValueError(
                f"Bidirectional {layer.name!r}: its {n} weights are not its forward layer's followed by its "
                "backward layer's, so they cannot be mapped to Keras's layout"
            )
        return [(f"{path}/vars", layer.name, 0), *groups]
    return [(f"{path}/vars", layer.name, n)]


def _who(layer) -> str:
    return f"layer {layer.name!r} ({type(layer).__name__})"


def _read_weights(model, h5file, source: str) -> None:
    """Check every array of the file against ``model`` (count, shape), then load them all at once."""
    model._require_built("load_keras_weights")
    if "layers" not in h5file:
        raise ValueError(
            f"{source} is not a Keras 3 weights file: it has no 'layers' group (top-level entries "
            f"{sorted(h5file.keys())}). Legacy Keras 2 .h5 files are not supported; re-save with Keras 3"
        )
    keys = layer_keys(model.layers)
    ours = set(keys)
    stored = h5file["layers"]
    extra = sorted(k for k in stored.keys() if k not in ours and _has_arrays(stored[k]))
    if extra:
        raise ValueError(
            f"{source} holds weights for layers {extra} that the tinynn model does not have "
            f"(its layers are {keys}): the architectures differ"
        )
    new_weights = []
    for layer, key in zip(model.layers, keys):
        arrays = []
        for group_path, _, n in var_groups(layer, f"layers/{key}"):
            if n == 0:
                continue
            group = h5file.get(group_path)
            names = sorted(group.keys(), key=_int_key) if group is not None else []
            if names != [str(i) for i in range(n)]:
                raise ValueError(
                    f"{source}: {_who(layer)} expects {n} arrays at {group_path!r}, the file has "
                    f"{names if group is not None else 'no such group'}: the architectures differ"
                )
            for name in names:
                dataset = group[name]
                if dataset.attrs.get("dtype") == "bfloat16":
                    raise ValueError(f"{source}: {group_path}/{name} is bfloat16, which tinynn does not support")
                arrays.append(np.array(dataset))
        expected = [w.shape for w in layer.weights]
        got = [a.shape for a in arrays]
        if got != expected:
            raise ValueError(
                f"{source}: {_who(layer)} at 'layers/{key}' expects weight shapes {expected}, the file has {got}"
            )
        new_weights.extend(arrays)
    model.set_weights(new_weights)


def _int_key(name: str):
    return (0, int(name)) if name.isdigit() else (1, name)


def _has_arrays(group) -> bool:
    found = []
    group.visititems(lambda name, obj: found.append(name) if hasattr(obj, "shape") else None)
    return bool(found)


def _write_weights(model, h5file, include_optimizer: bool = False) -> None:
    model._require_built("save_keras_weights")
    h5file.create_group("vars").attrs["name"] = model.name
    if include_optimizer and getattr(model, "optimizer", None) is not None:
        arrays = keras_optimizer_arrays(model)
        if arrays is not None:
            group = h5file.create_group("optimizer").create_group("vars")
            group.attrs["name"] = model.optimizer.name
            for k, value in enumerate(arrays):
                group.create_dataset(str(k), data=value)
    h5file.create_group("layers")
    for layer, key in zip(model.layers, layer_keys(model.layers)):
        weights = layer.get_weights()
        i = 0
        for group_path, name, n in var_groups(layer, f"layers/{key}"):
            group = h5file.require_group(group_path)
            group.attrs["name"] = name
            for k in range(n):
                group.create_dataset(str(k), data=weights[i + k])
            i += n


# ---------------------------------------------------------------------------------------------- optimizer state
#: Keras creates optimizer slots group by group (``add_optimizer_variables`` calls), each group for every
#: variable in turn: Adam [m_0, v_0, m_1, v_1, ...] then [vhat_0, vhat_1, ...]. Stored after iterations and
#: learning_rate as ``optimizer/vars/0, 1, ...``.
_KERAS_SLOT_GROUPS = {
    "SGD": (("momentum",),),
    "RMSprop": (("velocity",), ("momentum",), ("average_gradient",)),
    "Adam": (("momentum", "velocity"), ("velocity_hat",)),
    "AdamW": (("momentum", "velocity"), ("velocity_hat",)),
    "Adagrad": (("accumulator",),),
}


def _keras_slot_order(optimizer, n_variables: int) -> list[tuple[str, int]] | None:
    """[(slot, variable index)] in Keras's variable order; None for an optimizer whose layout is unknown."""
    names = tuple(optimizer._slot_names)
    groups = _KERAS_SLOT_GROUPS.get(type(optimizer).__name__)
    if groups is None or set(names) - {n for g in groups for n in g}:
        return None
    order = []
    for group in groups:
        present = [n for n in group if n in names]
        for i in range(n_variables):
            order.extend((n, i) for n in present)
    return order


def keras_optimizer_arrays(model) -> list[np.ndarray] | None:
    """The compiled model's optimizer state as Keras stores it: iterations, learning_rate (unless a
    schedule), then the slots. An optimizer that has not stepped yet gets its initial slot values, as a
    Keras optimizer built by ``compile`` has. None if the layout is unknown."""
    optimizer = model.optimizer
    variables = model.trainable_weights
    order = _keras_slot_order(optimizer, len(variables))
    if order is None:
        return None
    state = optimizer.get_state()
    arrays = [np.asarray(state["iterations"], dtype=np.int64)]
    if "learning_rate" in state:
        arrays.append(np.asarray(state["learning_rate"]))
    for slot, i in order:
        key = f"{slot}_{i}"
        if key in state:
            arrays.append(state[key])
        else:
            w = variables[i]
            arrays.append(np.full(w.shape, optimizer._slot_initial_value(slot, w.dtype), dtype=w.dtype))
    return arrays


def _restore_optimizer(model, h5file, source: str) -> None:
    """Load ``optimizer/vars`` (Keras's layout) into the compiled model's tinynn optimizer, if it fits."""
    group = h5file.get("optimizer/vars")
    if group is None or model.optimizer is None:
        return
    arrays = [np.array(group[k]) for k in sorted(group.keys(), key=_int_key)]
    optimizer = model.optimizer
    variables = model.trainable_weights
    order = _keras_slot_order(optimizer, len(variables)) or []
    has_lr = "learning_rate" in optimizer.get_state()
    head = 2 if has_lr else 1
    if len(arrays) not in (head, head + len(order)) or (len(arrays) > head and not order):
        warnings.warn(
            f"{source}: the stored optimizer state has {len(arrays)} arrays, tinynn's {type(optimizer).__name__} "
            f"expects {head + len(order)}: the optimizer starts fresh", UserWarning, stacklevel=3,
        )
        return
    state = {"iterations": arrays[0]}
    if has_lr:
        state["learning_rate"] = arrays[1]
    for (slot, i), value in zip(order, arrays[head:]):
        if value.shape != variables[i].shape:
            raise ValueError(f"{source}: optimizer slot {slot!r} of variable {i} has shape {value.shape}, the "
                             f"variable {variables[i].shape}")
        state[f"{slot}_{i}"] = value.astype(variables[i].dtype, copy=False)
    optimizer.set_state(state)


def load_keras_weights(model, filepath) -> None:
    """Load a Keras 3 ``.weights.h5`` file (``keras_model.save_weights``) into a tinynn model of the same
    architecture. Every array is checked (count and shape, per layer) before any is loaded."""
    h5py = _h5py()
    path = os.fspath(filepath)
    try:
        h5file = h5py.File(path, "r")
    except OSError as err:
        raise ValueError(f"Cannot open {path!r} as an HDF5 (.weights.h5) file: {err}") from err
    with h5file:
        _read_weights(model, h5file, repr(path))


def save_keras_weights(model, filepath) -> None:
    """Write ``model``'s weights as a Keras 3 ``.weights.h5`` file (``keras_model.load_weights`` reads it)."""
    h5py = _h5py()
    path = os.fspath(filepath)
    if not path.endswith(".weights.h5"):
        raise ValueError(f"Keras weights files must end in '.weights.h5' (Keras refuses others), got {path!r}")
    model._require_built("save_keras_weights")
    with h5py.File(path, "w") as h5file:
        _write_weights(model, h5file)


# ---------------------------------------------------------------------------------------------- config: Keras -> tinynn
def _reject_unsafe(spec: dict, where: str) -> None:
    cls = spec.get("class_name")
    if cls == "Lambda":
        name = (spec.get("config") or {}).get("name")
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


def _dtype_name(value, where: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict) and value.get("class_name") in ("DTypePolicy", "FloatDTypePolicy"):
        name = (value.get("config") or {}).get("name")
        if isinstance(name, str) and not name.startswith("mixed"):
            return name
    raise ValueError(f"{where}: dtype policy {value!r} is not supported (tinynn computes in float32 or float64)")


def _accepted_arguments(cls) -> set[str]:
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


def _initializer_from_keras(spec, where: str):
    from . import initializers

    if spec is None or isinstance(spec, str):
        return spec
    _reject_unsafe(spec, where)
    cls = initializers._CLASS_NAMES.get(spec.get("class_name"))
    if cls is None:
        raise ValueError(f"{where}: initializer class {spec.get('class_name')!r} is not implemented by tinynn")
    return _construct(cls, dict(spec.get("config") or {}), where)


def _construct(cls, config: dict, where: str):
    accepted = _accepted_arguments(cls)
    kwargs = {}
    for key, value in config.items():
        if key in accepted:
            kwargs[key] = value
        elif key in _IGNORED_KEYS or value is None or value is False:
            continue  # an option tinynn lacks, switched off in the file: same function
        else:
            raise ValueError(
                f"{where}: option {key}={value!r} of {cls.__name__} is not supported by tinynn "
                f"(tinynn's {cls.__name__} accepts {sorted(accepted)})"
            )
    return cls(**kwargs)


def _is_layer_spec(value) -> bool:
    return isinstance(value, dict) and "class_name" in value and "config" in value


def layer_from_keras_config(spec: dict, where: str = "Keras config"):
    """A tinynn layer from one Keras layer spec ``{'class_name': ..., 'config': {...}}`` (JSON, no code)."""
    from .layers import registry

    _reject_unsafe(spec, where)
    cls_name = spec["class_name"]
    cls = registry().get(cls_name)
    if cls is None or cls_name in ("InputLayer",):
        raise ValueError(
            f"{where}: layer class {cls_name!r} is not implemented by tinynn; it knows {sorted(registry())}"
        )
    config = dict(spec.get("config") or {})
    where = f"{where}: {cls_name} {config.get('name')!r}"
    for key, value in list(config.items()):
        if key == "dtype":
            config[key] = _dtype_name(value, where)
        elif key.endswith("_initializer"):
            config[key] = _initializer_from_keras(value, f"{where} {key}")
        elif _is_layer_spec(value) and (value.get("module") == "keras.layers" or value["class_name"] in registry()):
            config[key] = layer_from_keras_config(value, where)
        elif isinstance(value, dict) and "class_name" in value:
            _reject_unsafe(value, f"{where} {key}")
            raise ValueError(f"{where}: option {key}={value.get('class_name')!r} (an object) is not supported")
    return _construct(cls, config, where)


def _input_shape_from(config: dict, layer_specs: list) -> tuple[tuple | None, int | None, list]:
    """(input shape without batch, batch size, remaining layer specs) of a Keras Sequential config."""
    if layer_specs and layer_specs[0].get("class_name") == "InputLayer":
        cfg = layer_specs[0].get("config") or {}
        batch_shape = cfg.get("batch_shape") or cfg.get("batch_input_shape")
        if batch_shape is None:
            raise ValueError(f"Keras config: InputLayer without a batch_shape: {cfg}")
        return tuple(batch_shape[1:]), batch_shape[0], layer_specs[1:]
    shape = config.get("build_input_shape")
    if shape is not None:
        return tuple(shape[1:]), shape[0], layer_specs
    return None, None, layer_specs


def model_from_keras_config(spec: dict, where: str = "Keras config"):
    """A tinynn ``Sequential`` from a Keras model config (``keras_model.get_config()`` wrapped as in
    ``config.json``, or the bare inner config). Unsupported layers are all named in one ``ValueError``."""
    from .layers import InputLayer
    from .models import Sequential

    if "class_name" in spec:
        _reject_unsafe(spec, where)
        if spec["class_name"] != "Sequential":
            raise ValueError(
                f"{where}: only Sequential models can be read into tinynn, this file holds a {spec['class_name']!r}"
            )
        config = dict(spec.get("config") or {})
        build = spec.get("build_config") or {}
        if "build_input_shape" not in config and build.get("input_shape") is not None:
            config["build_input_shape"] = build["input_shape"]
    else:
        config = dict(spec)
    shape, batch_size, layer_specs = _input_shape_from(config, list(config.get("layers") or []))
    problems, built = [], []
    for k, layer_spec in enumerate(layer_specs):
        try:
            built.append(layer_from_keras_config(layer_spec, f"{where}, layer {k}"))
        except ValueError as err:
            problems.append(str(err))
    if problems:
        raise ValueError(f"{where}: cannot build a tinynn model:\n  " + "\n  ".join(problems))
    model = Sequential(name=config.get("name"))
    if shape is not None:
        model.add(InputLayer(shape=shape, batch_size=batch_size))
    for layer in built:
        model.add(layer)
    return model


# ---------------------------------------------------------------------------------------------- config: tinynn -> Keras
def _keras_value(key: str, value):
    from . import initializers

    if isinstance(value, dict) and value.get("class_name") in initializers._CLASS_NAMES:
        return {"module": "keras.initializers", "class_name": value["class_name"], "config": value.get("config", {}),
                "registered_name": None}
    if _is_layer_spec(value):
        return _keras_spec(value)
    return value


def _keras_spec(tinynn_spec: dict) -> dict:
    config = {k: _keras_value(k, v) for k, v in tinynn_spec["config"].items()}
    return {"module": "keras.layers", "class_name": tinynn_spec["class_name"], "config": config,
            "registered_name": None}


def keras_config(model) -> dict:
    """The ``config.json`` document Keras writes for the same Sequential (loadable by ``keras.models.load_model``)."""
    from .layers import serialize

    model._require_built("save_keras_model")
    first = model.layers[0]
    if model.input_layer is not None:
        batch_shape = list(model.input_layer.shape)
    else:
        batch_shape = [None, *first.input_shape[1:]]
    input_dtype = "int32" if type(first).__name__ == "Embedding" else first.dtype
    input_spec = {"module": "keras.layers", "class_name": "InputLayer", "registered_name": None,
                  "config": {"batch_shape": batch_shape, "dtype": input_dtype, "sparse": False, "ragged": False,
                             "name": "input_layer", "optional": False}}
    policy = {"module": "keras", "class_name": "DTypePolicy", "config": {"name": first.dtype}, "registered_name": None}
    spec = {
        "module": "keras",
        "class_name": "Sequential",
        "config": {"name": model.name, "trainable": True, "dtype": policy,
                   "layers": [input_spec] + [_keras_spec(serialize(layer)) for layer in model.layers]},
        "registered_name": None,
        "build_config": {"input_shape": batch_shape},
    }
    compile_config = _keras_compile_config(model)
    if compile_config:
        spec["compile_config"] = compile_config
    return spec


def _keras_compile_config(model) -> dict | None:
    from . import losses, optimizers

    if getattr(model, "loss", None) is None:
        return None
    loss = losses.serialize(model.loss)
    return {
        "optimizer": optimizers.serialize(model.optimizer),
        "loss": {"module": "keras.losses", "class_name": loss["class_name"], "config": loss["config"],
                 "registered_name": None},
        "loss_weights": None,
        "metrics": [m if isinstance(m, str) else m.name for m in getattr(model, "_metric_specs", [])] or None,
        "weighted_metrics": None,
        "run_eagerly": False,
        "steps_per_execution": 1,
        "jit_compile": False,
    }


def _compile_from_keras(model, compile_config: dict, where: str, lr_dtype: str | None = None) -> None:
    """Compile ``model`` as the file's ``compile_config`` says. ``lr_dtype``: the dtype of the stored
    learning-rate variable (Keras's floatx when the optimizer was made), which the tinynn optimizer keeps."""
    from . import config as tn_config
    from . import losses, optimizers

    optimizer = compile_config.get("optimizer")
    loss = compile_config.get("loss")
    if optimizer is None or loss is None:
        return
    try:
        if isinstance(optimizer, dict):
            _reject_unsafe(optimizer, f"{where} optimizer")
        if isinstance(loss, dict):
            _reject_unsafe(loss, f"{where} loss")
            loss = {"class_name": loss["class_name"], "config": dict(loss.get("config") or {})}
        metrics = compile_config.get("metrics") or None
        if metrics is not None and not all(isinstance(m, str) for m in metrics):
            raise ValueError(f"only metrics given by name are supported, got {metrics!r}")
        old_floatx = tn_config.floatx()
        if lr_dtype in ("float32", "float64"):
            tn_config.set_floatx(lr_dtype)
        try:
            optimizer = optimizers.get(optimizer)
        finally:
            tn_config.set_floatx(old_floatx)
        model.compile(optimizer=optimizer, loss=losses.get(loss), metrics=metrics)
    except (ValueError, TypeError) as err:
        raise ValueError(f"{where}: cannot compile the tinynn model from the file's compile_config ({err}); "
                         "pass compile=False to load it uncompiled") from err


# ---------------------------------------------------------------------------------------------- .keras archives
def _read_member(archive: zipfile.ZipFile, name: str, path: str) -> bytes:
    try:
        info = archive.getinfo(name)
    except KeyError:
        members = archive.namelist()
        raise ValueError(f"{path!r} is not a Keras 3 archive: it has no {name} (members: {members})") from None
    if info.file_size > MAX_MEMBER_BYTES:
        raise ValueError(f"{path!r}: {name} would decompress to {info.file_size} bytes; refusing")
    return archive.read(name)


def load_keras_model(filepath, compile: bool = True):
    """Read a whole Keras 3 ``.keras`` archive (config + weights) into a tinynn ``Sequential``.

    The config is JSON mapped onto tinynn classes (no code runs); the weights come from
    ``model.weights.h5``. With ``compile=True`` a ``compile_config`` (optimizer, loss, metrics by name) is
    applied too, and the optimizer's state (iterations, learning rate, slots) is restored, so training
    continues where Keras stopped.
    """
    h5py = _h5py()
    path = os.fspath(filepath)
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path!r} is not a Keras 3 .keras archive (not a zip file)")
    with zipfile.ZipFile(path, "r") as archive:
        if WEIGHTS_FILE not in archive.namelist() and "model.weights.npz" in archive.namelist():
            raise ValueError(f"{path!r} stores its weights as .npz (weights_format='npz'); only h5 is supported")
        try:
            spec = json.loads(_read_member(archive, CONFIG_FILE, path).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"{path!r}: {CONFIG_FILE} is not valid JSON: {err}") from err
        weights = _read_member(archive, WEIGHTS_FILE, path)
    model = model_from_keras_config(spec, where=repr(path))
    if not model.built:
        raise ValueError(f"{path!r}: the model has no input shape, so its weights cannot be placed")
    with h5py.File(io.BytesIO(weights), "r") as h5file:
        _read_weights(model, h5file, f"{path!r} ({WEIGHTS_FILE})")
        if compile and spec.get("compile_config"):
            stored_lr = h5file.get("optimizer/vars/1")
            lr_dtype = str(stored_lr.dtype) if stored_lr is not None and stored_lr.shape == () else None
            _compile_from_keras(model, spec["compile_config"], repr(path), lr_dtype)
            _restore_optimizer(model, h5file, repr(path))
    return model


def save_keras_model(model, filepath) -> None:
    """Write ``model`` as a Keras 3 ``.keras`` archive that ``keras.models.load_model`` opens (config,
    weights, and when the model is compiled its compile config and optimizer state)."""
    h5py = _h5py()
    path = os.fspath(filepath)
    if not path.endswith(".keras"):
        raise ValueError(f"Keras archives must end in '.keras' (keras.models.load_model requires it), got {path!r}")
    config = keras_config(model)
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as h5file:
        _write_weights(model, h5file, include_optimizer="compile_config" in config)
    saved = datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S")
    metadata = {"keras_version": KERAS_FORMAT_VERSION, "date_saved": saved, "saved_by": "tinynn"}
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(METADATA_FILE, json.dumps(metadata))
        archive.writestr(CONFIG_FILE, json.dumps(config))
        archive.writestr(WEIGHTS_FILE, buffer.getvalue())


def is_keras_path(filepath: Any) -> bool:
    """True for paths tinynn.io hands to this module (``.keras``, ``.weights.h5``)."""
    path = os.fspath(filepath)
    return path.endswith((".keras", ".weights.h5"))
