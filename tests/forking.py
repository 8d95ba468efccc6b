"""Running a check in a forked child process, for tests of what a child inherits (or must not) from its parent."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable


def in_forked_child(check: Callable[[], bool], timeout: int = 30) -> bool:
    """Fork, run ``check()`` in the child and return whether it returned True there and the child exited cleanly.
    A child stuck (waiting on threads it does not have) dies after ``timeout`` seconds instead of hanging the test."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        signal.alarm(timeout)
        try:
            os.write(write, b"ok" if check() else b"no")
        finally:
            os._exit(0)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    try:
        return os.read(read, 2) == b"ok" and status == 0
    finally:
        os.close(read)
