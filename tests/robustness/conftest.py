"""Shared by the robustness cases: a worker subprocess that runs risky code, so that a crash (a SIGSEGV in a numba
kernel, an abort) is a failed test, not a dead test run; and the outcome table (``ROBUSTNESS_TABLE=1``).

``isolated.call(module, function, *args)`` imports ``module`` from this folder in the worker, calls the function
and returns ``("ok", result)``, or ``("crash", description)`` if the worker died or hung (it is restarted). The
arguments and results are pickled, so pass plain data (the case functions build their arrays themselves).
"""

from __future__ import annotations

import collections
import os
import pathlib
import pickle
import select
import struct
import subprocess
import sys
import tempfile

import pytest

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
_WORKER = r"""
import importlib, pickle, struct, sys
sys.path[:0] = [sys.argv[1], sys.argv[2]]
out, sys.stdout = sys.stdout.buffer, sys.stderr  # stray prints must not break the protocol
while True:
    head = sys.stdin.buffer.read(8)
    if len(head) < 8:
        break
    module, function, args = pickle.loads(sys.stdin.buffer.read(struct.unpack("<Q", head)[0]))
    try:
        reply = ("ok", getattr(importlib.import_module(module), function)(*args))
    except BaseException as err:  # an exception is an answer too; only a dead process is a crash
        reply = ("raised", f"{type(err).__name__}: {err}")
    data = pickle.dumps(reply)
    out.write(struct.pack("<Q", len(data)) + data)
    out.flush()
"""


class IsolatedWorker:
    def __init__(self, timeout: float = 120.0):
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
                raise EOFError("no answer" if not ready else "the worker closed its output")
            data += chunk
        return data

    def call(self, module: str, function: str, *args):
        proc = self._start()
        payload = pickle.dumps((module, function, args))
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


@pytest.fixture(scope="session")
def isolated():
    worker = IsolatedWorker()
    yield worker
    worker.close()


#: (input class, outcome) -> count, over every case the session ran (printed with ROBUSTNESS_TABLE=1)
OUTCOMES: collections.Counter = collections.Counter()
OUTCOME_COLUMNS = ("clear error", "correct", "unclear", "crash", "silent")


def pytest_terminal_summary(terminalreporter):
    if not OUTCOMES or os.environ.get("ROBUSTNESS_TABLE") != "1":
        return
    classes = sorted({k for k, _ in OUTCOMES})
    terminalreporter.write_line("\n| input class | tried | " + " | ".join(OUTCOME_COLUMNS) + " |")
    terminalreporter.write_line("|---" * (len(OUTCOME_COLUMNS) + 2) + "|")
    for k in classes + ["total"]:
        counts = [sum(v for (c, o), v in OUTCOMES.items() if o == col and k in (c, "total")) for col in OUTCOME_COLUMNS]
        terminalreporter.write_line(f"| {k} | {sum(counts)} | " + " | ".join(map(str, counts)) + " |")
