r"""NumPy twins of the layout copies in :mod:`tinynn.kernels.layout`.

Recurrent loops run time-major: ``to_time_major`` (B, T, F) -> (T, B, F), optionally reversing time
(``go_backwards``) and zeroing the rows where the (T, B) mask is False; ``to_batch_major`` is its inverse.
"""

from __future__ import annotations

import numpy as np

__all__ = ["to_batch_major", "to_time_major"]


def to_time_major(x, reverse: bool = False, mask=None):
    """out[t, b] = x[b, t'] (0 where not mask[t, b]), t' = T-1-t if reverse else t."""
    out = np.swapaxes(x, 0, 1)
    if reverse:
        out = out[::-1]
    if mask is not None:
        out = np.where(np.asarray(mask, bool)[:, :, None], out, 0)
    return np.ascontiguousarray(out, dtype=x.dtype)


def to_batch_major(y, reverse: bool = False, mask=None):
    """out[b, t'] = y[t, b] (0 where not mask[t, b]), t' = T-1-t if reverse else t."""
    if mask is not None:
        y = np.where(np.asarray(mask, bool)[:, :, None], y, 0)
    if reverse:
        y = y[::-1]
    return np.ascontiguousarray(np.swapaxes(y, 0, 1), dtype=y.dtype)
