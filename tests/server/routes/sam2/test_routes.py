"""``/sam2/*``: Roboflow Inference's SAM 2 shapes, served by a tiny random-weight SAM 2.1, and
``inference_sdk``'s own client against a real ``dtseg serve`` process."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import requests
import yaml
from fastapi.testclient import TestClient

from dtseg import SamEngine
from dtseg.masks import mask_to_polygons, rle_to_mask
from dtseg.server import ServerConfig, create_app
from tests.server.live import serving
from tests.server.server_helpers import b64_image, png_bytes, synthetic_image
from tests.tiny import make_engine

IMAGE = synthetic_image(96, 128, seed=4)
BOX = {"x": 50.0, "y": 40.0, "width": 60.0, "height": 40.0}  # centre-based: xyxy (20, 20, 80, 60)
XYXY = [20.0, 20.0, 80.0, 60.0]


@pytest.fixture(scope="module")
def sam2_engine() -> SamEngine:
    return make_engine("tiny_sam2.1", seed=1)


@pytest.fixture(scope="module")
def client(family_client: Callable[[str, SamEngine], TestClient], sam2_engine: SamEngine) -> TestClient:
    return family_client("sam2", sam2_engine)


def test_embed_then_segment_by_image_id_matches_the_engine(client: TestClient, sam2_engine: SamEngine) -> None:
    embedded = client.post("/sam2/embed_image", json={"image": b64_image(IMAGE), "image_id": "a",
                                                      "sam2_version_id": "hiera_tiny"})
    assert embedded.status_code == 200, embedded.text
    body = embedded.json()
    assert body["image_id"] == "a" and body["frame_id"] is None and body["inference_id"]
    assert body["resolved_model"]["model_id"] == "tiny_sam2.1" and "embeddings" not in body
    calls = sam2_engine.encoder_calls
    prompts = [{"box": BOX}, {"points": [{"x": 30, "y": 30, "positive": True}, {"x": 90, "y": 70, "positive": False}]}]
    response = client.post("/sam2/segment_image",
                           json={"image_id": "a", "prompts": {"prompts": prompts}, "format": "rle"})
    assert response.status_code == 200, response.text
    assert sam2_engine.encoder_calls == calls  # by image_id only: no encoder pass
    predictions = response.json()["predictions"]
    nan = [np.nan, np.nan]  # padding: no point (a -1 label alone would be SAM's not-a-point token)
    direct = sam2_engine.segment_image(image_id="a", point_coords=[[nan, nan], [[30, 30], [90, 70]]],
                                       point_labels=[[-1, -1], [1, 0]], boxes=[XYXY, [np.nan] * 4])
    for k, prediction in enumerate(predictions):  # the most confident of SAM 2's 3 candidates
        best = int(direct.scores[k].argmax())
        assert prediction["format"] == "rle" and prediction["confidence"] == pytest.approx(direct.scores[k, best])
        np.testing.assert_array_equal(rle_to_mask(prediction["masks"]), direct.masks[k, best])


def test_json_masks_are_every_outer_contour(client: TestClient, sam2_engine: SamEngine) -> None:
    response = client.post("/sam2/segment_image", json={
        "image": b64_image(IMAGE), "prompts": {"prompts": [{"box": BOX}]}, "multimask_output": False})
    assert response.status_code == 200, response.text
    (prediction,) = response.json()["predictions"]
    direct = sam2_engine.segment_image(IMAGE, boxes=XYXY, multimask_output=False)
    expected = [part[0].tolist() for part in mask_to_polygons(direct.masks[0, 0])]
    assert prediction["format"] == "polygon" and prediction["masks"] == expected


def test_binary_format_is_an_npz_of_the_chosen_masks(client: TestClient) -> None:
    response = client.post("/sam2/segment_image", json={"image": b64_image(IMAGE), "format": "binary",
                                                        "prompts": {"prompts": [{"box": BOX}, {"box": BOX}]}})
    assert response.status_code == 200 and response.headers["content-type"] == "application/octet-stream"
    data = np.load(io.BytesIO(response.content))
    assert data["masks"].shape == (2, 96, 128) and data["low_res_masks"].shape == (2, 256, 256)
    assert np.abs(data["low_res_masks"]).max() <= 32  # clamped, as SAM2ImagePredictor returns them


def test_refinement_from_cached_logits(client: TestClient) -> None:
    first = {"image": b64_image(IMAGE), "image_id": "r", "prompts": {"prompts": [{"box": BOX}]}}
    assert client.post("/sam2/segment_image", json=first).status_code == 200
    refine = {"image_id": "r", "load_logits_from_cache": True,
              "prompts": {"prompts": [{"box": BOX, "points": [{"x": 70, "y": 50, "positive": False}]}]}}
    plain = client.post("/sam2/segment_image", json={**refine, "load_logits_from_cache": False}).json()
    assert client.post("/sam2/segment_image", json=first).status_code == 200  # the same logits again
    refined = client.post("/sam2/segment_image", json=refine).json()
    assert refined["predictions"][0]["confidence"] != plain["predictions"][0]["confidence"]


# The raw JSON of Roboflow's SAM2 docs (docs.roboflow.com/deploy/supported-models/sam2, with the image
# as base64 here) and of inference_sdk's sam2_segment_image ({"prompts": {"prompts": prompts}}), and
# the two other forms Roboflow's Sam2SegmentationRequest._coerce_prompts accepts.
POINT_PROMPT = {"points": [{"x": 60, "y": 50, "positive": True}]}
ROBOFLOW_FORMS = {
    "documented": {"prompts": {"prompts": [POINT_PROMPT]}, "sam2_version_id": "hiera_tiny"},
    "inference_sdk": {"sam2_version_id": "hiera_tiny", "multimask_output": True, "format": "json",
                      "prompts": {"prompts": [POINT_PROMPT]}},
    "flat list": {"prompts": [POINT_PROMPT]},
    "single prompt": {"prompts": POINT_PROMPT},
}


@pytest.mark.parametrize("form", ROBOFLOW_FORMS)
def test_roboflow_prompt_forms_give_the_same_prediction(client: TestClient, sam2_engine: SamEngine, form: str) -> None:
    response = client.post("/sam2/segment_image", json={"image": b64_image(IMAGE), **ROBOFLOW_FORMS[form]})
    assert response.status_code == 200, response.text
    (prediction,) = response.json()["predictions"]
    direct = sam2_engine.segment_image(IMAGE, point_coords=[[60, 50]], point_labels=[1])
    assert prediction["confidence"] == pytest.approx(float(direct.scores[0].max()))


@pytest.mark.parametrize("body", [{}, {"prompts": {"prompts": []}}, {"prompts": {"prompts": None}},
                                  {"prompts": []}, {"prompts": {}}, {"prompts": [{"points": []}]}],
                         ids=["absent", "empty set", "null set", "empty list", "empty prompt", "no points"])
def test_an_empty_prompt_is_roboflows_not_a_point_at_the_origin(client: TestClient, sam2_engine: SamEngine,
                                                                body: dict) -> None:
    """Roboflow's segment_anything2.py: no prompt -> point_coords [[0, 0]], point_labels [-1]."""
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    response = client.post("/sam2/segment_image", json={"image": b64_image(IMAGE), **body})
    assert response.status_code == 200, response.text
    (prediction,) = response.json()["predictions"]
    predictor = SAM2ImagePredictor(sam2_engine.model.net)
    predictor.set_image(IMAGE)
    _, scores, _ = predictor.predict(point_coords=np.array([[0.0, 0.0]]), point_labels=np.array([-1]))
    assert prediction["confidence"] == pytest.approx(float(scores.max()), abs=1e-4)


