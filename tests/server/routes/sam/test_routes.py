"""In-process tests of /sam/embed_image and /sam/segment_image: every field, format and error."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from fastapi.testclient import TestClient
from segment_anything import SamPredictor

from dtseg import SamEngine
from dtseg.io import content_hash
from dtseg.masks import polygons_to_mask, rle_to_mask
from tests.server.server_helpers import b64_image, synthetic_image

POINT = {"point_coords": [[20, 18]], "point_labels": [1]}


def npz(response) -> dict[str, np.ndarray]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/octet-stream"
    with np.load(io.BytesIO(response.content)) as data:
        return {k: data[k] for k in data.files}


def segment(client: TestClient, **body):
    return client.post("/sam/segment_image", json=body)


# -- embed_image --------------------------------------------------------------------------
def test_embed_json_and_binary_agree_and_cache(client: TestClient, engine: SamEngine, embedded: str) -> None:
    calls = engine.encoder_calls
    js = client.post("/sam/embed_image", json={"image_id": embedded, "format": "json"})
    assert js.status_code == 200
    body = js.json()
    assert body["image_id"] == embedded and isinstance(body["time"], float)
    embeddings = np.asarray(body["embeddings"], np.float32)
    assert embeddings.shape == (1, 256, 64, 64)
    binary = client.post("/sam/embed_image", json={"image_id": embedded, "format": "binary"})
    assert binary.headers["content-type"] == "application/octet-stream"
    array = np.load(io.BytesIO(binary.content))
    assert array.shape == (1, 256, 64, 64) and array.dtype == np.float32
    np.testing.assert_allclose(array, embeddings, rtol=1e-6)
    assert engine.encoder_calls == calls  # both answered from the cache


def test_embed_same_pixels_is_cached_and_default_id_is_content_hash(client: TestClient, engine: SamEngine,
                                                                      image: np.ndarray, embedded: str) -> None:
    calls = engine.encoder_calls
    again = client.post("/sam/embed_image", json={"image": b64_image(image), "image_id": embedded, "format": "binary",
                                                   "sam_version_id": "vit_h"})
    assert again.status_code == 200 and again.headers["x-image-id"] == embedded
    assert engine.encoder_calls == calls
    fresh = image[::-1].copy()  # pixels no other test of the shared engine embeds
    anonymous = client.post("/sam/embed_image", json={"image": b64_image(fresh), "format": "binary"})
    assert anonymous.headers["x-image-id"] == content_hash(fresh)
    assert engine.encoder_calls == calls + 1  # a new cache key: embedded once
    client.post("/sam/embed_image", json={"image": b64_image(fresh), "format": "binary"})
    assert engine.encoder_calls == calls + 1  # the content-hash key is a cache hit


def test_embed_without_image(client: TestClient) -> None:
    missing = client.post("/sam/embed_image", json={"image_id": "never-embedded"})
    assert missing.status_code == 404
    assert missing.json()["code"] == "image_not_embedded" and "never-embedded" in missing.json()["message"]
    nothing = client.post("/sam/embed_image", json={})
    assert nothing.status_code == 400 and nothing.json()["field"] == "image"


@pytest.mark.parametrize("body, field", [
    ({"image_id": "img", "sam_version_id": "vit_x"}, "sam_version_id"),
    ({"image_id": "img", "format": "xml"}, "format"),
    ({"image_id": "img", "colour": 1}, "colour"),
    ({"image": {"type": "numpy", "value": "gASV"}}, "image"),
    ({"image": {"type": "base64", "value": "aGk=", "extra": 1}}, "image"),
    ({"image_id": ""}, "image_id"),
])
def test_embed_schema_errors_name_the_field(client: TestClient, body: dict, field: str) -> None:
    response = client.post("/sam/embed_image", json=body)
    assert response.status_code == 422
    assert response.json()["field"] == field and field in response.json()["message"]


# -- segment_image: Roboflow shapes ------------------------------------------------------------
def test_segment_by_image_id_roboflow_shapes(client: TestClient, engine: SamEngine, embedded: str) -> None:
    calls = engine.encoder_calls
    response = segment(client, image_id=embedded, **POINT)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) >= {"masks", "low_res_masks", "time", "image_id", "scores", "polygons"}
    assert len(body["masks"]) == 1 and len(body["low_res_masks"]) == 1 and np.shape(body["scores"]) == (1, 1)
    binary = npz(segment(client, image_id=embedded, format="binary", **POINT))
    mask = binary["masks"][0]
    assert binary["masks"].shape == (1, 48, 64) and binary["low_res_masks"].shape == (1, 256, 256)
    assert mask.any(), "the seeded tiny model gives a non-empty mask at this point"
    # json polygons: every part and hole, in original pixels, restore the binary mask exactly
    parts = [[np.asarray(ring) for ring in part] for part in body["polygons"][0]]
    np.testing.assert_array_equal(polygons_to_mask(parts, mask.shape), mask)
    # the Roboflow polygon is the exterior of the largest part, [[x, y], ...] inside the image
    ring = np.asarray(body["masks"][0])
    assert ring.ndim == 2 and ring.shape[1] == 2
    assert ring[:, 0].max() < 64 and ring[:, 1].max() < 48 and ring.min() >= 0
    assert any(np.array_equal(ring, part[0]) for part in parts)
    low = np.asarray(body["low_res_masks"][0])
    assert low.min() >= 0 and low.max() < 256
    assert engine.encoder_calls == calls


def test_segment_with_image_and_id_reuses_embedding(client: TestClient, engine: SamEngine, image: np.ndarray,
                                                     embedded: str) -> None:
    calls = engine.encoder_calls
    with_image = npz(segment(client, image=b64_image(image), image_id=embedded, format="binary", **POINT))
    by_id = npz(segment(client, image_id=embedded, format="binary", **POINT))
    assert engine.encoder_calls == calls
    np.testing.assert_array_equal(with_image["masks"], by_id["masks"])


def test_several_objects_boxes_multimask_in_order(client: TestClient, embedded: str) -> None:
    points, boxes = [[[20, 18]], [[45, 35]]], [[5, 5, 35, 30], [30, 25, 60, 45]]
    both = npz(segment(client, image_id=embedded, point_coords=points, point_labels=[[1], [1]], boxes=boxes,
                       multimask_output=True, format="binary"))
    assert both["masks"].shape == (6, 48, 64) and both["scores"].shape == (2, 3)
    for i in range(2):  # mask k is object k // 3: same as asking for that object alone
        alone = npz(segment(client, image_id=embedded, point_coords=points[i], point_labels=[1], boxes=boxes[i],
                            multimask_output=True, format="binary"))
        np.testing.assert_array_equal(both["masks"][3 * i:3 * i + 3], alone["masks"])
        np.testing.assert_allclose(both["scores"][i], alone["scores"][0], rtol=1e-4, atol=1e-5)
    boxes_only = segment(client, image_id=embedded, boxes=boxes)
    assert boxes_only.status_code == 200 and len(boxes_only.json()["masks"]) == 2
    assert np.shape(boxes_only.json()["scores"]) == (2, 1)


def test_rle_format_decodes_to_the_binary_masks(client: TestClient, embedded: str) -> None:
    rle = segment(client, image_id=embedded, format="rle", multimask_output=True, **POINT)
    assert rle.status_code == 200
    binary = npz(segment(client, image_id=embedded, format="binary", multimask_output=True, **POINT))
    assert len(rle.json()["masks"]) == 3
    for encoded, mask in zip(rle.json()["masks"], binary["masks"], strict=True):
        assert encoded["size"] == [48, 64]
        np.testing.assert_array_equal(rle_to_mask(encoded), mask)
    for encoded, logits in zip(rle.json()["low_res_masks"], binary["low_res_masks"], strict=True):
        np.testing.assert_array_equal(rle_to_mask(encoded), logits > 0)


@pytest.fixture(scope="module")
def predictor(engine: SamEngine, image: np.ndarray) -> SamPredictor:
    """segment-anything's own predictor on the server engine's weights and image."""
    predictor = SamPredictor(engine.model.net)
    predictor.set_image(image)
    return predictor


@pytest.mark.parametrize("prompt", [
    {"point_coords": [[20, 18], [50, 40]], "point_labels": [1, -1]},  # -1: SAM's not-a-point token
    {"point_coords": [[20, 18], [50, 40]], "point_labels": [1, 0]},
    {"point_coords": [[20, 18]], "point_labels": [-1]},  # only -1 points
    {},  # no prompt at all
], ids=["not-a-point", "background", "only-not-a-point", "no-prompt"])
def test_labels_and_no_prompt_mean_what_they_mean_to_sam_predictor(client: TestClient, embedded: str,
                                                                   predictor: SamPredictor, prompt: dict) -> None:
    got = npz(segment(client, image_id=embedded, format="binary", multimask_output=True, **prompt))
    coords = prompt.get("point_coords")
    _, scores, logits = predictor.predict(
        point_coords=None if coords is None else np.array(coords, np.float32),
        point_labels=None if coords is None else np.array(prompt["point_labels"]), multimask_output=True)
    np.testing.assert_allclose(got["scores"], scores[None], atol=1e-4)
    np.testing.assert_allclose(got["low_res_masks"], logits, atol=1e-4)


def test_ragged_objects_are_each_decoded_alone(client: TestClient, embedded: str) -> None:
    objects = [([[20, 18]], [1]), ([[50, 40], [30, 30], [9, 9]], [1, 0, -1]), ([[40, 10], [10, 40]], [-1, 1])]
    together = npz(segment(client, image_id=embedded, format="binary", point_coords=[c for c, _ in objects],
                           point_labels=[lbl for _, lbl in objects]))
    for i, (coords, labels) in enumerate(objects):
        alone = npz(segment(client, image_id=embedded, format="binary", point_coords=coords, point_labels=labels))
        np.testing.assert_allclose(together["low_res_masks"][i], alone["low_res_masks"][0], atol=1e-5)
    bad = segment(client, image_id=embedded, point_coords=[[[1, 1]], [[2, 2], [3, 3]]], point_labels=[[1], [1]])
    assert bad.status_code == 400 and bad.json()["field"] == "point_labels[1]"


@pytest.mark.parametrize("body, field", [
    ({"point_coords": [[20, 18]], "point_labels": [2]}, "point_labels"),
    ({"point_coords": [[20, 18]], "point_labels": [0.5]}, "point_labels"),
    ({"point_coords": [[[20, 18]], [[9, 9]]], "point_labels": [[1], [3]]}, "point_labels"),
    ({"point_coords": [[20, 18, 3]], "point_labels": [1]}, "point_coords"),
    ({"point_coords": [[20, 18], [1, 1]], "point_labels": [1]}, "point_labels"),
    ({"point_coords": [[20, 18]]}, "point_labels"),
    ({"boxes": [1, 2, 3]}, "boxes"),
    ({"boxes": [[30, 30, 10, 10]]}, "boxes"),
    ({"boxes": [[0, 0, 10, 10], [0, 0, 5, 5]], "point_coords": [[1, 1]], "point_labels": [1]}, "boxes"),
])
def test_prompt_errors_are_400_naming_the_field(client: TestClient, embedded: str, body: dict, field: str) -> None:
    response = segment(client, image_id=embedded, **body)
    assert response.status_code == 400, response.text
    assert response.json()["field"] == field


@pytest.mark.parametrize("body, field", [
    ({"point_coords": "far", "point_labels": [1]}, "point_coords"),
    ({"point_coords": [[1, 2]], "point_labels": [1], "multimask_output": "maybe"}, "multimask_output"),
    ({"point_coords": [[1, 2]], "point_labels": [1], "format": "png"}, "format"),
    ({"point_coords": [[1, 2]], "point_labels": [1], "box": [1, 2, 3, 4]}, "box"),
    ({"point_coords": [[1, 2]], "point_labels": [1], "orig_im_size": "big"}, "orig_im_size"),
])
def test_schema_errors_are_422_naming_the_field(client: TestClient, embedded: str, body: dict, field: str) -> None:
    response = segment(client, image_id=embedded, **body)
    assert response.status_code == 422
    assert response.json()["field"] == field and response.json()["message"].startswith(field)


def test_unknown_image_id_is_404_then_server_keeps_serving(client: TestClient, embedded: str) -> None:
    response = segment(client, image_id="who-knows", **POINT)
    assert response.status_code == 404
    assert response.json()["code"] == "image_not_embedded"
    assert segment(client, **POINT).json()["field"] == "image"
    assert segment(client, image_id=embedded, **POINT).status_code == 200


def test_bad_images_are_400(client: TestClient) -> None:
    bad_b64 = segment(client, image={"type": "base64", "value": "!!!not base64"}, **POINT)
    assert bad_b64.status_code == 400 and bad_b64.json()["field"] == "image.value"
    not_image = segment(client, image={"type": "base64", "value": base64.b64encode(b"hello world").decode()}, **POINT)
    assert not_image.status_code == 400 and not_image.json()["field"] == "image"
    broken_json = client.post("/sam/segment_image", content=b'{"image_id": ',
                              headers={"content-type": "application/json"})
    assert broken_json.status_code == 422 and "message" in broken_json.json()


def test_data_url_prefix_and_unpadded_base64(client: TestClient, engine: SamEngine, image: np.ndarray,
                                            embedded: str) -> None:
    calls = engine.encoder_calls
    value = b64_image(image)["value"]
    for variant in (f"data:image/png;base64,{value}", value.rstrip("=")):
        response = segment(client, image={"type": "base64", "value": variant}, image_id=embedded, **POINT)
        assert response.status_code == 200, response.text
    assert engine.encoder_calls == calls  # same pixels


# -- client-held embeddings ---------------------------------------------------------------------
def test_client_held_embedding_matches_cached_path(client: TestClient, engine: SamEngine, embedded: str) -> None:
    raw = client.post("/sam/embed_image", json={"image_id": embedded, "format": "binary"}).content
    embeddings = np.load(io.BytesIO(raw)).tolist()  # what format=json returns (checked above)
    reference = npz(segment(client, image_id=embedded, format="binary", **POINT))
    calls = engine.encoder_calls
    for extra in ({"embeddings": embeddings},
                  {"embeddings": base64.b64encode(raw).decode(), "embeddings_format": "binary"}):
        held = npz(segment(client, orig_im_size=[48, 64], format="binary", **POINT, **extra))
        np.testing.assert_array_equal(held["masks"], reference["masks"])
    assert engine.encoder_calls == calls
    no_size = segment(client, embeddings=[[1.0]], **POINT)
    assert no_size.status_code == 400 and no_size.json()["field"] == "orig_im_size"
    wrong = segment(client, embeddings=[[1.0, 2.0]], orig_im_size=[48, 64], **POINT)
    assert wrong.status_code == 400 and wrong.json()["field"] == "embeddings"
    junk = segment(client, embeddings="abc", embeddings_format="binary", orig_im_size=[48, 64], **POINT)
    assert junk.status_code == 400 and junk.json()["field"] == "embeddings"


# -- refinement -----------------------------------------------------------------------------
def test_mask_input_cache_and_explicit_logits(client: TestClient, engine: SamEngine, image: np.ndarray) -> None:
    first = npz(segment(client, image=b64_image(image), image_id="refine", format="binary", **POINT))
    # the engine keeps the last call's logits: ask the server before calling the engine directly
    cached = npz(segment(client, image_id="refine", has_mask_input=True, format="binary", **POINT))
    expected = engine.segment_image(image_id="refine", mask_input=first["low_res_masks"][:1][:, None],
                                     multimask_output=False, **POINT)
    np.testing.assert_array_equal(cached["masks"], expected.masks[:, 0])
    logits = engine.segment_image(image_id="refine", multimask_output=False, **POINT).low_res_logits[:, 0]
    explicit = npz(segment(client, image_id="refine", has_mask_input=True, use_mask_input_cache=False,
                           mask_input=logits.tolist(), format="binary", **POINT))
    np.testing.assert_array_equal(explicit["masks"], expected.masks[:, 0])
    buffer = io.BytesIO()
    np.save(buffer, logits)
    as_binary = npz(segment(client, image_id="refine", has_mask_input=True, use_mask_input_cache=False,
                            mask_input=base64.b64encode(buffer.getvalue()).decode(), mask_input_format="binary",
                            format="binary", **POINT))
    np.testing.assert_array_equal(as_binary["masks"], expected.masks[:, 0])
    polygon = segment(client, image_id="refine", has_mask_input=True, use_mask_input_cache=False,
                      mask_input=[[[10, 10], [60, 10], [60, 50], [10, 50]]], **POINT)
    assert polygon.status_code == 200 and len(polygon.json()["masks"]) == 1
    mask_only = segment(client, image_id="refine", has_mask_input=True)
    assert mask_only.status_code == 200
    missing = segment(client, image_id="refine", has_mask_input=True, use_mask_input_cache=False, **POINT)
    assert missing.status_code == 400 and missing.json()["field"] == "mask_input"
    bad = segment(client, image_id="refine", has_mask_input=True, use_mask_input_cache=False,
                  mask_input=[[1.0, 2.0], [3.0]], **POINT)
    assert bad.status_code == 400 and bad.json()["field"].startswith("mask_input")


def test_a_callers_mask_input_wins_over_the_cache(client: TestClient, engine: SamEngine, image: np.ndarray) -> None:
    three = {"point_coords": [[[20, 18]], [[50, 40]], [[30, 10]]], "point_labels": [[1], [1], [1]]}
    assert segment(client, image=b64_image(image), image_id="mine", **three).status_code == 200  # caches 3 masks
    square = np.full((256, 256), -10.0, np.float32)
    square[40:120, 40:140] = 10.0
    expected = engine.segment_image(image_id="mine", mask_input=square, multimask_output=False, **POINT)
    mine = npz(segment(client, image_id="mine", has_mask_input=True, mask_input=square.tolist(), format="binary",
                       **POINT))  # use_mask_input_cache is true by default: the caller's logits still win
    np.testing.assert_array_equal(mine["masks"], expected.masks[:, 0])
    assert segment(client, image_id="mine", **three).status_code == 200  # the cache holds 3 masks again
    from_cache = segment(client, image_id="mine", has_mask_input=True, **POINT)
    assert from_cache.status_code == 400 and from_cache.json()["field"] == "mask_input"
    assert "the cached logits of image_id 'mine'" in from_cache.json()["message"]  # the cache, not the caller
    given = segment(client, image_id="mine", has_mask_input=True, mask_input=[square.tolist()] * 3, **POINT)
    assert given.status_code == 400 and "the logits given are 3 masks for 1 objects" in given.json()["message"]


@pytest.mark.parametrize("body, field", [
    ({**POINT, "multimask_output": "yes"}, "multimask_output"),
    ({**POINT, "multimask_output": "true"}, "multimask_output"),
    ({**POINT, "multimask_output": 1}, "multimask_output"),
    ({**POINT, "has_mask_input": 0}, "has_mask_input"),
    ({"point_coords": [[True, 18]], "point_labels": [1]}, "point_coords"),
    ({"point_coords": [["20", 18]], "point_labels": [1]}, "point_coords"),
    ({"point_coords": [[20, 18]], "point_labels": [True]}, "point_labels"),
    ({**POINT, "boxes": [0, 0, 10, False]}, "boxes"),
])
def test_booleans_and_numbers_are_strict(client: TestClient, embedded: str, body: dict, field: str) -> None:
    response = segment(client, image_id=embedded, **body)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field


def test_roboflow_clients_json_types_are_accepted(client: TestClient, embedded: str) -> None:
    """What Roboflow's docs and clients send: ints or floats as numbers, JSON true/false."""
    body = {"image_id": embedded, "point_coords": [[20, 18.5]], "point_labels": [1.0], "multimask_output": False,
            "has_mask_input": False, "use_mask_input_cache": True, "disable_preproc_auto_orient": True,
            "usage_billable": True, "start": 1700000000, "sam_version_id": "vit_h", "format": "json"}
    assert segment(client, **body).status_code == 200


