"""Damaged and hostile files for every format tinynn reads, and the judge of what loading them did.

Imported by the file-level robustness tests (which draw the damage with hypothesis) and by the worker
subprocess that loads the files (:class:`FileWorker`): a crash or a hang inside h5py/libhdf5, zipfile or NumPy
kills only the worker, and the test reports it as a ``crash`` instead of dying with the test run. The worker also
caps its address space (4 GiB), so a loader that tried to allocate what a file declares would fail visibly.

Every load is judged against what the file says (:func:`judge`):

* ``clear error``: a ``ValueError``/``OSError`` whose message names the file, the kind of file expected
  (``FileFormatError`` does both by construction) and what is wrong, not a bare library exception name;
* ``correct``: no error, and the weights equal the ones the file holds (the original model's, or for a weight
  rewritten in another float dtype those values cast); the optimizer state too, unless a warning said that
  the optimizer starts fresh;
* ``unclear``: any other exception, or a message missing the file, or NumPy's ``allow_pickle`` advice;
* ``silent``: no error but other weights, or a failed ``load_weights`` that changed the model anyway;
* ``crash`` (set by the worker): the process died or hung.
"""

from __future__ import annotations

import collections
import io
import json
import os
import pathlib
import pickle
import re
import select
import struct
import subprocess
import sys
import tempfile
import warnings
import zipfile

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]

#: format -> (what it holds, file name)
FORMATS = {
    "npz model": ("model", "m.npz"),
    "npz weights": ("weights", "w.npz"),
    "keras archive": ("model", "m.keras"),
    "keras weights": ("weights", "w.weights.h5"),
    "h5 model": ("model", "m.h5"),
    "h5 weights": ("weights", "w.h5"),
}
ZIP_FORMATS = ("npz model", "npz weights", "keras archive")
HDF5_FORMATS = ("keras archive", "keras weights", "h5 model", "h5 weights")
CONFIG_FORMATS = ("npz model", "npz weights", "keras archive", "h5 model")
OUTCOMES = ("clear error", "correct", "unclear", "crash", "silent")
#: (input class, outcome) -> count, over every case the session judged
TABLE: collections.Counter = collections.Counter()


# ---------------------------------------------------------------------------------------------- the models
def make_model(seed: int = 0, compiled: bool = True, kind: str = "sequential"):
    """A small model of ``kind`` (see :data:`MODEL_KINDS`); trained one step so that the optimizer has slots."""
    return MODEL_KINDS[kind](seed, compiled)


def make_sequential_model(seed: int = 0, compiled: bool = True):
    """A small model with a conv, a recurrent layer (weights in a cell), a weightless layer and a Dense; trained
    one step so that the optimizer has slots."""
    import tinynn as tn
    from tinynn import layers as L

    model = tn.Sequential([L.Input((5, 3)), L.Conv1D(2, 2, name="conv"), L.Dropout(0.1, name="drop"),
                           L.LSTM(2, name="lstm"), L.Dense(2, name="out")])
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0, 0.5, w.shape).astype(w.dtype) for w in model.get_weights()])
    if compiled:
        tn.set_random_seed(seed)  # the dropout masks of the training step
        model.compile(tn.optimizers.Adam(learning_rate=0.01), "mse")
        model.train_on_batch(rng.normal(size=(4, 5, 3)).astype("float32"), rng.normal(size=(4, 2)).astype("float32"))
    return model


def make_functional_model(seed: int = 0, compiled: bool = True):
    """A functional model: two inputs, a shared layer, merges, a nested Sequential and a nested functional model,
    two outputs compiled with a loss, a loss weight and metrics each; trained one step."""
    import tinynn as tn
    from tinynn import layers as L

    a, b = L.Input((3,), name="a"), L.Input((4,), name="b")
    shared = L.Dense(3, activation="tanh", name="shared")
    inner = tn.Sequential([L.Input((3,)), L.Dense(2, name="inner_dense")], name="inner")
    sub_in = L.Input((3,), name="sub_in")
    sub = tn.Model(sub_in, L.Dense(2, name="sub_dense")(sub_in), name="sub")
    ha, hb = shared(a), shared(L.Dense(3, name="b_proj")(b))
    merged = L.Add(name="add")([ha, hb])
    score = L.Dense(1, activation="sigmoid", name="score")(L.Concatenate(name="cat")([merged, inner(merged)]))
    model = tn.Model([a, b], [score, sub(merged)], name="graph")
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0, 0.5, w.shape).astype(w.dtype) for w in model.get_weights()])
    if compiled:
        model.compile(tn.optimizers.Adam(learning_rate=0.01), ["binary_crossentropy", "mse"], loss_weights=[1.0, 0.5],
                      metrics=[["accuracy"], ["mae"]])
        x = [rng.normal(size=(4, 3)).astype("float32"), rng.normal(size=(4, 4)).astype("float32")]
        y = [(rng.random((4, 1)) > 0.5).astype("float32"), rng.normal(size=(4, 2)).astype("float32")]
        model.train_on_batch(x, y)
    return model


