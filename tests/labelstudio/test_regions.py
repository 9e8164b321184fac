"""Annotator regions -> SAM prompts in pixels; masks -> brush (Label Studio RLE) or polygon regions."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from dtseg.errors import InputError
from dtseg.labelstudio.label_config import label_config_xml, parse_label_config
from dtseg.labelstudio.regions import brush_mask, mask_region, prompt_from_context
from dtseg.masks import polygons_to_mask

BRUSH = parse_label_config(label_config_xml(["Person", "bus"]))
POLYGON = parse_label_config(label_config_xml(["Person", "bus"], "PolygonLabels"))
SIZE = (200, 400)  # (H, W)


def keypoint(x: float, y: float, label: str = "Person", positive: bool | None = True) -> dict[str, Any]:
    item: dict[str, Any] = {"type": "keypointlabels", "from_name": "click", "to_name": "image",
                            "original_width": 400, "original_height": 200,
                            "value": {"x": x, "y": y, "width": 0.5, "keypointlabels": [label]}}
    if positive is not None:
        item["is_positive"] = positive
    return item


def rectangle(x: float, y: float, w: float, h: float, label: str = "bus") -> dict[str, Any]:
    return {"type": "rectanglelabels", "value": {"x": x, "y": y, "width": w, "height": h, "rotation": 0,
                                                 "rectanglelabels": [label]}}


def test_keypoints_in_percent_become_pixels_with_alt_and_label_negatives() -> None:
    context = {"result": [keypoint(25, 50), keypoint(50, 10, positive=False), keypoint(75, 100, "negative", None)]}
    prompt = prompt_from_context(context, BRUSH, SIZE, ["negative"])
    np.testing.assert_allclose(prompt.points, [[100, 100], [200, 20], [300, 200]])
    assert prompt.labels.tolist() == [1, 0, 0] and prompt.box is None and prompt.label == "Person"
    assert prompt.size == 3


def test_a_rectangle_is_a_box_and_the_last_label_names_the_object() -> None:
    context = {"result": [keypoint(50, 50, "person"), rectangle(10, 20, 30, 40, "Bus")]}
    prompt = prompt_from_context(context, BRUSH, SIZE)
    np.testing.assert_allclose(prompt.box, [40, 40, 160, 120])
    assert prompt.label == "bus" and prompt.size == 2  # case-insensitive, the config's spelling


@pytest.mark.parametrize("context, field, message", [
    ({}, "context", "expected"),
    ({"result": [keypoint(101, 50)]}, "context.result[0]", "outside the image"),
    ({"result": [keypoint(50, -1)]}, "context.result[0]", "outside the image"),
    ({"result": [keypoint(50, 50, "cat")]}, "context", "'cat' is not one of"),
    ({"result": [keypoint(50, 50, positive=False)]}, "context", "no positive keypoint"),
    ({"result": [{"type": "brushlabels", "value": {}}]}, "context.result[0]", "keypointlabels or rectanglelabels"),
    ({"result": [{**keypoint(0, 0), "value": {"x": "1", "y": 2, "keypointlabels": ["Person"]}}]},
     "context.result[0].value.x", "expected a number"),
    ({"result": [rectangle(120, 10, 5, 5)]}, "context.result[0]", "no area inside the image"),
])
def test_contexts_that_cannot_be_placed(context: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(InputError, match=message) as info:
        prompt_from_context(context, BRUSH, SIZE, ["negative"])
    assert info.value.field == field


def test_brush_region_decodes_to_the_mask() -> None:
    mask = np.zeros(SIZE, bool)
    mask[30:90, 50:300] = True
    mask[100:101, 7] = True
    region = mask_region(mask, "bus", 0.75, BRUSH)
    assert region is not None
    assert region["type"] == "brushlabels" and region["value"]["brushlabels"] == ["bus"]
    assert (region["from_name"], region["to_name"]) == ("mask", "image")
    assert (region["original_width"], region["original_height"], region["score"]) == (400, 200, 0.75)
    np.testing.assert_array_equal(brush_mask(region), mask)


def test_polygon_region_is_the_largest_part_in_percent() -> None:
    mask = np.zeros(SIZE, bool)
    mask[20:120, 40:240] = True  # the largest part
    mask[150:160, 350:360] = True
    region = mask_region(mask, "Person", None, POLYGON)
    assert region is not None and "score" not in region and region["value"]["polygonlabels"] == ["Person"]
    pixels = np.asarray(region["value"]["points"]) * [400 / 100, 200 / 100]
    np.testing.assert_array_equal(polygons_to_mask([[np.rint(pixels).astype(np.int32)]], SIZE),
                                  mask & (np.arange(400) < 300))


def test_an_empty_mask_is_no_region() -> None:
    assert mask_region(np.zeros(SIZE, bool), "bus", 0.5, BRUSH) is None
