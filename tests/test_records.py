"""``dtseg.records``: the one per-object record every JSON output writes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import supervision as sv

from dtseg.errors import InputError
from dtseg.masks import polygons_to_mask, rle_to_mask
from dtseg.records import OWN_DATA_KEYS, RECORD_FIELDS, object_records


def _detections() -> sv.Detections:
    masks = np.zeros((2, 6, 8), bool)
    masks[0, 1:3, 2:5] = True
    masks[1, 4:6, 0:8] = True
    return sv.Detections(
        xyxy=sv.mask_to_xyxy(masks).astype(np.float32), mask=masks, class_id=np.array([3, 1]),
        confidence=np.array([0.75, np.nan], np.float32), tracker_id=np.array([7, -1]),
        data={"class_name": np.array(["car", "dog"]), "sam_score": np.array([0.9, 0.8], np.float32),
              "zone": np.array(["a", "b"], dtype=object), "lane": np.array([2, 4]),
              "prompt_box": np.array([[1, 1, 5, 3], [np.nan] * 4], np.float32),
              "prompt_points": np.array([[[np.nan, np.nan]], [[3, 5]]], np.float32),
              "prompt_labels": np.array([[-1], [1]], np.int32)})


def test_a_record_has_every_field_once_in_order_and_plain_json() -> None:
    first, second = json.loads(json.dumps(object_records(_detections(), (6, 8), output="test"), allow_nan=False))
    assert list(first) == list(RECORD_FIELDS)
    assert {k: v for k, v in first.items() if k not in ("polygons", "rle")} == {
        "index": 0, "class_id": 3, "class_name": "car", "confidence": 0.75, "sam_score": 0.9, "tracker_id": 7,
        "zone": "a", "box": [2.0, 1.0, 4.0, 2.0], "prompt": {"box": [1.0, 1.0, 5.0, 3.0], "points": [], "labels": []},
        "area": 6, "data": {"lane": 2}}
    assert second["confidence"] is None and second["tracker_id"] == -1  # NaN -> null
    assert second["prompt"] == {"box": None, "points": [[3.0, 5.0]], "labels": [1]}
    masks = _detections().mask
    for obj, mask in zip((first, second), masks, strict=True):
        np.testing.assert_array_equal(rle_to_mask(obj["rle"]), mask)
        parts = [[np.asarray(ring) for ring in part] for part in obj["polygons"]]
        np.testing.assert_array_equal(polygons_to_mask(parts, mask.shape), mask)


def test_optional_parts_and_absent_keys() -> None:
    detections = _detections()
    del detections.data["zone"], detections.data["lane"]
    obj = object_records(detections, (6, 8), output="test", prompt=False, polygons=False, rle=False)[0]
    assert list(obj) == ["index", "class_id", "class_name", "confidence", "sam_score", "tracker_id", "box", "area"]
    assert set(OWN_DATA_KEYS) >= {"zone", "class_name", "sam_score"}


def test_masks_must_be_there_and_fit_the_frame() -> None:
    assert object_records(sv.Detections.empty(), (6, 8), output="test") == []
    no_masks = sv.Detections(xyxy=np.zeros((1, 4), np.float32))
    with pytest.raises(InputError, match="'test' output needs masks"):
        object_records(no_masks, (6, 8), output="test")
    with pytest.raises(InputError, match=r"masks are \(6, 8\), the frame is \(8, 6\)"):
        object_records(_detections(), (8, 6), output="test")
