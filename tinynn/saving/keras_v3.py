"""Keras 3 files without Keras: ``.weights.h5`` and ``.keras`` archives (h5py, zipfile, json; no TensorFlow).

The format, as written by ``keras.Model.save`` / ``save_weights`` (checked against Keras 3.15)::

    model.keras                       a zip archive
        metadata.json                 {"keras_version": ..., "date_saved": ...}   (not read back by Keras)
        config.json                   {"class_name": "Sequential", "config": {"layers": [InputLayer, ...]}, ...}
        model.weights.h5              the same layout as a .weights.h5 file:

    model.weights.h5                  HDF5
        vars                          (attrs name=<model name>; the model's own variables: none)
        layers/<key>/vars/0, 1, ...   a layer's variables in get_weights() order (attrs name=<layer name>)
        layers/<key>/cell/vars/0..2   SimpleRNN/LSTM/GRU keep theirs in their cell
        layers/<key>/forward_layer/cell/vars/0..2, layers/<key>/backward_layer/cell/vars/0..2   Bidirectional
        optimizer/vars/0, 1, ...      iterations, learning rate, slots (tinynn.saving.keras_optimizer)

``<key>`` is *not* the layer's name: Keras addresses the layers of a model by their class name in snake case,
numbered in order of appearance over ``model.layers``: ``dense``, ``dense_1``, ``conv1d``, ``lstm``,
``simple_rnn``, ... (``keras.src.saving.saving_lib._save_container_state``). Weightless layers still get an
empty ``vars`` group, and so does each ``InputLayer`` of a functional model (``input_layer``,
``input_layer_1``: they are among its layers). A model nested in another is keyed by its Keras class
(``sequential``, ``functional``) and holds its own layers the same way::

        layers/sequential/vars                       (attrs name=<nested model name>; no arrays)
        layers/sequential/layers/dense/vars/0, 1     the nested model's layers, keyed among themselves

The config is translated by :mod:`tinynn.saving.keras_config` (:mod:`.keras_functional` for functional models).
"""

from __future__ import annotations

import datetime
import io
import zipfile

import numpy as np

from ..utils import to_snake_case
from . import hdf5, jsonio, keras_config, keras_optimizer, model_io
from .errors import KERAS_ARCHIVE, KERAS_WEIGHTS, reading
from .registry import is_model

CONFIG_FILE = "config.json"
METADATA_FILE = "metadata.json"
WEIGHTS_FILE = "model.weights.h5"
#: written to metadata.json; Keras only writes this file, it never reads it back
KERAS_FORMAT_VERSION = "3.15.1"
MAX_MEMBER_BYTES = 4 * 2**30  # refuse absurd archive members (zip bombs) before reading them
MAX_MEMBERS = 10_000

#: Keras keeps the variables of these layers in their cell (``layers/<key>/cell/vars``), under this name
_CELL_NAMES = {"SimpleRNN": "simple_rnn_cell", "LSTM": "lstm_cell", "GRU": "gru_cell"}


# ---------------------------------------------------------------------------------------------- weights layout
def layer_keys(layers: list) -> list[str]:
    """Keras's group key of each layer: snake-case class name, ``_1``, ``_2``... on repeats."""
    used: dict[str, int] = {}
    keys = []
    for layer in layers:
        key = to_snake_case(keras_config.keras_class_name(layer))
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
    if is_model(layer):  # a nested model: its layers below it, keyed among themselves
        groups = [(f"{path}/vars", layer.name, 0)]
        for sub, key in zip(layer.layers, layer_keys(layer.layers)):
            groups += var_groups(sub, f"{path}/layers/{key}")
        if sum(g[2] for g in groups) != n:
            raise ValueError(f"{type(layer).__name__} {layer.name!r}: its {n} weights are not its layers' in order, so "
                             "they cannot be mapped to Keras's layout")
        return groups
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


def _int_key(name: str):
    return (0, int(name)) if name.isdigit() else (1, name)


def _has_arrays(group) -> bool:
    found = []
    group.visititems(lambda name, obj: found.append(name) if hasattr(obj, "shape") else None)
    return bool(found)


