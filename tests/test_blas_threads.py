"""The BLAS binding of the numba kernels (tinynn.kernels.cblas / blas.gemm), its thread control, the batch
sharing of the image kernels (parallel.share_batch, parallel.scratch), and the subnormal-flushing scope the kernels
run in (tinynn.kernels.denormals, parallel.kernel_scope)."""

import ctypes
import threading

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from product_operands import operands_on_views

from tinynn.kernels import blas, cblas, cblas_adapters, denormals, parallel


@given(M=st.integers(1, 40), K=st.integers(0, 30), N=st.integers(1, 40), trans_a=st.booleans(),
       trans_b=st.booleans(), beta=st.sampled_from([0.0, 1.0, -0.5]), views=st.booleans(),
       dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**16))
@example(M=5, K=0, N=3, trans_a=False, trans_b=False, beta=1.0, views=True, dtype=np.float64, seed=0)  # empty sum
@example(M=7, K=9, N=11, trans_a=True, trans_b=True, beta=-0.5, views=True, dtype=np.float32, seed=1)
def test_gemm_on_views_transposes_and_accumulation(M, K, N, trans_a, trans_b, beta, views, dtype, seed):
    """out = op(a) op(b) + β out on column blocks / row slices of larger arrays, against NumPy in float64."""
    a, b, out_big, out = operands_on_views(np.random.default_rng(seed), M, K, N, trans_a, trans_b, dtype, views)
    before, frame = out.astype(np.float64), out_big.copy()
    want = (a.T if trans_a else a).astype(np.float64) @ (b.T if trans_b else b).astype(np.float64) + beta * before
    blas.gemm(a, b, out, trans_a, trans_b, beta)
    tol = 1e-12 if dtype == np.float64 else 2e-5
    assert np.max(np.abs(out - want)) <= tol * max(1.0, np.max(np.abs(want)))
    frame[1:1 + M, 2:2 + N] = out
    np.testing.assert_array_equal(out_big, frame)  # nothing outside the block was written


@given(shape=st.sampled_from(["M1", "N1", "both"]), K=st.integers(0, 40), other=st.integers(1, 40),
       trans_a=st.booleans(), trans_b=st.booleans(), beta=st.sampled_from([0.0, 1.0]), views=st.booleans(),
       dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**16))
@example(shape="M1", K=128, other=512, trans_a=True, trans_b=False, beta=0.0, views=True, dtype=np.float32, seed=0)
@example(shape="N1", K=33, other=17, trans_a=True, trans_b=True, beta=1.0, views=True, dtype=np.float64, seed=1)
@example(shape="both", K=9, other=1, trans_a=True, trans_b=True, beta=1.0, views=True, dtype=np.float64, seed=2)
def test_gemm_with_one_row_or_one_column_goes_through_gemv_right(shape, K, other, trans_a, trans_b, beta, views,
                                                                 dtype, seed):  # fmt: skip
    """M = 1 or N = 1 (the gemv path of blas.gemm) in every transpose layout, on row slices and column blocks of
    larger arrays (a vector with a row stride as its increment), β = 0 over a NaN-filled output, against NumPy."""
    M, N = {"M1": (1, other), "N1": (other, 1), "both": (1, 1)}[shape]
    a, b, out_big, out = operands_on_views(np.random.default_rng(seed), M, K, N, trans_a, trans_b, dtype, views)
    if beta == 0:
        out[...] = np.nan  # β = 0 ignores what was there
    before, frame = out.astype(np.float64), out_big.copy()
    want = (a.T if trans_a else a).astype(np.float64) @ (b.T if trans_b else b).astype(np.float64)
    if beta != 0:
        want = want + beta * before
    blas.gemm(a, b, out, trans_a, trans_b, beta)
    tol = 1e-12 if dtype == np.float64 else 2e-5
    assert np.all(np.isfinite(out))
    assert np.max(np.abs(out - want)) <= tol * max(1.0, np.max(np.abs(want)))
    frame[1:1 + M, 2:2 + N] = out
    np.testing.assert_array_equal(out_big, frame)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_grouped_matmul_tn_accumulates_into_out(dtype):
    """grouped_matmul_tn(a, b, out, accumulate=True) adds aᵀ @ b to out group by group (the conv filter gradient's
    running sum over chunks); without it, out is overwritten."""
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(2, 50, 7)).astype(dtype), rng.normal(size=(2, 50, 4)).astype(dtype)
    start = rng.normal(size=(2, 7, 4)).astype(dtype)
    want = start.astype(np.float64) + a.transpose(0, 2, 1).astype(np.float64) @ b.astype(np.float64)
    out = start.copy()
    assert blas.grouped_matmul_tn(a, b, out, accumulate=True) is out
    tol = 1e-12 if dtype == np.float64 else 2e-5
    assert np.max(np.abs(out - want)) <= tol * np.max(np.abs(want))
    blas.grouped_matmul_tn(a, b, out)
    assert np.max(np.abs(out - (want - start))) <= tol * np.max(np.abs(want))


