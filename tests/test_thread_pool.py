"""The thread pool behind tinynn.kernels.parallel (run_parallel / share) and its GIL-free busy-wait
(tinynn.kernels.spinwait, with its NumPy twin in tinynn.kernels.reference.spinwait)."""

import os
import signal
import threading
import time

import pytest

from tinynn.kernels import parallel, spinwait
from tinynn.kernels.reference import spinwait as spinwait_ref


@pytest.mark.parametrize(("start", "value"), [(0, 0), (3, 0), (-2, -2), (7, 5)])
def test_spin_while_equal_matches_its_twin(start, value):
    """A cell that differs is returned at once; an equal one after the bounded wait — both versions."""
    cell = spinwait.new_cell(start)
    assert spinwait.spin_while_equal(cell, value, 2000) == spinwait_ref.spin_while_equal(cell, value, 2000) == start
    assert cell[0] == start  # only read


def test_spin_while_equal_ends_when_another_thread_writes():
    """The atomic read sees another thread's store (the loop is not hoisted); the wait is bounded otherwise."""
    cell = spinwait.new_cell(0)
    spinwait.spin_while_equal(cell, 1, 10)  # compiled before timing anything

    def later():
        time.sleep(0.02)
        cell[0] = 9

    writer = threading.Thread(target=later)
    writer.start()
    assert spinwait.spin_while_equal(cell, 0, 1 << 62) == 9  # would never return if the read were hoisted
    writer.join()
    flag = spinwait.new_cell(0)
    assert spinwait.set_then_spin(flag, cell, 9, 1000) == 9 and flag[0] == 1


@pytest.mark.parametrize("spin_cycles", [0, parallel.SPIN_CYCLES])
def test_run_parallel_returns_results_in_order_and_raises_a_pieces_error(spin_cycles, monkeypatch):
    """With and without the busy-wait: results in argument order, a worker's exception reaches the caller and the
    pool keeps working after it; share hands every range out once."""
    monkeypatch.setenv("TINYNN_NUM_THREADS", "2")
    monkeypatch.setattr(parallel, "SPIN_CYCLES", spin_cycles)
    names = []
    assert parallel.run_parallel(lambda: 1, lambda: names.append(threading.current_thread().name) or 2) == [1, 2]
    assert names[0].startswith("tinynn")  # the second piece ran on the pool

    def fails():
        raise KeyError("piece")

    for _ in range(3):
        with pytest.raises(KeyError, match="piece"):
            parallel.run_parallel(lambda: None, fails)
        ranges = parallel.even_ranges(50, 7)
        assert parallel.share(lambda k, i0, i1: list(range(i0, i1)), ranges) == [list(range(a, b)) for a, b in ranges]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork")
def test_a_forked_child_starts_its_own_pool(monkeypatch):
    """After fork the child has none of the parent's threads: its first parallel call starts a new pool instead
    of waiting forever on the parent's."""
    monkeypatch.setenv("TINYNN_NUM_THREADS", "2")
    assert parallel.run_parallel(lambda: 1, lambda: 2) == [1, 2]  # the parent's pool exists
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        signal.alarm(30)  # a child stuck waiting on the parent's threads dies instead of hanging the test
        try:
            os.write(write, b"ok" if parallel.run_parallel(lambda: 1, lambda: 2) == [1, 2] else b"no")
        finally:
            os._exit(0)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    assert os.read(read, 2) == b"ok" and status == 0
    os.close(read)
