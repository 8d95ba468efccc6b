"""Errors of the saving package: every one names the file, the kind of file expected and what is wrong.

Readers run their low-level work (zip, JSON, ``.npy`` headers, h5py) inside :func:`reading`, which turns
whatever the libraries raise on a damaged file (``BadZipFile``, ``EOFError``, ``KeyError``, ``OSError`` from
h5py, a JSON ``ValueError``, ...) into one :class:`FileFormatError` that says which file, what it was read as
and what went wrong, keeping the original exception as ``__cause__``.
"""

from __future__ import annotations

import contextlib
import os
import struct
import zipfile
import zlib
from collections.abc import Iterator

#: the kinds of file tinynn reads, as the messages name them
NPZ_MODEL = "tinynn .npz model file"
NPZ_WEIGHTS = "tinynn .npz weights file"
KERAS_ARCHIVE = "Keras 3 .keras archive"
KERAS_WEIGHTS = "Keras 3 .weights.h5 file"
LEGACY_MODEL = "Keras 2 (legacy HDF5) .h5 model file"
LEGACY_WEIGHTS = "Keras 2 (legacy HDF5) .h5 weights file"


class FileFormatError(ValueError):
    """A file that cannot be loaded. ``path``, ``kind`` (what it was read as) and ``problem`` are kept."""

    def __init__(self, path: str, kind: str, problem: str):
        self.path, self.kind, self.problem = path, kind, problem
        super().__init__(f"Cannot load {path!r} as a {kind}: {problem}")


#: what the libraries raise on damaged input; anything else (MemoryError, KeyboardInterrupt) passes through
_LOW_LEVEL = (
    OSError, ValueError, KeyError, IndexError, TypeError, AttributeError, EOFError, RuntimeError,
    NotImplementedError, RecursionError, OverflowError, UnicodeDecodeError, zipfile.BadZipFile, zlib.error,
    struct.error,
)  # fmt: skip


def _describe(err: BaseException) -> str:
    if isinstance(err, (zipfile.BadZipFile, EOFError, zlib.error, struct.error)):
        return f"the file is damaged or truncated ({type(err).__name__}: {err})"
    if isinstance(err, RecursionError):
        return "its JSON config is nested too deeply"
    if isinstance(err, UnicodeDecodeError):
        return f"text in the file is not UTF-8 ({err})"
    if isinstance(err, ValueError):
        return str(err)
    text = str(err)
    if "checksum" in text or "filter returned failure" in text:
        return f"the file is damaged: a checksum does not match ({text})"
    if isinstance(err, OSError) and ("truncated" in text or "eof" in text.lower()):
        return f"the file is truncated ({text})"
    if isinstance(err, (OSError, KeyError, RuntimeError)) and any(w in text for w in ("Unable to", "Can't", "failed")):
        return f"the HDF5 structure is damaged ({text})"
    if "encoding" in text and isinstance(err, TypeError):  # h5py on a damaged string datatype
        return f"the file is damaged (a text attribute: {text})"
    if isinstance(err, RuntimeError):  # e.g. zipfile: a member flagged as encrypted or compressed in an odd way
        return f"the file is damaged ({text})"
    return f"{type(err).__name__}: {text}"


@contextlib.contextmanager
def reading(path: str, kind: str) -> Iterator[None]:
    """Turn any low-level error raised inside the block into a :class:`FileFormatError` for ``path``."""
    try:
        yield
    except FileFormatError:
        raise
    except FileNotFoundError as err:
        raise FileNotFoundError(err.errno, f"Cannot load {path!r} as a {kind}: no such file", path) from None
    except PermissionError as err:
        raise PermissionError(err.errno, f"Cannot load {path!r} as a {kind}: permission denied", path) from None
    except IsADirectoryError as err:
        raise FileFormatError(path, kind, "it is a directory, not a file") from err
    except _LOW_LEVEL as err:
        raise FileFormatError(path, kind, _describe(err)) from err


def file_size(path: str) -> int:
    return os.stat(path).st_size


def human_bytes(n: int) -> str:
    """'512 B', '3.0 KiB', '32.0 GiB', ..."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if value < 1024 or unit == "PiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")