@pytest.mark.parametrize(("body", "field"), [
    ({"prompts": {"prompts": [{"points": [{"x": 1, "y": 2, "positive": "yes"}]}]}}, "prompts"),
    ({"prompts": [{"points": [{"x": True, "y": 2, "positive": True}]}]}, "prompts"),
    ({"prompts": {"box": {"x": 1, "y": 2, "width": "3", "height": 4}}}, "prompts"),
    ({"prompts": "box"}, "prompts"),
    ({"prompts": {"prompts": [POINT_PROMPT], "extra": 1}}, "prompts"),
    ({"prompts": [POINT_PROMPT], "multimask_output": 1}, "multimask_output"),
])
def test_bad_prompts_are_422_naming_the_field(client: TestClient, body: dict, field: str) -> None:
    response = client.post("/sam2/segment_image", json={"image": b64_image(IMAGE), **body})
    assert response.status_code == 422 and response.json()["field"] == field, response.text


def test_unknown_version_and_unknown_image_id(client: TestClient) -> None:
    bad = client.post("/sam2/embed_image", json={"image": b64_image(IMAGE), "sam2_version_id": "hiera_huge"})
    assert bad.status_code == 422 and bad.json()["field"] == "sam2_version_id"
    missing = client.post("/sam2/segment_image", json={"image_id": "never", "prompts": {"prompts": [{"box": BOX}]}})
    assert missing.status_code == 404 and missing.json()["code"] == "image_not_embedded"


