"""Padding ragged sequences to one length: ``pad_sequences`` as ``keras.utils.pad_sequences``.

``from tinynn.preprocessing import sequence`` replaces ``from keras.preprocessing import sequence`` in the
tutorials (``sequence.pad_sequences(x_train, maxlen=500)``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_SIDES = ("pre", "post")


def pad_sequences(
    sequences: Sequence,
    maxlen: int | None = None,
    dtype="int32",
    padding: str = "pre",
    truncating: str = "pre",
    value=0.0,
) -> np.ndarray:
    """An array ``x`` of shape ``(N, maxlen, *sample_shape)`` from N sequences of different lengths.

    With ``L = maxlen`` (default: the longest sequence) and ``s_i`` the i-th sequence, ``len(s_i) = T_i``::

        kept_i = s_i[T_i - L:]   if truncating == "pre"  (the last L items)
                 s_i[:L]         if truncating == "post" (the first L items)
        x[i]   = [value] * (L - len(kept_i)) + kept_i    if padding == "pre"
                 kept_i + [value] * (L - len(kept_i))    if padding == "post"

    Each sequence is a list of ids or an array ``(T_i, *sample_shape)``; ``sample_shape`` is taken from the
    first non-empty sequence and every other must match. Items are converted with ``np.asarray(kept_i,
    dtype)`` (floats cast to an integer dtype truncate toward 0, as in Keras). Strings need ``dtype=object``
    (or a NumPy string dtype), e.g. ``pad_sequences([["a", "b"], ["c"]], dtype=object, value="<pad>")``.

    Same results as ``keras.utils.pad_sequences`` (a test compares them on drawn inputs), with two
    differences where Keras fails: ``maxlen=0`` gives ``N`` empty rows for both truncating modes (with
    ``"pre"`` Keras keeps ``s[-0:]``, the whole sequence, and raises a broadcasting error when one is longer
    than 1), and an empty list of sequences gives an array of shape ``(0, maxlen or 0)``. Bad arguments
    raise a ``ValueError`` naming them, before any work is done.
    """
    who = "pad_sequences"
    if padding not in _SIDES:
        raise ValueError(f"{who}: padding must be 'pre' or 'post', got {padding!r}")
    if truncating not in _SIDES:
        raise ValueError(f"{who}: truncating must be 'pre' or 'post', got {truncating!r}")
    if maxlen is not None and (not isinstance(maxlen, (int, np.integer)) or isinstance(maxlen, bool) or maxlen < 0):
        raise ValueError(f"{who}: maxlen must be None or a non-negative integer, got {maxlen!r}")
    if isinstance(sequences, (str, bytes)) or not hasattr(sequences, "__len__"):
        raise ValueError(f"{who}: sequences must be a list of sequences, got {type(sequences).__name__}")
    try:
        dtype = np.dtype(dtype)
    except TypeError as err:
        raise ValueError(f"{who}: dtype {dtype!r} is not a NumPy dtype") from err
    if isinstance(value, str) and dtype.kind not in "OUS":
        raise ValueError(f"{who}: a string value {value!r} needs dtype=object (or a string dtype), got dtype {dtype}")

    lengths, sample_shape = [], None
    for i, s in enumerate(sequences):
        if isinstance(s, (str, bytes)):
            raise ValueError(f"{who}: sequence {i} is a string ({s!r}); pass a list of tokens, e.g. {list(s)[:3]!r}")
        try:
            n = len(s)
        except TypeError:
            raise ValueError(
                f"{who}: sequences must be a list of sequences; item {i} is not a sequence: {s!r}"
            ) from None
        lengths.append(n)
        if sample_shape is None and n:
            try:
                sample_shape = np.asarray(s).shape[1:]
            except ValueError as err:  # e.g. items of different lengths inside one sequence
                raise ValueError(f"{who}: sequence {i} is not a regular array ({err})") from err
    sample_shape = sample_shape or ()
    if maxlen is None:
        maxlen = max(lengths, default=0)
    maxlen = int(maxlen)

    x = np.full((len(lengths), maxlen, *sample_shape), value, dtype=dtype)
    if maxlen == 0:
        return x
    for i, s in enumerate(sequences):
        if not lengths[i]:
            continue
        kept = s[-maxlen:] if truncating == "pre" else s[:maxlen]
        try:
            kept = np.asarray(kept, dtype=dtype)
        except (TypeError, ValueError, OverflowError) as err:
            raise ValueError(f"{who}: sequence {i} cannot be converted to dtype {dtype} ({err})") from err
        if kept.shape[1:] != sample_shape:
            raise ValueError(
                f"{who}: sequence {i} has items of shape {kept.shape[1:]}, but the first non-empty sequence "
                f"has items of shape {sample_shape}"
            )
        if padding == "post":
            x[i, : len(kept)] = kept
        else:
            x[i, maxlen - len(kept) :] = kept
    return x


__all__ = ["pad_sequences"]