def make_flat_functional_model(seed: int = 0, compiled: bool = True):
    """A functional model without nested models, whose legacy .h5 keeps Keras 2's list format for calls."""
    import tinynn as tn
    from tinynn import layers as L

    a, b = L.Input((3,), name="a"), L.Input((2,), name="b")
    shared = L.Dense(2, name="shared")
    out = L.Dense(1, name="out")(L.Concatenate(name="cat")([shared(a), shared(L.Dense(3, name="b_proj")(b)), b]))
    model = tn.Model([a, b], out, name="flat")
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0, 0.5, w.shape).astype(w.dtype) for w in model.get_weights()])
    if compiled:
        model.compile(tn.optimizers.Adam(learning_rate=0.01), "mse")
        model.train_on_batch([rng.normal(size=(4, 3)), rng.normal(size=(4, 2))], rng.normal(size=(4, 1)))
    return model


#: the models whose files are damaged: kind -> maker(seed, compiled)
MODEL_KINDS = {"sequential": make_sequential_model, "functional": make_functional_model,
               "flat functional": make_flat_functional_model}


def graph_refs(model_config: dict) -> list[tuple]:
    """Paths (from the functional model config) to every tensor reference ``[layer, node, tensor]`` (Keras 2 also
    ``[layer, node, tensor, kwargs]``) in its layers' calls, its input_layers and its output_layers."""
    paths = []
    for i, entry in enumerate(model_config["layers"]):
        paths += refs_in(entry.get("inbound_nodes") or [], ("layers", i, "inbound_nodes"))
    for key in ("input_layers", "output_layers"):
        paths += refs_in(model_config[key], (key,))
    return paths


def refs_in(value, path: tuple = ()) -> list[tuple]:
    """Paths (below ``value``, after ``path``) to the tensor references in ``value``."""
    if isinstance(value, list) and len(value) in (3, 4) and isinstance(value[0], str) and all(
            isinstance(v, int) for v in value[1:3]):
        return [path]
    if isinstance(value, dict):
        return [p for key, item in value.items() for p in refs_in(item, (*path, key))]
    if isinstance(value, list):
        return [p for i, item in enumerate(value) for p in refs_in(item, (*path, i))]
    return []


def write_valid(model, fmt: str, folder: str) -> str:
    kind, name = FORMATS[fmt]
    path = os.path.join(folder, name)
    model.save(path) if kind == "model" else model.save_weights(path)
    return path


def reference(model) -> tuple[list, dict]:
    """What the valid files hold: the weights and the optimizer state (passed to the worker with each case)."""
    return model.get_weights(), model.optimizer.get_state()


# ---------------------------------------------------------------------------------------------- zip and HDF5 editing
def zip_members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def make_zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def npy_with_header(shape: tuple, dtype: str, payload: bytes) -> bytes:
    """A .npy member whose header declares ``shape``/``dtype`` but holds ``payload`` (a forged header)."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buffer.getvalue() + payload


def edit_hdf5(data: bytes, edit) -> bytes:
    """``data`` (an HDF5 file) after ``edit(h5file)`` in read-write mode."""
    import h5py

    buffer = io.BytesIO(data)
    with h5py.File(buffer, "r+") as h5file:
        edit(h5file)
    return buffer.getvalue()


def edit_weights_h5(fmt: str, data: bytes, edit) -> bytes:
    """Apply ``edit`` to the HDF5 part of a file: the file itself, or a .keras archive's model.weights.h5."""
    if fmt == "keras archive":
        members = zip_members(data)
        members["model.weights.h5"] = edit_hdf5(members["model.weights.h5"], edit)
        return make_zip(members)
    return edit_hdf5(data, edit)


