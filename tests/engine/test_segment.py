"""``segment`` -> ``sv.Detections`` contract, batching, refinement, empty inputs."""

from __future__ import annotations

import numpy as np
import pytest
import supervision as sv

from dtseg import Prompts
from dtseg.errors import PromptError
from tests.tiny import make_engine


def detector_like_prompts() -> Prompts:
    detections = sv.Detections(
        xyxy=np.array([[20, 30, 200, 180], [250, 100, 450, 280], [5, 5, 60, 60]], np.float32),
        class_id=np.array([2, 0, 5]),
        confidence=np.array([0.9, 0.8, 0.3], np.float32),
        data={"class_name": np.array(["car", "person", "bus"])},
    )
    return Prompts.from_detections(detections, mode="box")


def test_row_i_comes_from_prompt_i(engine, image):
    prompts = detector_like_prompts()
    detections = engine.segment(image, prompts)
    assert len(detections) == 3 and detections.mask.shape == (3, *image.shape[:2])
    np.testing.assert_array_equal(detections.class_id, prompts.class_id)
    np.testing.assert_array_equal(detections.confidence, prompts.confidence)
    np.testing.assert_array_equal(detections.data["class_name"], ["car", "person", "bus"])
    np.testing.assert_array_equal(detections.data["prompt_box"], prompts.boxes)
    # each row equals decoding that prompt alone
    for i in range(3):
        alone = engine.segment(image, prompts[i])
        np.testing.assert_array_equal(alone.mask[0], detections.mask[i])
        np.testing.assert_allclose(alone.data["sam_score"][0], detections.data["sam_score"][i], atol=1e-5)


def test_boxes_are_tight_around_masks(engine, image):
    detections = engine.segment(image, detector_like_prompts())
    for box, mask in zip(detections.xyxy, detections.mask, strict=True):
        if mask.any():
            ys, xs = np.nonzero(mask)
            np.testing.assert_array_equal(box, [xs.min(), ys.min(), xs.max(), ys.max()])


def test_mixed_and_ragged_prompts_are_independent_of_each_other(engine, image):
    objects = [
        {"points": [[100, 100]]},
        {"points": [[300, 200], [50, 50]], "labels": [1, 0]},
        {"box": [10, 10, 200, 200]},
        {"points": [[320, 150]], "box": [250, 80, 450, 280]},
        {"points": [[120, 220], [140, 230], [400, 40]], "labels": [1, 1, 0]},
    ]
    together = engine.segment_image(image, **_arrays(Prompts.from_objects(objects)))
    for i, obj in enumerate(objects):
        alone = engine.segment_image(image, **_arrays(Prompts.from_objects([obj])))
        np.testing.assert_allclose(together.low_res_logits[i], alone.low_res_logits[0], atol=1e-5)
        np.testing.assert_array_equal(together.masks[i], alone.masks[0])


def _arrays(prompts: Prompts) -> dict:
    return dict(point_coords=prompts.points, point_labels=prompts.labels, boxes=prompts.boxes)


def test_nan_padding_is_no_point_and_minus_one_is_a_token(engine, image):
    plain = engine.segment_image(image, point_coords=[[100, 100]], point_labels=[1])
    nan = np.nan
    padded = engine.segment_image(image, point_coords=[[nan, nan], [100, 100], [nan, nan]], point_labels=[-1, 1, -1])
    np.testing.assert_allclose(plain.low_res_logits, padded.low_res_logits, atol=1e-6)
    token = engine.segment_image(image, point_coords=[[100, 100], [0, 0]], point_labels=[1, -1])
    assert np.abs(plain.low_res_logits - token.low_res_logits).max() > 1e-3  # SAM's not-a-point changes the mask


