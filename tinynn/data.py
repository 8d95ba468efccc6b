"""Turning fit/evaluate/predict inputs into batches: arrays (sliced, optionally shuffled) or generators."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


def is_batch_source(x) -> bool:
    """True for a generator / iterable of ``(x, y)`` batches rather than an array of samples."""
    if x is None or isinstance(x, (np.ndarray, list, tuple, dict, str, bytes)):  # a dict: arrays by input name
        return False
    return hasattr(x, "__next__") or hasattr(x, "__iter__") or hasattr(x, "__getitem__") and hasattr(x, "__len__")


def as_array(x, what: str) -> np.ndarray:
    try:
        arr = np.asarray(x)
    except Exception as err:  # ragged lists and the like
        raise ValueError(f"{what}: could not convert to an array ({err})") from err
    if arr.dtype == object:
        raise ValueError(f"{what}: expected a numeric array, got ragged or object data (dtype=object)")
    if arr.ndim == 0:
        raise ValueError(f"{what}: expected an array with a batch axis, got a scalar")
    return arr


def split_validation(x, y, sample_weight, fraction: float):
    """Keras's validation_split: the last ``N - floor(N (1 - fraction))`` samples, taken before shuffling."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"validation_split must be in [0, 1), got {fraction}")
    n = len(x)
    split_at = int(np.floor(n * (1.0 - fraction)))
    if split_at == 0 or split_at == n:
        raise ValueError(
            f"validation_split={fraction} leaves no training or no validation samples out of {n}"
        )
    sw_train = None if sample_weight is None else sample_weight[:split_at]
    sw_val = None if sample_weight is None else sample_weight[split_at:]
    return (x[:split_at], y[:split_at], sw_train), (x[split_at:], y[split_at:], sw_val)


def array_batches(n: int, batch_size: int, shuffle: bool, rng: np.random.Generator) -> list[np.ndarray]:
    """Index arrays of consecutive batches; the last partial batch is kept."""
    order = rng.permutation(n) if shuffle else np.arange(n)
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


def unpack_batch(batch) -> tuple:
    """``(x, y)`` or ``(x, y, sample_weight)`` from a generator item; a bare array is ``x`` alone (predict)."""
    if isinstance(batch, np.ndarray):
        return batch, None, None
    if not isinstance(batch, (tuple, list)) or len(batch) not in (1, 2, 3):
        raise ValueError(
            f"a data generator must yield (x, y) or (x, y, sample_weight) tuples, got {type(batch).__name__}"
        )
    x = batch[0]
    y = batch[1] if len(batch) > 1 else None
    sw = batch[2] if len(batch) > 2 else None
    return x, y, sw


class BatchStream:
    """A persistent iterator over a generator/iterable, as Keras keeps it across epochs.

    With ``steps`` each epoch pulls that many batches (an infinite generator never restarts). Without,
    an epoch ends when the iterable is exhausted and a re-iterable source (a list, a Sequence) restarts;
    an endless iterator that also has a length (Keras's image iterators, ``len`` = batches per pass over
    the data) gives ``len(source)`` batches per epoch, as Keras does for a Sequence.
    """

    def __init__(self, source, steps: int | None, what: str):
        if steps is None and hasattr(source, "__next__") and hasattr(source, "__len__"):
            steps = len(source)
        self.source, self.steps, self.what = source, steps, what
        self.num_batches = steps
        self._it: Iterator | None = None

    def _iterator(self) -> Iterator:
        if self._it is None:
            self._it = iter(self.source)
        return self._it

    def epoch(self):
        count = 0
        while self.steps is None or count < self.steps:
            try:
                batch = next(self._iterator())
            except StopIteration:
                self._it = None
                if count == 0 and self.steps is not None:
                    raise ValueError(f"{self.what}: the data generator ran out of batches") from None
                if self.steps is not None:
                    self._it = iter(self.source)
                    if self._it is self.source:  # a one-shot generator cannot restart
                        raise ValueError(
                            f"{self.what}: the generator was exhausted after {count} of {self.steps} steps"
                        ) from None
                    continue
                return
            count += 1
            yield unpack_batch(batch)