def datasets(h5file) -> list[str]:
    found = []
    h5file.visititems(lambda name, obj: found.append(name) if hasattr(obj, "shape") else None)
    return sorted(found)


def weight_datasets(h5file) -> list[str]:
    """The datasets holding layer weights (not optimizer state), in a stable order."""
    return [n for n in datasets(h5file) if not n.startswith(("optimizer", "/optimizer"))]


def replace_dataset(h5file, name: str, make) -> None:
    """Replace dataset ``name`` by ``make(parent, base)`` (which creates the new one)."""
    parent_name, _, base = name.rpartition("/")
    parent = h5file[parent_name] if parent_name else h5file
    del parent[base]
    make(parent, base)


def json_text(fmt: str, data: bytes) -> str:
    if fmt in ("npz model", "npz weights"):
        return np.load(io.BytesIO(zip_members(data)["__config__.npy"]), allow_pickle=False).tobytes().decode()
    if fmt == "keras archive":
        return zip_members(data)["config.json"].decode()
    import h5py

    with h5py.File(io.BytesIO(data), "r") as h5file:
        return bytes(h5file.attrs["model_config"]).decode()


def with_json_text(fmt: str, data: bytes, text: str) -> bytes:
    if fmt in ("npz model", "npz weights"):
        members = zip_members(data)
        members["__config__.npy"] = npy_bytes(np.frombuffer(text.encode(), dtype=np.uint8))
        return make_zip(members)
    if fmt == "keras archive":
        members = zip_members(data)
        members["config.json"] = text.encode()
        return make_zip(members)

    def edit(h5file):
        h5file.attrs["model_config"] = np.bytes_(text.encode())

    return edit_hdf5(data, edit)


def json_paths(value, prefix=()) -> list[tuple]:
    """Every path (tuple of keys/indices) into a JSON value, leaves and containers."""
    paths = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            paths.extend(json_paths(item, (*prefix, key)))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            paths.extend(json_paths(item, (*prefix, i)))
    return paths


def get_json(value, path: tuple):
    for key in path:
        value = value[key]
    return value


def set_json(value, path: tuple, new, delete: bool = False):
    if not path:
        return new
    container = value
    for key in path[:-1]:
        container = container[key]
    if delete and isinstance(container, dict):
        del container[path[-1]]
    elif delete:
        container.pop(path[-1])
    else:
        container[path[-1]] = new
    return value


# ---------------------------------------------------------------------------------------------- judging (worker side)
_BARE = re.compile(r"^(KeyError|TypeError|AttributeError|IndexError|RuntimeError|NotImplementedError|OverflowError)\b")


def _clear(err: BaseException, path: str) -> bool:
    from tinynn.saving import FileFormatError

    text = str(err)
    if "allow_pickle" in text or path not in text:
        return False
    if isinstance(err, FileFormatError):
        return not _BARE.match(err.problem)
    return isinstance(err, (ValueError, OSError))


def judge(fmt: str, path: str, expected: list | None, reference: tuple[list, dict],
          model_kind: str = "sequential") -> tuple[str, str]:
    """Load ``path`` as ``fmt`` and judge it (see the module docstring). ``expected``: the weights the file holds
    when it is loadable (None: it must be refused; "reference": the valid file's); ``reference``: the weights and
    optimizer state of the valid file; ``model_kind``: which model the file was written from."""
    import tinynn as tn

    kind, _ = FORMATS[fmt]
    ref_weights, ref_state = reference
    expected = ref_weights if expected == "reference" else expected
    target = make_model(seed=7, compiled=False, kind=model_kind) if kind == "weights" else None
    before = None if target is None else [w.copy() for w in target.get_weights()]
    fresh = False
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            if kind == "model":
                model = tn.load_model(path)
            else:
                target.load_weights(path)
                model = target
        except (MemoryError, RecursionError) as err:
            return "unclear", f"{type(err).__name__}: {err}"
        except Exception as err:  # noqa: BLE001 - every exception is an answer to judge
            if target is not None and not all(np.array_equal(a, b) for a, b in zip(before, target.get_weights())):
                return "silent", f"load_weights failed ({err}) but changed the model"
            return ("clear error" if _clear(err, path) else "unclear"), f"{type(err).__name__}: {err}"
        fresh = any("starts fresh" in str(w.message) for w in caught)
    got = model.get_weights()
    if expected is None:
        return "silent", "loaded a file that had to be refused"
    same = len(got) == len(expected) and all(
        a.shape == np.shape(b) and np.array_equal(a, np.asarray(b).astype(a.dtype)) for a, b in zip(got, expected))
    if not same:
        return "silent", "loaded other weights than the file holds"
    if kind == "model" and not fresh and model.optimizer is not None:
        ours, ref = model.optimizer.get_state(), ref_state
        if sorted(ours) != sorted(ref) or not all(np.array_equal(ours[k], ref[k]) for k in ref):
            return "silent", "loaded another optimizer state than the file holds"
    return "correct", ""


