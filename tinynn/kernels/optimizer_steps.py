r"""Dense optimizer steps in one pass: RMSprop's and Adam's update of a variable and its slots, per element.

For a dense gradient g, with every scalar in the variable's dtype::

    RMSprop (centered=False, momentum=0):   v ← ρ·v + (1-ρ)·(g·g)
                                            w ← w - (η·g) / sqrt(v + ε)
    Adam (amsgrad=False):                   m ← m + (g - m)·(1-β₁)
                                            v ← v + (g·g - v)·(1-β₂)
                                            w ← w - (m·α) / (sqrt(v) + ε)      α = η·sqrt(1-β₂ᵗ) / (1-β₁ᵗ)

The NumPy twin is the optimizer's own ``update_step`` (:mod:`tinynn.optimizers.rmsprop`, :mod:`~.adam`), which
states these lines with whole-array ops and handles every other case (an Embedding's IndexedSlices, centered,
momentum, amsgrad) and the 'reference' kernel mode. Each element here goes through the same IEEE operations in the
same order (no fast-math, no fused multiply-add), so both give the same bits (``tests/test_optimizer_steps.py``);
the loop does in one pass what the twin does in about eight, each with its own temporary: on a (320, 128) kernel
in float32, ~14 µs instead of ~57, and a bias of 128 numbers ~1.3 µs instead of ~6 (benchmarks/RESULTS.md).
"""

from __future__ import annotations

import numba
import numpy as np

from .. import config
from . import warmup
from .jitcache import load_without_refresh

__all__ = ["adam", "fits", "rmsprop"]


@numba.njit(error_model="numpy", cache=True, nogil=True)  # IEEE division and sqrt: the loop vectorises
def _rmsprop(w, g, v, rho, one_minus_rho, epsilon, lr):  # pragma: no cover - compiled
    for i in range(w.shape[0]):
        gi = g[i]
        vi = rho * v[i] + one_minus_rho * (gi * gi)
        v[i] = vi
        w[i] = w[i] - (lr * gi) / np.sqrt(vi + epsilon)


@numba.njit(error_model="numpy", cache=True, nogil=True)
def _adam(w, g, m, v, one_minus_beta_1, one_minus_beta_2, alpha, epsilon):  # pragma: no cover - compiled
    for i in range(w.shape[0]):
        gi = g[i]
        mi = m[i] + (gi - m[i]) * one_minus_beta_1
        vi = v[i] + (gi * gi - v[i]) * one_minus_beta_2
        m[i] = mi
        v[i] = vi
        w[i] = w[i] - (mi * alpha) / (np.sqrt(vi) + epsilon)


def _flat(*arrays: np.ndarray) -> tuple:
    return tuple(a.reshape(-1) for a in arrays)


def fits(w: np.ndarray, g, *slots: np.ndarray) -> bool:
    """Whether a fused step may update ``w`` and ``slots`` from ``g``: the 'fast' kernel mode, a dense gradient of
    w's shape and dtype (float32 or float64), w and the slots contiguous arrays of that shape and dtype, w
    writeable. Otherwise the optimizer runs its NumPy twin."""
    if config.kernel_mode() != "fast" or type(g) is not np.ndarray or w.dtype not in (np.float32, np.float64):
        return False
    return (g.shape == w.shape and g.dtype == w.dtype and w.flags.c_contiguous and w.flags.writeable
            and all(s.shape == w.shape and s.dtype == w.dtype and s.flags.c_contiguous for s in slots))  # fmt: skip


#: (kernel, dtype) pairs found compiled: the arguments' types follow from the dtype alone (1-D contiguous arrays
#: and scalars of it), so later steps skip :func:`tinynn.kernels.warmup.kernel_ready` (~5 µs, more than a small
#: variable's whole step).
_READY: set = set()


def _run(kernel, args: tuple) -> bool:
    key = (kernel, args[0].dtype)
    if key not in _READY:
        if not warmup.kernel_ready(kernel, *args):
            return False
        _READY.add(key)
    kernel(*args)
    return True


def rmsprop(w: np.ndarray, g: np.ndarray, v: np.ndarray, rho, one_minus_rho, epsilon, lr) -> bool:
    """RMSprop's dense step (module docstring) in place, if its kernel is ready (compiled, or loading in the
    background: then False, nothing done, and the caller runs the twin). Call only where :func:`fits`."""
    t = w.dtype.type
    return _run(_rmsprop, (*_flat(w, np.ascontiguousarray(g), v), t(rho), t(one_minus_rho), t(epsilon), t(lr)))


def adam(w: np.ndarray, g: np.ndarray, m: np.ndarray, v: np.ndarray, one_minus_beta_1, one_minus_beta_2, alpha,
         epsilon) -> bool:  # fmt: skip
    """Adam's dense step (module docstring) in place, as :func:`rmsprop`."""
    t = w.dtype.type
    return _run(_adam, (*_flat(w, np.ascontiguousarray(g), m, v), t(one_minus_beta_1), t(one_minus_beta_2), t(alpha),
                        t(epsilon)))  # fmt: skip


load_without_refresh(globals())  # cached kernels load without refreshing numba (tinynn.kernels.jitcache)
