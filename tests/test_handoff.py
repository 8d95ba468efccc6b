"""tinynn.kernels.handoff: a one-group convolution's forward rows (and their pooled sums) claimed by the caller and
the pool's threads inside numba. The ranges are the ones tinynn.kernels.parallel.share would hand out through
Python, so the results are compared with that route bit for bit, and with the NumPy reference within 1e-12."""

import os
import threading
import time
from unittest import mock

import numpy as np
import pytest
from forking import in_forked_child
from hypothesis import example, given
from hypothesis import strategies as st

from tinynn import activations
from tinynn.kernels import conv2d as kc
from tinynn.kernels import handoff, parallel
from tinynn.kernels.fastmath import RELU, activation_code
from tinynn.kernels.reference import conv2d as rc

TOL = 1e-12
_WORKSPACE: dict = {}  # shared by every example: the hand-off's plan and scratch get replaced on new shapes


def _split_everything():
    """Patches that make even a one-pixel convolution split into ranges of a row (both routes)."""
    return (mock.patch.object(parallel, "PARALLEL_WORK", 0), mock.patch.object(kc, "PIECE_WORK", 1),
            mock.patch.object(kc, "HANDOFF_PIECE_WORK", 1), mock.patch.object(kc, "HANDOFF_MIN_WORK", 0))  # fmt: skip


@st.composite
def forward_case(draw):
    """A one-group im2col convolution (1×1 pointwise included), its activation, pooled or not, the dtype."""
    KH, KW = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    sh, sw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    padding = draw(st.sampled_from(["valid", "same"]))
    H, W = KH + draw(st.integers(0, 6)), KW + draw(st.integers(0, 6))
    pt, Ho = rc.conv_output_size(H, KH, sh, 1, padding)
    pl, Wo = rc.conv_output_size(W, KW, sw, 1, padding)
    return dict(B=draw(st.integers(1, 4)), H=H, W=W, C=draw(st.integers(1, 5)), F=draw(st.integers(1, 6)),
                K=(KH, KW), s=(sh, sw), pads=(pt, pl), out=(Ho, Wo), pooled=draw(st.booleans()),
                code=draw(st.sampled_from([None, "linear", "relu", "tanh", "sigmoid"])),
                dtype=draw(st.sampled_from([np.float32, np.float64])), threads=draw(st.sampled_from([2, 3])),
                pieces=draw(st.integers(1, 4)), chunk_bytes=draw(st.sampled_from([1, 300, 1 << 22])),
                seed=draw(st.integers(0, 2**16)))  # fmt: skip


POINTWISE = dict(B=3, H=5, W=1, C=4, F=6, K=(1, 1), s=(1, 1), pads=(0, 0), out=(5, 1), pooled=True, code="relu",
                 dtype=np.float32, threads=2, pieces=4, chunk_bytes=1 << 22, seed=1)  # Dense on every step
PADDED = dict(B=2, H=6, W=5, C=3, F=5, K=(3, 3), s=(2, 1), pads=(1, 1), out=(3, 5), pooled=False, code="tanh",
              dtype=np.float32, threads=3, pieces=3, chunk_bytes=300, seed=2)


def _run(c, x, Wk, b, act, route):
    """(result, whether the hand-off posted it) for ``route`` 'handoff' or 'python'."""
    posted = []
    real = handoff.run_job  # (a first pass and a repeat of its shape both post through it)

    def spy(*args, **kwargs):
        out = real(*args, **kwargs)
        posted.append(out is not None)
        return out

    with mock.patch.object(kc, "HANDOFF", route == "handoff"), mock.patch.object(handoff, "run_job", spy), \
            mock.patch.object(kc, "FORWARD_CHUNK_BYTES", c["chunk_bytes"]), \
            mock.patch.dict(os.environ, {"TINYNN_NUM_THREADS": str(c["threads"])}):  # fmt: skip
        patches = _split_everything()
        for p in patches:
            p.start()
        try:
            fn = kc.conv2d_forward_pooled if c["pooled"] else kc.conv2d_forward
            kwargs = {"pieces_per_thread": c["pieces"]} if c["pooled"] else {}
            out = fn(x, Wk, c["s"], (1, 1), c["pads"], c["out"], 1, _WORKSPACE, bias=b, activation=act, **kwargs)
        finally:
            for p in patches:
                p.stop()
    return out, any(posted)