def test_gemm_rejects_misfit_shapes_and_strided_rows():
    a, b, out = np.ones((3, 4)), np.ones((5, 2)), np.zeros((3, 2))
    with pytest.raises(ValueError, match="shapes do not fit"):
        blas.gemm(a, b, out, False, False, 0.0)
    with pytest.raises(ValueError, match="unit-stride"):
        blas.gemm(np.ones((3, 8))[:, ::2], np.ones((4, 2)), out, False, False, 0.0)


def test_numpy_blas_is_found_and_held_to_one_thread():
    info = cblas.library()
    assert info["sizes"] in ("int64", "int32", None)
    if not cblas.can_limit_threads():
        pytest.skip("numpy's BLAS is not an OpenBLAS whose thread count can be set")
    get = cblas._bind()["threads"][0]
    before = get()
    with cblas.single_threaded():
        assert get() == 1
        with cblas.single_threaded():  # nested: still one, and the outer block restores
            assert get() == 1
        assert get() == 1
    assert get() == before


def test_single_threaded_holds_numpys_own_blas_as_threadpoolctl_sees_it():
    """An outside observer: the library cblas binds is the OpenBLAS numpy's products run on (not another copy in
    the process), held to one thread inside the blocks and restored by the outermost."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    np.ones((2, 2)) @ np.ones((2, 2))  # numpy's BLAS is loaded

    def numpy_blas_threads():
        infos = [i for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas" and "numpy" in i["filepath"]]
        return infos[0]["num_threads"] if infos else None

    before = numpy_blas_threads()
    if before is None or not cblas.can_limit_threads():
        pytest.skip("numpy's BLAS is not an OpenBLAS threadpoolctl can see")
    with cblas.single_threaded():
        assert numpy_blas_threads() == 1
        with cblas.single_threaded():
            assert numpy_blas_threads() == 1
        assert numpy_blas_threads() == 1
    assert numpy_blas_threads() == before


def _share_batch_calls(monkeypatch, items, work, blas=False, threads="2"):
    """(results, calls) of parallel.share_batch with a task recording (worker, start, stop, thread name)."""
    monkeypatch.setenv("TINYNN_NUM_THREADS", threads)
    calls = []

    def task(worker, start, stop):
        calls.append((worker, start, stop, threading.current_thread().name))
        return start

    return parallel.share_batch(task, items, work, blas=blas), calls


def test_share_batch_covers_every_item_once_and_returns_results_in_range_order(monkeypatch):
    """Ranges of ⌈items / (PIECES_PER_THREAD · threads)⌉ pulled by both threads cover range(items) exactly once;
    results come back in range order (so the partial sums of a weight gradient add in the same order every run)."""
    monkeypatch.setattr(parallel, "PARALLEL_WORK", 0)
    starts, calls = _share_batch_calls(monkeypatch, 37, work=1.0)
    grain = -(-37 // (parallel.PIECES_PER_THREAD * 2))
    assert starts == list(range(0, 37, grain))  # in range order, whichever thread ran a range
    assert sorted(i for _, a, b, _ in calls for i in range(a, b)) == list(range(37))
    assert {w for w, *_ in calls} <= {0, 1} and all(b - a <= grain for _, a, b, _ in calls)
    with parallel.sequential():  # inside a parallel piece: the same ranges, all on this thread as worker 0
        again, inner = _share_batch_calls(monkeypatch, 37, work=1.0)
    assert again == starts and {(w, name) for w, *_, name in inner} == {(0, threading.current_thread().name)}


def test_share_batch_runs_one_call_when_splitting_does_not_pay(monkeypatch):
    assert _share_batch_calls(monkeypatch, 5, work=parallel.PARALLEL_WORK - 1)[1] == [
        (0, 0, 5, threading.current_thread().name)]  # small work
    monkeypatch.setattr(parallel, "PARALLEL_WORK", 0)
    assert _share_batch_calls(monkeypatch, 5, work=1.0, threads="1")[1][0][:3] == (0, 0, 5)  # one core
    assert len(_share_batch_calls(monkeypatch, 5, work=1.0)[1]) == 5  # (the split the next line suppresses)
    monkeypatch.setattr(cblas, "can_limit_threads", lambda: False)  # BLAS would thread each product itself
    assert _share_batch_calls(monkeypatch, 5, work=1.0, blas=True)[1][0][:3] == (0, 0, 5)
    assert len(_share_batch_calls(monkeypatch, 5, work=1.0, blas=False)[1]) == 5


def test_scratch_reuses_and_grows_its_buffer():
    workspace: dict = {}
    a = parallel.scratch(workspace, "cols0", (3, 4), np.float32)
    assert a.shape == (3, 4) and a.dtype == np.float32 and a.flags.c_contiguous
    b = parallel.scratch(workspace, "cols0", (2, 5), np.float32)  # fits: the same memory
    assert np.shares_memory(a, b)
    c = parallel.scratch(workspace, "cols0", (4, 4), np.float32)  # larger: a new buffer, kept for next time
    assert not np.shares_memory(a, c) and workspace["cols0"].size == 16
    assert parallel.scratch(workspace, "cols0", (4, 4), np.float64).dtype == np.float64  # another dtype: new
    assert not np.shares_memory(parallel.scratch(workspace, "cols1", (2,), np.float64), workspace["cols0"])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numpy_dot_adapter_computes_the_cblas_product(dtype):
    """The fallback for a machine without a 64-bit-size CBLAS, called through its C entry point."""
    sgemm, dgemm = cblas_adapters.numpy_dot_adapters()
    fn = sgemm if dtype == np.float32 else dgemm
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(4, 9)).astype(dtype), rng.normal(size=(6, 9)).astype(dtype)  # a (M, K), b (N, K)
    big = rng.normal(size=(4, 8)).astype(dtype)
    c, before = big[:, 1:7], big[:, 1:7].astype(np.float64)  # ldc = 8
    ptr = ctypes.POINTER(ctypes.c_float if dtype == np.float32 else ctypes.c_double)
    fn.ctypes(cblas_adapters.ROW_MAJOR, cblas_adapters.NO_TRANS, cblas_adapters.TRANS, 4, 6, 9, 2.0,
              a.ctypes.data_as(ptr), 9, b.ctypes.data_as(ptr), 9, 0.5, c.ctypes.data_as(ptr), 8)
    want = 2.0 * a.astype(np.float64) @ b.T.astype(np.float64) + 0.5 * before
    np.testing.assert_allclose(c, want, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("trans", [False, True])
def test_gemv_adapter_computes_the_cblas_product_through_gemm(dtype, trans):
    """The gemv stand-in (no CBLAS gemv found: forwards to the registered gemm symbol), called through its C entry
    point with strided x and y (increments 3 and 2) and a leading dimension longer than a row."""
    sgemv, dgemv = cblas_adapters.gemv_adapters()
    fn = sgemv if dtype == np.float32 else dgemv
    rng = np.random.default_rng(1)
    big_a = rng.normal(size=(5, 9)).astype(dtype)
    a = big_a[:, :7]  # A (5, 7), lda = 9
    rows, cols = (7, 5) if trans else (5, 7)
    x_big, y_big = rng.normal(size=3 * cols).astype(dtype), rng.normal(size=2 * rows).astype(dtype)
    x, before, gaps = x_big[::3], y_big[::2].astype(np.float64), y_big[1::2].copy()
    ptr = ctypes.POINTER(ctypes.c_float if dtype == np.float32 else ctypes.c_double)
    fn.ctypes(cblas_adapters.ROW_MAJOR, cblas_adapters.TRANS if trans else cblas_adapters.NO_TRANS, 5, 7, 2.0,
              big_a.ctypes.data_as(ptr), 9, x_big.ctypes.data_as(ptr), 3, 0.5, y_big.ctypes.data_as(ptr), 2)
    op_a = (a.T if trans else a).astype(np.float64)
    want = 2.0 * op_a @ x.astype(np.float64) + 0.5 * before
    np.testing.assert_allclose(y_big[::2], want, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-5)
    np.testing.assert_array_equal(y_big[1::2], gaps)  # nothing between y's elements was written


def _subnormal_product() -> float:
    tiny = np.array([1e-39], np.float32)  # subnormal in float32
    return float((tiny * np.float32(1.0))[0])


@pytest.mark.skipif(not denormals.supported(), reason="the modes live in x86-64's MXCSR")
def test_kernel_scope_flushes_subnormals_and_restores_the_thread():
    assert _subnormal_product() != 0.0 and not denormals.mode_is_on()
    with parallel.kernel_scope():
        assert denormals.mode_is_on()
        assert _subnormal_product() == 0.0  # denormals-are-zero: a subnormal operand counts as 0
        with parallel.kernel_scope():
            assert denormals.mode_is_on()
        assert denormals.mode_is_on()
    assert _subnormal_product() != 0.0 and not denormals.mode_is_on()  # NumPy outside the kernels: IEEE again


@pytest.mark.skipif(not denormals.supported(), reason="the modes live in x86-64's MXCSR")
def test_swap_mode_turns_the_modes_on_and_restores_the_mode_bits():
    """The IR-built switch against numba's own read of MXCSR (the status flags, bits 0-5, are sticky: any float
    operation in between may set them, so only the other bits are compared)."""
    status = 0x3F
    before = denormals._read_mode()
    old = denormals._swap_mode(-1)
    try:
        assert old & ~status == before & ~status and not old & 0x8040
        assert denormals._read_mode() & ~status == (before | 0x8040) & ~status
        assert _subnormal_product() == 0.0
    finally:
        previous = denormals._swap_mode(old)
    assert previous & 0x8040 == 0x8040
    assert denormals._read_mode() & ~status == before & ~status and _subnormal_product() != 0.0


@pytest.mark.skipif(not denormals.supported(), reason="the modes live in x86-64's MXCSR")
def test_reference_mode_scope_runs_no_numba_and_keeps_subnormals():
    from tinynn import config

    with config.kernels("reference"), parallel.kernel_scope():
        assert _subnormal_product() != 0.0


@pytest.mark.skipif(not denormals.supported(), reason="the modes live in x86-64's MXCSR")
def test_worker_threads_flush_subnormals(monkeypatch):
    monkeypatch.setenv("TINYNN_NUM_THREADS", "2")
    seen = {}

    def piece(k):
        seen[k] = (threading.current_thread().name, denormals.mode_is_on())

    parallel.run_parallel(lambda: piece(0), lambda: piece(1))
    assert seen[1][0].startswith("tinynn") and seen[1][1]  # the pool's thread: on for good
    assert seen[0] == (threading.current_thread().name, False)  # the caller's thread: only inside kernel scopes


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(37, 19, 23), (200, 64, 48), (9, 130, 7)])
def test_split_products_have_the_same_bits_whoever_runs_the_pieces(shape, dtype, monkeypatch):
    """matmul (with and without an epilogue), matmul_nt and matmul_tn split into k pieces per thread over 2-3
    threads: the same bits on every run, whichever thread claims which piece — the pool's thread some, or the
    caller all of them while the pool is busy elsewhere — since each output block is one BLAS call of the same
    shape whoever runs it; and NumPy's product within the float tolerance. (The bits may differ between
    different splits: a row at a block's edge can take another path through BLAS's kernels.)"""
    monkeypatch.setattr(blas, "_PARALLEL_WORK", 0)
    monkeypatch.setattr(blas, "_NUMPY_WORK", 0)
    M, K, N = shape
    rng = np.random.default_rng(5)
    a, b = rng.normal(size=(M, K)).astype(dtype), rng.normal(size=(K, N)).astype(dtype)
    bt, at = np.ascontiguousarray(b.T), np.ascontiguousarray(a.T)
    exact = a.astype(np.float64) @ b.astype(np.float64)
    tol = 1e-10 if dtype == np.float64 else 1e-5

    def products():
        out = np.empty((M, N), dtype)

        def epilogue(i0, i1):  # runs on the rows just written, by whoever wrote them
            out[i0:i1] += dtype(0.25)

        got = (blas.matmul(a, b), blas.matmul(a, b, out=out, epilogue=epilogue), blas.matmul_nt(a, bt),
               blas.matmul_tn(at, b))
        for product, plus in zip(got, (0, 0.25, 0, 0)):
            np.testing.assert_allclose(product, exact + plus, rtol=tol, atol=tol * np.max(np.abs(exact)))
        return got

    for threads, pieces in [("3", 1), ("3", 2), ("2", 1), ("2", 2), ("2", 4)]:
        monkeypatch.setenv("TINYNN_NUM_THREADS", threads)
        monkeypatch.setattr(blas, "_PIECES_PER_THREAD", pieces)
        want = products()
        runs = [products() for _ in range(4)]
        if threads == "2":
            release, ended, job = _block_the_pool(monkeypatch)  # the caller claims every piece
            try:
                runs.append(products())
                assert not ended.is_set()
            finally:
                release.set()
            job.result()
        for run in runs:
            for got, expected in zip(run, want):
                np.testing.assert_array_equal(got, expected)


def _block_the_pool(monkeypatch):
    """Occupy the pool's one thread (TINYNN_NUM_THREADS=2) until the returned event is set."""
    monkeypatch.setenv("TINYNN_NUM_THREADS", "2")
    started, release, ended = threading.Event(), threading.Event(), threading.Event()
    job = parallel._pool_for(1).submit(lambda: started.set() or release.wait(30) or ended.set())
    assert started.wait(30)
    return release, ended, job


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("threads", ["2", "3"])
def test_a_long_summed_axis_splits_into_partial_sums_added_in_range_order(threads, dtype, monkeypatch):
    """matmul_tn with K ≥ max(SUMMED_SPLIT_MIN, SUMMED_SPLIT_RATIO · max(M, N)) cuts K into one range per thread:
    the result is bit for bit range 0's product plus each other range's, added in range order (whoever runs them:
    also with the pool busy elsewhere, the caller running them all), and NumPy's float64 product within the float
    tolerance. A shorter K (or a wider output) is cut into blocks of the output instead."""
    monkeypatch.setattr(blas, "_PARALLEL_WORK", 0)
    monkeypatch.setattr(blas, "_NUMPY_WORK", 0)
    monkeypatch.setattr(blas, "SUMMED_SPLIT_MIN", 64)
    monkeypatch.setenv("TINYNN_NUM_THREADS", threads)
    rng = np.random.default_rng(11)
    K, M, N = 301, 9, 13  # K ≥ 4 · 13
    a, b = rng.normal(size=(K, M)).astype(dtype), rng.normal(size=(K, N)).astype(dtype)
    seen = []
    real_share = blas.share
    monkeypatch.setattr(blas, "share", lambda task, ranges, work=None: seen.append(ranges) or real_share(task, ranges,
                                                                                                         work))
    got = blas.matmul_tn(a, b)
    ranges = parallel.even_ranges(K, int(threads))
    assert seen == [ranges]
    want = np.empty((M, N), dtype)
    blas.gemm(a[: ranges[0][1]], b[: ranges[0][1]], want, True, False, 0.0)
    for k0, k1 in ranges[1:]:
        part = np.empty((M, N), dtype)
        blas.gemm(a[k0:k1], b[k0:k1], part, True, False, 0.0)
        want += part
    np.testing.assert_array_equal(got, want)
    exact = a.T.astype(np.float64) @ b.astype(np.float64)
    tol = 1e-10 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(got, exact, rtol=tol, atol=tol * np.abs(exact).max())
    if threads == "2":
        release, ended, job = _block_the_pool(monkeypatch)
        try:
            np.testing.assert_array_equal(blas.matmul_tn(a, b), want)
            assert not ended.is_set()
        finally:
            release.set()
        job.result()
    seen.clear()
    blas.matmul_tn(a[: 4 * N - 1], b[: 4 * N - 1])  # K below 4 · max(M, N): blocks of the output's rows
    assert seen == [parallel.even_ranges(M, int(threads))]


