"""The json sink, video JSONL and ``POST /segment`` write the same record for the same object."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from fastapi.testclient import TestClient

from dtseg import SamEngine
from dtseg.pipeline import Pipeline
from dtseg.records import RECORD_FIELDS
from dtseg.server.routes.segment.routes import Detection
from dtseg.video.jsonl import frame_record
from tests.server.server_helpers import b64_image, synthetic_image

# the points provider names two objects; the zones stage keeps both and sets data["zone"]
CONFIG = {
    "sam": {"model": "tiny"},
    "prompts": [
        {"points": {"objects": [{"points": [[20, 18]], "class_name": "disc", "class_id": 3},
                                {"box": [2, 25, 30, 45], "class_name": "block", "class_id": 5}]}},
        {"zones": {"zones": [{"name": "left", "polygon": [[0, 0], [40, 0], [40, 64], [0, 64]]}],
                   "anchor": "center"}},
    ],
    "sinks": [{"json": {"subdir": ""}}],
}


def test_every_output_writes_the_same_record(make_client, tmp_path: Path, engine: SamEngine) -> None:
    image = synthetic_image(seed=15)  # pixels of its own: the session engine's cache is shared
    (tmp_path / "zoned.yaml").write_text(yaml.safe_dump(CONFIG))
    pipeline = Pipeline.from_config(tmp_path / "zoned.yaml", engine=engine)
    detections = pipeline(image)
    assert list(detections.data["zone"]) == ["left", "left"]
    sink = pipeline.open_sinks(tmp_path / "out")[0]
    sink.write("img", image, detections)
    from_sink = json.loads((tmp_path / "out" / "img.json").read_text())["objects"]
    from_jsonl = json.loads(json.dumps(frame_record(0, 0.0, image.shape[:2], detections)))["objects"]
    client: TestClient = make_client(configs_dir=str(tmp_path))
    response = client.post("/segment", json={"image": b64_image(image), "config": "zoned", "format": "rle"})
    assert response.status_code == 200, response.text
    from_server = response.json()["detections"]

    assert len(from_sink) == len(from_jsonl) == len(from_server) == 2
    for sink_obj, line_obj, server_obj in zip(from_sink, from_jsonl, from_server, strict=True):
        assert sink_obj["zone"] == line_obj["zone"] == server_obj["zone"] == "left"
        assert list(sink_obj) == [f for f in RECORD_FIELDS if f in sink_obj]  # one order, one set of names
        for key in ("index", "class_id", "class_name", "confidence", "tracker_id", "box", "area", "rle"):
            assert sink_obj[key] == line_obj[key] == server_obj[key], key
        assert sink_obj["sam_score"] == line_obj["sam_score"]
        assert abs(server_obj["sam_score"] - sink_obj["sam_score"]) < 1e-5  # the server re-ran SAM
        assert sink_obj["prompt"] == server_obj["prompt"]
        assert sink_obj.get("data") == line_obj.get("data") == server_obj.get("data")
    assert {o["class_name"] for o in from_server} == {"disc", "block"}


def test_the_server_model_has_every_record_field() -> None:
    assert set(Detection.model_fields) == set(RECORD_FIELDS)
