"""Damaged files, drawn by hypothesis, for every format tinynn reads: each load must give a clear error or the
file's own weights — never an unclear error, a wrong answer, a half-changed model or a crash.

A valid file of each format is written once for each model kind (:data:`file_cases.MODEL_KINDS`: a Sequential
model and a functional one with shared and merge layers, a nested Sequential and a nested functional model,
compiled per output); each example damages a copy and a worker subprocess loads it and judges the outcome
(:func:`file_cases.judge`). The input classes: truncation, byte flips, zip members dropped or renamed, HDF5
objects deleted or moved, wrong JSON, weights rewritten in other dtypes or shapes, declared shapes of gigabytes
(.npy headers, HDF5 datasets, configs), and HDF5 links, external storage and virtual datasets; for functional
models also damaged graphs (tensor references to unknown layers or calls, cycles, calls removed, input shapes
that are absurd). ``ROBUSTNESS_FILE_TABLE=path`` writes the outcome table.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import warnings
import zipfile

import file_cases as fc
import h5py
import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

ALL = sorted(fc.FORMATS)
_counter = itertools.count()


class Env(tuple):
    """(folder, original file bytes per format, worker, reference, model kind); a short repr for hypothesis."""

    def __repr__(self) -> str:
        return "env"

    @property
    def kind(self) -> str:
        return self[4]


@pytest.fixture(scope="module")
def worker():
    worker = fc.FileWorker()
    yield worker
    worker.close()
    table_path = os.environ.get("ROBUSTNESS_FILE_TABLE")
    if table_path:
        with open(table_path, "a") as fh:
            fh.write(fc.table_markdown(fc.TABLE) + "\n")


@pytest.fixture(scope="module", params=["functional", "sequential"])
def env(request, tmp_path_factory, worker):
    folder = tmp_path_factory.mktemp(f"files_{request.param}")
    model = fc.make_model(kind=request.param)
    originals = {fmt: open(fc.write_valid(model, fmt, str(folder)), "rb").read() for fmt in ALL}
    return Env((folder, originals, worker, fc.reference(model), request.param))


def check(env, fmt: str, cls: str, data: bytes, expected="reference", must_mention: str | None = None) -> None:
    folder, _, worker, reference, kind = env
    _, name = fc.FORMATS[fmt]
    path = folder / f"{next(_counter)}_{name}"
    path.write_bytes(data)
    outcome, detail = worker.judge(fmt, str(path), expected, reference, kind)
    fc.TABLE[(cls if kind == "sequential" else f"{cls} ({kind})", outcome)] += 1
    path.unlink()
    assert outcome in ("clear error", "correct"), f"{cls}, {fmt} ({kind} model): {outcome}: {detail}"
    if must_mention is not None:
        assert outcome == "clear error" and must_mention in detail, f"{cls}, {fmt} ({kind}): {outcome}: {detail}"


def original(env, fmt: str) -> bytes:
    return env[1][fmt]


# ---------------------------------------------------------------------------------------------- bytes
@pytest.mark.parametrize("fmt", ALL)
@given(cut=st.floats(0, 1, exclude_max=True))
def test_truncated_files(env, fmt, cut):
    data = original(env, fmt)
    check(env, fmt, "truncated", data[: int(cut * len(data))])


@pytest.mark.parametrize("fmt", ALL)
@given(flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(1, 255)), min_size=1, max_size=4))
def test_byte_flips(env, fmt, flips):
    data = bytearray(original(env, fmt))
    for where, mask in flips:
        data[int(where * len(data))] ^= mask
    check(env, fmt, "byte flips", bytes(data))


# ---------------------------------------------------------------------------------------------- structure
@pytest.mark.parametrize("fmt", fc.ZIP_FORMATS)
@given(op=st.sampled_from(["drop", "rename", "swap", "duplicate"]), k=st.integers(0, 50), new=st.sampled_from(
    ["weight_9.npy", "weight_0", "x.npy", "__config__.npy", "config.json", "model.weights.h5", "../evil.npy"]))
def test_zip_members_dropped_or_renamed(env, fmt, op, k, new):
    members = list(fc.zip_members(original(env, fmt)).items())
    i = k % len(members)
    # swap with a member of another size: a swap of equal-shaped arrays is a valid file holding other values
    j = next(m % len(members) for m in range(i + 1, i + len(members) + 1)
             if len(members[m % len(members)][1]) != len(members[i][1]) or m % len(members) == i)
    if op == "drop":
        del members[i]
    elif op == "rename":
        members[i] = (new, members[i][1])
    elif op == "swap":
        members[i], members[j] = (members[i][0], members[j][1]), (members[j][0], members[i][1])
    else:
        members.append(members[i])
    data = fc.make_zip(dict(members)) if op != "duplicate" else _zip_with_duplicates(members)
    check(env, fmt, "zip members dropped/renamed", data)


def _zip_with_duplicates(members: list[tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate name: that is the point
        with zipfile.ZipFile(buffer, "w") as archive:
            for name, content in members:
                archive.writestr(name, content)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", fc.HDF5_FORMATS)
@given(op=st.sampled_from(["delete", "move", "delete group", "add dataset"]), k=st.integers(0, 100))
def test_hdf5_objects_deleted_or_moved(env, fmt, op, k):
    def edit(h5file):
        names = fc.datasets(h5file)
        name = names[k % len(names)]
        if op == "delete":
            del h5file[name]
        elif op == "move":
            h5file.move(name, names[(k + 1) % len(names)] + "_moved" if len(names) > 1 else name + "_x")
        elif op == "delete group":
            parent = name.rpartition("/")[0]
            if parent:
                del h5file[parent]
        else:
            h5file.create_dataset(name.rpartition("/")[0] + "/extra_99" if "/" in name else "extra_99",
                                  data=np.ones(3, "float32"))

    check(env, fmt, "HDF5 objects deleted/moved", fc.edit_weights_h5(fmt, original(env, fmt), edit))


# ---------------------------------------------------------------------------------------------- JSON
WRONG_VALUES = [None, -1, 0, 2**40, "x", [], {}, 1e308, True, 1.5, "Lambda", [None], {"class_name": "Lambda"}]


@pytest.mark.parametrize("fmt", fc.CONFIG_FORMATS)
@given(edit=st.one_of(
    st.tuples(st.just("cut"), st.floats(0, 1, exclude_max=True)),
    st.tuples(st.just("root"), st.sampled_from(WRONG_VALUES)),
    st.tuples(st.just("delete"), st.integers(0, 10**6)),
    st.tuples(st.just("set"), st.integers(0, 10**6), st.sampled_from(WRONG_VALUES)),
))
def test_wrong_json(env, fmt, edit):
    data = original(env, fmt)
    text = fc.json_text(fmt, data)
    if edit[0] == "cut":
        new = text[: int(edit[1] * len(text))]
    elif edit[0] == "root":
        new = json.dumps(edit[1])
    else:
        value = json.loads(text)
        paths = [p for p in fc.json_paths(value) if p]
        path = paths[edit[1] % len(paths)]
        value = fc.set_json(value, path, None if edit[0] == "delete" else edit[2], delete=edit[0] == "delete")
        new = json.dumps(value)
    check(env, fmt, "wrong JSON", fc.with_json_text(fmt, data, new))


# ---------------------------------------------------------------------------------------------- arrays
FLOATS = ["float16", "float32", "float64", ">f8"]
NOT_FLOATS = ["int32", "int64", "uint8", "bool", "complex64", "S8"]


def _rewrite_weight(fmt: str, data: bytes, k: int, make) -> tuple[bytes, int]:
    """Replace weight ``k`` (mod the count) by ``make(old array)``; returns the file and the weight index."""
    if fmt in ("npz model", "npz weights"):
        members = fc.zip_members(data)
        names = sorted(n for n in members if n.startswith("weight_"))
        name = names[k % len(names)]
        old = np.load(io.BytesIO(members[name]), allow_pickle=False)
        members[name] = make(old, "npz")
        return fc.make_zip(members), int(name[7:-4])
    chosen = {}

    def edit(h5file):
        names = fc.weight_datasets(h5file)
        name = names[k % len(names)]
        chosen["name"] = name
        old = h5file[name][()]
        fc.replace_dataset(h5file, name, lambda parent, base: make(old, (parent, base)))

    return fc.edit_weights_h5(fmt, data, edit), chosen["name"]


@pytest.mark.parametrize("fmt", ALL)
@given(k=st.integers(0, 100), dtype=st.sampled_from(FLOATS + NOT_FLOATS))
def test_weights_in_other_dtypes(env, fmt, k, dtype):
    cast = {}

    def make(old, where):
        new = old.astype(dtype) if dtype != "S8" else np.array([b"abc"] * old.size, "S8").reshape(old.shape)
        cast["value"] = new
        if where == "npz":
            return fc.npy_bytes(new)
        parent, base = where
        parent.create_dataset(base, data=new)

    data, which = _rewrite_weight(fmt, original(env, fmt), k, make)
    expected = None
    if dtype in FLOATS:
        reference = env[3][0]
        index = which if isinstance(which, int) else _index_of(reference, cast["value"], fmt, which)
        expected = list(reference)
        expected[index] = cast["value"]
    check(env, fmt, "weights in other dtypes", data, expected)


def _index_of(reference: list, value: np.ndarray, fmt: str, name: str) -> int:
    """Which model weight an HDF5 dataset holds: the one whose values it carries (all weights differ)."""
    matches = [i for i, w in enumerate(reference)
               if w.shape == value.shape and np.array_equal(w.astype(value.dtype), value)]
    assert len(matches) == 1, (fmt, name)
    return matches[0]


@pytest.mark.parametrize("fmt", ALL)
@given(k=st.integers(0, 100), shape=st.lists(st.integers(0, 5), min_size=0, max_size=3).map(tuple))
def test_weights_of_other_shapes(env, fmt, k, shape):
    def make(old, where):
        new = np.resize(old.astype("float32"), shape)
        if new.shape == old.shape:
            new = np.resize(new, (*shape, 2))
        if where == "npz":
            return fc.npy_bytes(new)
        where[0].create_dataset(where[1], data=new)

    data, _ = _rewrite_weight(fmt, original(env, fmt), k, make)
    check(env, fmt, "weights of other shapes", data, None)


@pytest.mark.parametrize("fmt", ALL)
@given(k=st.integers(0, 100), exponent=st.integers(20, 50))
def test_declared_shapes_of_gigabytes(env, fmt, k, exponent):
    """A forged .npy header / an HDF5 dataset that declares 2**exponent elements but stores almost nothing."""
    def make(old, where):
        shape = (2**exponent, *old.shape[1:]) if old.ndim else (2**exponent,)
        if where == "npz":
            return fc.npy_with_header(shape, "<f4", old.astype("<f4").tobytes())
        parent, base = where
        ds = parent.create_dataset(base, shape=shape, dtype="float32", chunks=(64, *old.shape[1:]) if old.ndim else
                                   (64,), compression="gzip")
        ds[:1] = 1.0

    data, _ = _rewrite_weight(fmt, original(env, fmt), k, make)
    check(env, fmt, "declared shapes of gigabytes", data, None)


@pytest.mark.parametrize("fmt", fc.CONFIG_FORMATS)
@given(k=st.integers(0, 100), exponent=st.integers(20, 50))
def test_configs_asking_for_gigabytes(env, fmt, k, exponent):
    """units / filters / an input size of 2**exponent in the config: refused before allocating."""
    data = original(env, fmt)
    value = json.loads(fc.json_text(fmt, data))
    paths = [p for p in fc.json_paths(value) if p and p[-1] in ("units", "filters")]
    # the last input axis sizes the first kernel (the time axis sizes no weight: a long input is fine); a tinynn
    # InputLayer (functional config) says "shape" (a tensor entry's "shape" in a call is a record, never read)
    paths += [(*p, -1) for p in fc.json_paths(value) if p and p[-1] in ("batch_shape", "batch_input_shape")
              or _is_input_layer_shape(value, p)]
    if not paths:  # a weights-only npz has no layer config
        return
    path = paths[k % len(paths)]
    try:
        fc.set_json(value, path, 2**exponent)
    except (IndexError, KeyError):
        return
    check(env, fmt, "configs asking for gigabytes", fc.with_json_text(fmt, data, json.dumps(value)), None)


# ---------------------------------------------------------------------------------------------- graphs
MODEL_FORMATS = ("npz model", "keras archive", "h5 model")
GRAPH_EDITS = ("unknown layer", "unknown call", "unknown output index", "cycle", "calls removed", "not a reference",
               "duplicate name", "input shape")


def _damage_graph(config: dict, edit: str, k: int) -> None:
    """Damage the functional model ``config`` (in place) so that it describes no valid graph."""
    refs = fc.graph_refs(config)
    ref_path = refs[k % len(refs)]
    entries = config["layers"]
    called = [i for i, e in enumerate(entries) if e.get("inbound_nodes")]
    if edit in ("unknown layer", "unknown call", "unknown output index"):
        ref = fc.get_json(config, ref_path)
        position = {"unknown layer": 0, "unknown call": 1, "unknown output index": 2}[edit]
        ref[position] = "no_such_layer" if position == 0 else ref[position] + 7
    elif edit == "cycle":  # a layer that an output layer reads now reads that output (or the output itself)
        outputs = fc.refs_in(config["output_layers"])
        out_name = fc.get_json(config["output_layers"], outputs[k % len(outputs)])[0]
        out_entry = _entry(entries, out_name)
        upstream = _entry(entries, _first_ref(out_entry)[0])
        _first_ref(upstream if upstream.get("inbound_nodes") else out_entry)[:3] = [out_name, 0, 0]
    elif edit == "calls removed":
        entries[called[k % len(called)]]["inbound_nodes"] = []
    elif edit == "not a reference":
        fc.set_json(config, ref_path, [["x"], {"y": -1}, "z", 1.5, None][k % 5])
    elif edit == "duplicate name":
        victim, other = called[k % len(called)], (called[k % len(called)] + 1) % len(entries)
        entries[victim]["name"] = entries[other]["name"]
        entries[victim]["config"]["name"] = entries[other]["name"]
    else:  # an input shape that is negative, not a number, or declares gigabytes of weights
        inputs = [e for e in entries if e["class_name"] == "InputLayer"]
        cfg = inputs[k % len(inputs)]["config"]
        key = next(key for key in ("shape", "batch_shape", "batch_input_shape") if key in cfg)
        cfg[key][-1] = [-3, "three", 2**40, None][k % 4]


def _entry(entries: list, name: str) -> dict:
    return next(e for e in entries if e["name"] == name)


def _first_ref(entry: dict) -> list:
    """The first tensor reference of the layer's first call (a list, edited in place)."""
    return fc.get_json(entry, fc.refs_in(entry["inbound_nodes"], ("inbound_nodes",))[0])


