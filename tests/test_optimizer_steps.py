"""The fused dense optimizer steps (tinynn/kernels/optimizer_steps.py) against their NumPy twins, the optimizers'
own ``update_step`` in the 'reference' kernel mode: the same gradients, step after step, give the same bits in the
variables and every slot. The cases the kernels do not take (centered, momentum, amsgrad, an Embedding's
IndexedSlices, a read-only or strided variable) are checked to run the twin."""

from __future__ import annotations

import zlib
from unittest import mock

import numpy as np
import pytest

from tinynn import config
from tinynn import optimizers as opt
from tinynn.kernels import optimizer_steps
from tinynn.sparse import IndexedSlices

SHAPES = [(33, 7), (7,), (), (3, 4, 5)]


def _gradients(rng, dtype, steps: int) -> list[list[np.ndarray]]:
    """Per step one gradient per variable: normal numbers over four decades of scale, exact zeros in some
    entries, one gradient a transposed (non-contiguous) view."""
    out = []
    for _ in range(steps):
        gs = []
        for shape in SHAPES:
            g = np.asarray(rng.normal(size=shape) * 10.0 ** rng.integers(-3, 2))
            if g.ndim:
                g[rng.random(shape) < 0.2] = 0.0
            gs.append(g.astype(dtype))
        gs[0] = np.ascontiguousarray(gs[0].T).T  # same values, Fortran order: a strided view
        out.append(gs)
    return out


def _run(make, dtype, mode: str, grads, start):
    optimizer = make()
    ws = [w.copy() for w in start]
    with config.kernels(mode), mock.patch.object(optimizer_steps, "rmsprop", wraps=optimizer_steps.rmsprop) as r, \
            mock.patch.object(optimizer_steps, "adam", wraps=optimizer_steps.adam) as a:  # fmt: skip
        for gs in grads:
            optimizer.apply(gs, ws)
    slots = [{k: v.copy() for k, v in s.items()} for s in optimizer._slots]
    return ws, slots, r.call_count + a.call_count


