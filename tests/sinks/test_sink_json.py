"""``json`` sink: one document per image; RLE exact, polygons keep holes and every part."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from dtseg.masks import polygons_to_mask
from dtseg.sinks import JsonSink


def run(tmp_path: Path, frame, detections, name: str = "img", **options) -> dict:
    sink = JsonSink(JsonSink.Config(**options), tmp_path)
    sink.write(name, frame, detections)
    sink.close()
    path = tmp_path / "json" / f"{name}.json"
    return json.loads(path.read_text())  # strict JSON: NaN would not parse back as null


def rasterize(parts: list, shape: tuple[int, int]) -> np.ndarray:
    """A third party's rasterization: fill exteriors, clear holes (no border correction)."""
    out = np.zeros(shape, np.uint8)
    for part in parts:
        cv2.fillPoly(out, [np.array(part[0], np.int32)], 1)
        for hole in part[1:]:
            cv2.fillPoly(out, [np.array(hole, np.int32)], 0)
    return out.astype(bool)


def test_document_fields(tmp_path, frame, detections) -> None:
    doc = run(tmp_path, frame, detections)
    assert doc["image"] == {"name": "img", "width": frame.shape[1], "height": frame.shape[0]}
    objects = doc["objects"]
    assert [o["index"] for o in objects] == [0, 1, 2]
    for i, obj in enumerate(objects):
        assert obj["class_id"] == int(detections.class_id[i])
        assert obj["class_name"] == str(detections.data["class_name"][i])
        assert obj["zone"] == str(detections.data["zone"][i])
        assert obj["tracker_id"] == int(detections.tracker_id[i])
        assert math.isclose(obj["confidence"], float(detections.confidence[i]), rel_tol=1e-6)
        assert math.isclose(obj["sam_score"], float(detections.data["sam_score"][i]), rel_tol=1e-6)
        assert obj["box"] == detections.xyxy[i].tolist()
        assert obj["area"] == int(detections.mask[i].sum())
    assert objects[0]["prompt"] == {"box": [3.0, 3.0, 30.0, 30.0], "points": [], "labels": []}
    assert objects[1]["prompt"] == {"box": None, "points": [[40.0, 35.0], [31.0, 29.0]], "labels": [1, 0]}
    assert objects[2]["prompt"] == {"box": None, "points": [[52.0, 30.0]], "labels": [1]}


def test_rle_round_trips_exactly(tmp_path, frame, detections) -> None:
    for obj, mask in zip(run(tmp_path, frame, detections)["objects"], detections.mask, strict=True):
        rle = {"size": obj["rle"]["size"], "counts": obj["rle"]["counts"].encode()}
        np.testing.assert_array_equal(mask_utils.decode(rle).astype(bool), mask)


def test_polygons_keep_holes_and_every_part(tmp_path, frame, detections) -> None:
    shape = frame.shape[:2]
    objects = run(tmp_path, frame, detections)["objects"]
    ring = objects[0]["polygons"]
    assert sorted(len(part) for part in ring) == [1, 2]  # the ring (with its hole) + the island
    for obj, mask in zip(objects, detections.mask, strict=True):
        np.testing.assert_array_equal(polygons_to_mask(obj["polygons"], shape), mask)  # exact
        naive = rasterize(obj["polygons"], shape)
        # close without dtseg too: nothing extra; only each hole's 1-pixel border goes missing
        assert not (naive & ~mask).any()
        assert (naive & mask).sum() / (naive | mask).sum() >= 0.85
    assert not rasterize(ring, shape)[12, 16]  # inside the hole, off the island


def test_options_drop_polygons_and_rle(tmp_path, frame, detections) -> None:
    objects = run(tmp_path, frame, detections, polygons=False, rle=False, indent=2)["objects"]
    assert all("polygons" not in o and "rle" not in o for o in objects)
    assert (tmp_path / "json" / "img.json").read_text().startswith("{\n  ")


def test_missing_fields_are_null_and_extra_data_is_kept(tmp_path, frame, detections) -> None:
    detections.class_id = detections.confidence = detections.tracker_id = None
    del detections.data["class_name"], detections.data["zone"]
    detections.data["area_ratio"] = np.array([0.1, np.nan, 0.3])
    objects = run(tmp_path, frame, detections)["objects"]
    assert all(o["class_id"] is None and o["class_name"] is None and o["confidence"] is None for o in objects)
    assert all("zone" not in o for o in objects)
    assert [o["data"]["area_ratio"] for o in objects] == [0.1, None, 0.3]


def test_empty_detections_write_an_empty_document(tmp_path, frame, empty) -> None:
    doc = run(tmp_path, frame, empty, name="nothing")
    assert doc == {"image": {"name": "nothing", "width": frame.shape[1], "height": frame.shape[0]}, "objects": []}
