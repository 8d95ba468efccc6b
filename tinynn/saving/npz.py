"""tinynn's own format: one ``.npz`` (zip of ``.npy`` arrays) holding a JSON config and the arrays. Never pickle.

Layout (every member a plain array; object dtypes are refused)::

    __config__     uint8 bytes of a UTF-8 JSON document: format, version, class_name, the model's get_config(),
                   num_weights, and when compiled: compile (optimizer, loss, metrics), optimizer_state_keys
    weight_<i>     the model's i-th weight (get_weights() order), in its own dtype: round trips are bit-identical
    optimizer_<k>  optimizer state entry optimizer_state_keys[k] (iterations, learning_rate, slots)

A weights-only file (``save_weights``) has ``__config__`` = {format, version, weights_only: true, num_weights,
shapes} and the ``weight_<i>`` members.

Reading parses the ``.npy`` header of every member first and checks it against the zip entry (the header's
shape × itemsize + header = the entry's size; deflate cannot expand more than ~1032×), then checks every
declared shape against the model, and only then reads any data: a few-kB file cannot make tinynn allocate
gigabytes, and a file that does not fit leaves the model unchanged.
"""

from __future__ import annotations

import io
import math
import re
import tokenize
import warnings
import zipfile
from dataclasses import dataclass

import numpy as np

from . import jsonio, model_io
from .errors import NPZ_MODEL, NPZ_WEIGHTS, reading

FORMAT = "tinynn"
VERSION = 1
MAX_MEMBERS = 100_000
_MEMBER = re.compile(r"^(__config__|weight_\d+|optimizer_\d+)\.npy$")


@dataclass(frozen=True)
class Member:
    """A ``.npy`` member whose header has been read and checked against its zip entry; no data read yet."""

    info: zipfile.ZipInfo
    shape: tuple
    dtype: np.dtype
    fortran: bool

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


# ---------------------------------------------------------------------------------------------- writing
def _encode(obj, where: str) -> np.ndarray:
    return np.frombuffer(jsonio.dumps(obj, where).encode("utf-8"), dtype=np.uint8)


def _archive(config: dict, arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, __config__=_encode(config, "config"), **arrays)
    return buffer.getvalue()


def model_bytes(model, include_optimizer: bool = True) -> bytes:
    """The whole ``.npz`` file for ``model`` (config, weights, compile config, optimizer state)."""
    model_io.require_built(model, "save")
    weights = model.get_weights()
    config = {"format": FORMAT, "version": VERSION, "class_name": type(model).__name__,
              "config": model.get_config(), "num_weights": len(weights)}
    arrays = {f"weight_{i}": w for i, w in enumerate(weights)}
    compile_config = model.get_compile_config()
    if compile_config is not None:
        config["compile"] = compile_config
        if include_optimizer:
            state = model.optimizer.get_state()
            config["optimizer_state_keys"] = list(state)
            arrays.update({f"optimizer_{k}": np.asarray(v) for k, v in enumerate(state.values())})
    return _archive(config, arrays)


def weights_bytes(model) -> bytes:
    model_io.require_built(model, "save_weights")
    weights = model.get_weights()
    config = {"format": FORMAT, "version": VERSION, "weights_only": True, "num_weights": len(weights),
              "shapes": [list(w.shape) for w in weights]}
    return _archive(config, {f"weight_{i}": w for i, w in enumerate(weights)})