def _every_edit(test):
    for i, edit in enumerate(GRAPH_EDITS):  # each damage reached under every profile, on varied targets
        test = example(edit=edit, k=5 * i + 1)(test)
    return test


@pytest.mark.parametrize("env", ["functional", "flat functional"], indirect=True)
@pytest.mark.parametrize("fmt", MODEL_FORMATS)
@_every_edit
@given(edit=st.sampled_from(GRAPH_EDITS), k=st.integers(0, 10**6))
def test_damaged_graphs(env, fmt, edit, k):
    """Tensor references to unknown layers, calls or outputs, cycles, calls removed, references that are not
    references, two layers of one name, absurd input shapes: every one refused with a clear error. (The
    functional model's files write calls in Keras 3's format; the flat one's .h5 in Keras 2's list format.)"""
    data = original(env, fmt)
    value = json.loads(fc.json_text(fmt, data))
    _damage_graph(value["config"], edit, k)
    check(env, fmt, "damaged graphs", fc.with_json_text(fmt, data, json.dumps(value)), None)


def _is_input_layer_shape(value, path: tuple) -> bool:
    if len(path) < 3 or path[-2:] != ("config", "shape"):
        return False
    entry = fc.get_json(value, path[:-2])
    return isinstance(entry, dict) and entry.get("class_name") == "InputLayer"


