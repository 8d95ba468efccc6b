"""Keras 2 legacy ``.h5`` model and weights files, read and written with h5py only (no TensorFlow).

The layout, as written by Keras 2.x ``model.save('m.h5')`` and by Keras 3's legacy writer
(``keras.src.legacy.saving.legacy_h5_format``, which Keras 3.15 uses for ``model.save('m.h5')``)::

    m.h5                                   HDF5; root attributes:
        model_config                       JSON {"class_name": "Sequential", "config": {...}} (Keras 2 dialect:
                                           InputLayer batch_input_shape, dtype strings; or Keras 3's)
        training_config                    JSON {"loss", "metrics", "optimizer_config", ...} when compiled
        keras_version, backend
    model_weights                          attrs layer_names = [every layer's name, in model order]
        <layer name>                       attrs weight_names = [its variables' names, trainable ones first]
            <weight name>                  one dataset per name, the name being a path inside this group:
                                           Keras 2 'dense/kernel:0', 'lstm/lstm_cell/kernel:0',
                                           'bidirectional/forward_lstm/lstm_cell/kernel:0',
                                           'depthwise_conv1d/depthwise_kernel:0';
                                           Keras 3 'sequential/dense/kernel', 'sequential/lstm/lstm_cell/kernel'
        top_level_model_weights            the model's own variables (none)
    optimizer_weights                      attrs weight_names; datasets: Keras 3 iteration, learning_rate, slots;
                                           Keras 2.11+ iteration:0, slots (tinynn.saving.keras_optimizer)

A weights-only file (Keras 2 ``save_weights('w.h5')``) holds the ``model_weights`` content at its root.

Weights are matched to the model as Keras does it — the layers that have weights, in order, each layer's
arrays in ``weight_names`` order (trainable first) — and, where the file's names identify every variable, by
name: the per-class conventions below turn Keras 2's and Keras 3's names into tinynn's weight names (the cell
scopes of recurrent layers, ``forward_``/``backward_`` of Bidirectional, Keras 2's ``depthwise_kernel`` for a
depthwise convolution's ``kernel``). Every shape is checked against the model before any array is read.

Functional models: ``layer_names`` lists every layer, each ``InputLayer`` included (with no weights). A nested
model is one entry whose ``weight_names`` are its layers' (Keras 2 ``dense/kernel:0``, Keras 3
``inner/dense/kernel``), trainable ones first. Keras 2 orders a graph's layers differently from Keras 3 (and
tinynn) in some graphs, so when the file's layer names are exactly the model's (a whole-model file always),
layers are matched by name, and the optimizer's slots, stored in the writer's variable order (its layers'
order), are put back in the model's.

Keras 3 changed one formula: ``hard_sigmoid`` is clip(0.2·x + 0.5) in Keras 1/2 and clip(x/6 + 1/2) in Keras 3
and tinynn. A file whose ``keras_version`` is 1.x/2.x and that uses it is refused (it would predict differently;
Keras 3 loads it silently with the new formula). tinynn writes ``keras_version`` 3.15.1, as Keras 3's legacy
writer does, and warns when it saves a model using ``hard_sigmoid``, which Keras 2 would compute the old way.
"""

from __future__ import annotations

import warnings

from . import hdf5, jsonio, keras_config, keras_optimizer, model_io
from .errors import LEGACY_MODEL, LEGACY_WEIGHTS, reading
from .registry import is_model

#: the ``keras_version`` attribute written, as Keras 3's legacy writer does: the layers follow Keras 3's formulas
#: (``hard_sigmoid``), which the reader takes from this attribute; the config itself is in Keras 2's dialect
KERAS_FORMAT_VERSION = "3.15.1"
#: Keras 2 wrote a recurrent layer's variables under its cell's name scope
CELL_SCOPES = {"SimpleRNN": "simple_rnn_cell", "LSTM": "lstm_cell", "GRU": "gru_cell"}
#: per class, tinynn's weight name -> the name Keras 2 gave the same variable (only where they differ)
KERAS2_NAMES = {f"DepthwiseConv{d}D": {"kernel": "depthwise_kernel"} for d in (1, 2, 3)}


