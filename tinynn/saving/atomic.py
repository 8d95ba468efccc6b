"""Atomic file replacement: a save either writes the whole new file or leaves the old one byte-identical.

Every writer in this package first serialises the complete file into memory (JSON, ``.npy`` members, the HDF5
image built by h5py in a ``BytesIO``), so that an unserialisable config or a library error happens before the
disk is touched. :func:`write_bytes` then writes those bytes to a temporary file in the destination's own
folder (same file system, so the rename cannot degrade to a copy), flushes and fsyncs it, and renames it over
the destination with ``os.replace``, which POSIX and Windows perform atomically. A full disk, a killed process
or an exception at any point before the rename leaves the previous file as it was; the temporary file is removed.
A symbolic link at the destination is replaced by the new file (the file it pointed to is left alone).
"""

from __future__ import annotations

import os
import secrets


def write_bytes(path: str | os.PathLike, data: bytes | bytearray | memoryview, what: str = "file") -> None:
    """Replace ``path`` by a file holding ``data``, atomically (see the module docstring).

    The new file gets the permissions a plain ``open(path, 'wb')`` would give it (mode 0o666 less the umask,
    or the existing file's mode when replacing one). Raises ``OSError`` naming ``path`` on failure.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    name = os.path.basename(path)
    if not name:
        raise ValueError(f"Cannot save the {what} to {path!r}: the path names a folder, not a file")
    if os.path.isdir(path):
        raise IsADirectoryError(21, f"Cannot save the {what}: {path!r} is a directory", path)
    tmp = os.path.join(folder, f".{name}.{secrets.token_hex(6)}.tmp")
    try:
        # 'xb': a fresh file with umask-derived permissions; never follows an existing path
        with open(tmp, "xb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.chmod(tmp, os.stat(path).st_mode & 0o7777)
        except FileNotFoundError:
            pass
        os.replace(tmp, path)
    except BaseException as err:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(err, OSError):
            raise type(err)(err.errno, f"Cannot save the {what} to {path!r} ({err.strerror}); any existing file "
                            "there is unchanged", path) from err
        raise
    _sync_folder(folder)


def _sync_folder(folder: str) -> None:
    """Make the rename durable where the platform allows it (POSIX: fsync the directory)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
