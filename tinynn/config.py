"""Global numeric settings, mirroring ``keras.config``.

``floatx`` is the default dtype of new layers' weights and outputs. Like Keras, it is read when a layer is
constructed, so call :func:`set_floatx` before building a model.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Iterator

import numpy as np

_FLOATX = "float32"
EPSILON = 1e-7  # keras.config.epsilon(): used by losses (clipping) and optimizers' defaults

_FLOAT_DTYPES = ("float32", "float64")

KERNEL_MODES = ("fast", "reference")
_KERNELS = "fast"

COMPILE_MODES = ("background", "wait")
_COMPILE: str | None = None  # None: the TINYNN_COMPILE environment variable, else "background"
_env_seen = [None, "background"]  # the variable's last raw value and its meaning


def floatx() -> str:
    """The default float dtype name ('float32' unless changed)."""
    return _FLOATX


def set_floatx(value: str) -> None:
    """Set the default float dtype for layers created afterwards ('float32' or 'float64')."""
    global _FLOATX
    value = standardize_dtype(value, who="set_floatx")
    _FLOATX = value


def epsilon() -> float:
    return EPSILON


def standardize_dtype(dtype, who: str = "tinynn") -> str:
    """Return 'float32' or 'float64' for a dtype-like value, or raise a ValueError naming ``who``."""
    if dtype is None:
        return _FLOATX
    try:
        name = np.dtype(dtype).name
    except TypeError as err:
        raise ValueError(f"{who}: unknown dtype {dtype!r}; expected one of {_FLOAT_DTYPES}") from err
    if name not in _FLOAT_DTYPES:
        raise ValueError(f"{who}: unsupported dtype {name!r}; expected one of {_FLOAT_DTYPES}")
    return name


def kernel_mode() -> str:
    """'fast' (numba kernels, threads, fused special cases) or 'reference' (the plain NumPy twins)."""
    return _KERNELS


def set_kernels(mode: str) -> None:
    """Route every layer through the numba kernels ('fast', the default) or their NumPy twins ('reference').

    The reference path (:mod:`tinynn.kernels.reference`) is the readable statement of each layer's math: no
    numba, no threads, no fused special cases, so a debugger can step through it inside ``fit``. Both paths
    compute the same numbers (the tests prove it to ~1e-12 relative in float64).
    """
    global _KERNELS
    if mode not in KERNEL_MODES:
        raise ValueError(f"set_kernels: mode must be one of {KERNEL_MODES}, got {mode!r}")
    _KERNELS = mode


@contextlib.contextmanager
def kernels(mode: str) -> Iterator[None]:
    """``with tinynn.config.kernels("reference"): model.fit(...)`` — :func:`set_kernels` inside the block only."""
    previous = _KERNELS
    set_kernels(mode)
    try:
        yield
    finally:
        set_kernels(previous)


class _WeightBudget:
    def __init__(self, limit: int, source: str):
        self.limit, self.source, self.used = int(limit), source, 0


_WEIGHT_BUDGET: contextvars.ContextVar[_WeightBudget | None] = contextvars.ContextVar("weight_budget", default=None)


@contextlib.contextmanager
def weight_memory_limit(nbytes: int, source: str = "the limit") -> Iterator[None]:
    """Inside the block, layers refuse to create weights beyond ``nbytes`` bytes in total.

    Loaders build a model from a file's config under the size of the weights the file stores (``source``
    says which file): a config that asks for more (``Dense(units=2**40)``, a wrong input shape) is refused
    with a ``ValueError`` before any memory is allocated, instead of allocating gigabytes and then failing
    the shape check. Blocks nest; each checks its own total.
    """
    token = _WEIGHT_BUDGET.set(_WeightBudget(nbytes, source))
    try:
        yield
    finally:
        _WEIGHT_BUDGET.reset(token)


def reserve_weight_memory(shape: tuple, dtype, who: str) -> None:
    """Count a new weight of ``shape`` and ``dtype`` against the active :func:`weight_memory_limit` (if any)."""
    budget = _WEIGHT_BUDGET.get()
    if budget is None:
        return
    size = np.dtype(dtype).itemsize
    for dim in shape:
        size *= max(int(dim), 0)
    budget.used += size
    if budget.used > budget.limit:
        raise ValueError(
            f"{who}: a weight of shape {tuple(shape)} ({np.dtype(dtype).name}, {size} bytes) would bring the "
            f"weights built so far to {budget.used} bytes, more than the {budget.limit} bytes {budget.source}: "
            "the config does not match the stored weights (or asks for an absurd size)"
        )


def compile_mode() -> str:
    """How fast-mode layers meet kernels numba has not compiled yet: 'background' (the default: compile on a
    background thread, run the NumPy twins meanwhile) or 'wait' (compile in the calling thread, numba's own
    behaviour). See :mod:`tinynn.kernels.warmup`. Default from the ``TINYNN_COMPILE`` environment variable."""
    if _COMPILE is not None:
        return _COMPILE
    env = os.environ.get("TINYNN_COMPILE", "background")
    if env != _env_seen[0]:  # parse only when it changed (this is asked at every layer call)
        value = env.strip().lower()
        _env_seen[:] = [env, value if value in COMPILE_MODES else "background"]
    return _env_seen[1]


def set_compile(mode: str | None) -> None:
    """Set :func:`compile_mode` ('background' or 'wait'; None: back to the environment variable's choice)."""
    global _COMPILE
    if mode is not None and mode not in COMPILE_MODES:
        raise ValueError(f"set_compile: mode must be one of {COMPILE_MODES} or None, got {mode!r}")
    _COMPILE = mode
