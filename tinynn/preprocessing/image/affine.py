r"""The geometric and colour transforms of ``ImageDataGenerator``, in NumPy/SciPy.

Geometry. Keras 2 composes one 3×3 matrix in homogeneous coordinates (each factor only when it is not the
identity; θ and the shear angle φ in degrees) in "x, y" order::

    A = R(θ) · S(tx, ty) · H(φ) · Z(zx, zy)

    R = [[cos θ, -sin θ, 0],   S = [[1, 0, tx],   H = [[1, -sin φ, 0],   Z = [[zx, 0, 0],
         [sin θ,  cos θ, 0],        [0, 1, ty],        [0,  cos φ, 0],        [0, zy, 0],
         [0,      0,     1]]        [0, 0, 1 ]]        [0,  0,     1]]        [0, 0,  1]]

    M = T(o) · A · T(-o),   T(o) = [[1, 0, o_x], [0, 1, o_y], [0, 0, 1]],   o = (h/2 - 0.5, w/2 - 0.5)

and swaps the two coordinates, ``M' = P M P``, to index arrays by (row, col). Written out in (row, col)::

    [r_in, c_in, 1]ᵀ = M' · [r, c, 1]ᵀ,   M' = T(o') · R'(θ) · S'(ty, tx) · H'(φ) · Z'(zy, zx) · T(-o')

    R' = [[cos θ, sin θ], [-sin θ, cos θ]]    S' = translation by (ty, tx)    o' = (w/2 - 0.5, h/2 - 0.5)
    H' = [[cos φ, 0], [-sin φ, 1]]            Z' = diag(zy, zx)

    out[r, c] = in(r_in, c_in)   for every channel

interpolated with a spline of ``order`` (1: bilinear) by ``scipy.ndimage.affine_transform``; points outside
the image are filled by ``fill_mode`` ("constant" with ``cval``, "nearest", "reflect", "wrap"). Consequences,
all Keras's: ``tx`` (drawn from ``height_shift_range`` × height) moves the content left by ``tx`` columns and
``ty`` up by ``ty`` rows; ``zx, zy > 1`` zoom out; ``θ = 90`` on a square image is ``np.rot90``
(``out[r, c] = in[c, w - 1 - r]``); the centre ``o'`` has its coordinates swapped, which is exact only for
square images. tinynn builds ``M'`` exactly as Keras does (same products, same order), so both give the same
pixels.

Colour: a channel shift adds ``intensity`` to every channel, clipped to the image's own [min, max]; a
brightness shift multiplies 8-bit pixel values by ``brightness`` as Pillow's ``ImageEnhance.Brightness`` does
(see :func:`apply_brightness_shift`).
"""

from __future__ import annotations

import numpy as np

FILL_MODES = ("constant", "nearest", "reflect", "wrap")


def transform_matrix_offset_center(matrix: np.ndarray, x: float, y: float) -> np.ndarray:
    """``T(o) · matrix · T(-o)`` with ``o = (x/2 - 0.5, y/2 - 0.5)``: the transform about the image centre."""
    o_x = float(x) / 2 - 0.5
    o_y = float(y) / 2 - 0.5
    offset_matrix = np.array([[1, 0, o_x], [0, 1, o_y], [0, 0, 1]])
    reset_matrix = np.array([[1, 0, -o_x], [0, 1, -o_y], [0, 0, 1]])
    return np.dot(np.dot(offset_matrix, matrix), reset_matrix)


def affine_matrix(theta: float = 0, tx: float = 0, ty: float = 0, shear: float = 0, zx: float = 1,
                  zy: float = 1) -> np.ndarray | None:
    """``A = R(θ) · S(tx, ty) · H(shear) · Z(zx, zy)`` (module docstring); None for the identity."""
    factors = []
    if theta != 0:
        t = np.deg2rad(theta)
        factors.append(np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]]))
    if tx != 0 or ty != 0:
        factors.append(np.array([[1, 0, tx], [0, 1, ty], [0, 0, 1]]))
    if shear != 0:
        s = np.deg2rad(shear)
        factors.append(np.array([[1, -np.sin(s), 0], [0, np.cos(s), 0], [0, 0, 1]]))
    if zx != 1 or zy != 1:
        factors.append(np.array([[zx, 0, 0], [0, zy, 0], [0, 0, 1]]))
    if not factors:
        return None
    matrix = factors[0]
    for factor in factors[1:]:  # left to right, as Keras multiplies them
        matrix = np.dot(matrix, factor)
    return matrix


def _check_axes(x: np.ndarray, row_axis: int, col_axis: int, channel_axis: int, who: str) -> None:
    if sorted((row_axis, col_axis, channel_axis)) != [0, 1, 2]:
        raise ValueError(f"{who}: row_axis, col_axis and channel_axis must be 0, 1, 2 in some order, got "
                         f"{row_axis}, {col_axis}, {channel_axis}")
    if channel_axis not in (0, 2):
        raise ValueError(f"{who}: channels must be the first or the last axis, got channel_axis={channel_axis}")
    if x.ndim != 3:
        raise ValueError(f"{who}: expected one image of rank 3 (rows, cols, channels), got shape {x.shape}")