def test_without_a_sam2_model_the_routes_name_the_config_key(engine: SamEngine) -> None:
    with TestClient(create_app(engine, ServerConfig()), raise_server_exceptions=False) as c:
        response = c.post("/sam2/embed_image", json={"image": b64_image(IMAGE)})
        assert response.status_code == 404 and "sam2.model" in response.json()["message"]
        assert c.get("/info").json()["sam2"] is None


def test_a_sam_model_is_refused_as_the_sam2_model(engine: SamEngine) -> None:
    with pytest.raises(ValueError, match=r"sam2\.model: expected a SAM 2 model"):
        create_app({"sam": engine, "sam2": engine}, ServerConfig())


def test_sam_routes_carry_roboflow_response_fields(client: TestClient) -> None:
    body = client.post("/sam/segment_image", json={"image": b64_image(IMAGE), "point_coords": [[30, 30]],
                                                   "point_labels": [1]}).json()
    assert body["frame_id"] is None and len(body["inference_id"]) == 36 and body["resolved_model"]["model_id"] == "tiny"


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``dtseg serve`` with a random tiny SAM 2.1 on /sam2, auth on."""
    config = tmp_path_factory.mktemp("serve2") / "serve.yaml"
    config.write_text(yaml.safe_dump({"sam": {"model": "tiny_sam2.1", "checkpoint": "random", "device": "cpu"},
                                      "server": {"api_keys": ["sdk-key"]}}))
    with serving(config) as served:
        yield served.url


def test_inference_sdk_client_works_unchanged(live_server: str, tmp_path: Path) -> None:
    from inference_sdk import InferenceConfiguration, InferenceHTTPClient

    path = tmp_path / "image.png"
    path.write_bytes(png_bytes(IMAGE))
    embed = {"image": b64_image(IMAGE), "image_id": "sdk"}
    assert requests.post(f"{live_server}/sam2/embed_image", json=embed).status_code == 401
    requests.post(f"{live_server}/sam2/embed_image?api_key=sdk-key", json=embed).raise_for_status()
    # with auth on, the key travels as the SDK's recommended Bearer header (a key in the body is ignored)
    client = InferenceHTTPClient(api_url=live_server, api_key="sdk-key").configure(
        InferenceConfiguration(api_key_transport="header"))
    prompts = [{"box": BOX}, {"points": [{"x": 30, "y": 30, "positive": True}]}]
    result = client.sam2_segment_image(str(path), prompts=prompts, sam2_version_id="hiera_tiny")
    assert len(result["predictions"]) == 2
    for prediction in result["predictions"]:
        assert 0 <= prediction["confidence"] <= 1 and prediction["format"] == "polygon"
        assert all(0 <= x < 128 and 0 <= y < 96 for contour in prediction["masks"] for x, y in contour)
