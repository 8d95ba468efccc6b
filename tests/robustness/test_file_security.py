"""Hostile files: what a file may make tinynn read, run or allocate. Every case must be refused with an error that
names the file and the offending object, before any weight is read or any memory of the declared size is taken.

Covered: HDF5 ExternalLink / SoftLink (on a weight and anywhere else in the file), external storage, virtual
datasets, compressed "shape bombs", sparse and never-written datasets, in ``.weights.h5``, ``.keras`` and legacy
``.h5`` files; Lambda layers (never executed), pickles and object arrays, forged ``.npy`` headers and zip sizes,
configs asking for 2**40 units; and what other files are: a pickle, a bare ``.npy``, text, an empty file.
"""

from __future__ import annotations

import io
import json
import pickle
import zipfile

import file_cases as fc
import h5py
import numpy as np
import pytest

import tinynn as tn
from tinynn.saving import FileFormatError

HDF5_FORMATS = list(fc.HDF5_FORMATS)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile")
    model = fc.make_model()
    return folder, {fmt: open(fc.write_valid(model, fmt, str(folder)), "rb").read() for fmt in fc.FORMATS}


def _refused(fmt: str, path, *words: str) -> str:
    kind, _ = fc.FORMATS[fmt]
    target = fc.make_model(seed=3, compiled=False) if kind == "weights" else None
    before = None if target is None else [w.copy() for w in target.get_weights()]
    with pytest.raises(FileFormatError) as info:
        tn.load_model(path) if target is None else target.load_weights(path)
    message = str(info.value)
    assert str(path) in message, message
    for word in words:
        assert word in message, message
    if target is not None:
        assert all(np.array_equal(a, b) for a, b in zip(before, target.get_weights())), "the model changed"
    return message


def _first_weight(h5file) -> str:
    return fc.weight_datasets(h5file)[0]


def _write(folder, fmt: str, data: bytes, tag: str):
    path = folder / f"{tag}_{fc.FORMATS[fmt][1]}"
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("fmt", HDF5_FORMATS)
def test_links_are_refused_wherever_they_are(files, fmt):
    folder, originals = files
    other = folder / "host_file.h5"
    with h5py.File(other, "w") as h5file:
        h5file.create_dataset("w", data=np.arange(64, dtype="float32"))
    cases = {
        "external link on a weight": lambda f, name: (f.__delitem__(name), f.__setitem__(name, h5py.ExternalLink(
            str(other), "w"))),
        "soft link on a weight": lambda f, name: (f.move(name, name + "_real"), f.__setitem__(
            name, h5py.SoftLink("/" + name + "_real"))),
        "external link elsewhere": lambda f, name: f.__setitem__("unrelated", h5py.ExternalLink(str(other), "w")),
        "soft link elsewhere": lambda f, name: f.__setitem__("alias", h5py.SoftLink("/" + name)),
    }
    for tag, edit in cases.items():
        data = fc.edit_weights_h5(fmt, originals[fmt], lambda f, edit=edit: edit(f, _first_weight(f)))
        path = _write(folder, fmt, data, tag.replace(" ", "_"))
        kind = "ExternalLink" if "external" in tag else "SoftLink"
        _refused(fmt, path, kind, "links are refused")


@pytest.mark.parametrize("fmt", HDF5_FORMATS)
def test_external_storage_and_virtual_datasets_are_refused(files, fmt):
    folder, originals = files
    secret = folder / "secret.bin"
    secret.write_bytes(b"\x3f" * 4096)
    source = folder / "source.h5"
    with h5py.File(source, "w") as h5file:
        h5file.create_dataset("data", data=np.ones(1024, "float32"))

    def external(f):
        name = _first_weight(f)
        old = f[name][()]
        fc.replace_dataset(f, name, lambda parent, base: parent.create_dataset(
            base, shape=old.shape, dtype=old.dtype, external=[(str(secret), 0, old.nbytes)]))

    def virtual(f):
        layout = h5py.VirtualLayout(shape=(1024,), dtype="float32")
        layout[...] = h5py.VirtualSource(str(source), "data", shape=(1024,))
        fc.replace_dataset(f, _first_weight(f), lambda parent, base: parent.create_virtual_dataset(base, layout))

    names = []
    fc.edit_weights_h5(fmt, originals[fmt], lambda f: names.append(_first_weight(f)))
    _refused(fmt, _write(folder, fmt, fc.edit_weights_h5(fmt, originals[fmt], external), "external"),
             "external file", str(secret), names[0])  # the dataset and the file it points at are named
    _refused(fmt, _write(folder, fmt, fc.edit_weights_h5(fmt, originals[fmt], virtual), "virtual"),
             "virtual dataset")


