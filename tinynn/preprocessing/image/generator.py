r"""``ImageDataGenerator``: Keras 2's real-time image augmentation, in NumPy/SciPy.

For each image ``x`` (rows, cols, channels) a batch iterator draws transform parameters
(:meth:`ImageDataGenerator.get_random_transform`), applies them (:meth:`~ImageDataGenerator.apply_transform`:
the affine warp of :mod:`.affine`, then channel shift, flips, brightness) and normalises
(:meth:`~ImageDataGenerator.standardize`), in this order::

    x ← preprocessing_function(x)
    x ← x · rescale
    x ← x - mean(x)                    samplewise_center (over the whole image)
    x ← x / (std(x) + 1e-6)            samplewise_std_normalization
    x ← x - μ_c                        featurewise_center (μ, σ per channel, from fit())
    x ← x / (σ_c + 1e-6)               featurewise_std_normalization
    x ← W x                            zca_whitening (W from fit())

The random draws, per image, as Keras 2 (``U`` uniform, ``h, w`` the image's rows and columns)::

    θ ~ U(-rotation_range, rotation_range)           φ ~ U(-shear_range, shear_range)
    tx ~ U(-height_shift_range, +) · h               ty ~ U(-width_shift_range, +) · w
    zx, zy ~ U(zoom_range[0], zoom_range[1])         (zoom_range=z means [1 - z, 1 + z])
    flips with probability 1/2 each                  brightness ~ U(*brightness_range)
    channel shift ~ U(-channel_shift_range, channel_shift_range)

A shift range ≥ 1 is in pixels; an int ``n`` draws from {0, …, n - 1} with a random sign, a list from its
values with a random sign (fractions of the size when all are < 1). The numbers come from NumPy
``Generator`` streams, not from Keras's global ``np.random``, so the same seed gives different images than in
Keras; given the parameters, :meth:`apply_transform` gives Keras's image (a parity test checks it).
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Callable

import numpy as np

from ... import config
from ...utils import make_rng
from . import affine
from .files import check_target_size, standardize_data_format


def _is_number(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _check_range(name: str, value, allow_list: bool = False):
    who = "ImageDataGenerator"
    if _is_number(value):
        if value < 0:
            raise ValueError(f"{who}: {name} must be >= 0, got {value!r}")
        return value
    if allow_list:
        arr = np.asarray(value)
        if arr.ndim == 1 and arr.size and arr.dtype.kind in "iuf":
            return value
    kinds = "a non-negative number or a list of numbers" if allow_list else "a non-negative number"
    raise ValueError(f"{who}: {name} must be {kinds}, got {value!r}")


class ImageDataGenerator:
    """Augmented, normalised image batches from arrays (:meth:`flow`) or folders (:meth:`flow_from_directory`).

    >>> datagen = ImageDataGenerator(rescale=1./255, rotation_range=40, width_shift_range=0.2,
    ...                              height_shift_range=0.2, shear_range=0.2, zoom_range=0.2,
    ...                              horizontal_flip=True, fill_mode='nearest')
    >>> train_generator = datagen.flow_from_directory(train_dir, target_size=(150, 150), batch_size=20,
    ...                                               class_mode='binary')   # doctest: +SKIP
    >>> model.fit(train_generator, steps_per_epoch=100, epochs=30)           # doctest: +SKIP

    Arguments and defaults are Keras 2's. Differences: ``standardize`` returns a new array (Keras 2 changed
    its argument in place); with ``subset``, ``flow`` cuts ``sample_weight`` with the images (Keras 2 pairs
    the subset's images with the first weights of the array); a brightness shift respects ``channels_first``
    (Keras 2 reads the image as channels-last there); ``flow(x=[images, extra])`` and
    ``flow_from_dataframe`` are not provided; bad arguments raise a ``ValueError`` when given, not later.
    """

    def __init__(self, featurewise_center: bool = False, samplewise_center: bool = False,
                 featurewise_std_normalization: bool = False, samplewise_std_normalization: bool = False,
                 zca_whitening: bool = False, zca_epsilon: float = 1e-6, rotation_range: float = 0,
                 width_shift_range=0.0, height_shift_range=0.0, brightness_range=None, shear_range: float = 0.0,
                 zoom_range=0.0, channel_shift_range: float = 0.0, fill_mode: str = "nearest", cval: float = 0.0,
                 horizontal_flip: bool = False, vertical_flip: bool = False, rescale: float | None = None,
                 preprocessing_function: Callable | None = None, data_format: str | None = None,
                 validation_split: float = 0.0, interpolation_order: int = 1, dtype=None):
        who = "ImageDataGenerator"
        self.data_format = standardize_data_format(data_format, who)
        self.dtype = config.standardize_dtype(dtype or config.floatx(), who=who)
        if self.data_format == "channels_first":
            self.channel_axis, self.row_axis, self.col_axis = 1, 2, 3
        else:
            self.channel_axis, self.row_axis, self.col_axis = 3, 1, 2
        if fill_mode not in affine.FILL_MODES:
            raise ValueError(f"{who}: fill_mode must be one of {', '.join(affine.FILL_MODES)}, got {fill_mode!r}")
        if not _is_number(cval):
            raise ValueError(f"{who}: cval must be a number, got {cval!r}")
        self.rotation_range = _check_range("rotation_range", rotation_range)
        self.shear_range = _check_range("shear_range", shear_range)
        self.channel_shift_range = _check_range("channel_shift_range", channel_shift_range)
        self.width_shift_range = _check_range("width_shift_range", width_shift_range, allow_list=True)
        self.height_shift_range = _check_range("height_shift_range", height_shift_range, allow_list=True)
        if _is_number(zoom_range):
            self.zoom_range = [1 - zoom_range, 1 + zoom_range]
        elif isinstance(zoom_range, (tuple, list)) and len(zoom_range) == 2 and all(map(_is_number, zoom_range)):
            self.zoom_range = [zoom_range[0], zoom_range[1]]
        else:
            raise ValueError(f"{who}: zoom_range must be a number or a pair of numbers, got {zoom_range!r}")
        if brightness_range is not None and not (
                isinstance(brightness_range, (tuple, list)) and len(brightness_range) == 2
                and all(map(_is_number, brightness_range))):
            raise ValueError(f"{who}: brightness_range must be None or a pair of numbers, got {brightness_range!r}")
        self.brightness_range = brightness_range
        if validation_split and not 0 < validation_split < 1:
            raise ValueError(f"{who}: validation_split must be strictly between 0 and 1, got {validation_split!r}")
        if not isinstance(interpolation_order, int) or not 0 <= interpolation_order <= 5:
            raise ValueError(f"{who}: interpolation_order must be an integer in 0..5, got {interpolation_order!r}")
        if rescale is not None and not _is_number(rescale):
            raise ValueError(f"{who}: rescale must be None or a number, got {rescale!r}")
        if preprocessing_function is not None and not callable(preprocessing_function):
            raise ValueError(f"{who}: preprocessing_function must be callable, got {preprocessing_function!r}")
        self.fill_mode, self.cval = fill_mode, cval
        self.horizontal_flip, self.vertical_flip = bool(horizontal_flip), bool(vertical_flip)
        self.rescale = rescale
        self.preprocessing_function = preprocessing_function
        self.interpolation_order = interpolation_order
        self._validation_split = validation_split
        self.featurewise_center, self.samplewise_center = featurewise_center, samplewise_center
        self.featurewise_std_normalization = featurewise_std_normalization
        self.samplewise_std_normalization = samplewise_std_normalization
        self.zca_whitening, self.zca_epsilon = zca_whitening, zca_epsilon
        # Keras 2's implications between the normalisation switches, with its warnings
        if zca_whitening:
            if not featurewise_center:
                self.featurewise_center = True
                warnings.warn(f"{who}: zca_whitening turns on featurewise_center", stacklevel=2)
            if featurewise_std_normalization:
                self.featurewise_std_normalization = False
                warnings.warn(f"{who}: zca_whitening turns off featurewise_std_normalization", stacklevel=2)
        if self.featurewise_std_normalization and not self.featurewise_center:
            self.featurewise_center = True
            warnings.warn(f"{who}: featurewise_std_normalization turns on featurewise_center", stacklevel=2)
        if samplewise_std_normalization and not samplewise_center:
            self.samplewise_center = True
            warnings.warn(f"{who}: samplewise_std_normalization turns on samplewise_center", stacklevel=2)
        self.mean = None
        self.std = None
        self.zca_whitening_matrix = None
        self._rng = make_rng(None)

    # ------------------------------------------------------------------ iterators
    def flow(self, x, y=None, batch_size: int = 32, shuffle: bool = True, sample_weight=None,
             seed: int | None = None, save_to_dir=None, save_prefix: str = "", save_format: str = "png",
             ignore_class_split: bool = False, subset: str | None = None):
        """Batches ``x_batch`` or ``(x_batch, y_batch[, sample_weight_batch])`` from arrays, endlessly."""
        from .iterators import NumpyArrayIterator

        return NumpyArrayIterator(x, y, self, batch_size=batch_size, shuffle=shuffle, sample_weight=sample_weight,
                                  seed=seed, data_format=self.data_format, save_to_dir=save_to_dir,
                                  save_prefix=save_prefix, save_format=save_format,
                                  ignore_class_split=ignore_class_split, subset=subset, dtype=self.dtype)

    def flow_from_directory(self, directory, target_size=(256, 256), color_mode: str = "rgb", classes=None,
                            class_mode: str | None = "categorical", batch_size: int = 32, shuffle: bool = True,
                            seed: int | None = None, save_to_dir=None, save_prefix: str = "",
                            save_format: str = "png", follow_links: bool = False, subset: str | None = None,
                            interpolation: str = "nearest", keep_aspect_ratio: bool = False):
        """Batches of images read from ``directory/<class>/...`` files, labelled by folder, endlessly."""
        from .iterators import DirectoryIterator

        check_target_size(target_size, "flow_from_directory")
        return DirectoryIterator(directory, self, target_size=target_size, color_mode=color_mode, classes=classes,
                                 class_mode=class_mode, batch_size=batch_size, shuffle=shuffle, seed=seed,
                                 data_format=self.data_format, save_to_dir=save_to_dir, save_prefix=save_prefix,
                                 save_format=save_format, follow_links=follow_links, subset=subset,
                                 interpolation=interpolation, keep_aspect_ratio=keep_aspect_ratio,
                                 dtype=self.dtype)

    # ------------------------------------------------------------------ normalisation
    def standardize(self, x: np.ndarray) -> np.ndarray:
        """The normalisation steps of the module docstring, on one image or a batch; returns a new array."""
        x = np.array(x, dtype=np.result_type(np.asarray(x).dtype, self.dtype), copy=True)
        if self.preprocessing_function:
            x = self.preprocessing_function(x)
        if self.rescale:
            x *= self.rescale
        if self.samplewise_center:
            x -= np.mean(x, keepdims=True)
        if self.samplewise_std_normalization:
            x /= np.std(x, keepdims=True) + 1e-6
        if self.featurewise_center:
            if self.mean is not None:
                x -= self.mean
            else:
                warnings.warn("ImageDataGenerator: featurewise_center is set but fit() was never called on "
                              "training data; no centering was applied", stacklevel=2)
        if self.featurewise_std_normalization:
            if self.std is not None:
                x /= self.std + 1e-6
            else:
                warnings.warn("ImageDataGenerator: featurewise_std_normalization is set but fit() was never "
                              "called on training data; no scaling was applied", stacklevel=2)
        if self.zca_whitening:
            if self.zca_whitening_matrix is not None:
                flat = x.reshape(-1, int(np.prod(x.shape[-3:])))
                x = np.reshape(flat @ self.zca_whitening_matrix, x.shape)
            else:
                warnings.warn("ImageDataGenerator: zca_whitening is set but fit() was never called on training "
                              "data; no whitening was applied", stacklevel=2)
        return x

    def fit(self, x, augment: bool = False, rounds: int = 1, seed: int | None = None) -> None:
        """Per-channel mean ``μ`` and std ``σ`` (and the ZCA matrix) of ``x`` (N, rows, cols, channels).

        ``rescale`` is applied first; with ``augment`` the statistics are taken over ``rounds`` randomly
        transformed copies. ``W = U diag(√N / (s + ε)) Uᵀ`` from the SVD ``x_flatᵀ = U diag(s) Vᵀ``.
        """
        who = "ImageDataGenerator.fit"
        x = np.array(x, dtype=self.dtype, copy=True)
        if x.ndim != 4:
            raise ValueError(f"{who}: expected a batch of images of rank 4, got shape {x.shape}")
        if x.shape[self.channel_axis] not in (1, 3, 4):
            warnings.warn(f"{who}: expected 1, 3 or 4 channels on axis {self.channel_axis} ({self.data_format}), "
                          f"got shape {x.shape}", stacklevel=2)
        if self.rescale:
            x *= self.rescale
        if augment:
            rng = make_rng(seed)
            x = np.stack([self._transform(image, self._draw(image.shape, rng)) for _ in range(rounds)
                          for image in x]).astype(self.dtype, copy=False)
        axes = (0, self.row_axis, self.col_axis)
        broadcast = [1, 1, 1]
        broadcast[self.channel_axis - 1] = x.shape[self.channel_axis]
        if self.featurewise_center:
            self.mean = np.reshape(np.mean(x, axis=axes), broadcast)
            x -= self.mean
        if self.featurewise_std_normalization:
            self.std = np.reshape(np.std(x, axis=axes), broadcast)
            x /= self.std + 1e-6
        if self.zca_whitening:
            n = len(x)
            u, s, _ = np.linalg.svd(np.reshape(x, (n, -1)).T, full_matrices=False)
            self.zca_whitening_matrix = (u * (np.sqrt(n) / (s + self.zca_epsilon))).dot(u.T)

    # ------------------------------------------------------------------ transforms
    def get_random_transform(self, img_shape, seed: int | None = None) -> dict:
        """Random parameters for one image of shape ``img_shape`` (module docstring); ``seed`` fixes them."""
        return self._draw(tuple(img_shape), self._rng if seed is None else make_rng(seed))

    def _shift(self, value, size: int, rng: np.random.Generator) -> float:
        if not value:
            return 0
        if isinstance(value, (int, np.integer)):
            shift = rng.integers(value) * rng.choice([-1, 1])
        elif _is_number(value):
            shift = rng.uniform(-value, value)
        else:
            shift = rng.choice(np.asarray(value)) * rng.choice([-1, 1])
        if np.max(value) < 1:
            shift *= size
        return float(shift)

    def _draw(self, img_shape: tuple, rng: np.random.Generator) -> dict:
        theta = rng.uniform(-self.rotation_range, self.rotation_range) if self.rotation_range else 0
        tx = self._shift(self.height_shift_range, img_shape[self.row_axis - 1], rng)
        ty = self._shift(self.width_shift_range, img_shape[self.col_axis - 1], rng)
        shear = rng.uniform(-self.shear_range, self.shear_range) if self.shear_range else 0
        if self.zoom_range[0] == 1 and self.zoom_range[1] == 1:
            zx, zy = 1, 1
        else:
            zx, zy = rng.uniform(self.zoom_range[0], self.zoom_range[1], 2)
        return {
            "theta": theta,
            "tx": tx,
            "ty": ty,
            "shear": shear,
            "zx": zx,
            "zy": zy,
            "flip_horizontal": bool(rng.random() < 0.5) and self.horizontal_flip,
            "flip_vertical": bool(rng.random() < 0.5) and self.vertical_flip,
            "channel_shift_intensity": (rng.uniform(-self.channel_shift_range, self.channel_shift_range)
                                        if self.channel_shift_range != 0 else None),
            "brightness": (rng.uniform(self.brightness_range[0], self.brightness_range[1])
                           if self.brightness_range is not None else None),
        }

    def apply_transform(self, x: np.ndarray, transform_parameters: dict) -> np.ndarray:
        """One image transformed by explicit parameters (the keys of :meth:`get_random_transform`; missing =
        neutral): affine warp, channel shift, horizontal flip, vertical flip, brightness. Returns a new array."""
        x = np.asarray(x)
        if x.ndim != 3:
            raise ValueError(f"ImageDataGenerator.apply_transform: expected one image of rank 3, got shape {x.shape}")
        unknown = set(transform_parameters) - {"theta", "tx", "ty", "shear", "zx", "zy", "flip_horizontal",
                                               "flip_vertical", "channel_shift_intensity", "brightness"}
        if unknown:
            raise ValueError(f"ImageDataGenerator.apply_transform: unknown transform parameters {sorted(unknown)}")
        out = self._transform(x, transform_parameters)
        return out.copy() if np.shares_memory(out, x) else out

    def _transform(self, x: np.ndarray, p: dict) -> np.ndarray:
        row, col, channel = self.row_axis - 1, self.col_axis - 1, self.channel_axis - 1
        x = affine.apply_affine_transform(x, p.get("theta", 0), p.get("tx", 0), p.get("ty", 0), p.get("shear", 0),
                                          p.get("zx", 1), p.get("zy", 1), row_axis=row, col_axis=col,
                                          channel_axis=channel, fill_mode=self.fill_mode, cval=self.cval,
                                          order=self.interpolation_order)
        if p.get("channel_shift_intensity") is not None:
            x = affine.apply_channel_shift(x, p["channel_shift_intensity"], channel)
        if p.get("flip_horizontal", False):
            x = affine.flip_axis(x, col)
        if p.get("flip_vertical", False):
            x = affine.flip_axis(x, row)
        if p.get("brightness") is not None:
            x = affine.apply_brightness_shift(x, p["brightness"], scale=False, channel_axis=channel)
        return x

    def random_transform(self, x: np.ndarray, seed: int | None = None) -> np.ndarray:
        """``apply_transform(x, get_random_transform(x.shape, seed))``."""
        return self.apply_transform(x, self.get_random_transform(np.shape(x), seed))


__all__ = ["ImageDataGenerator"]
