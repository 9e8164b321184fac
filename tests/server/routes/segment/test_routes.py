"""POST /segment: an image through a named pipeline config from the server's configs_dir."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from fastapi.testclient import TestClient

from dtseg import Prompts, SamEngine
from dtseg.masks import polygons_to_mask, rle_to_mask
from tests.server.server_helpers import b64_image

OBJECTS = [{"points": [[20, 18]], "class_name": "disc", "class_id": 3},
           {"box": [30, 25, 60, 45], "class_name": "block", "class_id": 5}]


@pytest.fixture
def pipelines(tmp_path: Path) -> Path:
    (tmp_path / "manual.yaml").write_text(yaml.safe_dump(
        {"sam": {"model": "tiny"}, "prompts": [{"points": {"objects": OBJECTS}}], "sinks": [{"json": {}}]}))
    (tmp_path / "broken.yaml").write_text(yaml.safe_dump({"prompts": [{"no_such_provider": {}}]}))
    (tmp_path / "notes.txt").write_text("not a config")
    return tmp_path


def test_segment_with_a_named_config(make_client, pipelines: Path, engine: SamEngine, image: np.ndarray) -> None:
    client: TestClient = make_client(configs_dir=str(pipelines))
    assert client.get("/info").json()["pipelines"] == ["broken", "manual"]
    response = client.post("/segment", json={"image": b64_image(image), "config": "manual"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["config"] == "manual" and [d["class_name"] for d in body["detections"]] == ["disc", "block"]
    assert [d["class_id"] for d in body["detections"]] == [3, 5]
    prompts = Prompts.from_objects([{"points": [[20, 18]]}, {"box": [30, 25, 60, 45]}])
    expected = engine.segment(image, prompts)  # the same engine, the same prompts
    for row, mask, score in zip(body["detections"], expected.mask, expected.data["sam_score"], strict=True):
        parts = [[np.asarray(ring) for ring in part] for part in row["polygons"]]
        np.testing.assert_array_equal(polygons_to_mask(parts, mask.shape), mask)
        assert row["sam_score"] == pytest.approx(float(score), abs=1e-5) and len(row["box"]) == 4
    rle = client.post("/segment", json={"image": b64_image(image), "config": "manual", "format": "rle"}).json()
    for row, mask in zip(rle["detections"], expected.mask, strict=True):
        np.testing.assert_array_equal(rle_to_mask(row["rle"]), mask)


def test_segment_errors(make_client, pipelines: Path, image: np.ndarray) -> None:
    client: TestClient = make_client(configs_dir=str(pipelines))
    unknown = client.post("/segment", json={"image": b64_image(image), "config": "nope"})
    assert unknown.status_code == 400 and unknown.json()["field"] == "config" and "manual" in unknown.json()["message"]
    traversal = client.post("/segment", json={"image": b64_image(image), "config": "../etc/passwd"})
    assert traversal.status_code == 422 and traversal.json()["field"] == "config"
    broken = client.post("/segment", json={"image": b64_image(image), "config": "broken"})
    assert broken.status_code == 503 and "broken" in broken.json()["message"]
    extra = client.post("/segment", json={"image": b64_image(image), "config": "manual", "sinks": []})
    assert extra.status_code == 422 and extra.json()["field"] == "sinks"


def test_no_configs_dir_says_how_to_set_one(make_client, image: np.ndarray) -> None:
    client: TestClient = make_client()
    response = client.post("/segment", json={"image": b64_image(image), "config": "default"})
    assert response.status_code == 400 and response.json()["field"] == "config"
    assert "server.configs_dir" in response.json()["message"]


def test_missing_detector_weights_give_a_hint_serve_can_follow(make_client, tmp_path: Path, image: np.ndarray,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The 503 must not advise --allow-random (a segment/video flag); server.allow_random does it here."""
    from ultralytics.utils import SETTINGS

    if (Path(SETTINGS["weights_dir"]) / "yolov8n.pt").exists():
        pytest.skip("yolov8n.pt is on this machine")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DTSEG_OFFLINE", "1")
    (tmp_path / "detect.yaml").write_text(yaml.safe_dump({"prompts": [{"yolo": {"imgsz": 64, "max_det": 2}}]}))
    strict: TestClient = make_client(configs_dir=str(tmp_path))
    refused = strict.post("/segment", json={"image": b64_image(image), "config": "detect"})
    assert refused.status_code == 503
    assert "--allow-random" not in refused.json()["message"]
    assert "--set server.allow_random=true" in refused.json()["message"]
    demo: TestClient = make_client(configs_dir=str(tmp_path), allow_random=True)
    built = demo.post("/segment", json={"image": b64_image(image), "config": "detect"})
    assert built.status_code == 200, built.text
    assert "yolo" in built.json()["random_weights"]