@pytest.mark.parametrize("fmt", HDF5_FORMATS)
def test_declared_sizes_must_be_stored(files, fmt):
    """A compressed dataset declaring 2**40 floats, a sparse one (chunks missing: they would read as zeros) and one
    never written: refused by the whole-file scan, before any array is read."""
    folder, originals = files

    def bomb(f):
        f.create_dataset("junk", shape=(2**40,), dtype="float32", chunks=(2**16,), compression="gzip")[:1] = 1

    def sparse(f):
        name = _first_weight(f)
        old = f[name][()]
        fc.replace_dataset(f, name, lambda parent, base: parent.create_dataset(
            base, shape=old.shape, dtype=old.dtype, chunks=(1, *old.shape[1:])).__setitem__(0, old[0]))

    def unwritten(f):
        name = _first_weight(f)
        old = f[name][()]
        fc.replace_dataset(f, name, lambda parent, base: parent.create_dataset(base, shape=old.shape, dtype=old.dtype))

    _refused(fmt, _write(folder, fmt, fc.edit_weights_h5(fmt, originals[fmt], bomb), "bomb"),
             "dataset '/junk' declares shape (1099511627776,)")
    _refused(fmt, _write(folder, fmt, fc.edit_weights_h5(fmt, originals[fmt], sparse), "sparse"), "fill values")
    _refused(fmt, _write(folder, fmt, fc.edit_weights_h5(fmt, originals[fmt], unwritten), "unwritten"),
             "never written")


def test_lambda_in_a_legacy_h5_is_never_run(files, tmp_path):
    folder, originals = files
    marker = tmp_path / "executed"
    config = fc.json_text("h5 model", originals["h5 model"])
    lam = {"class_name": "Lambda", "config": {"name": "evil", "function": [
        f"open({str(marker)!r}, 'w').write('pwned')", None, None], "function_type": "lambda"}}
    config = config.replace('{"module": "keras.layers", "class_name": "Dropout"', json.dumps(lam) +
                            ', {"module": "keras.layers", "class_name": "Dropout"', 1)
    path = _write(folder, "h5 model", fc.with_json_text("h5 model", originals["h5 model"], config), "lambda")
    _refused("h5 model", path, "Lambda layer 'evil'", "never executes code")
    assert not marker.exists()


def test_npz_object_arrays_and_forged_headers(files):
    folder, originals = files
    members = fc.zip_members(originals["npz model"])
    evil = dict(members, **{"weight_0.npy": fc.npy_bytes(np.array([object()], dtype=object))})
    _refused("npz model", _write(folder, "npz model", fc.make_zip(evil), "pickle"), "dtype object", "never pickles")
    forged = dict(members, **{"weight_0.npy": fc.npy_with_header((2**40, 3, 2), "<f4", b"\0" * 48)})
    _refused("npz model", _write(folder, "npz model", fc.make_zip(forged), "header"), "(1099511627776, 3, 2)",
             "zip entry holds 48 bytes")


def test_zip_sizes_that_deflate_cannot_produce(files):
    """A deflated member whose directory entry claims 100 MB from a few bytes is refused before inflating."""
    folder, originals = files
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, content in fc.zip_members(originals["npz weights"]).items():
            archive.writestr(name, content)
    data = bytearray(buffer.getvalue())
    central = data.rfind(b"PK\x01\x02")  # the last member's central-directory entry: uncompressed size at +24
    data[central + 24: central + 28] = (100 * 2**20).to_bytes(4, "little")
    _refused("npz weights", _write(folder, "npz weights", bytes(data), "zipsize"), "more than deflate can produce")


@pytest.mark.parametrize("fmt", ["npz model", "keras archive", "h5 model"])
def test_a_config_asking_for_a_terabyte_is_refused_before_allocating(files, fmt):
    folder, originals = files
    text = fc.json_text(fmt, originals[fmt]).replace('"units": 2', f'"units": {2**40}', 1)
    _refused(fmt, _write(folder, fmt, fc.with_json_text(fmt, originals[fmt], text), "units"),
             "Layer 'lstm' (LSTM) weight 'kernel'", "(2, 4398046511104) (float32, 35184372088832 bytes)",
             "does not match the stored weights")  # LSTM(2**40): named before any allocation


@pytest.mark.parametrize("content,words", [
    (pickle.dumps({"weights": [1, 2]}), "Python pickle"),
    (np.lib.format.magic(1, 0) + b"\x00" * 20, "single NumPy array"),
    (b"", "the file is empty"),
    (b"just some text\n", "none of these formats"),
])
def test_other_files_are_named_for_what_they_are(tmp_path, content, words):
    for name in ("model.h5", "model.npz", "model.keras"):
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(FileFormatError, match=words) as info:
            tn.load_model(path)
        assert "allow_pickle" not in str(info.value) and str(path) in str(info.value)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nothing.h5' as a model file.*no such file"):
        tn.load_model(tmp_path / "nothing.h5")
    with pytest.raises(FileFormatError, match="directory"):
        tn.load_model(tmp_path)