def _locate_weights(model, h5file, source: str) -> list:
    """The dataset of each model weight (in ``model.weights`` order), every one checked against the model's
    shape, before any is read. Raises ``ValueError`` naming the layer and group."""
    if "layers" not in h5file:
        legacy = "layer_names" in h5file.attrs or "model_weights" in h5file
        hint = " (it looks like a Keras 2 legacy .h5 file: name it '*.h5', not '*.weights.h5')" if legacy else ""
        raise ValueError(f"it has no 'layers' group (top-level entries {sorted(h5file.keys())[:8]}){hint}")
    keys = layer_keys(model.layers)
    _check_no_extra_layers(model, h5file, "layers", source)
    datasets = []
    for layer, key in zip(model.layers, keys):
        found = []
        for group_path, _, n in var_groups(layer, f"layers/{key}"):
            if n == 0:
                continue
            group = hdf5.group(h5file, group_path, source)
            names = sorted(group.keys(), key=_int_key) if group is not None else []
            if names != [str(i) for i in range(n)]:
                raise ValueError(f"layer {layer.name!r} ({type(layer).__name__}) expects {n} arrays at "
                                 f"{group_path!r}, the file has {names if group is not None else 'no such group'}: "
                                 "the architectures differ")
            found.extend((f"{group_path}/{name}", hdf5.dataset(h5file, f"{group_path}/{name}", source))
                         for name in names)
        expected = [tuple(w.shape) for w in layer.weights]
        got = [tuple(ds.shape) if ds.shape is not None else None for _, ds in found]
        if got != expected:
            raise ValueError(f"layer {layer.name!r} ({type(layer).__name__}) at 'layers/{key}' expects weight shapes "
                             f"{expected}, the file has {got}")
        datasets.extend(found)
    return datasets


def _check_no_extra_layers(model, h5file, path: str, source: str) -> None:
    """The file's groups under ``path`` (a model's ``layers``, nested models' too) that hold arrays must all be
    layers of the model: weights for a layer the model lacks mean another architecture."""
    stored = hdf5.group(h5file, path, source)
    if stored is None:
        raise ValueError(f"it has no {path!r} group: the architectures differ")
    keys = layer_keys(model.layers)
    extra = sorted(k for k in stored.keys() if k not in set(keys) and _has_arrays(stored[k]))
    if extra:
        where = "" if path == "layers" else f" of nested model {model.name!r} ({path!r})"
        raise ValueError(f"it holds weights for layers {extra}{where} that the tinynn model does not have (its layers "
                         f"are {keys}): the architectures differ")
    for layer, key in zip(model.layers, keys):
        if is_model(layer) and layer.weights:
            _check_no_extra_layers(layer, h5file, f"{path}/{key}/layers", source)


def read_weights(model, h5file, source: str) -> list[np.ndarray]:
    """Every weight of ``model`` from a Keras 3 weights file, all checked before any is read."""
    located = _locate_weights(model, h5file, source)
    weights = model.weights
    return [hdf5.read_array(ds, w.shape, path) for (path, ds), w in zip(located, weights)]


def _write_weights(model, h5file, include_optimizer: bool = False) -> None:
    hdf5.write_text_attr(hdf5.make_group(h5file, "vars"), "name", model.name)
    if include_optimizer and getattr(model, "optimizer", None) is not None:
        arrays = keras_optimizer.state_arrays(model.optimizer, model.trainable_weights)
        if arrays is not None:
            group = hdf5.make_group(h5file, "optimizer/vars")
            hdf5.write_text_attr(group, "name", model.optimizer.name)
            for k, value in enumerate(arrays):
                hdf5.write_array(group, str(k), value)
    hdf5.make_group(h5file, "layers")
    for layer, key in zip(model.layers, layer_keys(model.layers)):
        weights = layer.get_weights()
        i = 0
        for group_path, name, n in var_groups(layer, f"layers/{key}"):
            group = hdf5.make_group(h5file, group_path)
            hdf5.write_text_attr(group, "name", name)
            for k in range(n):
                hdf5.write_array(group, str(k), weights[i + k])
            i += n


def weights_bytes(model) -> bytes:
    model_io.require_built(model, "save_weights")
    return hdf5.image(lambda h5file: _write_weights(model, h5file))


def _restore_optimizer(model, h5file, source: str, path: str) -> None:
    if "optimizer" not in h5file or model.optimizer is None:
        return  # saved without its optimizer (include_optimizer=False): the optimizer starts fresh
    group = hdf5.group(h5file, "optimizer/vars", source)
    names = sorted(group.keys(), key=_int_key) if group is not None else []
    if group is None:
        state, why = None, "its optimizer group has no vars"
    elif names != [str(i) for i in range(len(names))]:
        state, why = None, f"its optimizer/vars holds {names[:6]}, not the numbered arrays 0, 1, ... Keras writes"
    elif len(names) > 2 + 3 * len(model.trainable_weights):
        state, why = None, f"the file stores {len(names)} optimizer arrays, too many for this model"
    else:
        arrays = []
        for name in names:
            ds = hdf5.dataset(group, name, source)
            arrays.append(hdf5.read_array(ds, None if ds.shape == () else _slot_shape(ds, model), name, "fiu"))
        state, why = keras_optimizer.state_from_arrays(model.optimizer, model.trainable_weights, arrays)
    model_io.restore_optimizer(model, state, why, path)


def _slot_shape(ds, model) -> tuple:
    """A slot must have the shape of one of the model's variables (checked before reading it)."""
    shapes = {tuple(w.shape) for w in model.trainable_weights}
    if tuple(ds.shape) not in shapes:
        raise ValueError(f"optimizer array {ds.name!r} has shape {tuple(ds.shape)}, which no variable of the model has")
    return tuple(ds.shape)