# ---------------------------------------------------------------------------------------------- naming conventions
def _roles(layer) -> list[str]:
    """tinynn's name of each of ``layer``'s weights inside the layer: 'kernel', 'forward_lstm/bias', ..."""
    prefix = f"{layer.name}/"
    return [n[len(prefix):] if n.startswith(prefix) else n for n in layer.weight_names]


def _inner_class(layer, role: str) -> str:
    """The class that owns the weight ``role`` (a Bidirectional's wrapped layer for 'forward_lstm/kernel')."""
    if type(layer).__name__ == "Bidirectional":
        return type(layer.forward_layer if role.startswith("forward_") else layer.backward_layer).__name__
    return type(layer).__name__


def _key(parts: list[str], cls: str) -> tuple[str, str]:
    """(direction, variable) of a weight path, in tinynn's naming."""
    direction = next((p.split("_", 1)[0] for p in parts[:-1] if p.startswith(("forward_", "backward_"))), "")
    base = parts[-1]
    aliases = {keras2: tinynn for tinynn, keras2 in KERAS2_NAMES.get(cls, {}).items()}
    return direction, aliases.get(base, base)


def _tinynn_key(layer, role: str) -> tuple[str, str]:
    return _key(role.split("/"), _inner_class(layer, role))


def _file_key(layer, weight_name: str) -> tuple[str, str]:
    name = weight_name[:-2] if weight_name.endswith(":0") else weight_name
    parts = [p for p in name.split("/") if p not in CELL_SCOPES.values()]
    direction = next((p.split("_", 1)[0] for p in parts[:-1] if p.startswith(("forward_", "backward_"))), "")
    cls = type(layer).__name__
    if cls == "Bidirectional":
        cls = type(layer.forward_layer if direction != "backward" else layer.backward_layer).__name__
    return _key(parts, cls)


def keras2_weight_name(layer, role: str) -> str:
    """The name Keras 2 gives the variable ``role`` of ``layer``: 'lstm/lstm_cell/kernel:0', ..."""
    cls = _inner_class(layer, role)
    *scope, base = role.split("/")
    base = KERAS2_NAMES.get(cls, {}).get(base, base)
    cell = [CELL_SCOPES[cls]] if cls in CELL_SCOPES else []
    return "/".join([layer.name, *scope, *cell, base]) + ":0"


def weight_names(layer) -> list[str]:
    """Keras 2's name of each of ``layer``'s variables, in ``layer.weights`` order; a nested model's variables
    are named as its layers name them (Keras 2 writes ``dense/kernel:0`` inside the nested model's group)."""
    if is_model(layer):
        return [name for sub in layer.layers for name in weight_names(sub)]
    return [keras2_weight_name(layer, role) for role in _roles(layer)]


def legacy_order(layer) -> list[int]:
    """Indices of ``layer.weights`` in Keras's legacy order: trainable weights first, then the others."""
    mask = list(layer.trainable_mask)
    return [i for i, t in enumerate(mask) if t] + [i for i, t in enumerate(mask) if not t]


# ---------------------------------------------------------------------------------------------- reading weights
def _weights_group(h5file, kind: str):
    if "model_weights" in h5file:
        return hdf5.group(h5file, "model_weights", "the file"), "model_weights"
    if "layer_names" in h5file.attrs:
        return h5file, ""
    if "layers" in h5file or "vars" in h5file:
        raise ValueError("it is a Keras 3 weights file (it has a 'layers' group): name it '*.weights.h5'")
    raise ValueError(f"it has neither a model_weights group nor a layer_names attribute (top-level entries "
                     f"{sorted(h5file.keys())[:8]})")


def _match(layer, names: list[str], datasets: list, where: str) -> list:
    """The file's datasets of ``layer`` in ``layer.weights`` order (by name when the names identify every
    variable, else in Keras's legacy order), shapes checked."""
    n = len(layer.weights)
    if len(names) != n:
        raise ValueError(f"{where} stores {len(names)} arrays {names}, layer {layer.name!r} "
                         f"({type(layer).__name__}) has {n}")
    roles = _roles(layer)
    wanted = [_tinynn_key(layer, r) for r in roles]
    found = [_file_key(layer, name) for name in names]
    if not is_model(layer) and len(set(wanted)) == n and sorted(found) == sorted(wanted):
        ordered = [datasets[found.index(key)] for key in wanted]
    else:
        ordered = [None] * n
        for position, index in enumerate(legacy_order(layer)):
            ordered[index] = datasets[position]
    for ds, w, role in zip(ordered, layer.weights, roles):
        shape = tuple(ds.shape) if ds.shape is not None else None
        if shape != tuple(w.shape):
            raise ValueError(f"{where}: {ds.name!r} has shape {shape}, layer {layer.name!r} "
                             f"({type(layer).__name__}) expects {tuple(w.shape)} for its {role!r}")
    return ordered