@given(c=forward_case())
@example(c=POINTWISE)
@example(c=PADDED)
def test_the_handoff_gives_the_python_routes_bits_and_the_references_numbers(c):
    rng = np.random.default_rng(c["seed"])
    x = rng.standard_normal((c["B"], c["H"], c["W"], c["C"])).astype(c["dtype"])
    Wk = rng.standard_normal((*c["K"], c["C"], c["F"])).astype(c["dtype"])
    b = rng.standard_normal(c["F"]).astype(c["dtype"])
    act = None if c["code"] is None else activation_code(activations.get(c["code"]))
    assert parallel.serving()  # the pool's threads watch the box (compiled where called: TINYNN_COMPILE=wait)
    ours, posted = _run(c, x, Wk, b, act, "handoff")
    # the hand-off ran the pass (one output row: one range, no post; float64 goes through Python)
    assert posted == (c["B"] * c["out"][0] > 1 and c["dtype"] == np.float32)
    python, posted_python = _run(c, x, Wk, b, act, "python")
    assert not posted_python
    assert ours.dtype == x.dtype and np.array_equal(ours, python)
    z = rc.conv2d_forward(x.astype(np.float64), Wk.astype(np.float64), c["s"], (1, 1), c["pads"], c["out"])
    y = z if c["code"] is None else activations.get(c["code"])(z + b)
    ref = y.mean(axis=(1, 2)) if c["pooled"] else y
    tol = TOL if c["dtype"] == np.float64 else 1e-5
    assert np.max(np.abs(ours - ref)) <= tol * max(np.max(np.abs(ref)), 1e-300)


