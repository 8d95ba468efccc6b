"""Products cut into blocks for BLAS's small-matrix kernels (``blas.gemm_small``), alone and inside the recurrent
loops: the blocks cover the product, each fits the limit, and every loop gives its twin's results with them."""

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from product_operands import operands_on_views

from tinynn import activations
from tinynn.kernels import blas, parallel
from tinynn.kernels import recurrent as K
from tinynn.kernels.reference import recurrent as R

WHOLE, COLUMNS, ROWS, SUMMED = blas.WHOLE, blas.COLUMNS, blas.ROWS, blas.SUMMED


def _blocks(M: int, N: int, K_: int, small: int, trans_b: bool) -> list[tuple[int, int, int, int]]:
    """The (i0, i1, j0, j1) blocks of ``out`` that ``small_blocks``'s plan gives (ranges of K: all of ``out``)."""
    how, step = blas.small_blocks(M, N, K_, small, trans_b)
    if how == COLUMNS:
        return [(0, M, j0, min(N, j0 + step)) for j0 in range(0, N, step)]
    if how == ROWS:
        return [(i0, min(M, i0 + step), 0, N) for i0 in range(0, M, step)]
    return [(0, M, 0, N)]


@given(M=st.integers(1, 600), N=st.integers(1, 2100), K_=st.integers(1, 600),
       small=st.sampled_from([0, 4096, 100_000, 100**3]), trans_b=st.booleans())
