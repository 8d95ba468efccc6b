"""The endless batch iterators behind ``ImageDataGenerator.flow`` and ``flow_from_directory`` (Keras 2's).

An iterator over ``n`` samples in batches of ``b`` is both

- an endless Python iterator (``next(it)``, ``for x, y in it: ... break``), as the tutorials use it: each pass
  over the data is ``len(it) = ⌈n / b⌉`` batches, the last one partial, reshuffled at the start of every
  pass when ``shuffle``; and
- a Keras ``Sequence`` (``it[i]``, ``len(it)``, ``on_epoch_end()``).

``model.fit(it, steps_per_epoch=...)`` pulls batches with ``next``; without ``steps_per_epoch`` an epoch is one
pass (``len(it)`` batches), as Keras does for a Sequence. Randomness (shuffling and the transforms) is
deterministic given ``seed``: batch ``k`` draws from ``np.random.default_rng([seed, k])``, the way Keras
re-seeds its global generator with ``seed + k`` before each batch.
"""

from __future__ import annotations

import os
import threading
import warnings

import numpy as np

from ...utils import make_rng
from . import files

WHITE_LIST_FORMATS = ("png", "jpg", "jpeg", "bmp", "ppm", "tif", "tiff")
CLASS_MODES = ("categorical", "binary", "sparse", "input", None)
SUBSETS = ("training", "validation")


def _check_batch_size(batch_size, who: str) -> int:
    if not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool) or batch_size <= 0:
        raise ValueError(f"{who}: batch_size must be a positive integer, got {batch_size!r}")
    return int(batch_size)


def _check_seed(seed, who: str) -> int | None:
    if seed is not None and (not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0):
        raise ValueError(f"{who}: seed must be None or a non-negative integer, got {seed!r}")
    return None if seed is None else int(seed)


def _check_subset(subset, image_data_generator, who: str) -> None:
    if subset is None:
        return
    if subset not in SUBSETS:
        raise ValueError(f"{who}: subset must be None, 'training' or 'validation', got {subset!r}")
    if not image_data_generator._validation_split:
        raise ValueError(f"{who}: subset={subset!r} needs ImageDataGenerator(validation_split=...) > 0")