def apply_affine_transform(x: np.ndarray, theta: float = 0, tx: float = 0, ty: float = 0, shear: float = 0,
                           zx: float = 1, zy: float = 1, row_axis: int = 1, col_axis: int = 2,
                           channel_axis: int = 0, fill_mode: str = "nearest", cval: float = 0.0,
                           order: int = 1) -> np.ndarray:
    """One image resampled through ``M'`` (module docstring); the input itself when every parameter is neutral.

    Axis defaults are Keras's (channels first); ``ImageDataGenerator`` passes its own. Returns the input's dtype.
    """
    who = "apply_affine_transform"
    x = np.asarray(x)
    _check_axes(x, row_axis, col_axis, channel_axis, who)
    if fill_mode not in FILL_MODES:
        raise ValueError(f"{who}: fill_mode must be one of {', '.join(FILL_MODES)}, got {fill_mode!r}")
    matrix = affine_matrix(theta, tx, ty, shear, zx, zy)
    if matrix is None:
        return x
    from scipy import ndimage  # imported here: `import tinynn` stays light

    h, w = x.shape[row_axis], x.shape[col_axis]
    matrix = transform_matrix_offset_center(matrix, h, w)
    if col_axis > row_axis:  # P M P: Keras composes in (x, y) order, arrays index (row, col)
        matrix[:, [0, 1]] = matrix[:, [1, 0]]
        matrix[[0, 1]] = matrix[[1, 0]]
    linear, offset = matrix[:2, :2], matrix[:2, 2]
    channels = np.moveaxis(x, channel_axis, 0)
    out = np.stack([ndimage.affine_transform(plane, linear, offset, order=order, mode=fill_mode, cval=cval)
                    for plane in channels], axis=0)
    return np.moveaxis(out, 0, channel_axis)


def flip_axis(x: np.ndarray, axis: int) -> np.ndarray:
    """``x`` reversed along ``axis`` (a view)."""
    return np.flip(np.asarray(x), axis)


def apply_channel_shift(x: np.ndarray, intensity: float, channel_axis: int = 0) -> np.ndarray:
    """``clip(x + intensity, min(x), max(x))``: every channel shifted, clipped to the image's own range."""
    x = np.asarray(x)
    lo, hi = np.min(x), np.max(x)
    channels = [np.clip(plane + intensity, lo, hi) for plane in np.moveaxis(x, channel_axis, 0)]
    return np.moveaxis(np.stack(channels, axis=0), 0, channel_axis)


def apply_brightness_shift(x: np.ndarray, brightness: float, scale: bool = True,
                           channel_axis: int = 2) -> np.ndarray:
    """Pillow's ``ImageEnhance.Brightness(img).enhance(brightness)`` on the 8-bit image of ``x``, in NumPy.

    As Keras 2 (which goes through Pillow): ``x`` (float32) becomes 8-bit pixels ``p`` — stretched to [0, 255]
    first when ``scale`` or when ``x`` leaves [0, 255], then truncated toward 0 — and Pillow blends ``p`` with
    a black image, ``q = clip(trunc(float32(brightness) · p), 0, 255)`` (the alpha channel of a 4-channel
    image is kept). The result is float32 ``q``; when ``x`` had to be stretched and ``scale`` is False it is
    mapped back, ``q / 255 · (max x - min x) + min x``. Images with 1, 3 or 4 channels only, as Pillow.
    """
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 3 or x.shape[channel_axis] not in (1, 3, 4):
        raise ValueError(f"apply_brightness_shift: expected one image with 1, 3 or 4 channels on axis "
                         f"{channel_axis}, got shape {x.shape}")
    x = np.moveaxis(x, channel_axis, -1)
    x_min, x_max = np.min(x), np.max(x)
    stretch = bool(x_min < 0 or x_max > 255)
    pixels = x
    if stretch or scale:
        pixels = x - x_min
        top = np.max(pixels)
        if top != 0:
            pixels = pixels / top
        pixels = pixels * 255
    p = pixels.astype(np.uint8).astype(np.float32)  # what Image.fromarray(x.astype("uint8")) holds
    q = np.clip(np.trunc(np.float32(brightness) * p), 0, 255)
    if x.shape[-1] == 4:
        q[..., 3] = p[..., 3]
    if stretch and not scale:
        q = q / 255 * (x_max - x_min) + x_min
    return np.moveaxis(q, -1, channel_axis)


__all__ = [
    "FILL_MODES",
    "affine_matrix",
    "apply_affine_transform",
    "apply_brightness_shift",
    "apply_channel_shift",
    "flip_axis",
    "transform_matrix_offset_center",
]
