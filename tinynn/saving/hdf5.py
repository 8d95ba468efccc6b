"""HDF5 through h5py, with the refusals that make reading an untrusted file safe, and writing through memory.

h5py is optional (``pip install h5py`` or ``'tinynn[keras]'``) and imported only when an HDF5 file is touched.

Reading (:func:`scan`, run on every file before anything is read) walks the whole file and refuses, naming the
object:

- links other than hard links: an ``ExternalLink`` opens another file, a ``SoftLink`` can alias anything (and
  point at an external link); Keras 3 refuses both (``keras.src.saving.saving_lib.safe_get_h5_group``);
- datasets with *external storage* (their bytes live in another file named in the dataset header: a way to
  read any host file as weights) and *virtual* datasets (mapped from other datasets, possibly in other files);
- datasets whose storage does not back their declared size: a contiguous dataset storing fewer bytes than its
  shape needs (never written, or truncated), a chunked one missing chunks (unwritten chunks read as fill
  values: weights silently replaced by zeros), a compressed one claiming more than 1100× what it stores
  (deflate cannot exceed ~1032×: a "shape bomb" that would allocate gigabytes from a few kB);
- nesting deeper than :data:`MAX_DEPTH` (hard-link cycles) or more than :data:`MAX_OBJECTS` objects.

The walk also totals the bytes declared by the datasets under a group, which bounds the memory a loader lets
the file's config allocate (see ``tinynn.config.weight_memory_limit``).

Writing (:func:`image`) builds the whole file in a ``BytesIO`` (h5py's file-object driver): nothing touches the
disk until :func:`tinynn.saving.atomic.write_bytes` renames a complete file into place. (h5py writing straight
to a full disk could crash the process inside the HDF5 library.)
"""

from __future__ import annotations

import ctypes
import io
import math
from collections.abc import Callable

import numpy as np

MAX_DEPTH = 32
MAX_OBJECTS = 100_000
MAX_EXPANSION = 1100  # declared bytes per stored byte that compression can plausibly reach
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def h5py_module():
    try:
        import h5py
    except ImportError as err:  # pragma: no cover - exercised only where h5py is missing
        raise ImportError(
            "Reading or writing Keras HDF5 files (.weights.h5, .keras, .h5) needs h5py: pip install h5py "
            "(or pip install 'tinynn[keras]')"
        ) from err
    return h5py


def open_bytes(data: bytes):
    """An h5py ``File`` reading ``data`` (the bytes of an HDF5 file) from memory."""
    return h5py_module().File(io.BytesIO(data), "r")


def open_path(path: str):
    return h5py_module().File(path, "r")


def image(write: Callable) -> bytes:
    """The bytes of a new HDF5 file filled by ``write(h5file)``, built entirely in memory.

    The file uses HDF5 1.8's format (superblock v2, object headers v2: every piece of metadata carries a
    checksum; readable by HDF5 >= 1.8, so by every Keras); arrays go through :func:`write_array` and texts through
    :func:`write_text_attr`, so damage anywhere in a file tinynn wrote is detected on reading."""
    buffer = io.BytesIO()
    with h5py_module().File(buffer, "w", libver=("v108", "v108")) as h5file:
        write(h5file)
    return buffer.getvalue()


COMPACT_MAX_BYTES = 32 * 2**10
_GROUP_PLIST = []  # the group-creation property list of make_group, made once