CASES = {
    "RMSprop": lambda: opt.RMSprop(learning_rate=0.0137, rho=0.83, epsilon=3e-6),
    "RMSprop default": lambda: opt.RMSprop(),
    "Adam": lambda: opt.Adam(learning_rate=0.021, beta_1=0.71, beta_2=0.993, epsilon=2e-5),
    "Adam default": lambda: opt.Adam(),
    "AdamW": lambda: opt.AdamW(learning_rate=0.003, weight_decay=0.05),
    "RMSprop clipnorm": lambda: opt.RMSprop(clipnorm=0.5),
}
TWIN_ONLY = {
    "RMSprop centered": lambda: opt.RMSprop(centered=True),
    "RMSprop momentum": lambda: opt.RMSprop(momentum=0.6),
    "Adam amsgrad": lambda: opt.Adam(amsgrad=True),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", [*CASES, *TWIN_ONLY])
def test_fused_steps_give_the_bits_of_the_numpy_update(name, dtype):
    rng = np.random.default_rng(zlib.crc32(f"{name} {np.dtype(dtype).name}".encode()))
    start = [np.asarray(rng.normal(size=s), dtype) for s in SHAPES]
    grads = _gradients(rng, dtype, steps=6)
    make = {**CASES, **TWIN_ONLY}[name]
    fast_w, fast_slots, fused_calls = _run(make, dtype, "fast", grads, start)
    ref_w, ref_slots, ref_calls = _run(make, dtype, "reference", grads, start)
    assert ref_calls == 0
    # clipping turns the 0-d variable's gradient into a NumPy scalar, which the twin takes
    fused_per_step = len(SHAPES) - (name == "RMSprop clipnorm") if name in CASES else 0
    assert fused_calls == 6 * fused_per_step
    for a, b in zip(fast_w, ref_w):
        np.testing.assert_array_equal(a, b)
        assert a.dtype == dtype
    for sa, sb in zip(fast_slots, ref_slots):
        assert sa.keys() == sb.keys()
        for key in sa:
            np.testing.assert_array_equal(sa[key], sb[key])
    assert not all(np.array_equal(a, b) for a, b in zip(fast_w, start))  # the steps did move the variables


def test_sparse_gradients_and_unfit_variables_run_the_numpy_update():
    """An Embedding's IndexedSlices, a read-only variable's view, a gradient of another dtype or shape: never
    the fused loop (it would index out of bounds or write through a read-only array)."""
    w = np.ones((5, 3), np.float32)
    v = np.zeros_like(w)
    g = np.full_like(w, 0.5)
    assert optimizer_steps.fits(w, g, v)
    assert not optimizer_steps.fits(w, IndexedSlices(g[:2], np.array([0, 3]), w.shape), v)
    assert not optimizer_steps.fits(w, g.astype(np.float64), v)
    assert not optimizer_steps.fits(w, g[:4], v)
    assert not optimizer_steps.fits(w, g, v[:, :2])
    assert not optimizer_steps.fits(np.asfortranarray(np.ones((5, 3), np.float32)), g, v)
    frozen = w.copy()
    frozen.flags.writeable = False
    assert not optimizer_steps.fits(frozen, g, v)
    with config.kernels("reference"):
        assert not optimizer_steps.fits(w, g, v)

    optimizer = opt.RMSprop()
    table = np.ones((6, 3), np.float32)
    with mock.patch.object(optimizer_steps, "rmsprop", wraps=optimizer_steps.rmsprop) as spy:
        optimizer.apply([IndexedSlices(np.ones((4, 3), np.float32), np.array([1, 1, 5, 0]), table.shape)], [table])
    assert spy.call_count == 0
    assert not np.array_equal(table, np.ones((6, 3), np.float32))


def test_a_kernel_still_compiling_leaves_the_step_to_the_twin():
    """While a kernel compiles in the background (kernel_ready False) the optimizer's NumPy lines run: the same
    numbers."""
    rng = np.random.default_rng(3)
    w0, g = rng.normal(size=(9, 4)).astype(np.float32), rng.normal(size=(9, 4)).astype(np.float32)
    runs = []
    for ready in (True, False):
        w = w0.copy()
        with mock.patch.object(optimizer_steps.warmup, "kernel_ready", return_value=ready):
            optimizer = opt.Adam(learning_rate=0.01)
            for _ in range(3):
                optimizer.apply([g], [w])
        runs.append(w)
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], w0)


# ----------------------------------------------------------------------------- RMSprop on an Embedding's rows
ROW_CASES = {  # (table rows V, row width F, occurrences N, share of occurrences on id 0)
    "padding id hit thousands of times": (40, 16, 3000, 0.7),
    "rows shared between the cores": (3000, 64, 20000, 0.0),
    "odd width": (50, 19, 500, 0.1),
    "no occurrences": (30, 16, 0, 0.0),
    "subnormal squares, rows shared": (3000, 64, 20000, 0.0),
}


def _row_steps(make, dtype, mode, start, steps):
    optimizer, w = make(), start.copy()
    with config.kernels(mode), mock.patch.object(optimizer_steps, "rmsprop_rows",
                                                 wraps=optimizer_steps.rmsprop_rows) as spy:  # fmt: skip
        for ids, values in steps:
            optimizer.apply([IndexedSlices(values, ids, w.shape)], [w])
    return w, optimizer._slots[0]["velocity"].copy(), spy.call_count


