"""Parity with the reference ``segment_anything.SamPredictor`` on the same random weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from segment_anything import SamPredictor

from dtseg import SamEngine
from tests.similarity import assert_boxes_match_reference, assert_matches, assert_matches_reference
from tests.tiny import make_engine, synthetic_image

CASES = {
    "single point": dict(point_coords=[[200, 120]], point_labels=[1]),
    "points with a negative": dict(point_coords=[[200, 120], [380, 220], [60, 40]], point_labels=[1, 1, 0]),
    "box": dict(boxes=[150, 60, 420, 260]),
    "box and point": dict(point_coords=[[300, 150]], point_labels=[1], boxes=[150, 60, 420, 260]),
    # -1 is SAM's not-a-point token: it changes the mask, as in the reference
    "point and not-a-point": dict(point_coords=[[200, 120], [380, 220]], point_labels=[1, -1]),
    "only not-a-point": dict(point_coords=[[200, 120]], point_labels=[-1]),
    "box and not-a-point": dict(point_coords=[[300, 150]], point_labels=[-1], boxes=[150, 60, 420, 260]),
    "no prompt": dict(),
}


@pytest.fixture(scope="module", params=[(300, 500), (333, 1001)], ids=lambda s: f"{s[0]}x{s[1]}")
def setup(request):
    engine = make_engine()
    image = synthetic_image(*request.param, seed=1)
    predictor = SamPredictor(engine.model.net)
    predictor.set_image(image)
    engine.embed_image(image, "img")
    return engine, predictor


@pytest.mark.parametrize("multimask", [True, False], ids=["multimask", "single"])
@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_single_object_matches_reference(setup, case, multimask):
    engine, predictor = setup
    result = engine.segment_image(image_id="img", multimask_output=multimask, **CASES[case])
    assert_matches_reference(result, predictor, CASES[case], multimask)


def test_embedding_matches_reference(setup):
    engine, predictor = setup
    ours = engine.embeddings.get(("", "img")).embedding
    torch.testing.assert_close(ours, predictor.features[0], atol=1e-3, rtol=0)


@pytest.mark.parametrize("multimask", [True, False], ids=["multimask", "single"])
def test_twenty_boxes_in_one_call_match_reference_loop(setup, multimask):
    engine, predictor = setup
    assert_boxes_match_reference(engine, predictor, predictor.original_size, 20, multimask)


def test_reference_predict_torch_batch_agrees(setup):
    """The reference's own batched call gives what our batched call gives."""
    engine, predictor = setup
    boxes = np.array([[10, 10, 200, 150], [100, 50, 300, 250], [0, 0, 60, 60]], np.float32)
    transformed = torch.as_tensor(predictor.transform.apply_boxes(boxes, predictor.original_size))
    masks, scores, logits = predictor.predict_torch(None, None, boxes=transformed, multimask_output=True)
    result = engine.segment_image(image_id="img", boxes=boxes)
    assert_matches(result, masks.numpy(), scores.numpy(), logits.numpy())


@pytest.mark.slow
def test_vit_b_architecture_matches_reference():
    engine = SamEngine.load("vit_b", "random", device="cpu")
    image = synthetic_image(120, 160, seed=2)
    predictor = SamPredictor(engine.model.net)
    predictor.set_image(image)
    case = CASES["points with a negative"]
    case = dict(point_coords=np.array(case["point_coords"]) / 3, point_labels=case["point_labels"])
    result = engine.segment_image(image, **case)
    torch.testing.assert_close(engine.embeddings.get(("", result.image_id)).embedding, predictor.features[0],
                               atol=1e-3, rtol=0)
    assert_matches_reference(result, predictor, case)
