"""All sinks on a real ``SamEngine`` result (tiny model, random weights): written outputs read
back to the engine's masks exactly."""

from __future__ import annotations

import json
import warnings

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO

from dtseg import SamEngine
from dtseg.engine.checkpoints import RandomWeightsWarning
from dtseg.masks import polygons_to_mask, rle_to_mask
from dtseg.prompts import Prompts
from dtseg.sinks import BUILTIN_SINKS


@pytest.fixture(scope="module")
def engine() -> SamEngine:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomWeightsWarning)
        return SamEngine.load("tiny", "random", device="cpu")


def test_all_sinks_on_an_engine_result(engine, tmp_path) -> None:
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (60, 90, 3), dtype=np.uint8)
    prompts = Prompts(
        points=np.array([[[20, 30], [np.nan, np.nan]], [[70, 40], [60, 20]]], np.float32),
        labels=np.array([[1, -1], [1, 0]]),
        boxes=np.array([[5, 5, 40, 50], [np.nan] * 4], np.float32),
        class_id=np.array([1, 4]),
        confidence=np.array([0.7, 0.3], np.float32),
        data={"class_name": np.array(["a", "b"])},
    )
    detections = engine.segment(frame, prompts)
    assert detections.mask.shape == (2, 60, 90)
    areas = detections.mask.sum(axis=(1, 2))
    assert ((areas > 0) & (areas < 60 * 90)).all()  # non-trivial masks, so the round trips mean something
    sinks = {name: cls(cls.Config(), tmp_path) for name, cls in BUILTIN_SINKS.items()}
    sinks["annotated"].banner = "RANDOM WEIGHTS - masks are meaningless"
    for sink in sinks.values():
        sink.write("photo", frame, detections)
        sink.write("blank", frame, engine.segment(frame, Prompts.empty()))
        sink.close()

    doc = json.loads((tmp_path / "json" / "photo.json").read_text())
    assert [o["class_name"] for o in doc["objects"]] == ["a", "b"]
    assert doc["objects"][1]["prompt"] == {"box": None, "points": [[70.0, 40.0], [60.0, 20.0]], "labels": [1, 0]}
    assert json.loads((tmp_path / "json" / "blank.json").read_text())["objects"] == []
    coco = COCO(str(tmp_path / "coco.json"))
    anns = coco.loadAnns(coco.getAnnIds())
    assert len(anns) == 2
    for i, mask in enumerate(detections.mask):
        obj = doc["objects"][i]
        np.testing.assert_array_equal(rle_to_mask(obj["rle"]), mask)
        np.testing.assert_array_equal(polygons_to_mask(obj["polygons"], mask.shape), mask)
        np.testing.assert_array_equal(coco.annToMask(anns[i]).astype(bool), mask)
        png = cv2.imread(str(tmp_path / "masks" / f"photo_{i}.png"), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(png == 255, mask)
    annotated = cv2.imread(str(tmp_path / "annotated" / "photo.png"))
    assert annotated.shape == frame.shape
