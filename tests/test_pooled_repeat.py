"""A pooled forward that repeats its call shape (a model's predict, batch after batch) runs the plan its first pass
kept (tinynn.kernels.conv2d._pooled_again): the same hand-off job or the same one-range kernel call, so the same bits
as working the plan out again; any change to what decides the plan (shapes, threads, thresholds) plans again. And
the forwards' chunks sized for the BLAS's small-matrix kernels (tinynn.kernels.conv2d.forward_step)."""

import numpy as np
import pytest
from spies import count_calls

from tinynn.kernels import cblas, handoff, parallel
from tinynn.kernels import conv2d as kc
from tinynn.kernels.fastmath import RELU, TANH
from tinynn.kernels.reference import conv2d as rc

F32_TOL = 1e-5


def _case(B=16, H=12, W=7, C=5, F=24, K=(3, 2), seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((B, H, W, C)).astype(dtype)
    Wk = rng.standard_normal((*K, C, F)).astype(dtype)
    b = rng.standard_normal(F).astype(dtype)
    return x, Wk, b


def _reference(x, Wk, b, act):
    z = rc.conv2d_forward(x.astype(np.float64), Wk.astype(np.float64), (1, 1), (1, 1), (0, 0))
    z = z + b
    y = np.maximum(z, 0) if act == RELU else np.tanh(z)
    return y.mean(axis=(1, 2))


def _close(p, ref):
    return np.max(np.abs(p - ref)) <= F32_TOL * np.max(np.abs(ref))


def _hand_off_even_small_passes(monkeypatch, threads: str) -> None:
    """``threads`` threads, and a pass of any size split into ranges for the hand-off."""
    monkeypatch.setenv("TINYNN_NUM_THREADS", threads)
    monkeypatch.setattr(parallel, "PARALLEL_WORK", 0)
    monkeypatch.setattr(kc, "HANDOFF_MIN_WORK", 0)


# (threads, split): one range on the calling thread, or ranges handed to the pool's threads (the hand-off's job)
ROUTES = {"one range": ("1", False), "hand-off": ("2", True)}


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("act", [RELU, TANH])
def test_a_repeated_pass_runs_its_kept_plan_with_the_same_bits_on_new_values(monkeypatch, route, act):
    threads, split = ROUTES[route]
    if split:
        _hand_off_even_small_passes(monkeypatch, threads)
    else:
        monkeypatch.setenv("TINYNN_NUM_THREADS", threads)
    x, Wk, b = _case()
    x2 = np.random.default_rng(9).standard_normal(x.shape).astype(x.dtype)  # same shape, new values
    ws: dict = {}
    planned = count_calls(monkeypatch, kc, "_share_rows")
    posted = count_calls(monkeypatch, handoff, "run_job")
    first = kc.conv2d_forward_pooled(x, Wk, workspace=ws, bias=b, activation=act)
    assert len(planned) == 1 and len(posted) == int(split)
    kept = ws["pooled_job"]
    assert (kept[1] is not None) == split and (kept[4] is not None) == (not split)  # a job, or the local call
    again = kc.conv2d_forward_pooled(x, Wk, workspace=ws, bias=b, activation=act)
    other = kc.conv2d_forward_pooled(x2, Wk, workspace=ws, bias=b, activation=act)
    assert len(planned) == 1 and len(posted) == 3 * int(split)  # the repeats ran the kept plan
    fresh = kc.conv2d_forward_pooled(x, Wk, workspace={}, bias=b, activation=act)  # planned anew
    assert np.array_equal(first, again) and np.array_equal(first, fresh)
    assert _close(first, _reference(x, Wk, b, act)) and _close(other, _reference(x2, Wk, b, act))


def test_a_change_to_what_decides_the_plan_plans_again(monkeypatch):
    _hand_off_even_small_passes(monkeypatch, "2")
    x, Wk, b = _case()
    ws: dict = {}
    planned = count_calls(monkeypatch, kc, "_share_rows")

    def run(x=x, Wk=Wk, b=b, act=RELU):
        p = kc.conv2d_forward_pooled(x, Wk, workspace=ws, bias=b, activation=act)
        assert _close(p, _reference(x, Wk, b, act))
        return len(planned)

    assert run() == 1 and run() == 1
    assert run(x=x[:9]) == 2  # another batch size
    assert run(act=TANH) == 3  # another activation
    x64, W64, b64 = (a.astype(np.float64) for a in (x, Wk, b))
    assert run(x=x64, Wk=W64, b=b64) == 4  # another dtype (through Python: the hand-off takes float32)
    assert run(x=x64, Wk=W64, b=b64) == 4  # (kept: one pass, no job)
    assert run() == 5
    monkeypatch.setenv("TINYNN_NUM_THREADS", "3")  # other threads
    assert run() == 6
    monkeypatch.setattr(kc, "HANDOFF", False)  # the hand-off turned off: one range (too little work to split)
    assert run() == 7 and run() == 7
    monkeypatch.setattr(kc, "PIECE_WORK", 1)  # ranges through Python's share: nothing kept
    assert run() == 8 and run() == 9
    monkeypatch.setattr(kc, "HANDOFF", True)
    monkeypatch.setattr(kc, "FORWARD_CHUNK_BYTES", 300)  # other chunks
    assert run() == 10 and run() == 10


def test_a_kept_job_that_cannot_be_posted_runs_the_full_route_with_the_same_bits(monkeypatch):
    _hand_off_even_small_passes(monkeypatch, "2")
    x, Wk, b = _case()
    ws: dict = {}
    first = kc.conv2d_forward_pooled(x, Wk, workspace=ws, bias=b, activation=RELU)
    planned = count_calls(monkeypatch, kc, "_share_rows")
    with handoff._box_lock:  # another thread posting
        busy = kc.conv2d_forward_pooled(x, Wk, workspace=ws, bias=b, activation=RELU)
    with parallel.sequential():  # inside a parallel piece: nothing is posted
        inside = kc.conv2d_forward_pooled(x, Wk, workspace=ws, bias=b, activation=RELU)
    assert len(planned) == 2
    assert np.array_equal(first, busy) and np.array_equal(first, inside)


@pytest.mark.parametrize("shape", [(1, 32, 32), (1, 64, 64), (1, 128, 128), (1, 320, 32), (18, 144, 32),
                                   (18, 144, 128), (1, 256, 256), (18, 144, 256), (5, 3, 2)])  # fmt: skip
def test_float32_chunks_fit_the_small_matrix_kernels_when_they_leave_enough_pixels(monkeypatch, shape):
    Wo, K, F = shape
    monkeypatch.setattr(cblas, "small_sgemm_work", lambda: 100**3)
    old = kc._chunk_rows(Wo * K * 4, kc.FORWARD_CHUNK_BYTES)
    rows = kc.forward_step(Wo, K, F, np.float32)
    fit = 100**3 // (Wo * K * F)
    if fit * Wo >= kc.SMALL_CHUNK_MIN_PIXELS:
        assert rows == min(old, fit) and rows * Wo * K * F <= 100**3
    else:
        assert rows == old
    assert kc.forward_step(Wo, K, F, np.float64) == kc._chunk_rows(Wo * K * 8, kc.FORWARD_CHUNK_BYTES)
    monkeypatch.setattr(cblas, "small_sgemm_work", lambda: 0)  # not known: the bytes rule
    assert kc.forward_step(Wo, K, F, np.float32) == old


@pytest.mark.parametrize("pooled", [False, True])
def test_forwards_in_small_matrix_chunks_match_the_reference(monkeypatch, pooled):
    """Chunks of a few pixels (the small-matrix size of a small limit), across image boundaries."""
    monkeypatch.setattr(cblas, "small_sgemm_work", lambda: 40 * 30 * 24)  # 40 pixels of K = 30, F = 24
    monkeypatch.setattr(kc, "SMALL_CHUNK_MIN_PIXELS", 8)
    x, Wk, b = _case(B=5, H=11, W=8, C=5, F=24, K=(3, 2))  # K = 30, Wo = 7: 5 rows (35 pixels) per chunk
    assert kc.forward_step(7, 30, 24, np.float32) == 5
    calls = count_calls(monkeypatch, kc, "forward_step")
    if pooled:
        p = kc.conv2d_forward_pooled(x, Wk, bias=b, activation=TANH)
        assert _close(p, _reference(x, Wk, b, TANH))
    else:
        z = kc.conv2d_forward(x, Wk, bias=b, activation=TANH)
        ref = np.tanh(rc.conv2d_forward(x.astype(np.float64), Wk.astype(np.float64), (1, 1), (1, 1), (0, 0)) + b)
        assert np.max(np.abs(z - ref)) <= F32_TOL * np.max(np.abs(ref))
    assert calls


def test_the_small_matrix_limit_is_known_for_openblas_avx512_cores_only(monkeypatch):
    for core, limit in (("SkylakeX", 100**3), ("Cooperlake", 100**3), ("SapphireRapids", 100**3), ("Haswell", 0),
                        ("Zen", 0), (None, 0)):  # fmt: skip
        monkeypatch.setattr(cblas, "_bind", lambda core=core: {"core": core})
        assert cblas.small_sgemm_work.__wrapped__() == limit
