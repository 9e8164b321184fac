"""``/labelstudio``: Label Studio's ML backend protocol, on bodies Label Studio 1.23 sent.

``bodies/*.json`` were recorded from a real Label Studio (a project with the config of
``dtseg labelstudio-config``, one local-files task, an interactive click and "retrieve
predictions"), its address replaced by ``http://label-studio.test``. The other tag combinations
change the recorded ``params.context``. Masks are checked against the engine itself."""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import yaml
from fastapi.testclient import TestClient

from dtseg import Prompts, SamEngine
from dtseg.labelstudio.regions import brush_mask
from dtseg.masks import mask_to_polygons
from tests.server.server_helpers import png_bytes, synthetic_image

BODIES = Path(__file__).parent / "bodies"
LS = "http://label-studio.test"
OBJECTS = [{"points": [[20, 18]], "class_name": "disc"}, {"box": [30, 25, 60, 45], "class_name": "block"},
           {"points": [[5, 5]], "class_name": "sky"}]
IMAGE = synthetic_image(48, 64, seed=3)  # the recorded task's image: 64 x 48 pixels


def body(name: str) -> dict[str, Any]:
    return json.loads((BODIES / f"{name}.json").read_text())


def keypoint(x: float, y: float, label: str = "disc", positive: bool = True) -> dict[str, Any]:
    return {"original_width": 64, "original_height": 48, "image_rotation": 0, "id": f"k{x}{y}", "from_name": "click",
            "to_name": "image", "type": "keypointlabels", "origin": "manual", "is_positive": positive,
            "value": {"x": x, "y": y, "width": 1.5625, "keypointlabels": [label]}}


def rectangle(x: float, y: float, w: float, h: float, label: str = "block") -> dict[str, Any]:
    return {"original_width": 64, "original_height": 48, "image_rotation": 0, "id": "r1", "from_name": "box",
            "to_name": "image", "type": "rectanglelabels", "origin": "manual",
            "value": {"x": x, "y": y, "width": w, "height": h, "rotation": 0, "rectanglelabels": [label]}}


def with_context(name: str, *items: dict[str, Any]) -> dict[str, Any]:
    request = body(name)
    request["params"]["context"] = {"result": list(items)}
    return request


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "scene.png").write_bytes(png_bytes(IMAGE))
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "manual.yaml").write_text(yaml.safe_dump(
        {"sam": {"model": "tiny"}, "prompts": [{"points": {"objects": OBJECTS}}]}))
    return tmp_path


@pytest.fixture
def ls_client(make_client, folder: Path) -> TestClient:
    """Keys ``k0``..``k9``, ``k0-brush``.. and ``k0-polygon``.. (each its own cache namespace); task
    images from ``folder``."""
    keys = [f"k{i}{suffix}" for i in range(10) for suffix in ("", "-brush", "-polygon")]
    return make_client(api_keys=keys, configs_dir=str(folder / "configs"),
                       labelstudio={"url": LS, "local_dirs": {"/data/local-files/?d=": str(folder)},
                                    "pipeline": "manual"})


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"labelstudio:{key}".encode()).decode()}


def test_connect_as_label_studio_does(ls_client: TestClient) -> None:
    health = ls_client.get("/labelstudio/health")
    assert health.status_code == 200 and health.json()["status"] == "UP" and "tiny" in health.json()["model_version"]
    assert ls_client.get("/labelstudio/").json()["status"] == "UP"
    setup = ls_client.post("/labelstudio/setup", json=body("setup_brush"), headers=basic("k0"))
    assert setup.status_code == 200 and setup.json()["model_version"].startswith("dtseg-")
    assert ls_client.post("/labelstudio/setup", json=body("setup_brush")).status_code == 401
    assert ls_client.post("/labelstudio/setup", json=body("setup_brush"), headers=basic("nope")).status_code == 401
    for auth in ({"params": {"api_key": "k0"}}, {"headers": {"Authorization": "Bearer k0"}}):
        assert ls_client.post("/labelstudio/setup", json=body("setup_brush"), **auth).status_code == 200
    webhook = ls_client.post("/labelstudio/webhook", json={"action": "ANNOTATION_CREATED", "annotation": {}},
                             headers=basic("k0"))
    assert webhook.status_code == 201
    versions = ls_client.get("/labelstudio/versions", headers=basic("k0")).json()["versions"]
    assert versions == [health.json()["model_version"]]


