"""``zones``: zone prompts as a first stage; anchor and mask-overlap filters after another stage."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import supervision as sv

from dtseg.errors import ConfigError
from dtseg.pipeline import Pipeline
from dtseg.prompts import Prompts

L_SHAPE = [[10, 10], [40, 10], [40, 80], [120, 80], [120, 110], [10, 110]]  # concave: centroid outside
BOTTOM = {"name": "bottom", "polygon": [[0, 60], [160, 60], [160, 120], [0, 120]]}
LEFT = {"name": "left", "polygon": [[0, 0], [80, 0], [80, 120], [0, 120]]}


def inside(polygon, point) -> bool:
    return cv2.pointPolygonTest(np.asarray(polygon, np.float32), tuple(map(float, point)), False) >= 0


def test_first_stage_one_prompt_per_zone_with_its_box_and_an_interior_point(make_provider, small_frame):
    outside = [[100, 90], [300, 90], [300, 200], [100, 200]]  # mostly beyond the 160 x 120 frame
    prompts = make_provider("zones", zones=[{"name": "L", "polygon": L_SHAPE}, {"polygon": outside}])(small_frame, None)
    assert len(prompts) == 2 and list(prompts.data["zone"]) == ["L", "zone1"]
    assert not inside(L_SHAPE, np.mean(L_SHAPE, axis=0))  # the naive centre would miss
    assert inside(L_SHAPE, prompts.points[0, 0]) and prompts.labels[0, 0] == 1
    np.testing.assert_array_equal(prompts.boxes[0], [10, 10, 120, 110])
    np.testing.assert_array_equal(prompts.boxes[1], [100, 90, 159, 119])  # clipped to the frame
    assert inside(outside, prompts.points[1, 0]) and prompts.points[1, 0, 0] <= 159


@pytest.mark.parametrize("anchor, kept", [("bottom_center", [0, 2]), ("center", [2]), ("top_left", [2])])
def test_anchor_filter_keeps_objects_whose_anchor_is_in_a_zone(make_provider, small_frame, anchor, kept):
    boxes = np.array([[10, 20, 40, 70],    # bottom centre (25, 70) in; centre (25, 45) out
                      [100, 0, 150, 40],   # entirely above the zone
                      [20, 70, 60, 110]],  # entirely inside
                     np.float32)
    prompts = Prompts.from_arrays(boxes=boxes)
    prompts.data["tag"] = np.array(["a", "b", "c"])
    out = make_provider("zones", zones=[BOTTOM], anchor=anchor)(small_frame, prompts)
    assert list(out.data["tag"]) == [["a", "b", "c"][i] for i in kept]
    np.testing.assert_array_equal(out.boxes, boxes[kept])
    assert list(out.data["zone"]) == ["bottom"] * len(kept)


def test_first_listed_zone_wins_and_points_only_objects_use_detector_box_or_points(make_provider, small_frame):
    prompts = Prompts.from_objects([{"points": [[30, 100]]}, {"points": [[150, 100], [140, 90]]},
                                    {"points": [[150, 10]]}])
    prompts.data["detector_box"] = np.array([[np.nan] * 4, [np.nan] * 4, [0, 0, 20, 20]], np.float32)
    out = make_provider("zones", zones=[LEFT, BOTTOM], anchor="center")(small_frame, prompts)
    # object 0: point in both zones -> "left"; object 1: mean point (145, 95) -> "bottom";
    # object 2: its detector box centre (10, 10) -> "left", although its point is in no zone
    assert list(out.data["zone"]) == ["left", "bottom", "left"]


def square_masks(shape=(120, 160)) -> np.ndarray:
    masks = np.zeros((3, *shape), bool)
    masks[0, 70:90, 71:91] = True   # half of it (x 71..80; edges count) in LEFT
    masks[1, 10:30, 10:30] = True   # all in LEFT
    return masks                    # mask 2 is empty


def test_mask_overlap_filter_keeps_masks_mostly_in_a_zone(make_provider, small_frame):
    masks = square_masks()
    detections = sv.Detections(xyxy=sv.mask_to_xyxy(masks).astype(np.float32), mask=masks,
                               data={"tag": np.array(["half", "full", "empty"])})
    provider = make_provider("zones", zones=[BOTTOM, LEFT], min_overlap=0.5)
    assert provider(small_frame, Prompts.from_arrays(boxes=detections.xyxy)) is not None  # passes prompts on
    out = provider.after_segment(small_frame, detections)
    assert list(out.data["tag"]) == ["half", "full"]
    # "half" is 100 % in BOTTOM (rows 70..89 >= 60) and 50 % in LEFT: the best zone wins
    assert list(out.data["zone"]) == ["bottom", "left"]
    np.testing.assert_allclose(out.data["zone_overlap"], [1.0, 1.0])
    strict = make_provider("zones", zones=[LEFT], min_overlap=0.6).after_segment(small_frame, detections)
    assert list(strict.data["tag"]) == ["full"]
    halves = make_provider("zones", zones=[LEFT], min_overlap=0.5).after_segment(small_frame, detections)
    np.testing.assert_allclose(halves.data["zone_overlap"], [0.5, 1.0])


def test_anchor_mode_leaves_masks_alone_and_empty_results_stay_empty(make_provider, small_frame):
    masks = square_masks()
    detections = sv.Detections(xyxy=sv.mask_to_xyxy(masks).astype(np.float32), mask=masks)
    assert make_provider("zones", zones=[LEFT]).after_segment(small_frame, detections) is detections
    empty = make_provider("zones", zones=[LEFT], min_overlap=0.3).after_segment(small_frame, sv.Detections.empty())
    assert len(empty) == 0 and len(empty.data["zone"]) == 0


def test_zones_after_points_end_to_end_overlap_is_measured_on_the_output_masks(small_frame, tiny_sam_engine):
    objects = [{"points": [[x, 60]]} for x in (30, 80, 130)]
    everything = tiny_sam_engine.segment(small_frame, Prompts.from_objects(objects))
    zone = sv.polygon_to_mask(np.array(LEFT["polygon"]), (160, 120)).astype(bool)
    fraction = (everything.mask & zone).sum(axis=(1, 2)) / np.maximum(everything.mask.sum(axis=(1, 2)), 1)
    threshold = float(np.sort(fraction)[1])  # random weights: pick one that splits these masks
    expected = np.flatnonzero(fraction >= threshold)
    assert 0 < len(expected) < len(objects)
    config = {"prompts": [{"points": {"objects": objects}}, {"zones": {"zones": [LEFT], "min_overlap": threshold}}],
              "sinks": []}
    out = Pipeline.from_config(config, engine=tiny_sam_engine)(small_frame)
    assert out.metadata["num_prompts"] == len(objects)
    np.testing.assert_array_equal(out.data["prompt_points"][:, 0], everything.data["prompt_points"][expected, 0])
    np.testing.assert_allclose(out.data["zone_overlap"], fraction[expected], rtol=1e-6)
    np.testing.assert_array_equal(out.mask, everything.mask[expected])
    assert list(out.data["zone"]) == ["left"] * len(expected)
    np.testing.assert_array_equal(out.metadata["zones"]["left"], LEFT["polygon"])  # for the annotated sink


def test_the_zones_travel_with_every_result_for_drawing(small_frame, tiny_sam_engine):
    """Anchor mode (no after_segment filter) and as the first stage too: the sink draws them."""
    for prompts in ([{"points": {"objects": [{"points": [[30, 60]]}]}}, {"zones": {"zones": [LEFT]}}],
                    [{"zones": {"zones": [LEFT, {"polygon": L_SHAPE}]}}]):
        out = Pipeline.from_config({"prompts": prompts, "sinks": []}, engine=tiny_sam_engine)(small_frame)
        assert list(out.metadata["zones"]) == ["left", "zone1"][: len(prompts[-1]["zones"]["zones"])]
        np.testing.assert_array_equal(out.metadata["zones"]["left"], LEFT["polygon"])


@pytest.mark.parametrize("options, message", [
    ({"zones": [{"polygon": [[0, 0], [1, 1]]}]}, r"zones\.zones\.0\.polygon"),
    ({"zones": [{"name": "a", "polygon": L_SHAPE}, {"name": "a", "polygon": L_SHAPE}]}, "unique"),
    ({"zones": [LEFT], "anchor": "middle"}, r"zones\.anchor"),
    ({"zones": [LEFT], "min_overlap": 1.5}, r"zones\.min_overlap"),
])
def test_bad_options_are_config_errors(make_provider, options, message):
    with pytest.raises(ConfigError, match=message):
        make_provider("zones", **options)