def _locate(model, group, where: str) -> tuple[dict, list]:
    """(each weighted layer's datasets in ``layer.weights`` order, by ``id(layer)``; the model's weighted layers
    in the file's order). Layers pair by name when the file's names are exactly the model's, else in order."""
    layer_names = hdf5.string_list_attr(group, "layer_names", where or "the file")
    stored = []
    for name in layer_names:
        layer_group = hdf5.group(group, name, where or "the file")
        if layer_group is None:
            raise ValueError(f"layer_names lists {name!r} but {where or 'the file'} has no such group")
        weight_names = hdf5.string_list_attr(layer_group, "weight_names", f"{where}/{name}")
        if weight_names:
            stored.append((name, layer_group, weight_names))
    if "top_level_model_weights" in group:
        top = hdf5.group(group, "top_level_model_weights", where or "the file")
        if hdf5.string_list_attr(top, "weight_names", "top_level_model_weights"):
            raise ValueError("it stores model-level (top_level_model_weights) variables, which tinynn models lack")
    layers = [layer for layer in model.layers if layer.weights]
    if len(stored) != len(layers):
        raise ValueError(f"it stores weights for {len(stored)} layers {[s[0] for s in stored]}, the model has "
                         f"{len(layers)} layers with weights {[layer.name for layer in layers]}: the architectures "
                         "differ")
    by_name = {layer.name: layer for layer in layers}
    file_names = [s[0] for s in stored]
    if sorted(file_names) == sorted(by_name) and len(set(file_names)) == len(file_names):
        file_order = [by_name[name] for name in file_names]
    else:
        file_order = layers  # Keras's topological loading: the k-th weighted layer of each
    located = {}
    for layer, (name, layer_group, weight_names) in zip(file_order, stored):
        datasets = []
        for weight_name in weight_names:
            ds = hdf5.dataset(layer_group, weight_name, f"{where}/{name}")
            if ds is None:
                raise ValueError(f"{where}/{name} lists weight {weight_name!r} but has no such dataset")
            datasets.append(ds)
        located[id(layer)] = _match(layer, weight_names, datasets, f"{where}/{name}")
    return located, file_order


def read_weights(model, group, where: str) -> list:
    """Every weight of ``model`` from a legacy weights group, all checked before any is read."""
    located, _ = _locate(model, group, where)
    return _read_located(model, located)


def _read_located(model, located: dict) -> list:
    arrays = []
    for layer in model.layers:
        for ds, w in zip(located.get(id(layer), []), layer.weights):
            arrays.append(hdf5.read_array(ds, w.shape, ds.name))
    return arrays


def _trainable_indices(model) -> dict[int, list[int]]:
    """For each layer (by id), the indices of its variables in ``model.trainable_weights``."""
    mask, position, k, out = model.trainable_mask, 0, 0, {}
    for layer in model.layers:
        n = len(layer.weights)
        out[id(layer)] = []
        for trainable in mask[position:position + n]:
            if trainable:
                out[id(layer)].append(k)
                k += 1
        position += n
    return out


def file_variable_order(model, file_order: list) -> list[int]:
    """Indices into ``model.trainable_weights`` in the order the file's writer listed its trainable variables
    (layer by layer in the file's layer order; within a layer in the layer's own order)."""
    indices = _trainable_indices(model)
    order = [i for layer in file_order for i in indices[id(layer)]]
    return order if sorted(order) == list(range(len(model.trainable_weights))) else list(range(len(order)))