def test_new_pixels_under_an_id_drop_its_refinement_logits(client: TestClient, engine: SamEngine) -> None:
    first, second = synthetic_image(seed=1), synthetic_image(seed=2)
    assert segment(client, image=b64_image(first), image_id="swap", **POINT).status_code == 200
    assert segment(client, image_id="swap", has_mask_input=True, **POINT).status_code == 200  # logits cached
    # new pixels under the same id, embedded without segmenting: the old image's logits must go
    assert client.post("/sam/embed_image", json={"image": b64_image(second), "image_id": "swap"}).status_code == 200
    stale = segment(client, image_id="swap", has_mask_input=True, **POINT)
    assert stale.status_code == 400 and stale.json()["field"] == "mask_input", stale.text
    assert "no cached mask" in stale.json()["message"]
    direct = npz(segment(client, image_id="swap", format="binary", **POINT))  # caches the new image's logits
    fresh = npz(segment(client, image_id="swap", has_mask_input=True, format="binary", **POINT))
    logits = engine.segment_image(image=second, multimask_output=False, **POINT).low_res_logits
    expected = engine.segment_image(image=second, mask_input=logits[:, :1], multimask_output=False, **POINT)
    np.testing.assert_array_equal(fresh["masks"], expected.masks[:, 0])
    assert direct["masks"].shape == fresh["masks"].shape


