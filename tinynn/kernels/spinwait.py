r"""A bounded busy-wait without the GIL: how tinynn's threads hand work to each other in a few µs.

Waking a thread that sleeps (a lock, a queue, a condition) costs tens of µs on a virtual machine whose other
core has gone idle — the host must schedule that virtual core again — and a parallel region pays it twice (the
worker's wake-up, then the caller's). That is as long as a small product takes. So the pool of
:mod:`tinynn.kernels.parallel` *spins* for a short while before it sleeps: ::

    spin_while_equal(cell, value, cycles, yield_cycles)   waits while cell[0] == value, at most ``cycles`` CPU
                                                          clock ticks; returns cell[0]

``cell`` is a one-element int64 array another thread writes to (from Python); the read is an atomic load
(acquire), so the compiler cannot hoist it out of the loop, and the loop pauses (x86 ``pause``) between reads.
The GIL is released while it spins (``nogil``), so the other thread can run Python meanwhile. Reading the
clock uses LLVM's ``readcyclecounter`` (the TSC on x86-64; elsewhere it may read 0, and the wait then ends after
``cycles`` reads).

Every ``yield_cycles`` ticks (0: never) the spinning thread offers its core to another thread waiting for it
(``sched_yield``, about 1 µs when there is none). When the machine's other core is taken by another process, the
scheduler tends to put tinynn's two threads on the same core, and a thread spinning for the other then holds the
core its partner needs to finish: a split product lost up to a third against one thread that way
(benchmarks/RESULTS.md). Yielding keeps the spin's quick hand-off on an idle machine and gives the core back on a
busy one.

NumPy twin: :func:`tinynn.kernels.reference.spinwait.spin_while_equal` (the same wait, a plain Python loop).
"""

from __future__ import annotations

import platform

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from .jitcache import load_without_refresh

__all__ = ["new_cell", "set_then_spin", "spin_while_equal"]

_X86 = platform.machine().lower() in ("x86_64", "amd64", "i686", "x86")


@intrinsic
def _load_acquire(typingctx, cell):
    def codegen(context, builder, signature, args):
        array = context.make_array(signature.args[0])(context, builder, args[0])
        return builder.load_atomic(array.data, ordering="acquire", align=8)

    return types.int64(cell), codegen


@intrinsic
def _clock(typingctx):
    def codegen(context, builder, signature, args):
        fn = builder.module.declare_intrinsic("llvm.readcyclecounter", fnty=ir.FunctionType(ir.IntType(64), []))
        return builder.call(fn, [])

    return types.int64(), codegen


@intrinsic
def _pause(typingctx):
    def codegen(context, builder, signature, args):
        if _X86:  # the spin-loop hint (elsewhere nothing: the atomic load already keeps the loop a loop)
            fn = builder.module.declare_intrinsic("llvm.x86.sse2.pause", fnty=ir.FunctionType(ir.VoidType(), []))
            builder.call(fn, [])
        return context.get_dummy_value()

    return types.void(), codegen


_sched_yield = types.ExternalFunction("sched_yield", types.int32())


@numba.njit(cache=True, nogil=True)
def spin_while_equal(cell, value, cycles, yield_cycles=0):  # pragma: no cover - compiled
    """Wait while ``cell[0] == value``, for at most ``cycles`` clock ticks (or reads, where the clock reads 0),
    offering the core to other threads every ``yield_cycles`` ticks (reads) when that is positive; returns the
    last value read."""
    start = _clock()
    reads = 0
    next_yield = yield_cycles
    while True:
        current = _load_acquire(cell)
        if current != value:
            return current
        reads += 1
        elapsed = _clock() - start
        if elapsed >= cycles or (elapsed == 0 and reads >= cycles):
            return current
        if yield_cycles > 0 and (elapsed if elapsed > 0 else reads) >= next_yield:
            _sched_yield()
            next_yield += yield_cycles
        else:
            _pause()


def new_cell(value: int = 0) -> np.ndarray:
    """A cell for :func:`spin_while_equal`: a one-element int64 array."""
    return np.full(1, value, np.int64)


@intrinsic
def _store_release(typingctx, cell, value):
    def codegen(context, builder, signature, args):
        array = context.make_array(signature.args[0])(context, builder, args[0])
        builder.store_atomic(args[1], array.data, ordering="release", align=8)
        return context.get_dummy_value()

    return types.void(cell, types.int64), codegen


@numba.njit(cache=True, nogil=True)
def set_then_spin(flag, cell, value, cycles, yield_cycles=0):  # pragma: no cover - compiled
    """``flag[0] = 1`` (after the GIL is released, so a thread spinning on ``flag`` finds the GIL free when it
    wakes), then :func:`spin_while_equal` ``(cell, value, cycles, yield_cycles)``."""
    _store_release(flag, 1)
    return spin_while_equal(cell, value, cycles, yield_cycles)


load_without_refresh(globals())  # cached kernels load without refreshing numba (tinynn.kernels.jitcache)