def _restore_optimizer(model, h5file, path: str, order: list[int]) -> None:
    """The optimizer's state from ``optimizer_weights``; ``order`` (:func:`file_variable_order`) says which of
    the model's trainable variables the file's k-th variable is."""
    if model.optimizer is None:
        return
    if "optimizer_weights" not in h5file:  # Keras writes both or neither (include_optimizer)
        model_io.restore_optimizer(model, None, "it has a training config but no optimizer_weights", path)
        return
    group = hdf5.group(h5file, "optimizer_weights", "the file")
    names = hdf5.string_list_attr(group, "weight_names", "optimizer_weights")
    variables = [model.trainable_weights[i] for i in order]
    shapes = {tuple(w.shape) for w in variables} | {()}
    if len(names) > 2 + 3 * len(variables):
        state, why = None, f"the file stores {len(names)} optimizer arrays, too many for this model"
    else:
        arrays = []
        for name in names:
            ds = hdf5.dataset(group, name, "optimizer_weights")
            if ds is None:
                raise ValueError(f"optimizer_weights lists {name!r} but has no such dataset")
            if ds.shape is None or tuple(ds.shape) not in shapes:
                raise ValueError(f"optimizer array {name!r} has shape {ds.shape}, which no variable of the model has")
            arrays.append(hdf5.read_array(ds, None, f"optimizer_weights/{name}", "fiu"))
        state, why = keras_optimizer.state_from_arrays(model.optimizer, variables, arrays)
        if state is not None:  # slot keys are '<slot>_<variable index>': file order -> the model's
            state = {_renumber(key, order): value for key, value in state.items()}
    model_io.restore_optimizer(model, state, why, path)


def _renumber(key: str, order: list[int]) -> str:
    slot, _, index = key.rpartition("_")
    return f"{slot}_{order[int(index)]}" if slot and index.isdigit() else key


def load_model(path: str, compile: bool = True):
    """A tinynn model from a Keras 2 (or Keras 3 legacy) ``.h5`` model file: config, weights, and with
    ``compile=True`` the training config (optimizer, loss, metrics) and the optimizer's state."""
    with reading(path, LEGACY_MODEL), hdf5.open_path(path) as h5file:
        text = hdf5.string_attr(h5file, "model_config", "the file")
        if text is None:
            if "layer_names" in h5file.attrs:
                raise ValueError("it holds weights only (written by save_weights): build the model and call "
                                 "model.load_weights on it")
            raise ValueError("it has no model_config attribute, so it is not a Keras model file")
        budget = hdf5.scan(h5file, "/model_weights")
        spec = jsonio.loads(text)
        version = hdf5.string_attr(h5file, "keras_version", "the file") or "1"  # Keras's own default
        class_name, config = keras_config.model_from_keras(spec, "model_config", version)
        group, where = _weights_group(h5file, LEGACY_MODEL)
        model = model_io.build(class_name, config, budget, path, LEGACY_MODEL)
        located, file_order = _locate(model, group, where)
        model.set_weights(_read_located(model, located))
        training = hdf5.string_attr(h5file, "training_config", "the file") if compile else None
        if training is not None:
            native = keras_config.compile_from_keras(jsonio.loads(training), "training_config")
            if native is not None:
                model_io.compile_model(model, native, path, LEGACY_MODEL)
                _restore_optimizer(model, h5file, path, file_variable_order(model, file_order))
    return model


def load_weights(model, path: str) -> None:
    """``model.load_weights('w.h5')``: weights of a legacy model or weights file, checked before any change."""
    model_io.require_built(model, "load_weights")
    with reading(path, LEGACY_WEIGHTS), hdf5.open_path(path) as h5file:
        hdf5.scan(h5file)
        group, where = _weights_group(h5file, LEGACY_WEIGHTS)
        arrays = read_weights(model, group, where)
    model.set_weights(arrays)


