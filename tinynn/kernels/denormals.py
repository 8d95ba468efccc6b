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

:func:`_swap_mode` is built where it is first needed, also in the background compile mode
(:mod:`tinynn.kernels.warmup`): the NumPy twins that run meanwhile need the modes as much. It is two
instructions, so it is written in LLVM IR and JIT-compiled by numba's code generator directly (~10 ms): a numba
function would need numba's compiler, whose first use in a process costs ~0.5 s of CPU (its target
initialisation), on the calling thread, with an empty cache.

The numbers change only where a result would have been subnormal: it becomes 0 (an absolute change below
1.2e-38 in float32, 2.3e-308 in float64). The mode lives in the MXCSR register (x86-64 only; elsewhere these
functions do nothing).
"""

from __future__ import annotations

import ctypes
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

__all__ = ["enable_in_this_thread", "flush_to_zero", "keep_subnormals", "mode_is_on", "supported"]

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


def _swap_mode_ir() -> ir.Module:
    """``int64 tinynn_swap_mode(int64 on)``: turn FTZ/DAZ on (``on`` < 0) or restore the mode bits of ``on``
    (keeping the current status flags); returns the register as it was::

        old = stmxcsr();  ldmxcsr(on < 0 ? old | FTZ_DAZ : (on & ~STATUS) | (old & STATUS));  return old
    """
    i32, i64, i8p = ir.IntType(32), ir.IntType(64), ir.IntType(8).as_pointer()
    module = ir.Module(name="tinynn_denormals")
    access = ir.FunctionType(ir.VoidType(), [i8p])
    stmxcsr = ir.Function(module, access, "llvm.x86.sse.stmxcsr")
    ldmxcsr = ir.Function(module, access, "llvm.x86.sse.ldmxcsr")
    fn = ir.Function(module, ir.FunctionType(i64, [i64]), "tinynn_swap_mode")
    b = ir.IRBuilder(fn.append_basic_block())
    on = fn.args[0]
    cell = b.alloca(i32)
    b.call(stmxcsr, [b.bitcast(cell, i8p)])
    old = b.zext(b.load(cell), i64)
    turn_on = b.or_(old, ir.Constant(i64, _FTZ_DAZ))
    restore = b.or_(b.and_(on, ir.Constant(i64, ~_STATUS)), b.and_(old, ir.Constant(i64, _STATUS)))
    b.store(b.trunc(b.select(b.icmp_signed("<", on, ir.Constant(i64, 0)), turn_on, restore), i32), cell)
    b.call(ldmxcsr, [b.bitcast(cell, i8p)])
    b.ret(old)
    return module


_built: list = []  # [the compiled library (kept alive), the ctypes function]
_build_lock = threading.Lock()


def _swap_mode(on: int) -> int:
    """:func:`_swap_mode_ir`, built on first use."""
    if not _built:
        with _build_lock:
            if not _built:
                from numba.core.compiler_lock import global_compiler_lock
                from numba.core.registry import cpu_target

                with global_compiler_lock:  # numba's code generator is not thread-safe
                    library = cpu_target.target_context.codegen().create_library("tinynn_denormals")
                    library.add_ir_module(_swap_mode_ir())
                    library.finalize()
                    address = library.get_pointer_to_function("tinynn_swap_mode")
                _built.extend([library, ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_int64)(address)])
    return _built[1](on)


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


@contextmanager
def keep_subnormals() -> Iterator[None]:
    """Inside the block this thread keeps IEEE subnormals (the modes off), whatever it ran with before: for a
    kernel that must round as NumPy does also on a worker thread (the optimizers' steps)."""
    if not _SUPPORTED:
        yield
        return
    saved = _swap_mode(-1)
    _swap_mode(saved & ~_FTZ_DAZ)
    try:
        yield
    finally:
        _swap_mode(saved)


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