# ---------------------------------------------------------------------------------------------- the worker
_WORKER = r"""
import pickle, resource, struct, sys
sys.path[:0] = [sys.argv[1], sys.argv[2]]
resource.setrlimit(resource.RLIMIT_AS, (4 * 2**30, 4 * 2**30))
import file_cases
out, sys.stdout = sys.stdout.buffer, sys.stderr
while True:
    head = sys.stdin.buffer.read(8)
    if len(head) < 8:
        break
    args = pickle.loads(sys.stdin.buffer.read(struct.unpack("<Q", head)[0]))
    try:
        reply = file_cases.judge(*args)
    except BaseException as err:
        reply = ("unclear", f"judge failed: {type(err).__name__}: {err}")
    data = pickle.dumps(reply)
    out.write(struct.pack("<Q", len(data)) + data)
    out.flush()
"""


class FileWorker:
    """A subprocess that runs :func:`judge`; restarted after a crash or a hang (``timeout`` seconds)."""

    def __init__(self, timeout: float = 60.0):
        self.timeout = timeout
        self._proc: subprocess.Popen | None = None
        self._stderr = tempfile.TemporaryFile()

    def _start(self) -> subprocess.Popen:
        if self._proc is None or self._proc.poll() is not None:
            env = {**os.environ, "PYTHONFAULTHANDLER": "1"}
            self._proc = subprocess.Popen([sys.executable, "-c", _WORKER, str(HERE), str(ROOT)], cwd=ROOT, env=env,
                                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr)
        return self._proc

    def _read(self, proc, n: int) -> bytes:
        data = b""
        while len(data) < n:
            ready, _, _ = select.select([proc.stdout], [], [], self.timeout)
            chunk = os.read(proc.stdout.fileno(), n - len(data)) if ready else b""
            if not chunk:
                raise EOFError("no answer in time" if not ready else "the worker closed its output")
            data += chunk
        return data

    def judge(self, fmt: str, path: str, expected, reference: tuple[list, dict],
              model_kind: str = "sequential") -> tuple[str, str]:
        proc = self._start()
        payload = pickle.dumps((fmt, path, expected, reference, model_kind))
        try:
            proc.stdin.write(struct.pack("<Q", len(payload)) + payload)
            proc.stdin.flush()
            size = struct.unpack("<Q", self._read(proc, 8))[0]
            return pickle.loads(self._read(proc, size))
        except (EOFError, BrokenPipeError, OSError) as err:
            proc.kill()
            code = proc.wait()
            self._stderr.seek(0)
            tail = self._stderr.read()[-1500:].decode(errors="replace")
            self._stderr.seek(0)
            self._stderr.truncate()
            return "crash", f"worker died or hung ({err}; exit code {code}): {tail}"

    def close(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.stdin.close()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._stderr.close()


def table_markdown(counter: collections.Counter) -> str:
    classes = sorted({c for c, _ in counter})
    lines = ["| input class | tried | " + " | ".join(OUTCOMES) + " |", "|---" * (len(OUTCOMES) + 2) + "|"]
    for cls in [*classes, "total"]:
        counts = [sum(v for (c, o), v in counter.items() if o == col and cls in (c, "total")) for col in OUTCOMES]
        lines.append(f"| {cls} | {sum(counts)} | " + " | ".join(map(str, counts)) + " |")
    return "\n".join(lines)


def json_dumps(value) -> str:
    return json.dumps(value)