def test_recorded_click_gives_the_engines_mask_and_a_second_click_costs_one_decode(
        ls_client: TestClient, engine: SamEngine) -> None:
    first = ls_client.post("/labelstudio/predict", json=body("predict_interactive_brush"), headers=basic("k1"))
    assert first.status_code == 200, first.text
    [prediction] = first.json()["results"]
    [region] = prediction["result"]
    assert region["type"] == "brushlabels" and region["value"]["brushlabels"] == ["disc"]
    assert (region["from_name"], region["to_name"], region["original_width"], region["original_height"]) == \
        ("mask", "image", 64, 48)
    expected = engine.segment_image(IMAGE, "ref-click", [[16, 18]], [1], namespace="ref-k1")  # 25 %, 37.5 %
    best = int(np.argmax(expected.scores[0]))
    np.testing.assert_array_equal(brush_mask(region), expected.masks[0, best])
    assert prediction["score"] == pytest.approx(float(expected.scores[0, best]), abs=1e-5)
    assert "tiny float32" in prediction["model_version"]
    assert first.json()["model_version"] == prediction["model_version"]

    encoded = engine.encoder_calls
    refine = body("predict_interactive_brush")
    refine["params"]["context"]["result"].append(keypoint(75, 75, positive=False))  # Alt-click
    second = ls_client.post("/labelstudio/predict", json=refine, headers=basic("k1"))
    assert engine.encoder_calls == encoded, "the task's image is embedded once"
    [region] = second.json()["results"][0]["result"]
    again = engine.segment_image(None, "ref-click", [[16, 18], [48, 36]], [1, 0], mask_input="cached",
                                 multimask_output=False, namespace="ref-k1")  # the previous mask fed back
    np.testing.assert_array_equal(brush_mask(region), again.masks[0, 0])


@pytest.mark.parametrize("key, items, prompts", [
    ("k2", [keypoint(25, 37.5), keypoint(75, 75, positive=False)], {"points": [[16, 18], [48, 36]], "labels": [1, 0]}),
    ("k3", [keypoint(25, 37.5), keypoint(75, 75, "negative")], {"points": [[16, 18], [48, 36]], "labels": [1, 0]}),
    ("k4", [rectangle(50, 50, 25, 25)], {"box": [32, 24, 48, 36]}),
    ("k5", [rectangle(50, 50, 25, 25), keypoint(62.5, 62.5, "block")], {"box": [32, 24, 48, 36], "points": [[40, 30]]}),
])
@pytest.mark.parametrize("output", ["brush", "polygon"])
def test_tag_combinations(ls_client: TestClient, engine: SamEngine, key: str, items: list[dict[str, Any]],
                          prompts: dict[str, Any], output: str) -> None:
    """A region's keypoints (Alt or a "negative" label for background) and boxes -> one object."""
    response = ls_client.post("/labelstudio/predict", json=with_context(f"predict_interactive_{output}", *items),
                              headers=basic(f"{key}-{output}"))  # a fresh cache: no previous mask to refine
    assert response.status_code == 200, response.text
    [region] = response.json()["results"][0]["result"]
    label = items[-1]["value"][items[-1]["type"]][0]
    assert region["value"][f"{output}labels"] == [label if label != "negative" else "disc"]
    expected = engine.segment(IMAGE, Prompts.from_objects([prompts]), multimask_output=True).mask[0]
    if output == "brush":
        np.testing.assert_array_equal(brush_mask(region), expected)
    else:
        largest = max((part[0] for part in mask_to_polygons(expected)), key=cv2.contourArea)
        points = np.asarray(region["value"]["points"]) * [64 / 100, 48 / 100]
        np.testing.assert_allclose(points, largest, atol=1e-4)


