"""``/sam3/*``: Roboflow Inference's SAM 3 shapes, served by a tiny random-weight SAM 3, and
``inference_sdk``'s own ``sam3_*`` methods against a real ``dtseg serve`` process."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml
from fastapi.testclient import TestClient

from dtseg import SamEngine
from dtseg.engine.concepts import mask_nms
from dtseg.masks import mask_to_polygons, rle_to_mask
from dtseg.server import ServerConfig, create_app
from tests.server.live import serving
from tests.server.server_helpers import b64_image, png_bytes, synthetic_image
from tests.tiny import make_engine

pytest.importorskip("sam3")

IMAGE = synthetic_image(96, 128, seed=4)
DISC_XYXY = [20.0, 20.0, 70.0, 60.0]
DISC_TOP_LEFT = {"x": 20.0, "y": 20.0, "width": 50.0, "height": 40.0}  # the same box, top-left based
GREEN_XYXY = {"x0": 70.0, "y0": 57.0, "x1": 115.0, "y1": 86.0}
CENTRE_BOX = {"x": 50.0, "y": 40.0, "width": 60.0, "height": 40.0}  # /sam2's shape: xyxy (20, 20, 80, 60)


@pytest.fixture(scope="module")
def sam3_engine() -> SamEngine:
    return make_engine("tiny_sam3", seed=3)


@pytest.fixture(scope="module")
def client(family_client: Callable[[str, SamEngine], TestClient], sam3_engine: SamEngine) -> TestClient:
    return family_client("sam3", sam3_engine)


@pytest.fixture(scope="module")
def threshold(sam3_engine: SamEngine) -> float:
    """Random weights: a threshold keeping about the top tenth of a phrase's 200 queries."""
    (everything,) = sam3_engine.segment_concepts(IMAGE, "a red disc", image_id="t", threshold=0.0)
    return float(np.quantile(everything.scores, 0.9))


def concept(client: TestClient, **body) -> dict:
    response = client.post("/sam3/concept_segment", json={"image": b64_image(IMAGE), **body})
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize("fmt", ["rle", "polygon", "json"])
def test_concept_results_are_the_engines(client: TestClient, sam3_engine: SamEngine, threshold: float,
                                         fmt: str) -> None:
    prompts = [{"type": "text", "text": "a red disc"},
               {"type": "visual", "boxes": [DISC_TOP_LEFT, GREEN_XYXY], "box_labels": [1, False]},
               {"text": "a green box", "boxes": [GREEN_XYXY], "output_prob_thresh": 0.0}]
    body = concept(client, image_id="c", prompts=prompts, output_prob_thresh=threshold, format=fmt)
    assert body["image_id"] == "c" and body["frame_id"] is None and len(body["inference_id"]) == 36
    assert body["resolved_model"]["model_id"] == "tiny_sam3" and body["time"] > 0
    direct = sam3_engine.segment_concepts(image_id="c", threshold=threshold, concepts=[
        "a red disc", {"boxes": [DISC_XYXY, list(GREEN_XYXY.values())], "box_labels": [True, False]},
        {"text": "a green box", "boxes": [list(GREEN_XYXY.values())], "threshold": 0.0}])
    echoes = [{"prompt_index": 0, "type": "text", "text": "a red disc", "num_boxes": 0},
              {"prompt_index": 1, "type": "visual", "text": None, "num_boxes": 2},
              {"prompt_index": 2, "type": "visual", "text": "a green box", "num_boxes": 1}]
    assert [r["echo"] for r in body["prompt_results"]] == echoes
    assert len(direct[2].scores) > len(direct[0].scores) > 0  # the prompt's own threshold counts
    for i, (got, want) in enumerate(zip(body["prompt_results"], direct, strict=True)):
        assert got["prompt_index"] == i and len(got["predictions"]) == len(want.scores)
        for prediction, mask, score in zip(got["predictions"], want.masks, want.scores, strict=True):
            assert prediction["confidence"] == pytest.approx(float(score))
            assert prediction["format"] == ("rle" if fmt == "rle" else "polygon")
            if fmt == "rle":
                np.testing.assert_array_equal(rle_to_mask(prediction["masks"]), mask)
            else:  # every outer contour, as /sam2's and Roboflow's masks2multipoly
                assert prediction["masks"] == [part[0].tolist() for part in mask_to_polygons(mask)]


