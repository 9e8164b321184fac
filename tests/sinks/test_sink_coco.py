"""``coco`` sink: a COCO dataset JSON that pycocotools loads, with masks exact."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from pycocotools.coco import COCO

from dtseg.sinks import CocoSink


def test_dataset_loads_with_pycocotools_and_masks_are_exact(tmp_path, frame, detections, empty) -> None:
    sink = CocoSink(CocoSink.Config(image_suffix=".png"), tmp_path)
    sink.write("first", frame, detections)
    sink.write("nothing", frame, empty)
    sink.write("second", frame[:, ::-1].copy(), detections[1:])
    assert not (tmp_path / "coco.json").exists()  # written at close, not before
    sink.close()

    coco = COCO(str(tmp_path / "coco.json"))
    images = {img["file_name"]: img for img in coco.dataset["images"]}
    assert list(images) == ["first.png", "nothing.png", "second.png"]
    assert all(img["width"] == frame.shape[1] and img["height"] == frame.shape[0] for img in images.values())
    assert coco.getAnnIds(imgIds=[images["nothing.png"]["id"]]) == []

    expected = {"first.png": detections, "second.png": detections[1:]}
    for file_name, dets in expected.items():
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[images[file_name]["id"]]))
        assert len(anns) == len(dets)
        for ann, mask, class_id, confidence in zip(anns, dets.mask, dets.class_id, dets.confidence, strict=True):
            np.testing.assert_array_equal(coco.annToMask(ann).astype(bool), mask)
            assert ann["area"] == int(mask.sum())
            ys, xs = np.nonzero(mask)
            assert ann["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
            assert ann["category_id"] == int(class_id)
            assert abs(ann["score"] - float(confidence)) < 1e-6
    assert coco.loadCats(coco.getCatIds()) == [{"id": 0, "name": "donut"}, {"id": 2, "name": "car"}]
    assert len({a["id"] for a in coco.dataset["annotations"]}) == len(coco.dataset["annotations"]) == 5


def test_unlabeled_objects_and_sam_score(tmp_path, frame, detections) -> None:
    detections.class_id = detections.confidence = None
    sink = CocoSink(CocoSink.Config(unlabeled_id=99), tmp_path)
    sink.write("img", frame, detections)
    sink.close()
    data = json.loads((tmp_path / "coco.json").read_text())
    assert data["categories"] == [{"id": 99, "name": "object"}]
    assert [round(a["score"], 6) for a in data["annotations"]] == [0.95, 0.5, 0.8]


def test_holds_no_masks(tmp_path, frame, detections) -> None:
    sink = CocoSink(CocoSink.Config(), tmp_path)
    sink.write("img", frame, detections)

    def arrays(value) -> int:
        if isinstance(value, np.ndarray):
            return 1
        if isinstance(value, dict):
            return sum(arrays(v) for v in value.values())
        if isinstance(value, list):
            return sum(arrays(v) for v in value)
        return 0

    assert arrays(sink.dataset()) == 0
    assert all(isinstance(a["segmentation"]["counts"], str) for a in sink.dataset()["annotations"])


def test_empty_run_writes_a_valid_dataset_and_close_is_atomic(tmp_path, frame, empty) -> None:
    sink = CocoSink(CocoSink.Config(file="run.json"), tmp_path)
    sink.write("img", frame, empty)
    sink.close()
    sink.close()  # idempotent
    coco = COCO(str(tmp_path / "run.json"))
    assert len(coco.dataset["images"]) == 1 and coco.dataset["annotations"] == []
    assert sorted(p.name for p in Path(tmp_path).iterdir()) == ["run.json"]  # no temp file left
