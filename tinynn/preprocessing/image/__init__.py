"""Images: files <-> arrays and Keras 2's ``ImageDataGenerator`` (augmentation and batching), in NumPy/SciPy.

``from tinynn.preprocessing import image`` replaces ``from keras.preprocessing import image``;
``from tinynn.preprocessing.image import ImageDataGenerator`` replaces the Keras 2 import. Reading image
files needs Pillow (``pip install 'tinynn[images]'``); the transforms themselves need only NumPy and SciPy.
"""

from .affine import (
    apply_affine_transform,
    apply_brightness_shift,
    apply_channel_shift,
    flip_axis,
    transform_matrix_offset_center,
)
from .files import array_to_img, img_to_array, load_img, save_img
from .generator import ImageDataGenerator
from .iterators import DirectoryIterator, Iterator, NumpyArrayIterator

__all__ = [
    "DirectoryIterator",
    "ImageDataGenerator",
    "Iterator",
    "NumpyArrayIterator",
    "apply_affine_transform",
    "apply_brightness_shift",
    "apply_channel_shift",
    "array_to_img",
    "flip_axis",
    "img_to_array",
    "load_img",
    "save_img",
    "transform_matrix_offset_center",
]