def test_a_top_left_box_is_the_same_box_as_its_corners(client: TestClient) -> None:
    corners = dict(zip(("x0", "y0", "x1", "y1"), DISC_XYXY, strict=True))
    shifted = {**DISC_TOP_LEFT, "x": 40.0}
    body = concept(client, image_id="c", output_prob_thresh=0.0, format="rle",
                   prompts=[{"boxes": [DISC_TOP_LEFT]}, {"boxes": [corners]}, {"boxes": [shifted]}])
    first, second, other = (r["predictions"] for r in body["prompt_results"])
    assert first and [p["masks"] for p in first] == [p["masks"] for p in second]
    assert [p["confidence"] for p in first] == pytest.approx([p["confidence"] for p in second], abs=1e-6)
    assert [p["confidence"] for p in first] != pytest.approx([p["confidence"] for p in other], abs=1e-6)


def test_nms_runs_across_prompts(client: TestClient, sam3_engine: SamEngine, threshold: float) -> None:
    prompts = [{"text": "a red disc"}, {"text": "a red disc"}, {"text": "a green box"}]
    plain = concept(client, image_id="c", prompts=prompts, output_prob_thresh=threshold, format="rle")
    nms = concept(client, image_id="c", prompts=prompts, output_prob_thresh=threshold, format="rle",
                  nms_iou_threshold=0.5)
    counts = [len(r["predictions"]) for r in plain["prompt_results"]]
    assert counts[0] == counts[1] > 0
    direct = sam3_engine.segment_concepts(image_id="c", concepts=[p["text"] for p in prompts], threshold=threshold)
    masks, scores = np.concatenate([r.masks for r in direct]), np.concatenate([r.scores for r in direct])
    owner = np.repeat(np.arange(3), [len(r.scores) for r in direct])
    kept = mask_nms(masks, scores, 0.5)
    assert [len(r["predictions"]) for r in nms["prompt_results"]] == [int((owner[kept] == i).sum()) for i in range(3)]
    kept_0, kept_1 = (len(nms["prompt_results"][i]["predictions"]) for i in (0, 1))
    assert kept_0 + kept_1 <= counts[0]  # the same phrase twice: of each twin pair (scores equal to ~1 ulp) one at most
    for i, result in enumerate(nms["prompt_results"]):
        for prediction, k in zip(result["predictions"], kept[owner[kept] == i], strict=True):
            np.testing.assert_array_equal(rle_to_mask(prediction["masks"]), masks[k])


def test_concept_calls_use_the_cache(client: TestClient, sam3_engine: SamEngine, threshold: float) -> None:
    image = synthetic_image(80, 100, seed=9)
    embedded = client.post("/sam3/embed_image", json={"image": b64_image(image), "image_id": "cached"})
    assert embedded.status_code == 200, embedded.text
    calls = sam3_engine.encoder_calls
    prompts = [{"text": "a red disc"}]
    by_id = client.post("/sam3/concept_segment", json={"image_id": "cached", "prompts": prompts,
                                                       "output_prob_thresh": threshold})
    again = client.post("/sam3/concept_segment", json={"image": b64_image(image), "image_id": "cached",
                                                       "prompts": prompts, "output_prob_thresh": threshold})
    assert by_id.status_code == again.status_code == 200, by_id.text
    assert by_id.json()["prompt_results"] == again.json()["prompt_results"]
    assert sam3_engine.encoder_calls == calls  # neither call ran the encoder (Roboflow's encodes each time)
    other = synthetic_image(80, 100, seed=10)
    for _ in range(2):  # no image_id: the pixels' hash is the key
        client.post("/sam3/concept_segment", json={"image": b64_image(other), "prompts": prompts}).raise_for_status()
    assert sam3_engine.encoder_calls == calls + 1