# -- limits, health, docs --------------------------------------------------------------------
def test_body_limit_is_413_with_a_message(make_client, embedded: str) -> None:
    small = make_client(max_body_mb=0.01)
    big = {"image_id": embedded, **POINT, "padding": "x" * 20_000}
    response = small.post("/sam/segment_image", json=big)
    assert response.status_code == 413 and "max_body_mb" in response.json()["message"]

    def chunks():
        yield b'{"image_id": "img", "x": "'
        for _ in range(30):
            yield b"y" * 1000
        yield b'"}'

    streamed = small.post("/sam/segment_image", content=chunks(), headers={"content-type": "application/json"})
    assert streamed.status_code == 413
    assert small.get("/healthz").status_code == 200


def test_pixel_limit_and_decompression_bomb(make_client, image: np.ndarray) -> None:
    limited = make_client(max_image_pixels=1000)
    response = limited.post("/sam/segment_image", json={"image": b64_image(image), **POINT})
    assert response.status_code == 400 and "1000" in response.json()["message"]
    # A PNG header declaring 100000 x 100000 pixels: refused from the header, never decoded
    import struct
    import zlib
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    bomb = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 1000))
            + chunk(b"IEND", b""))
    default = make_client()
    bomb_image = {"type": "base64", "value": base64.b64encode(bomb).decode()}
    refused = default.post("/sam/embed_image", json={"image": bomb_image})
    assert refused.status_code == 400 and refused.json()["field"] == "image"


def test_health_info_docs(client: TestClient, embedded: str) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    info = client.get("/info").json()
    assert info["model"] == "tiny" and info["device"] == "cpu" and info["auth"] is False
    assert info["encoder_calls"] >= 1 and info["cache"]["entries"] >= 1 and info["cache"]["bytes"] > 0
    assert info["encoder"] == info["decoder"] == "fast"  # auto on the CPU
    assert isinstance(info["keep_heap"], bool)
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/sam/embed_image", "/sam/segment_image", "/segment", "/healthz", "/info"} <= set(paths)
