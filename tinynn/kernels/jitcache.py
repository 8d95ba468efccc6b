r"""Loading the kernels' machine code from numba's disk cache without initialising numba's compiler.

Before every load from its cache (``cache=True``) numba refreshes its CPU target context
(``BaseContext.refresh``). The first refresh of a process imports every lowering module numba has — among them
``numba.np.arraymath``, which imports ``scipy.linalg`` to check that BLAS exists — and installs their
implementations: a third to half a second of CPU time, spent in whichever kernel is loaded first, although loading
compiled code uses none of it. What a load does use is numba's runtime (NRT: the cached code allocates through it),
so :func:`load_without_refresh` makes a module's kernels initialise only that before loading. A cache miss still
compiles through numba's compiler, which refreshes the context itself first (``numba.core.compiler``), so compiling
is unchanged; the machine code loaded is the same bytes either way (``tests/test_jitcache.py``).

Each kernel module calls ``load_without_refresh(globals())`` after its last ``@numba.njit``. Only tinynn's own
numba functions are changed; other numba code in the process loads as numba does by default. The function relies
on numba internals (``Dispatcher._cache``, ``Cache._load_overload``); if they are missing it changes nothing.
"""

from __future__ import annotations

from numba.core.caching import FunctionCache
from numba.core.dispatcher import Dispatcher
from numba.core.runtime import rtsys

__all__ = ["load_without_refresh"]

_SUPPORTED = all(hasattr(FunctionCache, name) for name in ("_load_overload", "_guard_against_spurious_io_errors"))


class _LoadOnlyCache(FunctionCache):
    """numba's cache of one function; a load initialises numba's runtime instead of refreshing the target context."""

    def load_overload(self, sig, target_context):
        rtsys.initialize(target_context)  # idempotent; numba calls it under the compiler lock, as here
        with self._guard_against_spurious_io_errors():
            return self._load_overload(sig, target_context)


def load_without_refresh(namespace: dict) -> int:
    """Every numba function defined in the module of ``namespace`` (its ``globals()``) loads its cached machine code
    without refreshing numba's target context. Returns how many functions it changed."""
    if not _SUPPORTED:
        return 0
    module, changed = namespace.get("__name__"), 0
    for value in list(namespace.values()):
        if (isinstance(value, Dispatcher) and getattr(value.py_func, "__module__", None) == module
                and type(getattr(value, "_cache", None)) is FunctionCache):
            value._cache.__class__ = _LoadOnlyCache
            changed += 1
    return changed