def test_empty_prompts_give_empty_detections(engine, image):
    detections = engine.segment(image, Prompts.empty())
    assert len(detections) == 0 and isinstance(detections, sv.Detections)
    one = engine.segment(image, Prompts.from_objects([{"box": [10, 10, 60, 60]}]))
    assert set(detections.data) == set(one.data)  # the same keys as a result with rows
    result = engine.segment_image(image, boxes=np.zeros((0, 4)))
    assert result.masks.shape == (0, 3, *image.shape[:2]) and result.scores.shape == (0, 3)


def test_large_batches_are_chunked_without_changing_results(image):
    small_chunks, one_chunk = make_engine(chunk_size=4), make_engine(chunk_size=64)
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 200, (11, 2))
    boxes = np.concatenate([xy, xy + 80], axis=1)
    a = small_chunks.segment_image(image, boxes=boxes, multimask_output=False)
    b = one_chunk.segment_image(image, boxes=boxes, multimask_output=False)
    np.testing.assert_allclose(a.low_res_logits, b.low_res_logits, atol=1e-5)


def test_cached_mask_input_refines_with_the_last_calls_best_logits(image):
    engine = make_engine()
    first = engine.segment_image(image, point_coords=[[150, 120]], point_labels=[1])
    best_logits = first.low_res_logits[0, int(np.argmax(first.scores[0]))]
    click = dict(image_id=first.image_id, point_coords=[[150, 120], [200, 140]], point_labels=[1, 0],
                 multimask_output=False)
    cached = engine.segment_image(mask_input="cached", **click)
    explicit = make_engine().segment_image(image, mask_input=best_logits, **click)
    without = engine.segment_image(**click)
    np.testing.assert_allclose(cached.low_res_logits, explicit.low_res_logits, atol=1e-5)
    assert not np.allclose(cached.low_res_logits, without.low_res_logits, atol=1e-3)


def test_segment_also_remembers_its_best_logits(image):
    engine = make_engine()
    prompts = Prompts.from_arrays([[150, 120]], [1])
    detections = engine.segment(image, prompts, multimask_output=True)
    image_id = engine.embed_image(image).image_id
    reference = engine.segment_image(image_id=image_id, point_coords=[[150, 120]], point_labels=[1])
    best = int(np.argmax(reference.scores[0]))
    assert detections.data["sam_score"][0] == reference.scores[0, best]
    remembered = engine.mask_logits.get(("", image_id)).logits.numpy()
    np.testing.assert_allclose(remembered[0, 0], reference.low_res_logits[0, best], atol=1e-6)


def test_mask_input_alone_is_a_prompt(engine, image):
    result = engine.segment_image(image, mask_input=np.zeros((256, 256), np.float32), multimask_output=False)
    assert result.masks.shape == (1, 1, *image.shape[:2])


def test_pipeline_prompts_keep_minus_one_as_a_token_and_need_a_point_or_box(engine, image):
    """``segment`` (the pipeline's call) reads a -1 point as ``segment_image`` does: SAM's
    not-a-point token, not padding; an object with no point and no box is an error naming it."""
    objects = [{"points": [[100, 100], [20, 30]], "labels": [1, -1]}, {"points": [[60, 50]], "labels": [-1]},
               {"box": [10, 10, 120, 90]}]
    detections = engine.segment(image, Prompts.from_objects(objects))
    for i, obj in enumerate(objects):
        alone = engine.segment_image(image, point_coords=obj.get("points"), point_labels=obj.get("labels"),
                                     boxes=obj.get("box"), multimask_output=False)
        np.testing.assert_allclose(detections.data["sam_score"][i], alone.scores[0, 0], atol=1e-5)
        np.testing.assert_array_equal(detections.mask[i], alone.masks[0, 0])
    assert detections.data["prompt_labels"][1].tolist() == [-1, -1]  # the token, then padding
    assert np.isnan(detections.data["prompt_points"][1, 1]).all()
    with pytest.raises(PromptError, match=r"objects \[1\] have no point and no box"):
        engine.segment(image, Prompts.from_objects([{"box": [1, 1, 9, 9]}, {}]))
