"""Image inputs in every accepted form, and a clear error for every bad input."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from dtseg import ImageDecodeError, ImageNotEmbeddedError, InputError, PromptError
from dtseg.io import content_hash, load_image
from dtseg.prompts import Prompts
from tests.tiny import make_engine


def encode(image: np.ndarray, ext: str = ".png") -> bytes:
    ok, buffer = cv2.imencode(ext, cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    assert ok
    return buffer.tobytes()


def test_path_bytes_and_array_give_the_same_pixels(tmp_path, image):
    path = tmp_path / "im.png"
    path.write_bytes(encode(image))
    np.testing.assert_array_equal(load_image(path), image)
    np.testing.assert_array_equal(load_image(str(path)), image)
    np.testing.assert_array_equal(load_image(encode(image)), image)


def test_gray_and_rgba_are_converted_and_the_input_is_untouched(image):
    gray = image[:, :, 0].copy()
    out = load_image(gray)
    assert out.shape == image.shape and (out[:, :, 1] == gray).all()
    rgba = np.dstack([image, np.full(image.shape[:2], 7, np.uint8)])
    before = rgba.copy()
    np.testing.assert_array_equal(load_image(rgba), image)
    np.testing.assert_array_equal(rgba, before)
    _ok, png = cv2.imencode(".png", cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    np.testing.assert_array_equal(load_image(png.tobytes()), image)


def test_sixteen_bit_png_is_scaled(tmp_path):
    wide = (np.arange(12, dtype=np.uint16).reshape(3, 4) * 5000)
    _ok, png = cv2.imencode(".png", wide)
    out = load_image(png.tobytes())
    assert out.dtype == np.uint8 and out.max() == round(55000 / 257)


def test_segmenting_never_modifies_the_callers_image(engine, image):
    before = image.copy()
    engine.segment_image(image, point_coords=[[10, 10]], point_labels=[1])
    np.testing.assert_array_equal(image, before)


@pytest.mark.parametrize("bad, error, field", [
    (np.zeros((0, 10, 3), np.uint8), InputError, "image"),
    (np.zeros((10, 10, 3), np.float32), InputError, "image"),
    (np.zeros((10, 10, 2), np.uint8), InputError, "image"),
    (b"", ImageDecodeError, "image"),
    (b"definitely not an image", ImageDecodeError, "image"),
    ("/no/such/file.png", InputError, "image"),
    (12345, InputError, "image"),
])
def test_bad_images(engine, bad, error, field):
    with pytest.raises(error) as info:
        engine.embed_image(bad)
    assert info.value.field == field and isinstance(info.value, ValueError)


def test_decompression_bomb_header_is_refused_before_decoding():
    header = bytearray(encode(np.zeros((8, 8, 3), np.uint8)))
    header[16:20] = (200_000).to_bytes(4, "big")  # claim 200000 x 8 ... x 200000
    header[20:24] = (200_000).to_bytes(4, "big")
    with pytest.raises(ImageDecodeError, match="limit"):
        load_image(bytes(header))


@pytest.mark.parametrize("kwargs, field", [
    (dict(point_coords=[[1, 2, 3]], point_labels=[1]), "point_coords"),
    (dict(point_coords=[[1, 2], [3, 4]], point_labels=[1]), "point_labels"),
    (dict(point_coords=[[1, 2]], point_labels=[2]), "point_labels"),
    (dict(point_coords=[[1, 2]], point_labels=[0.5]), "point_labels"),
    (dict(point_coords=[[1, 2]]), "point_labels"),
    (dict(point_labels=[1]), "point_coords"),
    (dict(point_coords=[[np.nan, 2]], point_labels=[1]), "point_coords"),
    (dict(point_coords=[[np.inf, 2]], point_labels=[1]), "point_coords"),
    (dict(point_coords=[["a", "b"]], point_labels=[1]), "point_coords"),
    (dict(boxes=[10, 10, 5, 20]), "boxes"),
    (dict(boxes=[10, 10, 20]), "boxes"),
    (dict(boxes=[[0, 0, 5, 5], [0, 0, 6, 6]], point_coords=[[1, 1]], point_labels=[1]), "boxes"),
    (dict(boxes=[0, np.nan, 5, 5]), "boxes"),
    (dict(point_coords=[[1, np.nan]], point_labels=[-1]), "point_coords"),
    (dict(point_coords=[[np.nan, np.nan]], point_labels=[1]), "labels"),
    (dict(boxes=[0, 0, 5, 5], mask_input=np.zeros((64, 64))), "mask_input"),
    (dict(boxes=[0, 0, 5, 5], mask_input=np.full((256, 256), np.nan)), "mask_input"),
    (dict(boxes=[[0, 0, 5, 5], [1, 1, 6, 6]], mask_input=np.zeros((3, 1, 256, 256))), "mask_input"),
    (dict(boxes=[0, 0, 5, 5], mask_input="latest"), "mask_input"),
])
def test_bad_prompts_name_their_field(engine, image, kwargs, field):
    engine.embed_image(image, "inputs")
    with pytest.raises(PromptError) as info:
        engine.segment_image(image_id="inputs", **kwargs)
    assert info.value.field == field, str(info.value)


@pytest.mark.parametrize("kwargs, field", [
    (dict(point_coords=[[1, 2], [3, 4]], point_labels=[[1, 0], [1]]), "point_labels"),
    (dict(point_coords=[[1, np.nan]], point_labels=[1]), "point_coords"),
    (dict(boxes=[0, 0, 5, 5], mask_input=np.zeros((64, 64))), "mask_input"),
    (dict(boxes=[[0, 0, 5, 5], [1, 1, 6, 6]], mask_input=np.zeros((3, 1, 256, 256))), "mask_input"),
    (dict(boxes=[0, 0, 5, 5], mask_input="latest"), "mask_input"),
])
def test_bad_prompts_are_refused_before_the_image_is_embedded(image, kwargs, field):
    engine = make_engine()
    with pytest.raises(PromptError) as info:
        engine.segment_image(image, **kwargs)
    assert info.value.field == field and engine.encoder_calls == 0
    with pytest.raises(PromptError):
        engine.segment(image, Prompts.from_objects([{"box": [0, 0, 5, 5]}, {}]))
    assert engine.encoder_calls == 0


def test_unknown_image_id_without_image_is_specific(engine):
    with pytest.raises(ImageNotEmbeddedError) as info:
        engine.segment_image(image_id="never-seen", point_coords=[[1, 1]], point_labels=[1])
    assert info.value.code == "image_not_embedded" and not isinstance(info.value, KeyError)


def test_neither_image_nor_id_is_an_input_error(engine):
    with pytest.raises(InputError, match="image"):
        engine.segment_image(point_coords=[[1, 1]], point_labels=[1])


@pytest.mark.parametrize("bad_id", ["", 5, "x" * 600])
def test_bad_image_ids(engine, image, bad_id):
    with pytest.raises(InputError, match="image_id"):
        engine.embed_image(image, bad_id)


def test_content_hash_depends_on_shape_and_pixels(image):
    assert content_hash(image) == content_hash(image.copy())
    assert content_hash(image) != content_hash(image[:, :-1].copy())
    changed = image.copy()
    changed[0, 0, 0] ^= 1
    assert content_hash(image) != content_hash(changed)