def _pointwise_job(rows=2048, F=32, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows // 64, 64, 1, F)).astype(np.float32)
    Wk = rng.standard_normal((1, 1, F, F)).astype(np.float32)
    b = rng.standard_normal(F).astype(np.float32)
    ref = np.maximum(x.reshape(-1, F).astype(np.float64) @ Wk[0, 0] + b, 0).reshape(x.shape[0], 64, F).mean(axis=1)
    return x, Wk, b, ref


def test_a_pool_thread_takes_ranges_and_every_result_is_right(monkeypatch):
    """The pool's thread joins posted jobs (counted in the box); each call's result is right. (It joins once the
    scheduler has it on the other core, or preempts the caller: the calls go on for up to 5 s until it has. Each
    job lasts milliseconds, longer than a scheduler's time slice, so that it joins also when another process holds
    the other core, as under make test's two workers.)"""
    monkeypatch.setenv("TINYNN_NUM_THREADS", "2")
    monkeypatch.setattr(kc, "HANDOFF_PIECE_WORK", 1 << 14)  # 8 ranges per thread (the most): some for each
    monkeypatch.setattr(parallel, "SKIP_ON_CALLERS_CORE", False)  # join also from the caller's core
    x, Wk, b, ref = _pointwise_job(rows=1 << 18)
    kc.conv2d_forward_pooled(x, Wk, workspace={}, bias=b, activation=RELU)  # compiles when run alone ("wait" mode)
    before = int(handoff.box()[handoff.POOL_RANGES])
    start = time.monotonic()
    while handoff.box()[handoff.POOL_RANGES] == before and time.monotonic() - start < 5:
        p = kc.conv2d_forward_pooled(x, Wk, workspace={}, bias=b, activation=RELU)
        assert np.max(np.abs(p - ref)) <= 1e-5 * np.max(np.abs(ref))
    assert handoff.box()[handoff.POOL_RANGES] > before


def test_callers_on_two_threads_share_the_box_by_turns(monkeypatch):
    """Two threads calling at once: one posts, the other finds the box taken and hands its ranges out through
    Python (or posts when the box is free); both always get their own right answer."""
    monkeypatch.setenv("TINYNN_NUM_THREADS", "2")
    jobs = [_pointwise_job(seed=s) for s in (1, 2)]
    errors = []

    def caller(job):
        x, Wk, b, ref = job
        ws: dict = {}
        for _ in range(60):
            p = kc.conv2d_forward_pooled(x, Wk, workspace=ws, bias=b, activation=RELU)
            if not np.max(np.abs(p - ref)) <= 1e-5 * np.max(np.abs(ref)):
                errors.append(p)

    threads = [threading.Thread(target=caller, args=(job,)) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    box = handoff.box()
    assert box[handoff.JOB] == 0 and box[handoff.ACTIVE] == 0


def test_a_taken_box_returns_none_and_the_pass_runs_through_python(monkeypatch):
    monkeypatch.setenv("TINYNN_NUM_THREADS", "2")
    x, Wk, b, ref = _pointwise_job()
    calls = []
    real = handoff.forward_rows
    monkeypatch.setattr(handoff, "forward_rows", lambda *a, **k: calls.append(real(*a, **k)) or calls[-1])
    with handoff._box_lock:
        p = kc.conv2d_forward_pooled(x, Wk, workspace={}, bias=b, activation=RELU)
    assert calls == [None] and np.max(np.abs(p - ref)) <= 1e-5 * np.max(np.abs(ref))


def _run_rows_arguments(x, Wk, b, workers):
    F, Ho = Wk.shape[3], x.shape[1]
    ranges = np.array(parallel.even_ranges(x.shape[0] * Ho, 6), np.int64)
    offsets = np.zeros(len(ranges) + 1, np.int64)
    np.cumsum((ranges[:, 1] - 1) // Ho + 1 - ranges[:, 0] // Ho, out=offsets[1:])
    parts = np.zeros(int(offsets[-1]) * F)
    a = np.array((RELU, 1, 1, 1, 1, 1, 1, 0, 0, Ho, 1, 1 << 20), np.int64)
    scratch = np.empty((workers, 128 * F), x.dtype)  # a range: 128 rows (768 / 6)
    return (a, np.empty((workers, 1), x.dtype), scratch, np.empty((0, F), x.dtype), ranges, parts, offsets)


def test_the_caller_alone_runs_every_range_when_no_pool_thread_may_join():
    """workers = 1: no scratch for a pool thread, which therefore never joins; the caller runs all six ranges."""
    x, Wk, b, ref = _pointwise_job(rows=768)
    a, cols, zbuf, z, ranges, parts, offsets = _run_rows_arguments(x, Wk, b, 1)
    before = int(handoff.box()[handoff.POOL_RANGES])
    with handoff._box_lock, parallel.kernel_scope():
        failed = handoff.run_rows(handoff.box(), next(handoff._job_ids), x, Wk[0, 0], b, a, cols, zbuf, z, ranges,
                                  parts, offsets, 1, parallel.YIELD_CYCLES, False)  # fmt: skip
    assert failed == 0 and handoff.box()[handoff.POOL_RANGES] == before
    sums = np.zeros((x.shape[0], Wk.shape[3]))
    for i, (r0, _) in enumerate(ranges):
        part = parts[offsets[i] * 32 : offsets[i + 1] * 32].reshape(-1, 32)
        sums[r0 // 64 : r0 // 64 + len(part)] += part
    assert np.max(np.abs(sums / 64 - ref)) <= 1e-5 * np.max(np.abs(ref))


def test_a_failing_range_is_reported_and_the_box_is_closed():
    """A product whose operands do not fit raises inside numba: caught, box[ERROR] set, the claiming stopped, the
    job closed with nobody inside it; forward_rows then returns None (its caller reruns the pass in Python)."""
    x, Wk, b, _ = _pointwise_job(rows=768)
    a, cols, zbuf, z, ranges, parts, offsets = _run_rows_arguments(x, Wk, b, 2)
    wrong = np.ascontiguousarray(Wk[0, 0, :-1])  # K - 1 rows: blas.gemm refuses it
    with handoff._box_lock, parallel.kernel_scope():
        failed = handoff.run_rows(handoff.box(), next(handoff._job_ids), x, wrong, b, a, cols, zbuf, z, ranges,
                                  parts, offsets, 2, parallel.YIELD_CYCLES, False)  # fmt: skip
    box = handoff.box()
    assert failed == 1 and box[handoff.JOB] == 0 and box[handoff.ACTIVE] == 0
    with parallel.kernel_scope():
        assert handoff.forward_rows(x, wrong, b, RELU, (1, 1, 1, 1, 1, 1, 0, 0, 64), 1, 1 << 20,
                                    parallel.even_ranges(x.shape[0] * 64, 4), None, 32, {}, 2) is None  # fmt: skip
    with pytest.raises(ValueError, match="blas.gemm"):  # the Python route names the failure
        kc._forward_rows(x, wrong, b, RELU, 1, 1, 1, 1, 1, 1, 0, 0, 64, 1, 0, 64, 64, cols[0], zbuf[0], z, 0,
                         np.zeros((1, 32)))  # fmt: skip


def test_inside_a_parallel_piece_nothing_is_posted(monkeypatch):
    """A pass called from inside a piece (its core already taken) runs its ranges itself, as share does."""
    monkeypatch.setenv("TINYNN_NUM_THREADS", "2")
    x, Wk, b, ref = _pointwise_job()
    calls = []
    monkeypatch.setattr(handoff, "forward_rows", lambda *a, **k: calls.append(1))
    with parallel.sequential():
        p = kc.conv2d_forward_pooled(x, Wk, workspace={}, bias=b, activation=RELU)
    assert calls == [] and np.max(np.abs(p - ref)) <= 1e-5 * np.max(np.abs(ref))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork")
def test_a_forked_child_gets_an_empty_box(monkeypatch):
    """The parent's pool threads serve its box; the child has none of them and starts with an empty box (no job
    open, nobody serving), and its passes still come out right."""
    monkeypatch.setenv("TINYNN_NUM_THREADS", "2")
    x, Wk, b, ref = _pointwise_job()
    kc.conv2d_forward_pooled(x, Wk, workspace={}, bias=b, activation=RELU)  # the parent's threads serve

    def child() -> bool:
        box = handoff.box()
        empty = box[handoff.SERVING] == 0 and box[handoff.JOB] == 0 and box[handoff.ACTIVE] == 0
        p = kc.conv2d_forward_pooled(x, Wk, workspace={}, bias=b, activation=RELU)
        return bool(empty and np.max(np.abs(p - ref)) <= 1e-5 * np.max(np.abs(ref)))

    assert in_forked_child(child)


_COMPILES_BY_THREAD = r'''
import json, os, threading, time
from numba.core import event
seen = []


class Recorder(event.Listener):
    def on_start(self, e):
        seen.append((threading.current_thread().name, e.data["dispatcher"].py_func.__name__))

    def on_end(self, e):
        pass


event.register("numba:compile", Recorder())
import numpy as np
from tinynn.kernels import conv2d, handoff, parallel
from tinynn.kernels.fastmath import RELU

x = np.random.default_rng(0).random((4096, 64, 1, 32)).astype(np.float32)  # 2^28 multiply-adds: a job of ms
Wk = np.random.default_rng(1).random((1, 1, 32, 32)).astype(np.float32)
parallel.SKIP_ON_CALLERS_CORE = False  # join also from the caller's core (the scheduler may put them together)
conv2d.conv2d_forward_pooled(x, Wk, bias=np.zeros(32, np.float32), activation=RELU)  # compiles every kernel here
start = time.monotonic()
while handoff.box()[handoff.POOL_RANGES] == 0 and time.monotonic() - start < 20:
    conv2d.conv2d_forward_pooled(x, Wk, bias=np.zeros(32, np.float32), activation=RELU)
print(json.dumps({"compiles": seen, "pool_ranges": int(handoff.box()[handoff.POOL_RANGES])}))
'''


def test_no_kernel_compiles_on_a_pool_thread(tmp_path):
    """A fresh process, an empty numba cache, "wait" mode: every kernel of the hand-off (serve, run_rows and what
    they call) compiles on the calling thread, none on a pool thread, where a compile still running when the
    process ends makes LLVM abort. (The pool thread then takes ranges: after the first call, which compiles, the
    calls go on for up to 20 s until it has; each job lasts milliseconds, so that it joins also when another process
    holds the other core.)"""
    import json
    import pathlib
    import subprocess
    import sys

    root = str(pathlib.Path(handoff.__file__).resolve().parents[2])
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path), "PYTHONPATH": root, "TINYNN_COMPILE": "wait",
           "TINYNN_NUM_THREADS": "2"}  # fmt: skip
    done = subprocess.run([sys.executable, "-c", _COMPILES_BY_THREAD], env=env, capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    names = {name for _, name in result["compiles"]}
    assert {"serve", "run_rows", "_forward_rows"} <= names
    assert [c for c in result["compiles"] if c[0].startswith("tinynn_")] == []
    assert result["pool_ranges"] > 0


def test_a_pooled_pass_has_the_same_bits_whoever_runs_its_ranges(monkeypatch):
    """The ranges are cut for the hand-off whether it is compiled yet, takes the job or finds the box taken, so the
    sums of an image split between two ranges (33 images of 64 rows in two ranges), added in range order, have the
    same bits in all three cases."""
    monkeypatch.setenv("TINYNN_NUM_THREADS", "2")
    x, Wk, b, ref = _pointwise_job(rows=33 * 64)
    posted = []
    real = handoff.forward_rows
    monkeypatch.setattr(handoff, "forward_rows", lambda *a, **k: posted.append(real(*a, **k)) or posted[-1])
    taken = kc.conv2d_forward_pooled(x, Wk, workspace={}, bias=b, activation=RELU)
    assert len(posted) == 1 and posted[0] is not None  # the hand-off ran it
    with handoff._box_lock:  # the box taken: the same ranges through Python
        busy = kc.conv2d_forward_pooled(x, Wk, workspace={}, bias=b, activation=RELU)
    assert len(posted) == 2 and posted[1] is None
    monkeypatch.setattr(handoff, "ready", lambda dtype: False)  # not compiled yet: through Python
    compiling = kc.conv2d_forward_pooled(x, Wk, workspace={}, bias=b, activation=RELU)
    assert len(posted) == 2
    assert np.array_equal(taken, busy) and np.array_equal(taken, compiling)
    assert np.max(np.abs(taken - ref)) <= 1e-5 * np.max(np.abs(ref))


@pytest.mark.parametrize("ready", [True, False])
def test_a_pass_too_short_for_python_splits_through_the_handoff_only(ready, monkeypatch):
    """Between ``workers · HANDOFF_MIN_WORK`` and ``parallel.PARALLEL_WORK`` multiply-adds a pass splits into one range
    per thread when the hand-off can take them; when it cannot, the calling thread runs the same ranges in turn (no
    hand-off through Python, which costs more than such a pass gains), so the results have the same bits. Below that
    work, or without the hand-off, it is one range."""
    from tinynn.kernels import cblas

    if not cblas.can_limit_threads():
        pytest.skip("numpy's BLAS cannot be held to one thread: every pass is one range")
    monkeypatch.setenv("TINYNN_NUM_THREADS", "2")
    monkeypatch.setattr(kc, "share", lambda *a, **k: pytest.fail("a short pass went through parallel.share"))
    work = 2 * kc.HANDOFF_MIN_WORK
    assert work < parallel.PARALLEL_WORK  # the band this test is about exists
    calls, handed = [], []

    def task(worker, r0, r1):
        calls.append((worker, r0, r1))
        return r0

    native = (lambda: ready), (lambda ranges, workers: handed.append((ranges, workers)) or [r0 for r0, _ in ranges])
    got = kc._share_rows(task, 10, work, native=native)
    assert got == [0, 5]
    if ready:
        assert handed == [([(0, 5), (5, 10)], 2)] and calls == []
    else:
        assert handed == [] and calls == [(0, 0, 5), (0, 5, 10)]
    calls.clear()
    assert kc._share_rows(task, 10, work - 1, native=native) == [0] and calls == [(0, 0, 10)]
    calls.clear()
    assert kc._share_rows(task, 10, work) == [0] and calls == [(0, 0, 10)]  # the Python route starts higher