def _row_gradients(rng, dtype, V, F, N, padded, steps=3, specials=False, tiny=False):
    out = []
    for _ in range(steps):
        ids = rng.integers(0, V, N)
        ids[rng.random(N) < padded] = 0
        scale = (1e-21 if dtype == np.float32 else 1e-156) if tiny else 10.0 ** rng.integers(-3, 2)
        values = rng.normal(size=(N, F)) * scale
        values[ids == 0] = values[ids == 0][:1]  # padded positions get equal gradient rows
        if specials and N:
            values[rng.integers(0, N, 3), rng.integers(0, F, 3)] = [np.nan, np.inf, -0.0]
        out.append((ids, values.astype(dtype)))
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", ROW_CASES)
def test_row_sparse_rmsprop_gives_the_bits_of_the_numpy_update(case, dtype):
    """Occurrences grouped by row, each row's squares summed and its steps applied in occurrence order: the same
    bits as the twin's sparse ops, in the table and the velocity, step after step."""
    V, F, N, padded = ROW_CASES[case]
    rng = np.random.default_rng(zlib.crc32(f"{case} {np.dtype(dtype).name}".encode()))
    start = rng.normal(size=(V, F)).astype(dtype)
    steps = _row_gradients(rng, dtype, V, F, N, padded, tiny="subnormal" in case)
    make = lambda: opt.RMSprop(learning_rate=0.0137, rho=0.83, epsilon=3e-6)  # noqa: E731
    fast_w, fast_v, calls = _row_steps(make, dtype, "fast", start, steps)
    if "subnormal" in case:  # kept as IEEE subnormals, also on the worker thread (which flushes them for kernels)
        assert ((fast_v > 0) & (fast_v < np.finfo(dtype).smallest_normal)).mean() > 0.5
    ref_w, ref_v, ref_calls = _row_steps(make, dtype, "reference", start, steps)
    assert (calls, ref_calls) == (len(steps), 0)
    np.testing.assert_array_equal(fast_w, ref_w)
    np.testing.assert_array_equal(fast_v, ref_v)
    assert N == 0 or "subnormal" in case or not np.array_equal(fast_w, start)  # (steps of 1e-21 do not move w)
    if "rows shared" in case:
        assert (N + V) * F >= optimizer_steps.ROWS_SHARED_FROM


def test_row_sparse_rmsprop_keeps_nan_inf_and_signed_zero_where_the_twin_has_them():
    rng = np.random.default_rng(11)
    start = rng.normal(size=(20, 16)).astype(np.float32)
    steps = _row_gradients(rng, np.float32, 20, 16, 400, 0.3, specials=True)
    fast = _row_steps(opt.RMSprop, np.float32, "fast", start, steps)
    with np.errstate(invalid="ignore"):  # inf / inf in the twin's division
        ref = _row_steps(opt.RMSprop, np.float32, "reference", start, steps)
    assert fast[2] == len(steps)
    for a, b in zip(fast[:2], ref[:2]):
        assert np.isnan(a).any()
        np.testing.assert_array_equal(a, b)  # NaN where the twin has NaN


def test_row_sparse_rmsprop_takes_only_what_it_computes():
    """Narrow rows, centered, momentum, a pending op chain, an Adam step, the 'reference' mode, a read-only table:
    the twin's sparse ops, with the same numbers as before."""
    table = np.ones((6, 16), np.float32)
    g = IndexedSlices(np.ones((4, 16), np.float32), np.array([1, 1, 5, 0]), table.shape)
    v = np.zeros_like(table)
    assert optimizer_steps.fits_rows(table, g, v)
    narrow = np.ones((6, 15), np.float32)
    assert not optimizer_steps.fits_rows(narrow, IndexedSlices(np.ones((4, 15), np.float32), g.indices, (6, 15)),
                                         np.zeros_like(narrow))  # fmt: skip
    assert optimizer_steps.fits_rows(table.astype(np.float64), IndexedSlices(np.ones((4, 16)), g.indices, (6, 16)),
                                     v.astype(np.float64))  # fmt: skip
    assert not optimizer_steps.fits_rows(table, IndexedSlices(g._rows, g.indices, table.shape, squared=True), v)
    assert not optimizer_steps.fits_rows(table, g.values.astype(np.float64), v)
    assert not optimizer_steps.fits_rows(table, g, v[:, :8])
    frozen = table.copy()
    frozen.flags.writeable = False
    assert not optimizer_steps.fits_rows(frozen, g, v)
    with config.kernels("reference"):
        assert not optimizer_steps.fits_rows(table, g, v)
    for make in (lambda: opt.RMSprop(centered=True), lambda: opt.RMSprop(momentum=0.5), opt.Adam):
        w = table.copy()
        with mock.patch.object(optimizer_steps, "rmsprop_rows", wraps=optimizer_steps.rmsprop_rows) as spy:
            make().apply([g], [w])
        assert spy.call_count == 0 and not np.array_equal(w, table)


