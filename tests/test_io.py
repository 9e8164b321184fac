"""``dtseg.io``: header sizes are read without decoding (and without PIL's patched opener)."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from dtseg import ImageDecodeError
from dtseg.io import declared_size, load_image

IMAGE = np.random.default_rng(0).integers(0, 255, (37, 53, 3), dtype=np.uint8)


def pil_bytes(fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(IMAGE).save(buffer, fmt, **options)
    return buffer.getvalue()


@pytest.mark.parametrize("data", [
    cv2.imencode(".png", IMAGE)[1].tobytes(),
    cv2.imencode(".jpg", IMAGE)[1].tobytes(),
    cv2.imencode(".bmp", IMAGE)[1].tobytes(),
    cv2.imencode(".webp", IMAGE)[1].tobytes(),
    pil_bytes("GIF"),
    pil_bytes("WEBP", lossless=True),
    pil_bytes("JPEG", progressive=True),
], ids=["png", "jpeg", "bmp", "webp", "gif", "webp-lossless", "jpeg-progressive"])
def test_declared_size_reads_the_header(data):
    assert declared_size(data) == (53, 37)


def test_unknown_data_has_no_declared_size():
    assert declared_size(b"definitely not an image") is None
    assert declared_size(b"") is None


@pytest.mark.parametrize("ext", [".png", ".bmp", ".webp"])
def test_max_pixels_is_checked_from_the_header(ext):
    data = cv2.imencode(ext, IMAGE)[1].tobytes()
    with pytest.raises(ImageDecodeError, match="more than the limit of 1000"):
        load_image(data, max_pixels=1000)
    assert load_image(data, max_pixels=53 * 37).shape == (37, 53, 3)


def test_garbage_after_ultralytics_is_imported_is_a_clean_error():
    """ultralytics patches PIL.Image.open to pip-install plugins on unknown data; we never call it."""
    import ultralytics  # noqa: F401 - the import applies the patch

    with pytest.raises(ImageDecodeError, match="not a decodable image"):
        load_image(b"\x00\x01 not an image at all")
