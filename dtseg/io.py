"""Image loading at the boundary: everything becomes RGB uint8 ``(H, W, 3)`` once, here."""

from __future__ import annotations

import hashlib
from os import PathLike
from pathlib import Path
from typing import Union

import cv2
import numpy as np

from dtseg.errors import ImageDecodeError, InputError

ImageLike = Union[np.ndarray, str, PathLike, bytes, bytearray, memoryview]

#: Largest image accepted, in pixels (a decompression-bomb guard; 1e8 ~ 10000 x 10000).
MAX_IMAGE_PIXELS = 100_000_000


def load_image(image: ImageLike, field: str = "image") -> np.ndarray:
    """Return ``image`` as a C-contiguous RGB uint8 array ``(H, W, 3)``.

    Accepts an ``np.ndarray`` (gray ``(H, W)``, ``(H, W, 1)``, RGB ``(H, W, 3)``, RGBA
    ``(H, W, 4)``, all uint8 and already RGB-ordered), a file path, or encoded bytes
    (PNG, JPEG, ...). The caller's array is never modified; a new array is returned when
    a conversion is needed.
    """
    if isinstance(image, (bytes, bytearray, memoryview)):
        return _decode(np.frombuffer(image, np.uint8), field, "bytes")
    if isinstance(image, (str, PathLike)):
        path = Path(image)
        if not path.is_file():
            raise InputError(field, f"no such image file: {path}")
        return _decode(np.fromfile(path, np.uint8), field, str(path))
    if isinstance(image, np.ndarray):
        return _as_rgb(image, field)
    raise InputError(field, f"expected an RGB uint8 array, a path or bytes, got {type(image).__name__}")


def _decode(buffer: np.ndarray, field: str, source: str) -> np.ndarray:
    if buffer.size == 0:
        raise ImageDecodeError(field, f"empty image data ({source})")
    _check_header_size(buffer, field)
    bgr = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
    if bgr is None:
        raise ImageDecodeError(field, f"not a decodable image ({source}, {buffer.size} bytes)")
    if bgr.dtype != np.uint8:  # 16-bit PNG/TIFF: scale to 8 bits
        bgr = (bgr / (np.iinfo(bgr.dtype).max / 255.0)).round().astype(np.uint8)
    if bgr.ndim == 3 and bgr.shape[2] == 4:
        return cv2.cvtColor(bgr, cv2.COLOR_BGRA2RGB)
    if bgr.ndim == 3:
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    return _as_rgb(bgr, field)


def _check_header_size(buffer: np.ndarray, field: str) -> None:
    """Refuse images whose declared size exceeds MAX_IMAGE_PIXELS before decoding them."""
    ok, width, height = _peek_size(buffer)
    if ok and width * height > MAX_IMAGE_PIXELS:
        raise ImageDecodeError(
            field, f"image is {width}x{height} pixels, more than the limit of {MAX_IMAGE_PIXELS}"
        )


def _peek_size(buffer: np.ndarray) -> tuple[bool, int, int]:
    data = buffer[:64 * 1024].tobytes()
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return True, int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data[:2] == b"\xff\xd8":  # JPEG: walk the markers to the first SOFn
        i = 2
        while i + 9 < len(data):
            if data[i] != 0xFF:
                i += 1
                continue
            marker = data[i + 1]
            length = int.from_bytes(data[i + 2:i + 4], "big")
            if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
                return True, int.from_bytes(data[i + 7:i + 9], "big"), int.from_bytes(data[i + 5:i + 7], "big")
            i += 2 + length
    return False, 0, 0


def _as_rgb(array: np.ndarray, field: str) -> np.ndarray:
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
    if array.shape[0] * array.shape[1] > MAX_IMAGE_PIXELS:
        raise InputError(field, f"image has {array.shape[0] * array.shape[1]} pixels, more than {MAX_IMAGE_PIXELS}")
    return np.ascontiguousarray(array)


def content_hash(image: np.ndarray) -> str:
    """A short hex digest of an RGB image's shape and pixels (the default ``image_id``)."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(repr(image.shape).encode())
    digest.update(np.ascontiguousarray(image).data)
    return digest.hexdigest()
