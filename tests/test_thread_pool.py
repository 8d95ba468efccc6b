"""The thread pool behind tinynn.kernels.parallel (run_parallel / share) and its GIL-free busy-wait
(tinynn.kernels.spinwait, with its NumPy twin in tinynn.kernels.reference.spinwait)."""

import os
import threading
import time

import numpy as np
import pytest
from forking import in_forked_child

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
    assert in_forked_child(lambda: parallel.run_parallel(lambda: 1, lambda: 2) == [1, 2])


@pytest.mark.parametrize("yield_cycles", [0, 1, 50])
def test_spin_while_equal_with_yields_matches_its_twin(yield_cycles):
    """Offering the core every few ticks (reads) changes nothing in what the wait returns: a cell that differs at
    once, an equal one after the bounded wait, and the flag that set_then_spin raises."""
    for start, value in [(0, 0), (4, 1)]:
        cell = spinwait.new_cell(start)
        got = spinwait.spin_while_equal(cell, value, 5000, yield_cycles)
        assert got == spinwait_ref.spin_while_equal(cell, value, 500, yield_cycles) == start
    flag = spinwait.new_cell(0)
    assert spinwait.set_then_spin(flag, spinwait.new_cell(3), 3, 5000, yield_cycles) == 3 and flag[0] == 1


def _recording_task(calls, lock):
    def task(worker, i0, i1):
        with lock:
            calls.append((worker, i0, i1, threading.current_thread().name))
        return list(range(i0, i1))

    return task


@pytest.mark.parametrize("threads", ["1", "2", "3", "4"])
@pytest.mark.parametrize(("length", "pieces"), [(1, 1), (7, 2), (50, 7), (64, 16), (5, 5)])
def test_share_runs_every_range_once_and_returns_results_in_order(threads, length, pieces, monkeypatch):
    """Whatever the thread count and the number of ranges: each range runs exactly once, by worker 0 (the caller)
    or a pool thread (1 .. threads-1), and the results come back in range order."""
    monkeypatch.setenv("TINYNN_NUM_THREADS", threads)
    ranges = parallel.even_ranges(length, pieces)
    for _ in range(5):
        calls, lock = [], threading.Lock()
        assert parallel.share(_recording_task(calls, lock), ranges) == [list(range(a, b)) for a, b in ranges]
        assert sorted((a, b) for _, a, b, _ in calls) == ranges
        assert {w for w, *_ in calls} <= set(range(min(int(threads), len(ranges))))
        caller = threading.current_thread().name
        assert all((w == 0) == (name == caller) for w, _, _, name in calls)


def _block_the_pool(monkeypatch):
    """Occupy the pool's one thread (TINYNN_NUM_THREADS=2) until the returned event is set."""
    monkeypatch.setenv("TINYNN_NUM_THREADS", "2")
    started, release, ended = threading.Event(), threading.Event(), threading.Event()
    pool = parallel._pool_for(1)
    job = pool.submit(lambda: started.set() or release.wait(30) or ended.set())
    assert started.wait(30)
    return release, ended, job


def test_the_caller_runs_the_ranges_of_a_pool_thread_that_has_not_started(monkeypatch):
    """With the pool's thread busy elsewhere, share returns without waiting for it: the caller claimed every range
    itself (worker 0), and the helper job, when it runs later, finds nothing left to run."""
    release, ended, job = _block_the_pool(monkeypatch)
    try:
        calls, lock = [], threading.Lock()
        ranges = parallel.even_ranges(40, 6)
        assert parallel.share(_recording_task(calls, lock), ranges) == [list(range(a, b)) for a, b in ranges]
        assert not ended.is_set()  # share did not wait for the pool's thread
        assert [(w, a, b) for w, a, b, _ in calls] == [(0, a, b) for a, b in ranges]  # all on the caller, in order
    finally:
        release.set()
    job.result()
    follow = parallel._pool_for(1).submit(lambda: None)  # queued behind the stale helper job: runs after it
    follow.result()
    assert len(calls) == len(ranges)  # the stale helper job ran nothing


