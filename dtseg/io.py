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


def load_image(image: ImageLike, field: str = "image", max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """Return ``image`` as a C-contiguous RGB uint8 array ``(H, W, 3)``.

    Accepts an ``np.ndarray`` (gray ``(H, W)``, ``(H, W, 1)``, RGB ``(H, W, 3)``, RGBA
    ``(H, W, 4)``, all uint8 and already RGB-ordered), a file path, or encoded bytes
    (PNG, JPEG, ...). The caller's array is never modified; a new array is returned when
    a conversion is needed. Images over ``max_pixels`` are refused — encoded ones from their
    header, before any pixel is decoded (decompression bombs).
    """
    if isinstance(image, (bytes, bytearray, memoryview)):
        return _decode(np.frombuffer(image, np.uint8), field, "bytes", max_pixels)
    if isinstance(image, (str, PathLike)):
        path = Path(image)
        if not path.is_file():
            raise InputError(field, f"no such image file: {path}")
        return _decode(np.fromfile(path, np.uint8), field, str(path), max_pixels)
    if isinstance(image, np.ndarray):
        return _as_rgb(image, field, max_pixels)
    raise InputError(field, f"expected an RGB uint8 array, a path or bytes, got {type(image).__name__}")


def _decode(buffer: np.ndarray, field: str, source: str, max_pixels: int) -> np.ndarray:
    if buffer.size == 0:
        raise ImageDecodeError(field, f"empty image data ({source})")
    size = declared_size(buffer[: 64 * 1024].tobytes())
    if size is not None and size[0] * size[1] > max_pixels:
        raise ImageDecodeError(field, f"image is {size[0]}x{size[1]} pixels, more than the limit of {max_pixels}")
    bgr = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
    if bgr is None:
        raise ImageDecodeError(field, f"not a decodable image ({source}, {buffer.size} bytes)")
    if bgr.dtype != np.uint8:  # 16-bit PNG/TIFF: scale to 8 bits
        bgr = (bgr / (np.iinfo(bgr.dtype).max / 255.0)).round().astype(np.uint8)
    if bgr.ndim == 3 and bgr.shape[2] == 4:
        bgr = cv2.cvtColor(bgr, cv2.COLOR_BGRA2BGR)
    if bgr.ndim == 3:
        bgr = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    return _as_rgb(bgr, field, max_pixels)


def declared_size(header: bytes) -> tuple[int, int] | None:
    """``(width, height)`` declared in a PNG, JPEG, GIF, BMP or WebP header, else ``None``.

    Reads the bytes only (PIL's ``Image.open`` is not used: ultralytics replaces it
    process-wide with a version that tries to pip-install plugins on unknown data).
    """
    if header[:8] == b"\x89PNG\r\n\x1a\n" and len(header) >= 24:
        return int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")
    if header[:6] in (b"GIF87a", b"GIF89a") and len(header) >= 10:
        return int.from_bytes(header[6:8], "little"), int.from_bytes(header[8:10], "little")
    if header[:2] == b"BM" and len(header) >= 26:
        return abs(int.from_bytes(header[18:22], "little", signed=True)), abs(int.from_bytes(header[22:26], "little", signed=True))
    if header[:4] == b"RIFF" and header[8:12] == b"WEBP" and len(header) >= 30:
        return _webp_size(header)
    if header[:2] == b"\xff\xd8":
        return _jpeg_size(header)
    return None


def _webp_size(header: bytes) -> tuple[int, int] | None:
    chunk = header[12:16]
    if chunk == b"VP8X":
        return 1 + int.from_bytes(header[24:27], "little"), 1 + int.from_bytes(header[27:30], "little")
    if chunk == b"VP8L":
        bits = int.from_bytes(header[21:25], "little")
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    if chunk == b"VP8 ":
        return int.from_bytes(header[26:28], "little") & 0x3FFF, int.from_bytes(header[28:30], "little") & 0x3FFF
    return None


_JPEG_FRAME_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg_size(header: bytes) -> tuple[int, int] | None:
    """Walk the JPEG markers to the first start-of-frame segment."""
    i = 2
    while i + 9 < len(header):
        if header[i] != 0xFF:
            i += 1
            continue
        marker, length = header[i + 1], int.from_bytes(header[i + 2 : i + 4], "big")
        if marker in _JPEG_FRAME_MARKERS:
            return int.from_bytes(header[i + 7 : i + 9], "big"), int.from_bytes(header[i + 5 : i + 7], "big")
        i += 2 + length
    return None


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
        raise InputError(field, f"image is {array.shape[1]}x{array.shape[0]} pixels, more than the limit of {max_pixels}")
    return np.ascontiguousarray(array)


def content_hash(image: np.ndarray) -> str:
    """A short hex digest of an RGB image's shape and pixels (the default ``image_id``)."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(repr(image.shape).encode())
    digest.update(np.ascontiguousarray(image).data)
    return digest.hexdigest()