# ---------------------------------------------------------------------------------------------- writing
def _write_weights_group(group, model) -> None:
    hdf5.write_string_list_attr(group, "layer_names", [layer.name for layer in model.layers])
    hdf5.write_text_attr(group, "backend", "tensorflow")
    hdf5.write_text_attr(group, "keras_version", KERAS_FORMAT_VERSION)
    for layer in sorted(model.layers, key=lambda layer: layer.name):  # as Keras: groups in name order
        layer_group = hdf5.make_group(group, layer.name)
        all_names = weight_names(layer)
        if len(set(all_names)) != len(all_names):
            raise ValueError(f"{type(layer).__name__} {layer.name!r}: its layers give two variables the same Keras 2 "
                             f"name ({sorted({n for n in all_names if all_names.count(n) > 1})}); rename its layers "
                             "to save it as .h5")
        weights = layer.get_weights()
        order = legacy_order(layer)
        names = [all_names[i] for i in order]
        hdf5.write_string_list_attr(layer_group, "weight_names", names)
        for name, i in zip(names, order):
            hdf5.write_array(layer_group, name, weights[i])
    top = hdf5.make_group(group, "top_level_model_weights")
    hdf5.write_string_list_attr(top, "weight_names", [])


def _variable_paths(model) -> list[str]:
    """Keras 3's variable paths, in ``model.weights`` order: a Sequential's variables live under its name scope
    (``sequential/dense/kernel``), a functional model's under their layers' (``dense/kernel``), a nested model's
    under its name (``inner/dense/kernel``). Keras reads the optimizer's arrays by position; the names inform."""
    prefix = f"{model.name}/" if keras_config.keras_class_name(model) == "Sequential" else ""
    return [f"{prefix}{layer.name}/{name}" if is_model(layer) else f"{prefix}{name}"
            for layer in model.layers for name in layer.weight_names]


def _write_optimizer(h5file, model) -> None:
    arrays = keras_optimizer.state_arrays(model.optimizer, model.trainable_weights)
    if arrays is None:
        return
    opt = model.optimizer.name
    has_lr = "learning_rate" in model.optimizer.get_state()
    names = [f"{opt}/iteration"] + ([f"{opt}/learning_rate"] if has_lr else [])
    order = keras_optimizer.slot_order(model.optimizer, len(model.trainable_weights)) or []
    variable_names = [n for n, t in zip(_variable_paths(model), model.trainable_mask) if t]
    names += [f"{opt}/{variable_names[i].replace('/', '_')}_{slot}" for slot, i in order]
    group = hdf5.make_group(h5file, "optimizer_weights")
    hdf5.write_string_list_attr(group, "weight_names", names)
    for name, value in zip(names, arrays):
        hdf5.write_array(group, name, value)


def model_bytes(model, include_optimizer: bool = True) -> bytes:
    """The whole legacy ``.h5`` file for ``model`` (Keras 2 dialect config; Keras 3's optimizer layout)."""
    model_io.require_built(model, "save")
    spec = keras_config.model_to_keras(type(model).__name__, model.get_config(), keras_config.KERAS2)
    changed = [name for name in keras_config.KERAS2_ONLY_FORMULAS if f'"{name}"' in jsonio.dumps(spec)]
    if changed:
        warnings.warn(f"{type(model).__name__} {model.name!r} uses {changed}, which Keras 2 computes with another "
                      f"formula ({'; '.join(keras_config.KERAS2_ONLY_FORMULAS[c] for c in changed)}): Keras 3 "
                      "reads this .h5 file right, Keras 2 would predict differently", UserWarning, stacklevel=4)
    config_text = jsonio.dumps(spec, "model_config")
    compile_config = model.get_compile_config() if include_optimizer else None
    training_text = None
    if compile_config is not None:
        training_text = jsonio.dumps(keras_config.training_config_to_keras(compile_config), "training_config")

    def write(h5file) -> None:
        hdf5.write_text_attr(h5file, "backend", "tensorflow")
        hdf5.write_text_attr(h5file, "keras_version", KERAS_FORMAT_VERSION)
        hdf5.write_text_attr(h5file, "model_config", config_text)
        if training_text is not None:
            hdf5.write_text_attr(h5file, "training_config", training_text)
        _write_weights_group(hdf5.make_group(h5file, "model_weights"), model)
        if training_text is not None:
            _write_optimizer(h5file, model)

    return hdf5.image(write)


def weights_bytes(model) -> bytes:
    """A Keras 2 weights-only ``.h5`` (``save_weights('w.h5')``): the ``model_weights`` layout at the root."""
    model_io.require_built(model, "save_weights")
    return hdf5.image(lambda h5file: _write_weights_group(h5file, model))