def test_the_caller_waits_for_a_range_a_pool_thread_holds(monkeypatch):
    """A range the pool's thread has claimed is finished before share returns (it writes into the caller's
    arrays), however long it takes; the caller takes the ranges left meanwhile."""
    monkeypatch.setenv("TINYNN_NUM_THREADS", "2")
    monkeypatch.setattr(parallel, "SKIP_ON_CALLERS_CORE", False)  # the helper takes ranges even on the caller's core
    helper_in, caller_ranges = threading.Event(), []
    out = np.zeros(8)

    def task(worker, i0, i1):
        if worker == 0 and not caller_ranges:
            caller_ranges.append(i0)
            assert helper_in.wait(30)  # the helper holds a range before the caller goes on
        elif worker != 0:
            helper_in.set()
            time.sleep(0.05)
        out[i0:i1] = worker + 1
        return worker

    workers = parallel.share(task, parallel.even_ranges(8, 8))
    assert np.all(out > 0) and 0 in workers and 1 in workers
    assert out.tolist() == [w + 1 for w in workers]


@pytest.mark.parametrize("who", ["caller", "helper"])
def test_an_error_in_a_range_reaches_the_caller_after_the_held_ranges_end(who, monkeypatch):
    """An exception raised in a range (on the caller or a pool thread) is raised by share, after every range a
    pool thread holds has ended; the pool keeps working after it."""
    monkeypatch.setenv("TINYNN_NUM_THREADS", "2")
    monkeypatch.setattr(parallel, "SKIP_ON_CALLERS_CORE", False)
    helper_in, finished, caller_ranges = threading.Event(), [], []

    def task(worker, i0, i1):
        if worker == 0 and not caller_ranges:
            caller_ranges.append(i0)
            assert helper_in.wait(30)
            if who == "caller":
                raise KeyError("range")
        elif worker != 0:
            helper_in.set()
            if who == "helper":
                raise KeyError("range")
            time.sleep(0.05)
            finished.append(i0)
        return i0

    with pytest.raises(KeyError, match="range"):
        parallel.share(task, parallel.even_ranges(6, 6))
    if who == "caller":
        assert finished  # the helper's range ended before share raised
    assert parallel.share(lambda k, a, b: a, parallel.even_ranges(6, 3)) == [0, 2, 4]


def test_a_pool_thread_on_the_callers_core_takes_no_range_in_a_short_call(monkeypatch):
    """When the pool's thread runs on the core of the caller it would help (here: every thread reports core 0) and
    the call's work is below STAND_ASIDE_WORK, it takes no range and says so (its job's value), and the caller runs
    them all; in a long call, in a call of unknown work, or without the rule, it takes ranges."""
    if parallel._current_cpu is None:
        pytest.skip("no sched_getcpu")
    monkeypatch.setenv("TINYNN_NUM_THREADS", "2")
    monkeypatch.setattr(parallel, "_current_cpu", lambda: 0)
    calls, lock = [], threading.Lock()
    ranges = parallel.even_ranges(30, 10)
    for _ in range(5):
        got = parallel.share(_recording_task(calls, lock), ranges, work=parallel.STAND_ASIDE_WORK - 1)
        assert got == [list(range(a, b)) for a, b in ranges]
    assert {w for w, *_ in calls} == {0} and len(calls) == 5 * len(ranges)
    claims = parallel._Claims(lambda k, a, b: a, ranges, short=True)
    assert claims.help(1) is parallel._ON_CALLERS_CORE and claims.next == 0
    for short, skip in [(False, True), (True, False)]:
        monkeypatch.setattr(parallel, "SKIP_ON_CALLERS_CORE", skip)
        claims = parallel._Claims(lambda k, a, b: a, ranges, short=short)
        assert claims.help(1) is None and claims.results == [a for a, _ in ranges]  # it ran every range
    monkeypatch.setattr(parallel, "SKIP_ON_CALLERS_CORE", True)
    created = []
    real = parallel._Claims
    monkeypatch.setattr(parallel, "_Claims", lambda *a: created.append(real(*a)) or created[-1])
    for work in (None, parallel.STAND_ASIDE_WORK):
        parallel.share(lambda k, a, b: a, ranges, work)
    assert [c.cpu for c in created] == [-1, -1]  # no standing aside in long or unknown calls


