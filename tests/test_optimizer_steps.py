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