@given(part=st.sampled_from([blas.OUT_ROWS, blas.OUT_COLUMNS, blas.SUMMED_RANGE]), trans_a=st.booleans(),
       trans_b=st.booleans(), beta=st.sampled_from([0.0, 1.0]), small=st.sampled_from([0, 1500]),
       dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**16), data=st.data())
def test_gemm_piece_runs_its_slice_of_the_product(part, trans_a, trans_b, beta, small, dtype, seed, data):
    """blas._gemm_piece(a, b, out, ..., part, i0, i1), cutting the piece from the whole arrays: OUT_ROWS writes
    out[i0:i1] = op(a)[i0:i1] op(b) (+ β out), OUT_COLUMNS out[:, i0:i1] = op(a) op(b)[:, i0:i1], SUMMED_RANGE
    out = op(a)[:, i0:i1] op(b)[i0:i1]; nothing else of out is touched; in one product (small = 0) or in blocks of
    rows for the small-matrix kernels (small = 1500 multiply-adds: gemm_small's row blocks of 8 where op(b) is not
    transposed and the piece has 14 columns or fewer). Against NumPy in float64."""
    M, K, N = 11, 13, 17
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(K, M) if trans_a else (M, K)).astype(dtype)
    b = rng.normal(size=(N, K) if trans_b else (K, N)).astype(dtype)
    out = rng.normal(size=(M, N)).astype(dtype)
    op_a, op_b = (a.T if trans_a else a).astype(np.float64), (b.T if trans_b else b).astype(np.float64)
    length = {blas.OUT_ROWS: M, blas.OUT_COLUMNS: N, blas.SUMMED_RANGE: K}[part]
    i0 = data.draw(st.integers(0, length - 1))
    i1 = data.draw(st.integers(i0 + 1, length))
    want = out.astype(np.float64)
    if part == blas.OUT_ROWS:
        want[i0:i1] = op_a[i0:i1] @ op_b + beta * want[i0:i1]
    elif part == blas.OUT_COLUMNS:
        want[:, i0:i1] = op_a @ op_b[:, i0:i1] + beta * want[:, i0:i1]
    else:
        want = op_a[:, i0:i1] @ op_b[i0:i1] + beta * want
    blas._gemm_piece(a, b, out, trans_a, trans_b, beta, small, part, i0, i1)
    tol = 1e-12 if dtype == np.float64 else 2e-5
    assert np.max(np.abs(out - want)) <= tol * np.max(np.abs(want))