def test_visual_segment_is_one_best_mask_per_prompt(client: TestClient, sam3_engine: SamEngine) -> None:
    embedded = client.post("/sam3/embed_image", json={"image": b64_image(IMAGE), "image_id": "v"}).json()
    assert embedded["image_id"] == "v" and embedded["resolved_model"]["model_id"] == "tiny_sam3"
    assert "embeddings" not in embedded and embedded["frame_id"] is None
    prompts = [{"box": CENTRE_BOX}, {"points": [{"x": 30, "y": 30, "positive": True}]}]
    response = client.post("/sam3/visual_segment", json={"image_id": "v", "prompts": {"prompts": prompts},
                                                         "format": "rle"})
    assert response.status_code == 200, response.text
    nan = [np.nan, np.nan]
    direct = sam3_engine.segment_image(image_id="v", point_coords=[[nan], [[30, 30]]], point_labels=[[-1], [1]],
                                       boxes=[[20, 20, 80, 60], [np.nan] * 4])
    predictions = response.json()["predictions"]
    assert len(predictions) == 2
    for k, prediction in enumerate(predictions):
        best = int(direct.scores[k].argmax())
        assert prediction["confidence"] == pytest.approx(float(direct.scores[k, best]))
        np.testing.assert_array_equal(rle_to_mask(prediction["masks"]), direct.masks[k, best])


SEVENTEEN = [{"text": f"thing {i}"} for i in range(17)]


@pytest.mark.parametrize(("body", "status", "field"), [
    ({"prompts": []}, 422, "prompts"),
    ({"prompts": SEVENTEEN}, 422, "prompts"),
    ({"prompts": [{"boxes": [DISC_TOP_LEFT], "box_labels": [1, 0]}]}, 400, "prompts[0].box_labels"),
    ({"prompts": [{"text": "a", "box_labels": [1]}]}, 400, "prompts[0].box_labels"),
    ({"prompts": [{"text": "a"}], "output_prob_thresh": 1.5}, 422, "output_prob_thresh"),
    ({"prompts": [{"text": "a"}], "output_prob_thresh": -0.1}, 422, "output_prob_thresh"),
    ({"prompts": [{"text": "a", "output_prob_thresh": 2}]}, 422, "prompts"),
    ({"prompts": [{"text": "a"}], "nms_iou_threshold": 1.01}, 422, "nms_iou_threshold"),
    ({"prompts": [{"text": ""}]}, 400, "prompts[0].text"),
    ({"prompts": [{"text": "a"}, {"text": "   "}]}, 400, "prompts[1].text"),
    ({"prompts": [{"type": "text"}]}, 400, "prompts[0].text"),
    ({"prompts": [{"type": "visual", "text": "a"}]}, 400, "prompts[0].boxes"),
    ({"prompts": [{"boxes": [{"x0": 50, "y0": 10, "x1": 20, "y1": 40}]}]}, 400, "prompts[0].boxes"),
    ({"prompts": [{"boxes": [{"x": 1, "y": 2, "width": 3}]}]}, 422, "prompts"),
    ({"prompts": [{"text": "a", "box_labels": [2]}]}, 422, "prompts"),
    ({"prompts": [{"text": "a"}], "format": "binary"}, 422, "format"),
    ({"prompts": [{"text": "a", "points": [[1, 2]]}]}, 422, "prompts"),
], ids=["empty", "17", "labels-length", "labels-without-boxes", "thresh-high", "thresh-low", "prompt-thresh", "nms",
        "empty-phrase", "blank-phrase", "no-phrase", "visual-without-boxes", "inverted-box", "half-box", "label-2",
        "binary", "points"])
def test_bad_concept_requests_name_the_field_and_cost_no_encoder_pass(
        client: TestClient, sam3_engine: SamEngine, body: dict, status: int, field: str) -> None:
    calls = sam3_engine.encoder_calls
    response = client.post("/sam3/concept_segment", json={"image": b64_image(synthetic_image(40, 50, seed=7)), **body})
    assert response.status_code == status and response.json()["field"] == field, response.text
    assert sam3_engine.encoder_calls == calls


def test_no_image_and_an_unknown_image_id(client: TestClient) -> None:
    missing = client.post("/sam3/concept_segment", json={"prompts": [{"text": "a"}]})
    assert missing.status_code == 400 and missing.json()["field"] == "image"
    unknown = client.post("/sam3/concept_segment", json={"image_id": "never", "prompts": [{"text": "a"}]})
    assert unknown.status_code == 404 and unknown.json()["code"] == "image_not_embedded"