def load_weights_file(model, path: str) -> None:
    """Load a Keras 3 ``.weights.h5`` file into ``model`` (checked completely before the model changes)."""
    model_io.require_built(model, "load_weights")
    with reading(path, KERAS_WEIGHTS), hdf5.open_path(path) as h5file:
        hdf5.scan(h5file)
        arrays = read_weights(model, h5file, "the file")
    model.set_weights(arrays)


# ---------------------------------------------------------------------------------------------- .keras archives
def _read_member(archive: zipfile.ZipFile, name: str, limit: int = MAX_MEMBER_BYTES) -> bytes:
    try:
        info = archive.getinfo(name)
    except KeyError:
        raise ValueError(f"it has no {name} (members: {archive.namelist()[:8]})") from None
    if info.file_size > limit:
        raise ValueError(f"its {name} would decompress to {info.file_size} bytes; refusing")
    if info.compress_type == zipfile.ZIP_DEFLATED and info.file_size > 1032 * info.compress_size + 1024:
        raise ValueError(f"its {name} claims {info.file_size} bytes from {info.compress_size} compressed bytes, "
                         "more than deflate can produce: damaged or forged")
    return archive.read(name)


def _open_archive(path: str) -> tuple[dict, bytes]:
    """(config.json as a dict, the bytes of model.weights.h5) of a ``.keras`` archive."""
    with zipfile.ZipFile(path, "r") as archive:
        names = archive.namelist()
        if len(names) > MAX_MEMBERS:
            raise ValueError(f"it has {len(names)} members (more than {MAX_MEMBERS})")
        if len(set(names)) != len(names):
            raise ValueError("it has duplicate member names")
        if WEIGHTS_FILE not in names and "model.weights.npz" in names:
            raise ValueError("it stores its weights as .npz (weights_format='npz'); only h5 is supported")
        spec = jsonio.loads(_read_member(archive, CONFIG_FILE, jsonio.MAX_CONFIG_BYTES))
        weights = _read_member(archive, WEIGHTS_FILE)
    return spec, weights


def load_model(path: str, compile: bool = True):
    """Read a whole Keras 3 ``.keras`` archive (config + weights) into a tinynn model.

    With ``compile=True`` a ``compile_config`` (optimizer, loss, metrics by name) is applied too, and the
    optimizer's state (iterations, learning rate, slots) is restored, so training continues where Keras stopped.
    """
    with reading(path, KERAS_ARCHIVE):
        spec, weights = _open_archive(path)
        class_name, config = keras_config.model_from_keras(spec, CONFIG_FILE)
        with hdf5.open_bytes(weights) as h5file:
            budget = hdf5.scan(h5file, "/layers")
            model = model_io.build(class_name, config, budget, path, KERAS_ARCHIVE)
            model.set_weights(read_weights(model, h5file, WEIGHTS_FILE))
            compile_config = spec.get("compile_config") if compile else None
            if compile_config:
                native = keras_config.compile_from_keras(compile_config, "compile_config")
                if native is not None:
                    model_io.compile_model(model, native, path, KERAS_ARCHIVE)
                    _restore_optimizer(model, h5file, WEIGHTS_FILE, path)
    return model


def load_archive_weights(model, path: str) -> None:
    """``model.load_weights('m.keras')``: the weights of a ``.keras`` archive (as Keras 3 allows)."""
    model_io.require_built(model, "load_weights")
    with reading(path, KERAS_ARCHIVE):
        _, weights = _open_archive(path)
        with hdf5.open_bytes(weights) as h5file:
            hdf5.scan(h5file)
            arrays = read_weights(model, h5file, WEIGHTS_FILE)
    model.set_weights(arrays)


def config_of(model) -> dict:
    """The ``config.json`` document Keras writes for the same model (``keras.models.load_model`` reads it)."""
    model_io.require_built(model, "save")
    spec = keras_config.model_to_keras(type(model).__name__, model.get_config(), keras_config.KERAS3)
    compile_config = model.get_compile_config()
    if compile_config is not None:
        spec["compile_config"] = keras_config.compile_to_keras(compile_config)
    return spec


def archive_bytes(model, include_optimizer: bool = True) -> bytes:
    """The whole ``.keras`` archive for ``model`` (config, weights, compile config and optimizer state)."""
    spec = config_of(model)
    config_text = jsonio.dumps(spec, "config")
    weights = hdf5.image(lambda h5file: _write_weights(model, h5file, include_optimizer and "compile_config" in spec))
    saved = datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S")
    metadata = {"keras_version": KERAS_FORMAT_VERSION, "date_saved": saved, "saved_by": "tinynn"}
    return _zip({METADATA_FILE: jsonio.dumps(metadata).encode(), CONFIG_FILE: config_text.encode(),
                 WEIGHTS_FILE: weights})


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()

