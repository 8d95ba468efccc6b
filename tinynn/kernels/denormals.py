r"""Denormal (subnormal) floats flushed to zero while the fast kernels run, as TensorFlow does in its ops.

Why: x86 CPUs handle a subnormal operand or result (|x| < 1.2e-38 in float32) in a slow microcode assist,
about a hundred times slower than a normal multiply-add. Gradients that shrink step after step — BPTT over
hundreds of steps — reach that range, and every product with them then crawls: M3's LSTM training step took
1.24 s instead of 0.09 s on an Intel Xeon (``benchmarks/RESULTS.md``, "Kernel design measurements").
TensorFlow's ops and oneDNN's kernels run with the CPU's flush-to-zero (FTZ) and denormals-are-zero (DAZ) modes
on; :func:`flush_to_zero` turns them on for the calling thread for the duration of a block and restores the
thread's previous mode afterwards, so NumPy code outside the fast kernels (the reference mode, the optimizers,
the user's own) keeps IEEE subnormals. tinynn's worker threads (:mod:`tinynn.kernels.parallel`) run only
kernels and keep the modes on.

:func:`_swap_mode` is compiled where it is first needed, also in the background compile mode
(:mod:`tinynn.kernels.warmup`): it is tiny, and the NumPy twins that run meanwhile need the modes as much.

The numbers change only where a result would have been subnormal: it becomes 0 (an absolute change below
1.2e-38 in float32, 2.3e-308 in float64). The mode lives in the MXCSR register (x86-64 only; elsewhere these
functions do nothing).
"""

from __future__ import annotations

import platform
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import numba
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from .jitcache import load_without_refresh

__all__ = ["enable_in_this_thread", "flush_to_zero", "mode_is_on", "supported"]

_FTZ_DAZ = 0x8040  # MXCSR bits 15 (flush to zero) and 6 (denormals are zero)
_STATUS = 0x3F  # MXCSR's sticky exception flags


_SUPPORTED = platform.machine().lower() in ("x86_64", "amd64")


def supported() -> bool:
    """True on x86-64, where the modes exist in MXCSR."""
    return _SUPPORTED


def _mxcsr_call(builder, name, ptr):
    fnty = ir.FunctionType(ir.VoidType(), [ir.IntType(8).as_pointer()])
    fn = cgutils.get_or_insert_function(builder.module, fnty, name)
    builder.call(fn, [builder.bitcast(ptr, ir.IntType(8).as_pointer())])


@intrinsic
def _stmxcsr(typingctx):
    def codegen(context, builder, signature, args):
        ptr = cgutils.alloca_once(builder, ir.IntType(32))
        _mxcsr_call(builder, "llvm.x86.sse.stmxcsr", ptr)
        return builder.zext(builder.load(ptr), ir.IntType(64))

    return types.int64(), codegen


@intrinsic
def _ldmxcsr(typingctx, value):
    def codegen(context, builder, signature, args):
        ptr = cgutils.alloca_once(builder, ir.IntType(32))
        builder.store(builder.trunc(args[0], ir.IntType(32)), ptr)
        _mxcsr_call(builder, "llvm.x86.sse.ldmxcsr", ptr)
        return context.get_dummy_value()

    return types.void(types.int64), codegen


@numba.njit(cache=True, nogil=True)
def _swap_mode(on):  # pragma: no cover - compiled
    """Turn FTZ/DAZ on (``on`` = -1) or restore the mode bits of ``on`` (keeping the current status flags);
    returns the register as it was."""
    old = _stmxcsr()
    if on < 0:
        _ldmxcsr(old | _FTZ_DAZ)
    else:
        _ldmxcsr((on & ~_STATUS) | (old & _STATUS))
    return old


_local = threading.local()


def enter_flush_to_zero() -> bool:
    """Turn the modes on for this thread until :func:`exit_flush_to_zero`; False (and nothing to undo) when they
    are on already or do not exist here."""
    if not _SUPPORTED or getattr(_local, "depth", 0) or getattr(_local, "always", False):
        return False
    _local.depth = 1
    _local.saved = _swap_mode(-1)
    return True


def exit_flush_to_zero() -> None:
    _swap_mode(_local.saved)
    _local.depth = 0


@contextmanager
def flush_to_zero() -> Iterator[None]:
    """Inside the block this thread's float arithmetic flushes subnormals to zero (nested blocks are free)."""
    entered = enter_flush_to_zero()
    try:
        yield
    finally:
        if entered:
            exit_flush_to_zero()


def enable_in_this_thread() -> None:
    """Turn the modes on for good in this thread (tinynn's worker threads, which run only kernels)."""
    if _SUPPORTED and not getattr(_local, "always", False):
        _swap_mode(-1)
        _local.always = True


@numba.njit(cache=True, nogil=True)
def _read_mode():  # pragma: no cover - compiled
    return _stmxcsr()


def mode_is_on() -> bool:
    """Whether FTZ and DAZ are on in this thread now."""
    return supported() and (_read_mode() & _FTZ_DAZ) == _FTZ_DAZ


load_without_refresh(globals())  # cached kernels load without refreshing numba (tinynn.kernels.jitcache)