def _set_link_phase_change():
    """``H5Pset_link_phase_change`` of the libhdf5 h5py itself runs on (h5py does not wrap it), or None.

    Found through the process's memory map (Linux); elsewhere groups keep HDF5's default (links move to a
    "dense" fractal heap past 8 of them, which libhdf5 does not checksum and can crash on when damaged)."""
    try:
        with open("/proc/self/maps") as maps:
            path = next(line.split()[-1] for line in maps if "libhdf5" in line and "libhdf5_hl" not in line)
        function = ctypes.CDLL(path).H5Pset_link_phase_change
    except (OSError, StopIteration, AttributeError):
        return None
    function.argtypes = [ctypes.c_int64, ctypes.c_uint, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


def _group_plist():
    if not _GROUP_PLIST:
        h5py = h5py_module()
        plist = h5py.h5p.create(h5py.h5p.GROUP_CREATE)
        setter = _set_link_phase_change()
        if setter is not None and setter(plist.id, 65535, 65535) < 0:
            raise RuntimeError("H5Pset_link_phase_change failed")
        _GROUP_PLIST.append(plist)
    return _GROUP_PLIST[0]


def make_group(parent, path: str):
    """The group at ``path`` below ``parent``, created where missing with every link kept *compact* (inside the
    group's checksummed object header, however many links it gets)."""
    h5py = h5py_module()
    group = parent
    for part in path.split("/"):
        if not part:
            continue
        if part not in group:
            h5py.h5g.create(group.id, part.encode("utf-8"), gcpl=_group_plist())
        group = group[part]
    return group


def write_array(group, name: str, value) -> None:
    """Create dataset ``name`` (a path below ``group``) holding ``value``, with a checksum on its data: small
    arrays and scalars are *compact* (stored in their checksummed object header), larger ones are one chunk
    (several past 2 GiB) with HDF5's Fletcher-32 filter. Readers see ordinary datasets."""
    h5py = h5py_module()
    value = np.asarray(value)
    value = np.ascontiguousarray(value) if value.ndim else value  # (ascontiguousarray makes scalars 1-d)
    head, _, base = name.rpartition("/")
    parent = make_group(group, head)
    if value.nbytes <= COMPACT_MAX_BYTES:
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_layout(h5py.h5d.COMPACT)
        space = h5py.h5s.create_simple(value.shape) if value.shape else h5py.h5s.create(h5py.h5s.SCALAR)
        dataset = h5py.h5d.create(parent.id, base.encode("utf-8"), h5py.h5t.py_create(value.dtype), space, dcpl=dcpl)
        dataset.write(h5py.h5s.ALL, h5py.h5s.ALL, value)
        return
    chunks = value.shape if value.nbytes < 2**31 else True
    parent.create_dataset(base, data=value, chunks=chunks, fletcher32=True)


def write_text_attr(obj, name: str, text: str) -> None:
    """A text attribute as a fixed-length byte string, kept in the (checksummed) object header; Keras reads
    it back with ``.decode('utf-8')``. (A variable-length string would live in HDF5's unchecksummed global heap.)"""
    obj.attrs[name] = np.bytes_(text.encode("utf-8"))


class UnsafeFile(ValueError):
    """An HDF5 object refused by :func:`scan` (its message names the object)."""


def _link_kind(group, name: str) -> str:
    h5py = h5py_module()
    link = group.get(name, getlink=True)
    if isinstance(link, h5py.HardLink):
        return "hard"
    if isinstance(link, h5py.SoftLink):
        return f"SoftLink to {link.path!r}"
    if isinstance(link, h5py.ExternalLink):
        return f"ExternalLink to {link.filename!r}:{link.path!r}"
    return f"{type(link).__name__}"


def check_dataset(dataset, where: str) -> None:
    """Refuse external storage, virtual datasets and storage that does not back the declared shape."""
    h5py = h5py_module()
    if dataset.external:
        files = [entry[0] for entry in dataset.external]
        raise UnsafeFile(f"dataset {where!r} keeps its data in external file(s) {files}: refusing to read them")
    if dataset.is_virtual:
        raise UnsafeFile(f"dataset {where!r} is a virtual dataset (mapped from other datasets or files): refusing")
    declared = math.prod(dataset.shape or ()) * dataset.dtype.itemsize if dataset.shape is not None else 0
    if declared == 0:
        return
    stored = dataset.id.get_storage_size()
    layout = dataset.id.get_create_plist().get_layout()
    if layout == h5py.h5d.CONTIGUOUS and stored < declared:
        raise UnsafeFile(
            f"dataset {where!r} declares shape {dataset.shape} ({declared} bytes) but stores {stored} bytes: it was "
            "never written or the file is truncated"
        )
    if layout == h5py.h5d.CHUNKED:
        chunks = dataset.chunks
        expected = math.prod(-(-s // c) for s, c in zip(dataset.shape, chunks))
        present = dataset.id.get_num_chunks()
        if present < expected:
            raise UnsafeFile(
                f"dataset {where!r} declares shape {dataset.shape} in {expected} chunks but stores only {present}: "
                "the missing parts would read as fill values"
            )
        if declared > MAX_EXPANSION * stored:
            raise UnsafeFile(
                f"dataset {where!r} declares shape {dataset.shape} ({declared} bytes) but stores only {stored} "
                "bytes: refusing a decompression bomb"
            )


def scan(h5file, root: str | None = None) -> int:
    """Check every object of ``h5file`` (see the module docstring); return the bytes declared by the datasets
    under ``root`` (a group path; None: the whole file)."""
    h5py = h5py_module()
    count = 0
    declared_under_root = 0

    def walk(group, path: str, depth: int) -> None:
        nonlocal count, declared_under_root
        if depth > MAX_DEPTH:
            raise UnsafeFile(f"group {path!r} is nested more than {MAX_DEPTH} levels deep (a link cycle?)")
        for name in group.keys():
            count += 1
            if count > MAX_OBJECTS:
                raise UnsafeFile(f"the file holds more than {MAX_OBJECTS} objects: refusing")
            where = f"{path.rstrip('/')}/{name}"
            kind = _link_kind(group, name)
            if kind != "hard":
                raise UnsafeFile(f"{where!r} is an HDF5 {kind}: links are refused (they can read other files)")
            obj = group[name]
            if isinstance(obj, h5py.Dataset):
                check_dataset(obj, where)
                if root is None or where == root or where.startswith(root.rstrip("/") + "/"):
                    declared_under_root += math.prod(obj.shape or ()) * obj.dtype.itemsize if obj.shape else 0
            elif isinstance(obj, h5py.Group):
                walk(obj, where, depth + 1)
            else:
                raise UnsafeFile(f"{where!r} is a {type(obj).__name__}, not a group or dataset")

    walk(h5file, "/", 0)
    return declared_under_root


def group(parent, path: str, where: str):
    """The group at ``path`` below ``parent`` (hard links only, no absolute or '..' parts), or None."""
    h5py = h5py_module()
    current = parent
    for part in path.split("/"):
        if part in ("", ".", ".."):
            raise UnsafeFile(f"{where}: invalid HDF5 path {path!r}")
        if part not in current:
            return None
        if _link_kind(current, part) != "hard":
            raise UnsafeFile(f"{where}: {path!r} goes through an HDF5 link: refusing")
        current = current[part]
        if not isinstance(current, h5py.Group):
            raise UnsafeFile(f"{where}: {path!r} is not a group")
    return current


def dataset(parent, path: str, where: str):
    """The dataset at ``path`` below ``parent`` (same rules as :func:`group`), checked; None if absent."""
    h5py = h5py_module()
    head, _, name = path.rpartition("/")
    container = group(parent, head, where) if head else parent
    if container is None or name in ("", ".", ".."):
        return None
    if name not in container:
        return None
    if _link_kind(container, name) != "hard":
        raise UnsafeFile(f"{where}: {path!r} is an HDF5 link: refusing")
    obj = container[name]
    if not isinstance(obj, h5py.Dataset):
        raise UnsafeFile(f"{where}: {path!r} is not a dataset")
    check_dataset(obj, f"{where}/{path}")
    return obj


def read_array(ds, expected_shape: tuple | None, where: str, kinds: str = "f") -> np.ndarray:
    """Read ``ds`` after checking its shape (against ``expected_shape`` unless None) and dtype kind."""
    if ds.shape is None:
        raise UnsafeFile(f"{where} has no data (a null dataspace)")
    if ds.attrs.get("dtype") == "bfloat16":
        raise UnsafeFile(f"{where} is bfloat16, which tinynn does not support")
    if ds.dtype.kind not in kinds or ds.dtype.itemsize > 8:
        raise UnsafeFile(f"{where} has dtype {ds.dtype}, expected {_kind_names(kinds)}")
    if expected_shape is not None and tuple(ds.shape) != tuple(expected_shape):
        raise UnsafeFile(f"{where} has shape {tuple(ds.shape)}, the model expects {tuple(expected_shape)}")
    return np.asarray(ds[()])


def _kind_names(kinds: str) -> str:
    names = {"f": "floating point", "i": "signed integer", "u": "unsigned integer", "b": "boolean"}
    return " or ".join(names[k] for k in kinds)


def string_attr(obj, name: str, where: str) -> str | None:
    """A text attribute (Keras writes JSON configs as bytes or str); None when absent."""
    if name not in obj.attrs:
        return None
    value = obj.attrs[name]
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value[()]
    if isinstance(value, (bytes, np.bytes_)):
        return bytes(value).decode("utf-8")
    if isinstance(value, str):
        return value
    raise UnsafeFile(f"{where}: attribute {name!r} is a {type(value).__name__}, expected text")


def string_list_attr(obj, name: str, where: str) -> list[str]:
    """A list-of-names attribute, joined across Keras's chunks (``name0``, ``name1``, ... for long lists)."""
    if name in obj.attrs:
        values = [obj.attrs[name]]
    else:
        values, k = [], 0
        while f"{name}{k}" in obj.attrs:
            values.append(obj.attrs[f"{name}{k}"])
            k += 1
    names = []
    for value in values:
        for item in np.asarray(value).reshape(-1):
            if isinstance(item, (bytes, np.bytes_)):
                names.append(bytes(item).decode("utf-8"))
            elif isinstance(item, str):
                names.append(item)
            elif np.asarray(value).size == 0:
                continue
            else:
                raise UnsafeFile(f"{where}: attribute {name!r} holds {type(item).__name__}, expected names")
    return names


def write_string_list_attr(obj, name: str, names: list[str]) -> None:
    """Keras's ``save_attributes_to_hdf5_group``: bytes, chunked when above HDF5's 64 kB header limit."""
    data = np.asarray([n.encode("utf-8") for n in names]) if names else np.asarray([])
    chunks = 1
    pieces = [data]
    while any(p.nbytes > 64512 for p in pieces):
        chunks += 1
        pieces = np.array_split(data, chunks)
    if chunks == 1:
        obj.attrs[name] = data
    else:
        for k, piece in enumerate(pieces):
            obj.attrs[f"{name}{k}"] = piece