class Iterator:
    """Base class: index bookkeeping, shuffling and seeding; subclasses build the batch of given indices."""

    white_list_formats = WHITE_LIST_FORMATS

    def __init__(self, n: int, batch_size: int, shuffle: bool, seed: int | None):
        self.n = int(n)
        self.batch_size = batch_size
        self.shuffle = bool(shuffle)
        self.seed = seed
        self.batch_index = 0
        self.total_batches_seen = 0
        self.index_array: np.ndarray | None = None
        self.lock = threading.Lock()
        self._stream = make_rng(seed)  # the unseeded case: one stream for the iterator's life
        self.index_generator = self._flow_index()

    def _batch_rng(self) -> np.random.Generator:
        if self.seed is None:
            return self._stream
        return np.random.default_rng([self.seed, self.total_batches_seen])

    def _set_index_array(self, rng: np.random.Generator) -> None:
        self.index_array = rng.permutation(self.n) if self.shuffle else np.arange(self.n)

    def __len__(self) -> int:
        return (self.n + self.batch_size - 1) // self.batch_size

    def __getitem__(self, idx: int):
        if not 0 <= idx < len(self):
            raise IndexError(f"{type(self).__name__}: batch {idx} requested, but there are {len(self)} batches")
        rng = self._batch_rng()
        self.total_batches_seen += 1
        if self.index_array is None:
            self._set_index_array(rng)
        indices = self.index_array[self.batch_size * idx : self.batch_size * (idx + 1)]
        return self._get_batches_of_transformed_samples(indices, rng)

    def on_epoch_end(self) -> None:
        self._set_index_array(self._batch_rng())

    def reset(self) -> None:
        """Start the next pass from its first batch (the next batch reshuffles when ``shuffle``)."""
        self.batch_index = 0

    def _flow_index(self):
        self.reset()
        while True:
            rng = self._batch_rng()
            if self.batch_index == 0:
                self._set_index_array(rng)
            start = (self.batch_index * self.batch_size) % self.n
            if self.n > start + self.batch_size:
                self.batch_index += 1
            else:
                self.batch_index = 0
            self.total_batches_seen += 1
            yield self.index_array[start : start + self.batch_size], rng

    def __iter__(self):
        return self

    def __next__(self):
        with self.lock:
            indices, rng = next(self.index_generator)
        return self._get_batches_of_transformed_samples(indices, rng)

    def _get_batches_of_transformed_samples(self, index_array: np.ndarray, rng: np.random.Generator):
        raise NotImplementedError

    def _save_batch(self, batch_x: np.ndarray, index_array: np.ndarray, rng: np.random.Generator) -> None:
        for image, j in zip(batch_x, index_array):
            name = f"{self.save_prefix}_{j}_{rng.integers(10**7)}.{self.save_format}"
            files.save_img(os.path.join(self.save_to_dir, name), image, data_format=self.data_format, scale=True)

    def _augmented(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        gen = self.image_data_generator
        return gen.standardize(gen._transform(x, gen._draw(x.shape, rng)))


class NumpyArrayIterator(Iterator):
    """Batches from arrays: ``x`` (N, rows, cols, channels), optional ``y`` and ``sample_weight``."""

    def __init__(self, x, y, image_data_generator, batch_size: int = 32, shuffle: bool = False,
                 sample_weight=None, seed: int | None = None, data_format: str | None = None, save_to_dir=None,
                 save_prefix: str = "", save_format: str = "png", subset: str | None = None,
                 ignore_class_split: bool = False, dtype=None):
        who = "ImageDataGenerator.flow"
        batch_size = _check_batch_size(batch_size, who)
        seed = _check_seed(seed, who)
        _check_subset(subset, image_data_generator, who)
        self.dtype = dtype or image_data_generator.dtype
        self.data_format = files.standardize_data_format(data_format, who)
        try:
            x = np.asarray(x)
        except ValueError as err:
            raise ValueError(f"{who}: x must be an array of images ({err})") from err
        if x.dtype.kind not in "biuf":
            raise ValueError(f"{who}: x must be a numeric array of images, got dtype {x.dtype}")
        if y is not None:
            y = np.asarray(y)
            if len(y) != len(x):
                raise ValueError(f"{who}: x has {len(x)} images but y has {len(y)} labels")
        if sample_weight is not None:
            sample_weight = np.asarray(sample_weight)
            if len(sample_weight) != len(x):
                raise ValueError(f"{who}: x has {len(x)} images but sample_weight has {len(sample_weight)} entries")
        if subset is not None:
            split = int(len(x) * image_data_generator._validation_split)
            if (y is not None and not ignore_class_split
                    and not np.array_equal(np.unique(y[:split]), np.unique(y[split:]))):
                raise ValueError(f"{who}: the training and validation subsets have different classes after the "
                                 "split (are the arrays sorted by label? shuffle them, or pass "
                                 "ignore_class_split=True)")
            part = slice(None, split) if subset == "validation" else slice(split, None)
            x = x[part]
            y = None if y is None else y[part]
            sample_weight = None if sample_weight is None else sample_weight[part]
        if x.ndim != 4:
            raise ValueError(f"{who}: x must have rank 4 (samples, rows, cols, channels), got shape {x.shape}")
        if len(x) == 0:
            raise ValueError(f"{who}: no images to iterate over (x has shape {x.shape}"
                             + (f", subset={subset!r})" if subset else ")"))
        channel_axis = 3 if self.data_format == "channels_last" else 1
        if x.shape[channel_axis] not in (1, 3, 4):
            warnings.warn(f"{who}: expected 1, 3 or 4 channels on axis {channel_axis} ({self.data_format}), "
                          f"got an array of shape {x.shape}", stacklevel=3)
        self.x = x
        self.y = y
        self.sample_weight = sample_weight
        self.image_data_generator = image_data_generator
        self.save_to_dir, self.save_prefix, self.save_format = save_to_dir, save_prefix, save_format
        super().__init__(len(x), batch_size, shuffle, seed)

    def _get_batches_of_transformed_samples(self, index_array, rng):
        batch_x = np.zeros((len(index_array), *self.x.shape[1:]), dtype=self.dtype)
        for i, j in enumerate(index_array):
            batch_x[i] = self._augmented(self.x[j].astype(self.dtype), rng)
        if self.save_to_dir:
            self._save_batch(batch_x, index_array, rng)
        if self.y is None:
            return batch_x
        if self.sample_weight is None:
            return batch_x, self.y[index_array]
        return batch_x, self.y[index_array], self.sample_weight[index_array]


def _image_files(directory: str, follow_links: bool):
    """``(root, filename)`` of every image file under ``directory``, folders and files in sorted order."""
    for root, _, names in sorted(os.walk(directory, followlinks=follow_links), key=lambda entry: entry[0]):
        for name in sorted(names):
            if name.lower().endswith(WHITE_LIST_FORMATS):
                yield root, name


class DirectoryIterator(Iterator):
    """Batches of images read from class folders: ``directory/<class>/**/<image>``.

    Classes are the sub-folders (sorted; or ``classes``), numbered in that order (``class_indices``); every
    image file below a class folder (png, jpg, jpeg, bmp, ppm, tif, tiff, searched recursively, in sorted
    order) is one sample with that label. Attributes as Keras's: ``filenames`` (relative to ``directory``),
    ``filepaths``, ``classes`` (int32 label per file), ``labels``, ``class_indices``, ``num_classes``,
    ``samples``. With ``subset``, the first ``⌊validation_split · n_c⌋`` files of each class form the
    validation subset and the rest the training subset.

    Labels per ``class_mode``: "categorical" one-hot, "binary" / "sparse" the class id (float), "input" the
    images themselves, None no labels (batches are ``x`` only).
    """

    allowed_class_modes = set(CLASS_MODES)

    def __init__(self, directory, image_data_generator, target_size=(256, 256), color_mode: str = "rgb",
                 classes=None, class_mode: str | None = "categorical", batch_size: int = 32, shuffle: bool = True,
                 seed: int | None = None, data_format: str | None = None, save_to_dir=None, save_prefix: str = "",
                 save_format: str = "png", follow_links: bool = False, subset: str | None = None,
                 interpolation: str = "nearest", keep_aspect_ratio: bool = False, dtype=None):
        who = "flow_from_directory"
        self.target_size = files.check_target_size(target_size, who)
        if self.target_size is None:
            raise ValueError(f"{who}: target_size must be (height, width), got None")
        self.color_mode = files.check_color_mode(color_mode, who)
        self.interpolation = files.check_interpolation(interpolation, who)
        if class_mode not in CLASS_MODES:
            raise ValueError(f"{who}: class_mode must be one of 'categorical', 'binary', 'sparse', 'input' or "
                             f"None, got {class_mode!r}")
        batch_size = _check_batch_size(batch_size, who)
        seed = _check_seed(seed, who)
        _check_subset(subset, image_data_generator, who)
        files.pil_image()  # fail now, with the install command, rather than at the first batch
        self.directory = os.fspath(directory)
        if not os.path.isdir(self.directory):
            raise ValueError(f"{who}: {self.directory!r} is not a directory")
        self.data_format = files.standardize_data_format(data_format, who)
        self.dtype = dtype or image_data_generator.dtype
        self.class_mode = class_mode
        self.keep_aspect_ratio = keep_aspect_ratio
        self.image_data_generator = image_data_generator
        self.save_to_dir, self.save_prefix, self.save_format = save_to_dir, save_prefix, save_format
        self.subset = subset
        channels = {"rgba": 4, "rgb": 3, "grayscale": 1}[color_mode]
        self.image_shape = ((*self.target_size, channels) if self.data_format == "channels_last"
                            else (channels, *self.target_size))

        if classes:
            classes = list(classes)
            missing = [c for c in classes if not os.path.isdir(os.path.join(self.directory, c))]
            if missing:
                raise ValueError(f"{who}: class folders {missing} do not exist in {self.directory!r}")
        else:
            classes = sorted(d for d in os.listdir(self.directory) if os.path.isdir(os.path.join(self.directory, d)))
            if not classes:
                raise ValueError(f"{who}: {self.directory!r} has no class folders; it must hold one sub-folder per "
                                 "class with the images inside (e.g. train/cats/cat.1.jpg, train/dogs/dog.1.jpg)")
        self.num_classes = len(classes)
        self.class_indices = dict(zip(classes, range(len(classes))))
        split = image_data_generator._validation_split
        self.filenames: list[str] = []
        labels: list[int] = []
        for name in classes:
            folder = os.path.join(self.directory, name)
            found = list(_image_files(folder, follow_links))
            if subset is not None:
                cut = int(split * len(found))
                found = found[:cut] if subset == "validation" else found[cut:]
            for root, fname in found:
                self.filenames.append(os.path.join(name, os.path.relpath(os.path.join(root, fname), folder)))
                labels.append(self.class_indices[name])
        self.classes = np.asarray(labels, dtype="int32")
        self.samples = len(self.filenames)
        print(f"Found {self.samples} images belonging to {self.num_classes} classes.")
        if self.samples == 0:
            what = f"the {subset} subset of " if subset else ""
            raise ValueError(f"{who}: found no image files ({', '.join(WHITE_LIST_FORMATS)}) in {what}the class "
                             f"folders of {self.directory!r}")
        self._filepaths = [os.path.join(self.directory, f) for f in self.filenames]
        super().__init__(self.samples, batch_size, shuffle, seed)

    @property
    def filepaths(self) -> list[str]:
        return self._filepaths

    @property
    def labels(self) -> np.ndarray:
        return self.classes

    @property
    def sample_weight(self):
        return None

    def _get_batches_of_transformed_samples(self, index_array, rng):
        batch_x = np.zeros((len(index_array), *self.image_shape), dtype=self.dtype)
        for i, j in enumerate(index_array):
            img = files.load_img(self._filepaths[j], color_mode=self.color_mode, target_size=self.target_size,
                                 interpolation=self.interpolation, keep_aspect_ratio=self.keep_aspect_ratio)
            x = files.img_to_array(img, data_format=self.data_format, dtype=self.dtype)
            img.close()
            batch_x[i] = self._augmented(x, rng)
        if self.save_to_dir:
            self._save_batch(batch_x, index_array, rng)
        if self.class_mode == "input":
            return batch_x, batch_x.copy()
        if self.class_mode in ("binary", "sparse"):
            return batch_x, self.classes[index_array].astype(self.dtype)
        if self.class_mode == "categorical":
            batch_y = np.zeros((len(batch_x), self.num_classes), dtype=self.dtype)
            batch_y[np.arange(len(batch_x)), self.classes[index_array]] = 1.0
            return batch_x, batch_y
        return batch_x


__all__ = ["DirectoryIterator", "Iterator", "NumpyArrayIterator"]
