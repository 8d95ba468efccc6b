"""Image files <-> arrays: ``load_img``, ``img_to_array``, ``array_to_img``, ``save_img`` (Keras's names).

Reading and writing image files needs Pillow, an optional extra: ``pip install 'tinynn[images]'``. Without it
these functions raise an ``ImportError`` that says so; everything else in tinynn works without Pillow
(``ImageDataGenerator.flow`` on arrays included).
"""

from __future__ import annotations

import io
import os
import pathlib
import tempfile

import numpy as np

from ... import config

PILLOW_MISSING = ("reading and writing image files needs Pillow, which is not installed: "
                  "pip install 'tinynn[images]'   (or: pip install pillow)")
INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "hamming", "box", "lanczos")
COLOR_MODES = ("grayscale", "rgb", "rgba")
DATA_FORMATS = ("channels_last", "channels_first")


def pil_image():
    """``PIL.Image``, or an ImportError naming the ``tinynn[images]`` extra."""
    try:
        from PIL import Image
    except ImportError as err:
        raise ImportError(PILLOW_MISSING) from err
    return Image


def standardize_data_format(data_format, who: str) -> str:
    if data_format is None:
        return "channels_last"
    if data_format not in DATA_FORMATS:
        raise ValueError(f"{who}: data_format must be 'channels_last' or 'channels_first', got {data_format!r}")
    return data_format


def check_color_mode(color_mode, who: str) -> str:
    if color_mode not in COLOR_MODES:
        raise ValueError(f"{who}: color_mode must be one of {', '.join(COLOR_MODES)}, got {color_mode!r}")
    return color_mode


def check_interpolation(interpolation, who: str) -> str:
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"{who}: interpolation must be one of {', '.join(INTERPOLATIONS)}, got {interpolation!r}")
    return interpolation


def check_target_size(target_size, who: str) -> tuple[int, int] | None:
    if target_size is None:
        return None
    try:
        height, width = target_size
        ok = all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in (height, width))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"{who}: target_size must be (height, width), two positive integers, got {target_size!r}")
    return int(height), int(width)


def load_img(path, color_mode: str = "rgb", target_size: tuple[int, int] | None = None,
             interpolation: str = "nearest", keep_aspect_ratio: bool = False):
    """A Pillow image from ``path``, converted to ``color_mode`` and resized to ``target_size`` (height, width).

    As Keras: "grayscale" keeps 8/16/32-bit grayscale images as they are and converts others to 8-bit ``L``;
    ``keep_aspect_ratio`` crops the centre to the target's aspect ratio before resizing. The file is read
    into memory and closed. A file that is not a readable image raises a ``ValueError`` naming it.
    """
    who = "load_img"
    check_color_mode(color_mode, who)
    size = check_target_size(target_size, who)
    check_interpolation(interpolation, who)
    image_module = pil_image()
    if isinstance(path, io.BytesIO):
        source, name = path, "<BytesIO>"
    elif isinstance(path, (str, bytes, os.PathLike)):
        name = os.fsdecode(path)
        with open(name, "rb") as handle:
            source = io.BytesIO(handle.read())
    else:
        raise ValueError(f"{who}: path must be a file path or an io.BytesIO, got {type(path).__name__}")
    try:
        img = image_module.open(source)
        img.load()
    except Exception as err:  # Pillow raises UnidentifiedImageError, OSError, SyntaxError, ... on bad files
        raise ValueError(f"{who}: cannot read {name!r} as an image ({type(err).__name__}: {err})") from err
    if color_mode == "grayscale":
        if img.mode not in ("L", "I;16", "I"):
            img = img.convert("L")
    elif color_mode == "rgba":
        if img.mode != "RGBA":
            img = img.convert("RGBA")
    elif img.mode != "RGB":
        img = img.convert("RGB")
    if size is not None:
        width_height = (size[1], size[0])
        if img.size != width_height:
            resample = getattr(getattr(image_module, "Resampling", image_module), interpolation.upper())
            box = None
            if keep_aspect_ratio:
                width, height = img.size
                crop_height = min(height, (width * size[0]) // size[1])
                crop_width = min(width, (height * size[1]) // size[0])
                top, left = (height - crop_height) // 2, (width - crop_width) // 2
                box = (left, top, left + crop_width, top + crop_height)
            img = img.resize(width_height, resample, box=box)
    return img


def img_to_array(img, data_format: str | None = None, dtype=None) -> np.ndarray:
    """A Pillow image (or any array-like) -> a float array ``(rows, cols, channels)`` (channels first if asked)."""
    data_format = standardize_data_format(data_format, "img_to_array")
    x = np.asarray(img, dtype=dtype or config.floatx())
    if x.ndim == 2:
        x = x[:, :, None]
    elif x.ndim != 3:
        raise ValueError(f"img_to_array: expected an image of rank 2 or 3, got shape {x.shape}")
    if data_format == "channels_first":
        x = x.transpose(2, 0, 1)
    return np.array(x, copy=True) if isinstance(img, np.ndarray) and np.shares_memory(x, img) else x


def array_to_img(x, data_format: str | None = None, scale: bool = True, dtype=None):
    """An array ``(rows, cols, 1|3|4)`` -> a Pillow image (L, RGB, RGBA); ``scale`` stretches it to [0, 255].

    Values are truncated to 8 bits (``astype('uint8')``) as Keras does; a one-channel image with values above
    255 after scaling becomes a 32-bit ``I`` image.
    """
    who = "array_to_img"
    data_format = standardize_data_format(data_format, who)
    image_module = pil_image()
    x = np.asarray(x, dtype=dtype or config.floatx())
    if x.ndim != 3:
        raise ValueError(f"{who}: expected one image of rank 3, got shape {x.shape}")
    if data_format == "channels_first":
        x = x.transpose(1, 2, 0)
    if scale:
        x = x - np.min(x)
        top = np.max(x)
        if top != 0:
            x = x / top
        x = x * 255
    channels = x.shape[2]
    if channels == 4:
        return image_module.fromarray(x.astype("uint8"), "RGBA")
    if channels == 3:
        return image_module.fromarray(x.astype("uint8"), "RGB")
    if channels == 1:
        if np.max(x) > 255:
            return image_module.fromarray(x[:, :, 0].astype("int32"), "I")
        return image_module.fromarray(x[:, :, 0].astype("uint8"), "L")
    raise ValueError(f"{who}: images have 1, 3 or 4 channels, got {channels} (shape {x.shape})")


def save_img(path, x, data_format: str | None = None, file_format: str | None = None, scale: bool = True,
             **kwargs) -> None:
    """Write the array ``x`` as an image file; the format comes from the suffix unless ``file_format`` is given.

    A file path is written atomically (a temporary file in the same folder, then ``os.replace``); an RGBA image
    saved as JPEG is converted to RGB.
    """
    if file_format is None and isinstance(path, (str, os.PathLike)):
        file_format = pathlib.Path(path).suffix[1:].lower() or None
    if file_format is None:
        raise ValueError(f"save_img: cannot tell the image format of {path!r}; pass file_format='png' (or jpeg, ...)")
    file_format = "jpeg" if file_format.lower() in ("jpg", "jpeg") else file_format.lower()
    img = array_to_img(x, data_format=data_format, scale=scale)
    if img.mode == "RGBA" and file_format == "jpeg":
        img = img.convert("RGB")
    if not isinstance(path, (str, os.PathLike)):
        img.save(path, format=file_format, **kwargs)
        return
    target = pathlib.Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            img.save(handle, format=file_format, **kwargs)
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


__all__ = ["array_to_img", "img_to_array", "load_img", "save_img"]
