"""Image loading at the boundary: everything becomes RGB uint8 ``(H, W, 3)`` once, here."""

from __future__ import annotations

import hashlib
from os import PathLike
from pathlib import Path
from typing import TypeAlias

import cv2
import numpy as np

from dtseg.errors import ImageDecodeError, InputError
from dtseg.image_size import SUPPORTED_FORMATS, declared_size

ImageLike: TypeAlias = np.ndarray | str | PathLike | bytes | bytearray | memoryview

#: Largest image accepted, in pixels (a decompression-bomb guard; 1e8 ~ 10000 x 10000).
MAX_IMAGE_PIXELS = 100_000_000


def load_image(image: ImageLike, field: str = "image", max_pixels: int = MAX_IMAGE_PIXELS,
               auto_orient: bool = True) -> np.ndarray:
    """Return ``image`` as a C-contiguous RGB uint8 array ``(H, W, 3)``.

    Accepts an ``np.ndarray`` (gray ``(H, W)``, ``(H, W, 1)``, RGB ``(H, W, 3)``, RGBA
    ``(H, W, 4)``, all uint8 and already RGB-ordered), a file path, or encoded bytes
    (``SUPPORTED_FORMATS``). The caller's array is never modified; a new array is returned when
    a conversion is needed. Images over ``max_pixels`` are refused — encoded ones from their
    header, before any pixel is decoded (decompression bombs). Encoded images are turned
    upright by their EXIF orientation (what viewers show) unless ``auto_orient`` is false;
    16-bit samples are scaled to 8 bits; alpha is dropped.
    """
    if isinstance(image, (bytes, bytearray, memoryview)):
        return _decode(np.frombuffer(image, np.uint8), field, "bytes", max_pixels, auto_orient)
    if isinstance(image, (str, PathLike)):
        path = Path(image)
        if not path.is_file():
            raise InputError(field, f"no such image file: {path}")
        return _decode(np.fromfile(path, np.uint8), field, str(path), max_pixels, auto_orient)
    if isinstance(image, np.ndarray):
        return _as_rgb(image, field, max_pixels)
    raise InputError(field, f"expected an RGB uint8 array, a path or bytes, got {type(image).__name__}")


def _decode(buffer: np.ndarray, field: str, source: str, max_pixels: int, auto_orient: bool) -> np.ndarray:
    if buffer.size == 0:
        raise ImageDecodeError(field, f"empty image data ({source})")
    size = declared_size(buffer.data)
    if size is None:
        raise ImageDecodeError(field, f"not a decodable image ({source}, {buffer.size} bytes): "
                                      f"supported formats are {SUPPORTED_FORMATS}")
    if size[0] * size[1] > max_pixels:
        raise ImageDecodeError(field, f"image is {size[0]}x{size[1]} pixels, more than the limit of {max_pixels}")
    # Not IMREAD_UNCHANGED: that flag skips EXIF orientation. ANYDEPTH keeps 16 bits, ANYCOLOR gray.
    flags = cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR | (0 if auto_orient else cv2.IMREAD_IGNORE_ORIENTATION)
    bgr = cv2.imdecode(buffer, flags)
    if bgr is None:
        raise ImageDecodeError(field, f"not a decodable image ({source}, {buffer.size} bytes)")
    if bgr.dtype == np.uint16:  # x * 255 / 65535, rounded, straight into uint8 (no float copy)
        bgr = cv2.convertScaleAbs(bgr, alpha=255.0 / 65535.0)
    elif bgr.dtype != np.uint8:
        raise ImageDecodeError(field, f"{bgr.dtype} samples are not supported ({source}): "
                                      "8- or 16-bit integer images are")
    if bgr.ndim == 3 and bgr.shape[2] == 4:
        bgr = cv2.cvtColor(bgr, cv2.COLOR_BGRA2BGR)
    if bgr.ndim == 3:
        bgr = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    return _as_rgb(bgr, field, max_pixels)


def _as_rgb(array: np.ndarray, field: str, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    if array.dtype != np.uint8:
        raise InputError(field, f"expected dtype uint8, got {array.dtype} (scale to 0..255 and cast first)")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    elif array.ndim == 3 and array.shape[2] == 4:
        array = array[:, :, :3]
    elif not (array.ndim == 3 and array.shape[2] == 3):
        raise InputError(field, f"expected shape (H, W), (H, W, 3) or (H, W, 4), got {array.shape}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise InputError(field, f"empty image of shape {array.shape}")
    if array.shape[0] * array.shape[1] > max_pixels:
        raise InputError(field, f"image is {array.shape[1]}x{array.shape[0]} pixels, "
                                f"more than the limit of {max_pixels}")
    return np.ascontiguousarray(array)


def is_url(source: str) -> bool:
    """Whether ``source`` is an http(s) URL (any case), not a path or base64 data."""
    return source.lower().startswith(("http://", "https://"))


def content_hash(image: np.ndarray) -> str:
    """A short hex digest of an RGB image's shape and pixels (the default ``image_id``)."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(repr(image.shape).encode())
    digest.update(np.ascontiguousarray(image).data)
    return digest.hexdigest()