@pytest.mark.parametrize("output", ["brush", "polygon"])
def test_retrieve_predictions_runs_the_pipeline(ls_client: TestClient, engine: SamEngine, output: str) -> None:
    response = ls_client.post("/labelstudio/predict", json=body(f"predict_tasks_{output}"), headers=basic("k6"))
    assert response.status_code == 200, response.text
    [prediction] = response.json()["results"]
    assert prediction["unmapped_classes"] == {"sky": 1}, "a class the label config lacks is reported"
    assert prediction["model_version"].endswith("manual: points -> tiny float32")
    regions = prediction["result"]
    assert [r["value"][f"{output}labels"] for r in regions] == [["disc"], ["block"]]
    expected = engine.segment(IMAGE, Prompts.from_objects([{k: v for k, v in o.items() if k != "class_name"}
                                                           for o in OBJECTS[:2]]))
    for region, mask, score in zip(regions, expected.mask, expected.data["sam_score"], strict=True):
        assert region["score"] == pytest.approx(float(score), abs=1e-5)
        if output == "brush":
            np.testing.assert_array_equal(brush_mask(region), mask)
    assert prediction["score"] == pytest.approx(float(np.mean(expected.data["sam_score"])), abs=1e-5)


def test_bad_input_fails_its_task_only(ls_client: TestClient) -> None:
    good = body("predict_interactive_brush")
    request = copy.deepcopy(good)
    request["tasks"] = [good["tasks"][0], {"id": 2, "data": {}},
                        {"id": 3, "data": {"image": "/data/local-files/?d=no.png"}},
                        {"id": 4, "data": {"image": "s3://bucket/a.png"}}]
    results = ls_client.post("/labelstudio/predict", json=request, headers=basic("k7")).json()["results"]
    assert len(results) == 4 and len(results[0]["result"]) == 1 and "error" not in results[0]
    assert "no image under data.image" in results[1]["error"]
    assert "cannot read 'no.png'" in results[2]["error"]
    assert "cannot read s3 URL" in results[3]["error"]
    assert all(r["result"] == [] and r["score"] == 0 for r in results[1:])


@pytest.mark.parametrize("change, message", [
    (lambda r: r.update(label_config='<View><Text name="t" value="$text"/></View>'), "no Image tag"),
    (lambda r: r["params"]["context"]["result"][0]["value"].update(keypointlabels=["cat"]), "'cat' is not one of"),
    (lambda r: r["params"]["context"]["result"][0]["value"].update(x=140.0), "outside the image"),
    (lambda r: r["tasks"][0].update(data={"text": "no image"}), "no image under data.image"),
])
def test_bad_input_is_a_clear_error_per_task(ls_client: TestClient, change: Any, message: str) -> None:
    request = body("predict_interactive_brush")
    change(request)
    response = ls_client.post("/labelstudio/predict", json=request, headers=basic("k8"))
    assert response.status_code == 200
    [result] = response.json()["results"]
    assert message in result["error"] and result["result"] == []
    assert ls_client.get("/labelstudio/health").status_code == 200


def test_pre_annotation_without_a_pipeline_says_how_to_set_one(make_client, folder: Path) -> None:
    client = make_client(labelstudio={"url": LS, "local_dirs": {"/data/local-files/?d=": str(folder)}})
    [result] = client.post("/labelstudio/predict", json=body("predict_tasks_brush")).json()["results"]
    assert "server.labelstudio.pipeline" in result["error"]
    request = body("predict_tasks_brush")
    request.pop("label_config")  # the label config /setup sent stands in
    assert client.post("/labelstudio/setup", json=body("setup_brush")).status_code == 200
    results = client.post("/labelstudio/predict", json=request).json()["results"]
    assert "server.labelstudio.pipeline" in results[0]["error"]


def test_malformed_bodies_are_422(ls_client: TestClient) -> None:
    response = ls_client.post("/labelstudio/predict", json={"project": "1.2"}, headers=basic("k9"))
    assert response.status_code == 422 and response.json()["field"] == "tasks"