@example(M=64, N=512, K_=128, small=100**3, trans_b=False)  # an LSTM(128) training step of 64 rows: columns
@example(M=512, N=64, K_=256, small=100**3, trans_b=False)  # the unit-split inference step of LSTM(256): rows
@example(M=512, N=64, K_=256, small=100**3, trans_b=True)  # the same as a @ bᵀ: whole
@example(M=32, N=2048, K_=512, small=100**3, trans_b=False)  # LSTM(512): nothing fits, one call
@example(M=27, N=32, K_=35_000, small=100**3, trans_b=False)  # M7's first filter gradient: ranges of K
@example(M=32, N=64, K_=3600, small=100**3, trans_b=False)  # M8's 1×1 kernel gradient of one image: ranges of K
@example(M=64, N=64, K_=3600, small=100**3, trans_b=False)  # 64 × 64: the ranges would be too short, one call
def test_the_blocks_cover_the_product_and_each_fits_the_limit(M, N, K_, small, trans_b):
    how, step = blas.small_blocks(M, N, K_, small, trans_b)
    blocks = _blocks(M, N, K_, small, trans_b)
    covered = np.zeros((M, N), np.int64)
    for i0, i1, j0, j1 in blocks:
        assert i1 > i0 and j1 > j0
        covered[i0:i1, j0:j1] += 1
    assert (covered == 1).all()
    if how == WHOLE:
        assert small <= 0 or M * N * K_ <= small or M == 1 or N == 1 or small // (M * K_) < blas._SMALL_MIN_COLS
        assert small <= 0 or M * N * K_ <= small or M == 1 or N == 1 or small // (M * N) < blas._SMALL_MIN_SUMMED
        return
    if how == SUMMED:  # neither columns nor rows fit; ranges of ≥ _SMALL_MIN_SUMMED of K, each within the limit
        assert small // (M * K_) < blas._SMALL_MIN_COLS and (trans_b or small // (N * K_) < blas._SMALL_MIN_ROWS)
        assert step % 16 == 0 and step >= blas._SMALL_MIN_SUMMED and M * N * step <= small < M * N * K_
        return
    assert not (trans_b and how == ROWS)
    assert M * N * K_ > small
    for i0, i1, j0, j1 in blocks:
        assert (i1 - i0) * (j1 - j0) * K_ <= small
    if how == COLUMNS:  # the widest block that fits has ≥ _SMALL_MIN_COLS columns; evening keeps over half of it
        assert step % 16 == 0 and small // (M * K_) >= blas._SMALL_MIN_COLS and step >= blas._SMALL_MIN_COLS // 2
    else:
        assert step % 8 == 0 and step >= blas._SMALL_MIN_ROWS
        assert small // (M * K_) < blas._SMALL_MIN_COLS  # columns would have been too thin
    assert len(blocks) == -(-max(M if how == ROWS else N, 1) // step)
    sizes = [(i1 - i0) if how == ROWS else (j1 - j0) for i0, i1, j0, j1 in blocks]
    assert max(sizes) - min(sizes) < step  # even blocks: only the last may be shorter


@pytest.mark.parametrize("route, M, N, K_, small", [
    (WHOLE, 24, 40, 30, 0), (WHOLE, 24, 40, 30, 24 * 40 * 30), (COLUMNS, 9, 300, 20, 9 * 20 * 80),
    (ROWS, 70, 50, 20, 50 * 20 * 9), (WHOLE, 70, 50, 20, 50 * 20 * 7), (SUMMED, 3, 4, 2000, 3 * 4 * 480)])
@pytest.mark.parametrize("trans_a, trans_b", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("beta", [0.0, 1.0])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gemm_small_computes_the_product_on_every_route(route, M, N, K_, small, trans_a, trans_b, beta, dtype):
    """out = op(a) op(b) + β out on row slices / column blocks of larger arrays, each route of ``small_blocks``
    (ranges of K too: β applied once), against NumPy in float64; nothing outside ``out`` is written. (a @ bᵀ takes
    no row blocks.)"""
    assert blas.small_blocks(M, N, K_, small, trans_b)[0] == (WHOLE if route == ROWS and trans_b else route)
    a, b, out_big, out = operands_on_views(np.random.default_rng(M * N + K_), M, K_, N, trans_a, trans_b, dtype)
    frame = out_big.copy()
    want = (a.T if trans_a else a).astype(np.float64) @ (b.T if trans_b else b).astype(np.float64)
    want += beta * out.astype(np.float64)
    blas.gemm_small(a, b, out, trans_a, trans_b, beta, small)
    tol = 1e-12 if dtype == np.float64 else 2e-6
    assert np.max(np.abs(out - want)) <= tol * np.max(np.abs(want))
    frame[1:1 + M, 2:2 + N] = out
    np.testing.assert_array_equal(out_big, frame)


@pytest.mark.parametrize("product", ["matmul", "matmul with epilogue", "matmul_nt", "matmul_tn"])
@pytest.mark.parametrize("split", [False, True])
def test_split_products_in_blocks_match_numpy(product, split, monkeypatch):
    """``blas.matmul*`` (the layers' products) with each piece of output rows cut for the small-matrix kernels, on
    one thread or split over two: a @ b and aᵀ @ b in row blocks, a @ bᵀ whole (``small_blocks`` takes no row
    blocks for it); against NumPy in float64."""
    small = 16_000
    monkeypatch.setattr(blas.cblas, "small_sgemm_work", lambda: small)
    monkeypatch.setattr(blas, "_NUMPY_WORK", 0)
    monkeypatch.setattr(blas, "_PARALLEL_WORK", 0 if split else 1 << 62)
    monkeypatch.setenv("TINYNN_NUM_THREADS", "2")
    rng = np.random.default_rng(3)
    M, K_, N = 150, 24, 40
    trans_a, trans_b = product == "matmul_tn", product == "matmul_nt"
    a = rng.normal(size=(K_, M) if trans_a else (M, K_)).astype(np.float32)
    b = rng.normal(size=(N, K_) if trans_b else (K_, N)).astype(np.float32)
    expect = WHOLE if trans_b else ROWS
    assert blas.small_blocks(M // (2 if split else 1), N, K_, small, trans_b)[0] == expect
    want = (a.T if trans_a else a).astype(np.float64) @ (b.T if trans_b else b).astype(np.float64)
    seen = []
    if product == "matmul with epilogue":
        out = np.empty((M, N), np.float32)
        got = blas.matmul(a, b, out, epilogue=lambda i0, i1: seen.append((i0, i1)))
        assert sorted(seen)[0][0] == 0 and sum(i1 - i0 for i0, i1 in seen) == M
    else:
        got = {"matmul": blas.matmul, "matmul_nt": blas.matmul_nt, "matmul_tn": blas.matmul_tn}[
            product.split()[0]](a, b)
    assert np.max(np.abs(got - want)) <= 2e-6 * np.max(np.abs(want))


@pytest.mark.parametrize("padding, d", [("valid", 1), ("same", 2)])
def test_conv1d_products_per_tap_in_row_blocks_match_the_reference(padding, d, monkeypatch):
    """A Conv1D inference forward by one product per tap (``conv._taps_forward``) with its rows in blocks for the
    small-matrix kernels, all K taps of a block at once (``conv._taps_products``): equal to the reference, and to
    the same forward in one block, in float32; float64 makes one block."""
    from unittest import mock

    from tinynn.kernels import conv as kc
    from tinynn.kernels.reference import conv as rc

    rng = np.random.default_rng(5)
    B, L, K_, C, F = 5, 40, 3, kc.TAPS_MIN_CHANNELS, kc.TAPS_MIN_CHANNELS + 7
    small = 16 * F * C
    pl, _, l_out = kc.conv_padding(L, K_, 1, d, padding)
    x64, W64 = rng.normal(size=(B, L, C)), rng.normal(size=(K_, C, F))
    want = rc.conv1d_forward(x64, W64, 1, d, pl, l_out)
    got = {}
    for dtype, limit in ((np.float32, 0), (np.float32, small), (np.float64, small)):
        monkeypatch.setattr(kc.cblas, "small_sgemm_work", lambda limit=limit: limit)
        with mock.patch.object(kc, "_taps_products", wraps=kc._taps_products) as spy:
            z = kc.conv1d_forward(x64.astype(dtype), W64.astype(dtype), 1, d, pl, l_out, workspace={},
                                  keep_cols=False)
        (_, _, _, r0, m, _, step), _ = spy.call_args
        assert spy.call_count == 1 and r0 == 0
        cut = dtype == np.float32 and limit > 0
        assert step == (16 if cut else m) and blas.small_blocks(m, F, C, small, False) == (ROWS, 16)
        rel = float(np.max(np.abs(z - want)) / np.max(np.abs(want)))
        assert rel <= (1e-5 if dtype == np.float32 else 1e-12)
        got[(dtype, limit)] = z
    assert float(np.max(np.abs(got[(np.float32, small)] - got[(np.float32, 0)]))) <= 1e-6 * float(np.max(np.abs(want)))


# --------------------------------------------------------------------------- inside the recurrent loops
TOL = {"float64": 1e-12, "float32": 1e-4}  # as tests/test_recurrent_kernels.py (the float32 bound explained there)
SAME = 1e-6  # float32 loops with and without blocks: the same sums, BLAS kernels of different blocking
GATES = {"SimpleRNN": 1, "LSTM": 4, "GRU": 3, "GRU reset_after": 3}


def _step_products(kind: str, B: int, u: int, dropout: bool) -> list[tuple[int, int, int]]:
    """(M, N, K) of each per-step product of a training loop's forward and backward on B rows (x̃_t W aside)."""
    if dropout or kind == "SimpleRNN":  # one product per gate block, both ways
        return [(B, u, u)]
    G = GATES[kind] * u
    if kind == "GRU":  # [h̃ U_z, h̃ U_r], (r ⊙ h̃) U_h; δa_h U_hᵀ, δa_zr U_zrᵀ
        return [(B, 2 * u, u), (B, u, u), (B, u, 2 * u)]
    return [(B, G, u), (B, u, G)]


def _limit(products) -> int:
    """A ``small`` that cuts every product: each (M, N, K) is cut for min(64 M K, 8 N K) ≤ small < M N K."""
    low = max(min(blas._SMALL_MIN_COLS * M * K, blas._SMALL_MIN_ROWS * N * K) for M, N, K in products)
    high = min(M * N * K for M, N, K in products)
    assert low < high
    return (low + high) // 2


def _err(ours, ref) -> float:
    scale = max(float(np.max(np.abs(r))) for r in ref)
    return max(float(np.max(np.abs(np.asarray(a, np.float64) - r))) for a, r in zip(ours, ref)) / scale


def _inputs(gates: int, B: int, u: int, T=5, n_in=6, seed=0):
    rng = np.random.default_rng(seed)
    mask = rng.random((T, B)) > 0.25
    mask[:, 0] = True
    return dict(x=rng.normal(size=(T, B, n_in)), W=rng.normal(0, 0.5, size=(n_in, gates * u)),
                U=rng.normal(0, 0.6 / np.sqrt(u), size=(u, gates * u)), b=rng.normal(size=gates * u),
                b_rec=rng.normal(size=gates * u), h0=rng.normal(size=(B, u)), c0=rng.normal(size=(B, u)),
                dseq=rng.normal(size=(T, B, u)), dhT=rng.normal(size=(B, u)), dcT=rng.normal(size=(B, u)),
                mask=mask, rm=(rng.random((gates, B, u)) >= 0.3) / 0.7)


def _forced(monkeypatch, small: int) -> None:
    monkeypatch.setattr(K.cblas, "small_sgemm_work", lambda: small)


def _cast(d: dict, dtype: str) -> dict:
    return {k: v.astype(dtype) if isinstance(v, np.ndarray) and v.dtype.kind == "f" else v for k, v in d.items()}


def _train(kind: str, d: dict, dropout: bool, fast: bool):
    """Forward and backward of one loop on ``d``: the fast kernels (x̃ W formed inside the loop) or the twins."""
    lib = K if fast else R
    tanh, sigmoid = activations.get("tanh"), activations.get("sigmoid")
    rm = d["rm"] if dropout else None
    xp = K.Projection(d["x"], d["W"]) if fast else d["x"] @ d["W"]
    if kind == "SimpleRNN":
        hs, cache = lib.simple_rnn_forward(xp, d["b"], d["U"], rm, d["mask"], d["h0"], tanh)
        return [hs, *lib.simple_rnn_backward(cache, d["U"], rm, d["mask"], hs, d["dseq"], d["dhT"], tanh)]
    if kind == "LSTM":
        hs, cs, cache = lib.lstm_forward(xp, d["b"], d["U"], rm, d["mask"], d["h0"], d["c0"], tanh, sigmoid)
        return [hs, cs, *lib.lstm_backward(cache, d["U"], rm, d["mask"], hs, cs, d["dseq"], d["dhT"], d["dcT"], tanh,
                                           sigmoid)]
    reset_after = kind == "GRU reset_after"
    b_rec = d["b_rec"] if reset_after else np.zeros_like(d["b_rec"])
    hs, cache = lib.gru_forward(xp, d["b"], d["U"], b_rec, rm, d["mask"], d["h0"], tanh, sigmoid, reset_after)
    return [hs, *lib.gru_backward(cache, d["U"], rm, d["mask"], hs, d["dseq"], d["dhT"], tanh, sigmoid,
                                  reset_after)]


@pytest.mark.parametrize("kind", list(GATES))
@pytest.mark.parametrize("dropout", [False, True])
@pytest.mark.parametrize("u, route", [(24, ROWS), (96, COLUMNS)])
def test_training_loops_in_blocks_match_their_twins(kind, dropout, u, route, monkeypatch):
    """Forward and backward of each loop (one batch piece of B rows) with every per-step product in blocks (h̃ U
    and δz Uᵀ, per gate block under recurrent dropout): against the float64 twin, and against the same float32
    loop with one product each. u = 24 cuts them into rows, u = 96 (some of them) into columns."""
    B = 20
    products = _step_products(kind, B, u, dropout)
    small = _limit(products)
    routes = {blas.small_blocks(M, N, K_, small, False)[0] for M, N, K_ in products}  # δz by a copy of Uᵀ
    assert WHOLE not in routes and route in routes
    monkeypatch.setattr(K, "_PARALLEL_LOOP_WORK", 1 << 62)  # one piece: the loop's products have B rows
    d = _inputs(GATES[kind], B, u)
    ref = _train(kind, d, dropout, fast=False)
    _forced(monkeypatch, 0)
    whole = _train(kind, _cast(d, "float32"), dropout, fast=True)
    _forced(monkeypatch, small)
    blocks = _train(kind, _cast(d, "float32"), dropout, fast=True)
    assert _err(blocks, ref) <= TOL["float32"]
    assert _err(blocks, [np.asarray(w, np.float64) for w in whole]) <= SAME
    assert _err(_train(kind, d, dropout, fast=True), ref) <= TOL["float64"]  # float64 products are never cut


@pytest.mark.parametrize("kind", ["LSTM", "LSTM by units", "GRU"])
@pytest.mark.parametrize("reverse", [False, True])
def test_inference_loops_in_blocks_match_their_twins(kind, reverse, monkeypatch):
    """The feature-major inference loops (zᵀ = Wᵀ x̃_tᵀ + Uᵀ hᵀ, cut into row blocks of zᵀ), on batch pieces or split
    by units between 2 threads: against their float64 twins and the same loop with one product each."""
    gates, B, u = (3 if kind == "GRU" else 4), 12, 32
    G = gates * u // (2 if kind == "LSTM by units" else 1)  # a thread's gate rows
    small = 16 * B * u
    assert blas.small_blocks(G, B, u, small, False) == (ROWS, 16)
    d = _inputs(gates, B, u)
    tanh, sigmoid = activations.get("tanh"), activations.get("sigmoid")
    x_bm = np.ascontiguousarray((d["x"][::-1] if reverse else d["x"]).transpose(1, 0, 2))
    monkeypatch.setattr(K, "_PARALLEL_LOOP_WORK", 1 << 62)
    if kind == "LSTM by units":
        monkeypatch.setattr(K, "_UNIT_SPLIT_UNITS", 1)
        monkeypatch.setattr(K, "_PARALLEL_LOOP_WORK", 0)
        monkeypatch.setattr(K, "_busy_machine", lambda threads: False)
        monkeypatch.setattr(K, "_unit_split_paused_until", 0.0)
        monkeypatch.setenv("TINYNN_NUM_THREADS", "2")
        assert K._unit_threads(5, B, u) == 2

    def run(dtype):
        c = _cast(d, dtype)
        proj = K.Projection(x_bm.astype(dtype), c["W"], keep_gates=False, batch_major=True, reverse=reverse)
        if kind == "GRU":
            return [K.gru_forward(proj, c["b"], c["U"], c["b_rec"], None, d["mask"], c["h0"], tanh, sigmoid, True)[0]]
        return list(K.lstm_forward(proj, c["b"], c["U"], None, d["mask"], c["h0"], c["c0"], tanh, sigmoid)[:2])

    if kind == "GRU":
        ref = [R.gru_inference(d["x"], d["W"], d["b"], d["U"], d["b_rec"], d["mask"], d["h0"])]
    else:
        ref = list(R.lstm_inference(d["x"], d["W"], d["b"], d["U"], d["mask"], d["h0"], d["c0"]))
    _forced(monkeypatch, 0)
    whole = run("float32")
    _forced(monkeypatch, small)
    blocks = run("float32")
    assert _err(blocks, ref) <= TOL["float32"]
    assert _err(blocks, [np.asarray(w, np.float64) for w in whole]) <= SAME


@pytest.mark.parametrize("vendor, capped", [("GenuineIntel", True), ("AuthenticAMD", False), ("", False)])
def test_small_blocks_stop_above_the_intel_cap_only(vendor, capped, monkeypatch):
    """small_gemm_work: float32 products are cut for the small-matrix kernels up to small_blocks_up_to()
    multiply-adds of the whole product on an Intel CPU, at any size elsewhere (and a product of unknown size is
    cut); float64 ones never."""
    from tinynn.kernels import cblas

    monkeypatch.setattr(cblas, "small_sgemm_work", lambda: 100**3)
    monkeypatch.setattr(cblas, "cpu_vendor", lambda: vendor)
    cap = cblas.INTEL_SMALL_BLOCKS_UP_TO
    assert cblas.small_blocks_up_to() == (cap if capped else 0)
    assert cblas.small_gemm_work(np.float32, cap) == 100**3
    assert cblas.small_gemm_work(np.float32, 0) == 100**3
    assert cblas.small_gemm_work(np.float32, cap + 1) == (0 if capped else 100**3)
    assert cblas.small_gemm_work(np.float64, 1) == 0


def test_cpu_vendor_reads_proc_cpuinfo():
    from tinynn.kernels import cblas

    try:
        with open("/proc/cpuinfo") as f:
            expected = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("vendor_id")), "")
    except OSError:
        expected = ""
    assert cblas.cpu_vendor() == expected


@pytest.mark.parametrize("kind", ["LSTM", "LSTM by units", "GRU", "LSTM in a piece", "GRU in a piece"])
def test_inference_loops_ask_for_blocks_with_one_cores_step_product(kind, monkeypatch):
    """The inference loops hand small_gemm_work the multiply-adds of one core's share of a step's recurrent product
    (G·u·B over the cores, or the unit split's 4u/threads gate rows; inside a parallel piece, as a Bidirectional's
    directions run, the whole G·u·B: the loop runs on that core alone), so that the Intel cap can apply."""
    gates, B, u = (3 if kind.startswith("GRU") else 4), 12, 32
    in_piece = kind.endswith("in a piece")
    asked = []
    real = K.cblas.small_gemm_work
    monkeypatch.setattr(K.cblas, "small_gemm_work", lambda dtype, work=0: asked.append(work) or real(dtype, work))
    monkeypatch.setenv("TINYNN_NUM_THREADS", "2")
    if kind == "LSTM by units":
        monkeypatch.setattr(K, "_UNIT_SPLIT_UNITS", 1)
        monkeypatch.setattr(K, "_PARALLEL_LOOP_WORK", 0)
        monkeypatch.setattr(K, "_busy_machine", lambda threads: False)
        monkeypatch.setattr(K, "_unit_split_paused_until", 0.0)
        assert K._unit_threads(5, B, u) == 2
    d = _cast(_inputs(gates, B, u), "float32")
    tanh, sigmoid = activations.get("tanh"), activations.get("sigmoid")
    proj = K.Projection(np.ascontiguousarray(d["x"].transpose(1, 0, 2)), d["W"], keep_gates=False, batch_major=True)

    def forward():
        if kind.startswith("GRU"):
            return K.gru_forward(proj, d["b"], d["U"], d["b_rec"], None, d["mask"], d["h0"], tanh, sigmoid, True)
        return K.lstm_forward(proj, d["b"], d["U"], None, d["mask"], d["h0"], d["c0"], tanh, sigmoid)

    if in_piece:  # as Bidirectional runs its two directions: each a piece of run_parallel
        parallel.run_parallel(forward, lambda: None)
    else:
        forward()
    assert asked == [gates * u * u * B // (1 if in_piece else 2)]