@pytest.mark.parametrize("product", ["matmul", "matmul_nt", "matmul_tn rows", "matmul_tn columns",
                                     "matmul_tn summed"])
def test_a_full_batch_split_over_the_cores_compiles_nothing_a_one_sample_call_did_not(product, monkeypatch):
    """A layer's warm-up runs its products on one sample, in one piece; the full batch's products are split over
    the cores. The pieces must find the warm-up's compiled code (else numba compiles a specialisation in the middle
    of a train step): each split kind (rows of the output, with a transposed a too; its columns; ranges of the
    summed axis) runs on the full arrays after a one-sample call, and no new specialisation appears."""
    monkeypatch.setattr(blas, "_PARALLEL_WORK", 0)
    monkeypatch.setattr(blas, "_NUMPY_WORK", 0)
    monkeypatch.setattr(blas, "SUMMED_SPLIT_MIN", 64)
    monkeypatch.setenv("TINYNN_NUM_THREADS", "2")
    rng = np.random.default_rng(3)
    n, m = {"matmul_tn columns": (48, 8), "matmul_tn summed": (400, 16)}.get(product, (48, 40))
    x, w = rng.normal(size=(n, m)).astype(np.float32), rng.normal(size=(m, 2 * m + 8)).astype(np.float32)
    call = {"matmul": lambda x: blas.matmul(x, w),
            "matmul_nt": lambda x: blas.matmul_nt(x, np.ascontiguousarray(w.T)),
            "matmul_tn rows": lambda x: blas.matmul_tn(x, x[:, :4].copy()),
            "matmul_tn columns": lambda x: blas.matmul_tn(x, x @ w),
            "matmul_tn summed": lambda x: blas.matmul_tn(x, x[:, :4].copy())}[product]
    call(x[:1].copy())  # as the warm-up: one sample
    before = {f: len(f.signatures) for f in (blas._gemm_piece, blas._gemm_blocks, blas.gemm)}
    split = []
    real_share = blas.share
    monkeypatch.setattr(blas, "share", lambda task, ranges, work=None: split.append(ranges) or real_share(task, ranges,
                                                                                                          work))
    got = call(x)
    assert split and len(split[0]) == 2  # the full batch did split
    assert {f: len(f.signatures) for f in before} == before
    x64 = x.astype(np.float64)
    want = {"matmul": x64 @ w, "matmul_nt": x64 @ w, "matmul_tn rows": x64.T @ x64[:, :4],
            "matmul_tn columns": x64.T @ (x64 @ w), "matmul_tn summed": x64.T @ x64[:, :4]}[product]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.max(np.abs(want)))
