"""``dtseg.io``: header sizes are read without decoding (and without PIL's patched opener), 16-bit
images scale without float copies, EXIF orientation is applied at this one boundary."""

from __future__ import annotations

import io
import struct
import tracemalloc

import cv2
import numpy as np
import pytest
from PIL import Image

from dtseg import ImageDecodeError
from dtseg.io import declared_size, is_url, load_image

IMAGE = np.random.default_rng(0).integers(0, 255, (37, 53, 3), dtype=np.uint8)


def pil_bytes(fmt: str, mode: str = "RGB", **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(IMAGE).convert(mode).save(buffer, fmt, **options)
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


# -- TIFF, PNM and the formats without a size check ------------------------------------------------
def tiff_declaring(width: int, height: int, order: str = "<") -> bytes:
    """A hand-made uncompressed 8-bit gray TIFF whose directory declares ``width`` x ``height``
    but whose one strip holds 16 bytes: what a decompression bomb's header looks like."""
    magic = b"II" if order == "<" else b"MM"
    tags = [(256, 4, width), (257, 4, height), (258, 3, 8), (259, 3, 1), (262, 3, 1), (273, 4, 0),
            (277, 3, 1), (278, 4, height), (279, 4, 16)]
    ifd_size = 2 + 12 * len(tags) + 4
    strip = 8 + ifd_size
    entries = b"".join(struct.pack(order + "HHI", tag, kind, 1)
                       + (struct.pack(order + "HH", value, 0) if kind == 3
                          else struct.pack(order + "I", strip if tag == 273 else value))
                       for tag, kind, value in tags)
    header = struct.pack(order + "HI", 42, 8) + struct.pack(order + "H", len(tags))
    return magic + header + entries + b"\0" * 4 + bytes(16)


@pytest.mark.parametrize("data", [
    pil_bytes("TIFF"),
    pil_bytes("TIFF", compression="tiff_deflate"),
    pil_bytes("TIFF", big_tiff=True),
    pil_bytes("PPM"),
    pil_bytes("PPM", mode="L"),
    b"P6\n# a comment\n53 37\n255\n" + IMAGE.tobytes(),
], ids=["tiff", "tiff-deflate", "bigtiff", "ppm", "pgm", "ppm-comment"])
def test_declared_size_reads_tiff_and_pnm_headers(data):
    assert declared_size(data) == (53, 37)
    assert load_image(data).shape == (37, 53, 3)


def test_tiff_size_in_either_byte_order_and_a_tiff_bomb_is_refused_before_decoding():
    for order in "<>":
        assert declared_size(tiff_declaring(20_000, 20_000, order)) == (20_000, 20_000)
    with pytest.raises(ImageDecodeError, match="20000x20000 pixels, more than the limit"):
        load_image(tiff_declaring(20_000, 20_000))


def test_formats_without_a_readable_size_are_refused():
    ok, hdr = cv2.imencode(".hdr", IMAGE.astype(np.float32) / 255)
    assert ok and cv2.imdecode(hdr, cv2.IMREAD_UNCHANGED) is not None  # OpenCV could decode it...
    with pytest.raises(ImageDecodeError, match="supported formats are PNG, JPEG"):
        load_image(hdr.tobytes())  # ...but its size cannot be checked first, so it is refused


# -- 16-bit images -------------------------------------------------------------------------------------
def test_16_bit_images_scale_to_8_bits_without_float_copies():
    rng = np.random.default_rng(1)
    deep = rng.integers(0, 65536, (600, 500, 3), dtype=np.uint16)
    expected = np.round(deep[:, :, ::-1] / 257.0).astype(np.uint8)  # BGR file -> RGB
    for ext in (".png", ".tiff"):
        data = cv2.imencode(ext, deep)[1].tobytes()
        tracemalloc.start()
        try:
            rgb = load_image(data)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        np.testing.assert_array_equal(rgb, expected)
        # decoded uint16 + uint8 copies: ~2.5x the 16-bit pixels; a float64 copy alone is 4x
        assert peak < 3 * deep.nbytes, f"{ext}: peak {peak / 1e6:.1f} MB for {deep.nbytes / 1e6:.1f} MB of samples"


def test_float_samples_are_a_clean_error():
    data = cv2.imencode(".tiff", IMAGE.astype(np.float32))[1].tobytes()
    with pytest.raises(ImageDecodeError, match="float32 samples are not supported"):
        load_image(data)


# -- EXIF orientation ---------------------------------------------------------------------------------
def orientation6(array: np.ndarray, fmt: str = "JPEG") -> bytes:
    """``array`` saved with EXIF orientation 6: viewers rotate it 90 degrees clockwise."""
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, fmt, exif=exif.tobytes(), **({"quality": 95} if fmt == "JPEG" else {}))
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_exif_orientation_6_is_applied_at_the_loading_boundary(tmp_path, fmt):
    stored = np.zeros((48, 64, 3), np.uint8)  # H=48, W=64 as stored
    stored[4:12, 8:20] = 255  # a white block at rows 4..11, columns 8..19 of the stored pixels
    data = orientation6(stored, fmt)
    path = tmp_path / f"phone.{fmt.lower()}"
    path.write_bytes(data)
    for source in (data, path):
        upright = load_image(source)
        as_stored = load_image(source, auto_orient=False)
        assert upright.shape == (64, 48, 3) and as_stored.shape == (48, 64, 3)
        np.testing.assert_array_equal(upright, np.rot90(as_stored, k=-1))  # clockwise
        # stored (row r, col c) is shown at (row c, col H - 1 - r): the block at rows 8..19, cols 36..43
        bright = np.argwhere(upright.mean(axis=2) > 128)
        assert bright[:, 0].min() == 8 and bright[:, 0].max() == 19
        assert bright[:, 1].min() == 48 - 12 and bright[:, 1].max() == 48 - 1 - 4


def test_a_jpeg_frame_header_far_from_the_start_is_found_and_hostile_walks_are_bounded():
    jpeg = cv2.imencode(".jpg", IMAGE)[1].tobytes()
    comment = b"\xff\xfe" + (65535).to_bytes(2, "big") + bytes(65533)  # 64 KiB COM segments before the frame
    padded = jpeg[:2] + comment * 3 + jpeg[2:]
    assert declared_size(padded) == (53, 37)
    assert load_image(padded).shape == (37, 53, 3)
    tiny_segments = b"\xff\xd8" + b"\xff\xe0\x00\x02" * 1_000_000 + jpeg[2:]  # 4 MB of empty APP0 segments
    assert declared_size(tiny_segments) is None
    no_frame = b"\xff\xd8" + bytes(5_000_000)  # no marker at all
    assert declared_size(no_frame) is None


def test_is_url_knows_http_and_https_in_any_case_and_nothing_else():
    assert is_url("http://a/b.jpg") and is_url("HTTPS://a/b.jpg")
    assert not any(is_url(s) for s in ("photo.jpg", "/data/http/x.jpg", "ftp://a/b.jpg", "data:image/png;base64,AA"))