# ---------------------------------------------------------------------------------------------- links
@pytest.mark.parametrize("fmt", fc.HDF5_FORMATS)
@given(k=st.integers(0, 100), op=st.sampled_from(["soft link", "external link", "external storage", "virtual"]))
def test_links_external_storage_and_virtual_datasets(env, fmt, k, op):
    folder = env[0]
    secret = folder / "host_secret.bin"
    secret.write_bytes(np.arange(4096, dtype="float32").tobytes())
    other = folder / "other.h5"
    if not other.exists():
        with h5py.File(other, "w") as h5file:
            h5file.create_dataset("stolen", data=np.arange(4096, dtype="float32"))

    def make(old, where):
        parent, base = where
        if op == "soft link":
            parent.create_dataset(base + "_target", data=old)
            parent[base] = h5py.SoftLink(parent.name + "/" + base + "_target")
        elif op == "external link":
            parent[base] = h5py.ExternalLink(str(other), "stolen")
        elif op == "external storage":
            parent.create_dataset(base, shape=old.shape, dtype=old.dtype,
                                  external=[(str(secret), 0, max(old.nbytes, 1))])
        else:
            layout = h5py.VirtualLayout(shape=(4096,), dtype="float32")
            layout[...] = h5py.VirtualSource(str(other), "stolen", shape=(4096,))
            parent.create_virtual_dataset(base, layout, fillvalue=0)

    data, _ = _rewrite_weight(fmt, original(env, fmt), k, make)
    word = {"soft link": "SoftLink", "external link": "ExternalLink", "external storage": "external file",
            "virtual": "virtual dataset"}[op]
    check(env, fmt, "links, external storage, virtual datasets", data, None, must_mention=word)