# ---------------------------------------------------------------------------------------------- reading
def _header(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> Member:
    name = info.filename
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise ValueError(f"member {name!r} uses zip compression method {info.compress_type}, which .npz never uses")
    if info.compress_type == zipfile.ZIP_DEFLATED and info.file_size > 1032 * info.compress_size + 1024:
        raise ValueError(f"member {name!r} claims {info.file_size} bytes from {info.compress_size} compressed "
                         "bytes, more than deflate can produce: damaged or forged")
    with archive.open(info) as fh:
        version = np.lib.format.read_magic(fh)
        if version not in ((1, 0), (2, 0)):
            raise ValueError(f"member {name!r} has .npy format version {version}, expected 1.0 or 2.0")
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # numpy's note on headers written by Python 2
                shape, fortran, dtype = read_header(fh)
        except (tokenize.TokenError, SyntaxError, TypeError, KeyError, RecursionError) as err:
            # numpy re-reads a header it cannot parse as a Python 2 one, with the tokenizer, which raises these
            raise ValueError(f"member {name!r} has a damaged .npy header ({type(err).__name__}: {err})") from err
        header = fh.tell()
    if dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None:
        raise ValueError(f"member {name!r} has dtype {dtype}: only plain numeric arrays are read (never pickles)")
    if any(not isinstance(s, int) or s < 0 for s in shape):
        raise ValueError(f"member {name!r} declares an invalid shape {shape}")
    member = Member(info, tuple(shape), dtype, fortran)
    if header + member.nbytes != info.file_size:
        raise ValueError(f"member {name!r} declares shape {member.shape} {dtype} ({member.nbytes} bytes of data) "
                         f"but its zip entry holds {info.file_size - header} bytes: damaged or forged")
    return member


def _read(archive: zipfile.ZipFile, member: Member) -> np.ndarray:
    with archive.open(member.info) as fh:
        fh.read(member.info.file_size - member.nbytes)  # magic and header, checked by _header
        data = fh.read(member.nbytes)
    if len(data) != member.nbytes:
        raise ValueError(f"member {member.info.filename!r} is truncated")
    order = "F" if member.fortran else "C"
    return np.frombuffer(data, dtype=member.dtype).reshape(member.shape, order=order).copy(order="C")


class Archive:
    """An opened ``.npz``: its members' checked headers and its decoded config; arrays read on request."""

    def __init__(self, path: str, kind: str):
        self.path, self.kind = path, kind
        self.zip = zipfile.ZipFile(path, "r")
        try:
            infos = self.zip.infolist()
            if len(infos) > MAX_MEMBERS:
                raise ValueError(f"it has {len(infos)} members (more than {MAX_MEMBERS})")
            names = [info.filename for info in infos]
            if len(set(names)) != len(names):
                raise ValueError("it has duplicate member names")
            unexpected = [n for n in names if not _MEMBER.match(n)]
            if unexpected:
                raise ValueError(f"unexpected members {unexpected[:5]} (a tinynn .npz holds __config__.npy, "
                                 "weight_<i>.npy and optimizer_<k>.npy)")
            self.members = {info.filename[:-4]: _header(self.zip, info) for info in infos}
            if "__config__" not in self.members:
                raise ValueError(f"it has no __config__ entry (members: {sorted(self.members)[:8]}); it is not a "
                                 "tinynn file")
            raw = self.members["__config__"]
            if raw.dtype != np.uint8 or len(raw.shape) != 1 or raw.nbytes > jsonio.MAX_CONFIG_BYTES:
                raise ValueError(f"its __config__ entry is {raw.dtype} {raw.shape}, expected UTF-8 bytes")
            self.config = jsonio.loads(_read(self.zip, raw).tobytes())
            if not isinstance(self.config, dict) or self.config.get("format") != FORMAT:
                fmt = self.config.get("format") if isinstance(self.config, dict) else None
                raise ValueError(f"its __config__ says format {fmt!r}, expected {FORMAT!r}: not a tinynn file")
            version = self.config.get("version")
            if not isinstance(version, int) or version > VERSION:
                raise ValueError(f"it has format version {version!r}; this tinynn reads up to {VERSION}")
        except BaseException:
            self.zip.close()
            raise

    def close(self) -> None:
        self.zip.close()

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def entry(self, key: str, types, what: str):
        value = self.config.get(key)
        if not isinstance(value, types) or isinstance(value, bool):
            raise ValueError(f"its config entry {key!r} is {value!r}, expected {what}")
        return value

    def weight_members(self) -> list[Member]:
        n = self.entry("num_weights", int, "the number of weights")
        missing = [f"weight_{i}" for i in range(n) if f"weight_{i}" not in self.members]
        extra = [k for k in self.members if k.startswith("weight_") and int(k[7:]) >= n]
        if n < 0 or missing or extra:
            raise ValueError(f"its config lists {n} weights but the archive has members {sorted(self.members)}")
        return [self.members[f"weight_{i}"] for i in range(n)]

    def read(self, member: Member) -> np.ndarray:
        return _read(self.zip, member)


def _read_weights(archive: Archive, model, kind: str) -> list[np.ndarray]:
    members = archive.weight_members()
    model_io.check_weights(model, [(m.shape, m.dtype) for m in members], archive.path, kind,
                           [f"weight_{i}" for i in range(len(members))])
    return [archive.read(m) for m in members]


def _optimizer_state(archive: Archive, model) -> dict:
    keys = archive.entry("optimizer_state_keys", list, "a list of names")
    if not all(isinstance(k, str) for k in keys):
        raise ValueError(f"its optimizer_state_keys {keys!r} are not all names")
    members = {}
    for k, key in enumerate(keys):
        if f"optimizer_{k}" not in archive.members:
            raise ValueError(f"its optimizer state entry {key!r} (optimizer_{k}) is missing")
        members[key] = archive.members[f"optimizer_{k}"]
    extra = sorted(m for m in archive.members if m.startswith("optimizer_") and int(m[10:]) >= len(keys))
    if extra:
        raise ValueError(f"members {extra} are not listed in its optimizer_state_keys")
    variables = model.trainable_weights
    optimizer = model.optimizer
    expected = {"iterations", *(f"{s}_{i}" for i in range(len(variables)) for s in optimizer.slot_names)}
    if not callable(getattr(optimizer, "learning_rate_schedule", None)):
        expected.add("learning_rate")
    unbuilt = {"iterations", "learning_rate"} & expected
    if set(keys) not in (expected, unbuilt):
        raise ValueError(f"its optimizer state has entries {sorted(keys)}, the {type(optimizer).__name__} of this "
                         f"model expects {sorted(expected)}")
    for key, member in members.items():
        if key == "iterations":
            ok = member.shape == () and member.dtype.kind in "iu"
        elif key == "learning_rate":
            ok = member.shape == () and member.dtype.kind == "f"
        else:
            index = int(key.rsplit("_", 1)[1])
            ok = member.shape == tuple(variables[index].shape) and member.dtype.kind == "f"
        if not ok:
            raise ValueError(f"its optimizer state entry {key!r} is {member.dtype} {member.shape}, which does not fit")
    return {key: archive.read(member) for key, member in members.items()}


def load_model(path: str, compile: bool = True):
    with reading(path, NPZ_MODEL), Archive(path, NPZ_MODEL) as archive:
        if archive.config.get("weights_only"):
            raise ValueError("it holds weights only (written by save_weights): build the model and call "
                             "model.load_weights on it")
        class_name = archive.entry("class_name", str, "a model class name")
        config = archive.entry("config", dict, "the model config")
        model_io.check_classes(config, path, NPZ_MODEL)
        members = archive.weight_members()
        budget = model_io.declared_bytes([(m.shape, m.dtype) for m in members])
        model = model_io.build(class_name, config, budget, path, NPZ_MODEL)
        model.set_weights(_read_weights(archive, model, NPZ_MODEL))
        listed = archive.config.get("optimizer_state_keys")
        orphans = [m for m in archive.members if m.startswith("optimizer_")
                   if not isinstance(listed, list) or int(m[10:]) >= len(listed)]
        if orphans:
            raise ValueError(f"members {sorted(orphans)[:5]} are not listed in its optimizer_state_keys")
        compile_config = archive.config.get("compile")
        if compile and compile_config is not None:
            if not isinstance(compile_config, dict):
                raise ValueError(f"its compile entry is {compile_config!r}, expected a dict")
            model_io.compile_model(model, compile_config, path, NPZ_MODEL)
            if "optimizer_state_keys" in archive.config:
                model.optimizer.set_state(_optimizer_state(archive, model))
    return model


def load_weights(model, path: str) -> None:
    """Load the weights of a tinynn ``.npz`` (model or weights file) into ``model``: every array is checked
    against the model (count, shape, dtype) before the model changes."""
    model_io.require_built(model, "load_weights")
    with reading(path, NPZ_WEIGHTS), Archive(path, NPZ_WEIGHTS) as archive:
        arrays = _read_weights(archive, model, NPZ_WEIGHTS)
    model.set_weights(arrays)

