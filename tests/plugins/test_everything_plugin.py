"""``everything`` as a third party would test it: found through the ``dtseg`` entry point, run in
a pipeline on the tiny SAM, its grid and filters checked against segment-anything's own."""

from __future__ import annotations

import numpy as np
import pytest
import supervision as sv
from segment_anything import SamAutomaticMaskGenerator

from dtseg.errors import ConfigError, PromptError
from dtseg.pipeline import Pipeline
from dtseg.plugins import load_registry


def run(engine, frame, **options) -> sv.Detections:
    pipeline = Pipeline.from_config({"prompts": [{"everything": options}], "sinks": []}, engine=engine)
    return pipeline(frame)


def greedy_nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> set[int]:
    """Plain greedy NMS (independent of torchvision): the best box wins its overlaps."""
    kept: list[int] = []
    for i in np.argsort(-scores, kind="stable"):
        if all(sv.box_iou_batch(boxes[i : i + 1], boxes[j : j + 1])[0, 0] <= threshold for j in kept):
            kept.append(int(i))
    return set(kept)


def test_found_through_the_entry_point():
    info = load_registry().provider("everything")
    assert info.source.startswith("built-in, entry point everything = dtseg_plugins.everything")


def test_the_grid_is_the_automatic_mask_generators(make_provider, tiny_sam_engine, small_frame):
    provider = make_provider("everything", points_per_side=5)
    prompts = provider(small_frame, None)
    generator = SamAutomaticMaskGenerator(tiny_sam_engine.model.net, points_per_side=5)
    h, w = small_frame.shape[:2]
    np.testing.assert_allclose(prompts.points[:, 0], generator.point_grids[0] * (w, h), rtol=1e-6)
    assert prompts.labels.tolist() == [[1]] * 25 and not prompts.has_box.any()
    assert prompts.data["grid_point"].tolist() == list(range(25))


def test_filters_keep_exactly_what_the_generators_rules_keep(tiny_sam_engine, small_frame):
    everything = run(tiny_sam_engine, small_frame, points_per_side=6, pred_iou_thresh=0, box_nms_thresh=1)
    assert len(everything) == everything.metadata["num_prompts"] == 36  # no filter: one mask per point
    scores = everything.data["sam_score"]
    threshold = float(np.median(scores))  # random weights: scores are arbitrary, take half of them
    areas = everything.mask.reshape(36, -1).sum(axis=1)
    passing = np.flatnonzero((scores >= threshold) & (areas >= 20))
    expected = sorted(passing[list(greedy_nms(everything.xyxy[passing], scores[passing], 0.95))])
    assert len(passing) < 36 and 1 < len(expected) < len(passing)  # each filter has something to do

    filtered = run(tiny_sam_engine, small_frame, points_per_side=6, pred_iou_thresh=threshold, box_nms_thresh=0.95,
                   min_area=20)
    assert filtered.data["grid_point"].tolist() == expected
    for row, i in enumerate(expected):
        np.testing.assert_array_equal(filtered.mask[row], everything.mask[i])


def test_only_as_the_first_stage_and_options_are_checked(tiny_sam_engine, small_frame):
    config = {"prompts": [{"points": {"objects": [{"points": [[5, 5]]}]}}, "everything"], "sinks": []}
    with pytest.raises(PromptError, match="put it first"):
        Pipeline.from_config(config, engine=tiny_sam_engine)(small_frame)
    with pytest.raises(ConfigError, match="points_per_side"):
        Pipeline.from_config({"prompts": [{"everything": {"points_per_side": 0}}]}, engine=tiny_sam_engine)


def test_each_image_says_how_many_masks_each_filter_kept(tiny_sam_engine, small_frame, caplog):
    everything = run(tiny_sam_engine, small_frame, points_per_side=4, pred_iou_thresh=0, box_nms_thresh=1)
    best = float(everything.data["sam_score"].max())
    with caplog.at_level("INFO", logger="dtseg_plugins.everything"):
        kept = run(tiny_sam_engine, small_frame, points_per_side=4, pred_iou_thresh=0, box_nms_thresh=1, min_area=1)
    assert "16 grid points (4 x 4, points_per_side)" in caplog.text
    assert (f"kept {len(kept)} of 16 masks (16 with sam_score >= pred_iou_thresh 0, the highest {best:.2f}"
            in caplog.text)
    caplog.clear()
    with caplog.at_level("INFO", logger="dtseg_plugins.everything"):
        none = run(tiny_sam_engine, small_frame, points_per_side=4, pred_iou_thresh=min(1.0, best + 0.01))
    assert len(none) == 0
    assert "kept 0 of 16 masks (0 with sam_score" in caplog.text
    assert f"lower prompts.everything.pred_iou_thresh (below {best:.2f})" in caplog.text