def test_row_sparse_rmsprop_refuses_ids_outside_the_table_before_its_kernel_runs():
    table = np.ones((6, 16), np.float32)
    for bad in (6, -1):
        g = IndexedSlices(np.ones((3, 16), np.float32), np.array([0, bad, 2]), table.shape)
        with pytest.raises(ValueError, match=r"RMSprop on an Embedding table of 6 rows.*\[0, 6\)"):
            optimizer_steps.rmsprop_rows(table, g, np.zeros_like(table), 0.9, 0.1, 1e-7, 0.001)
    np.testing.assert_array_equal(table, 1.0)


def test_row_sparse_rmsprop_while_compiling_leaves_the_step_to_the_twin():
    rng = np.random.default_rng(5)
    start = rng.normal(size=(30, 16)).astype(np.float32)
    steps = _row_gradients(rng, np.float32, 30, 16, 200, 0.5)
    runs, grouped = [], []
    for ready in (True, False):
        with mock.patch.object(optimizer_steps.warmup, "kernels_ready", return_value=ready), \
                mock.patch.object(optimizer_steps, "_group_by_row", wraps=optimizer_steps._group_by_row) as spy:
            runs.append(_row_steps(opt.RMSprop, np.float32, "fast", start, steps)[:2])
        grouped.append(spy.call_count)
    assert grouped == [len(steps), 0]  # the kernels ran while ready only
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("pieces", [1, 2, 4, 7])
def test_row_ranges_cover_every_row_once_with_about_equal_work(pieces):
    rng = np.random.default_rng(pieces)
    ids = np.concatenate([np.zeros(500, np.int64), rng.integers(0, 300, 1000)])  # one row with a third of the work
    starts, order = optimizer_steps._group_by_row(ids, 300)
    np.testing.assert_array_equal(order, np.argsort(ids, kind="stable"))
    np.testing.assert_array_equal(starts, np.concatenate([[0], np.cumsum(np.bincount(ids, minlength=300))]))
    ranges = optimizer_steps._row_ranges(starts, pieces)
    assert ranges[0][0] == 0 and ranges[-1][1] == 300
    assert all(a < b for a, b in ranges) and all(r[1] == s[0] for r, s in zip(ranges, ranges[1:]))
    cost = [2 * (starts[b] - starts[a]) + (b - a) for a, b in ranges]
    biggest_row = 2 * 500 + 1
    assert max(cost) <= (2 * len(ids) + 300) / pieces + biggest_row  # a cut falls between rows only


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_row_sparse_readiness_asks_for_the_signatures_the_step_runs(dtype, monkeypatch):
    """In background compile mode rmsprop_rows waits for the kernels compiled from sample arguments
    (``_rows_samples``): they must have the numba types of the real calls, or the background would compile
    specialisations nobody runs."""
    import numba

    samples = {kernel: tuple(map(numba.typeof, args)) for kernel, args in optimizer_steps._rows_samples(dtype)}
    seen = []
    for name in ("_group_by_row", "_rmsprop_rows"):
        real = getattr(optimizer_steps, name)
        monkeypatch.setattr(optimizer_steps, name,
                            lambda *a, real=real: seen.append((real, tuple(map(numba.typeof, a)))) or real(*a))
    table = np.ones((8, 16), dtype)
    g = IndexedSlices(np.ones((5, 16), dtype), np.array([1, 1, 5, 0, 7]), table.shape)
    assert optimizer_steps.rmsprop_rows(table, g, np.zeros_like(table), 0.9, 0.1, 1e-7, 0.001)
    assert len(seen) == 2 and all(samples[kernel] == types for kernel, types in seen)