def test_without_a_sam3_model_the_routes_name_the_config_key(engine: SamEngine) -> None:
    with TestClient(create_app(engine, ServerConfig()), raise_server_exceptions=False) as c:
        for route, body in [("embed_image", {"image": b64_image(IMAGE)}),
                            ("visual_segment", {"image": b64_image(IMAGE)}),
                            ("concept_segment", {"image": b64_image(IMAGE), "prompts": [{"text": "a"}]})]:
            response = c.post(f"/sam3/{route}", json=body)
            assert response.status_code == 404 and "sam3.model" in response.json()["message"], route
        assert c.get("/info").json()["sam3"] is None


def test_a_sam3_model_as_sam_serves_sam3_and_other_models_are_refused(engine: SamEngine,
                                                                      sam3_engine: SamEngine) -> None:
    with TestClient(create_app(sam3_engine, ServerConfig()), raise_server_exceptions=False) as c:
        assert c.get("/info").json()["sam3"] == "same as sam"
        assert c.post("/sam3/embed_image", json={"image": b64_image(IMAGE)}).status_code == 200
    with pytest.raises(ValueError, match=r"sam3\.model: expected a SAM 3 model"):
        create_app({"sam": engine, "sam3": engine}, ServerConfig())


def test_each_api_key_gets_its_share_of_the_sam3_cache(engine: SamEngine, sam3_engine: SamEngine,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DTSEG_API_KEYS", raising=False)
    create_app({"sam": engine, "sam3": sam3_engine}, ServerConfig(api_keys=["a", "b"]))
    try:
        for cache in (sam3_engine.embeddings.local, sam3_engine.mask_logits.local):
            assert cache.share_bytes == cache.max_bytes // 2  # no key evicts the other's embeddings
    finally:
        create_app({"sam": engine, "sam3": sam3_engine}, ServerConfig())  # the module's apps have no keys
    assert sam3_engine.embeddings.local.share_bytes is None


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``dtseg serve`` with the tiny SAM on /sam and a random tiny SAM 3 as ``sam3:``, auth on."""
    config = tmp_path_factory.mktemp("serve3") / "serve.yaml"
    config.write_text(yaml.safe_dump({
        "sam": {"model": "tiny", "checkpoint": "random", "device": "cpu"},
        "sam3": {"model": "tiny_sam3", "checkpoint": "random", "device": "cpu"},
        "server": {"api_keys": ["sdk-key"]}}))
    with serving(config) as served:
        yield served.url


def test_inference_sdk_sam3_methods_work_unchanged(live_server: str, tmp_path: Path) -> None:
    from inference_sdk import InferenceConfiguration, InferenceHTTPClient

    path = tmp_path / "image.png"
    path.write_bytes(png_bytes(IMAGE))
    client = InferenceHTTPClient(api_url=live_server, api_key="sdk-key").configure(
        InferenceConfiguration(api_key_transport="header"))
    embedded = client.sam3_embed_image(str(path), image_id="sdk")
    assert embedded["image_id"] == "sdk" and embedded["resolved_model"]["model_id"] == "tiny_sam3"
    visual = client.sam3_visual_segment(str(path), prompts=[{"box": CENTRE_BOX},
                                                            {"points": [{"x": 30, "y": 30, "positive": True}]}])
    assert len(visual["predictions"]) == 2
    concepts = client.sam3_concept_segment(str(path), prompts=[
        {"type": "text", "text": "a red disc"},
        {"type": "visual", "boxes": [DISC_TOP_LEFT], "box_labels": [1]}], output_prob_thresh=0.0, nms_iou_threshold=0.9)
    assert [r["echo"]["type"] for r in concepts["prompt_results"]] == ["text", "visual"]
    for prediction in [p for r in concepts["prompt_results"] for p in r["predictions"]] + visual["predictions"]:
        assert 0 <= prediction["confidence"] <= 1 and prediction["format"] == "polygon"
        assert all(0 <= x < 128 and 0 <= y < 96 for contour in prediction["masks"] for x, y in contour)
    assert any(r["predictions"] for r in concepts["prompt_results"])