def _returns_within(seconds: float, fn):
    """fn()'s value, or a test failure if it has not returned after ``seconds`` (instead of hanging the run)."""
    box = []
    runner = threading.Thread(target=lambda: box.append(fn()), daemon=True)
    runner.start()
    runner.join(seconds)
    assert not runner.is_alive(), f"still waiting after {seconds} s"
    return box[0]


def test_a_job_no_pool_thread_starts_is_run_by_its_caller(monkeypatch):
    """A pool whose threads are gone (here: a pool of none): run_parallel takes its piece back after TAKE_BACK_AFTER
    and runs it on the calling thread, and the next call starts a new pool. A pool thread that later finds a job its
    caller took back skips it: every piece runs once."""
    monkeypatch.setenv("TINYNN_NUM_THREADS", "2")
    empty = parallel._Pool(0)
    monkeypatch.setattr(parallel, "_pool", empty)
    monkeypatch.setattr(parallel, "_pool_size", 1)
    runs = []
    got = _returns_within(30, lambda: parallel.run_parallel(lambda: runs.append(0) or 0,
                                                            lambda: runs.append(threading.current_thread().name) or 1))
    assert got == [0, 1] and len(runs) == 2
    assert not runs[1].startswith("tinynn")  # the caller ran the second piece itself
    assert parallel._pool is not empty  # dropped: no thread of it is alive
    assert _returns_within(30, lambda: parallel.run_parallel(lambda: 0, lambda: threading.current_thread().name))[1] \
        .startswith("tinynn")  # a new pool with a thread serves the next call
    late = threading.Thread(target=empty._serve, daemon=True)  # a thread that finds the taken-back job in the queue
    late.start()
    marker = empty.submit(lambda: "ran")
    assert _returns_within(30, marker.result) == "ran"
    assert len(runs) == 2  # the taken-back piece did not run again


def test_a_pool_thread_lives_on_after_an_error_outside_its_jobs(monkeypatch):
    """An exception in a pool thread's idle spin (here: the busy-wait lookup fails in the pool's threads) is reported
    through threading.excepthook and does not end the thread: the job it already took from the queue still runs, and
    later calls find the thread serving."""
    monkeypatch.setenv("TINYNN_NUM_THREADS", "2")
    monkeypatch.setattr(parallel, "_pool", None)
    monkeypatch.setattr(parallel, "_pool_size", 0)
    monkeypatch.setattr(parallel, "TAKE_BACK_AFTER", 30.0)  # a lost job would hang (caught below), not be taken back
    spinner, reported = parallel._spinner, []

    def failing_in_the_pool():
        if threading.current_thread().name.startswith("tinynn"):
            raise RuntimeError("idle spin")
        return spinner()

    monkeypatch.setattr(parallel, "_spinner", failing_in_the_pool)
    monkeypatch.setattr(threading, "excepthook", lambda args: reported.append(args.exc_value))

    def calls():
        name = threading.current_thread
        return [parallel.run_parallel(lambda i=i: i, lambda i=i: (i, name().name)) for i in range(20)]

    got = _returns_within(60, calls)
    assert [g[0] for g in got] == list(range(20)) and all(g[1][0] == g[0] for g in got)
    assert all(g[1][1].startswith("tinynn") for g in got)  # every second piece ran on the pool's thread
    assert reported and all(isinstance(e, RuntimeError) for e in reported)
    assert parallel._pool.alive()
