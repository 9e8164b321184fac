"""Every family against its own reference predictor, on identical random weights.

``mobile_sam``: segment-anything's ``SamPredictor`` over the same TinyViT ``Sam``;
``sam2.1``: Meta's ``SAM2ImagePredictor`` over the same ``SAM2Base``. (``sam`` has its own,
longer file: test_parity.py; the ragged-batch test covers it here too.) Scores and low-res logits
within 1e-4, masks IoU >= 0.99.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from segment_anything import SamPredictor

from dtseg import SamEngine
from dtseg.errors import RandomWeightsWarning
from dtseg.families.sam2.family import Sam2Model
from dtseg.prompts import Prompts
from tests.engine.test_parity import CASES
from tests.similarity import assert_boxes_match_reference, assert_matches_reference
from tests.tiny import synthetic_image

FAMILIES = {"mobile_sam": "tiny_mobile_sam", "sam2.1": "tiny_sam2.1"}


def reference_predictor(engine: SamEngine):
    if isinstance(engine.model, Sam2Model):
        from sam2.sam2_image_predictor import SAM2ImagePredictor

        return SAM2ImagePredictor(engine.model.net)
    return SamPredictor(engine.model.net)


def load(model: str) -> SamEngine:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomWeightsWarning)
        return SamEngine.load(model, "random", device="cpu", seed=3)


@pytest.fixture(scope="module", params=list(FAMILIES), ids=list(FAMILIES))
def setup(request):
    engine = load(FAMILIES[request.param])
    image = synthetic_image(333, 1001, seed=1)
    predictor = reference_predictor(engine)
    predictor.set_image(image)
    engine.embed_image(image, "img")
    return engine, predictor


@pytest.mark.parametrize("multimask", [True, False], ids=["multimask", "single"])
@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_single_object_matches_reference(setup, case, multimask):
    engine, predictor = setup
    result = engine.segment_image(image_id="img", multimask_output=multimask, **CASES[case])
    assert_matches_reference(result, predictor, CASES[case], multimask)


def test_every_feature_matches_reference(setup):
    engine, predictor = setup
    features = engine.get_embedding("img").features
    if isinstance(engine.model, Sam2Model):
        expected = {"image_embed": predictor._features["image_embed"][0],
                    "high_res_0": predictor._features["high_res_feats"][0][0],
                    "high_res_1": predictor._features["high_res_feats"][1][0]}
    else:
        expected = {"image_embed": predictor.features[0]}
    assert set(features) == set(expected)
    for name, tensor in expected.items():
        torch.testing.assert_close(features[name], tensor, atol=1e-4, rtol=0)
    assert engine.get_embedding("img").nbytes == sum(t.numel() * 4 for t in expected.values())


@pytest.mark.parametrize("multimask", [True, False], ids=["multimask", "single"])
def test_twenty_boxes_in_one_call_match_reference_loop(setup, multimask):
    engine, predictor = setup
    assert_boxes_match_reference(engine, predictor, (333, 1001), 20, multimask)


def test_mask_input_matches_reference(setup):
    engine, predictor = setup
    case = CASES["points with a negative"]
    first = engine.segment_image(image_id="img", multimask_output=False, **case)
    case = {**case, "mask_input": first.low_res_logits[0]}  # (1, 256, 256), as each reference returns it
    result = engine.segment_image(image_id="img", multimask_output=False, **case)
    assert_matches_reference(result, predictor, case, multimask=False)


RAGGED = [
    {"points": [[200, 120], [380, 220], [60, 40]], "labels": [1, -1, 0]},
    {"points": [[300, 150]], "labels": [-1], "box": [150, 60, 420, 260]},
    {"box": [10, 10, 200, 150]},
    {"points": [[90, 200], [500, 100]], "labels": [1, 1]},
    {"points": [[90, 200], [500, 100]], "labels": [-1, 1]},
    {},
]


@pytest.mark.parametrize("model", ["tiny", *FAMILIES.values()])
def test_ragged_batch_row_is_its_prompt_alone_and_the_reference(model):
    """NaN padding of ragged rows never reaches SAM (row i is prompt i alone, as the reference
    decodes it), while a caller's -1 points stay SAM's not-a-point tokens."""
    engine = load(model)
    image = synthetic_image(333, 1001, seed=1)
    predictor = reference_predictor(engine)
    predictor.set_image(image)
    engine.embed_image(image, "img")
    batch = Prompts.from_objects(RAGGED)
    assert np.isnan(batch.points).any()  # the batch is padded
    together = engine.segment_image(image_id="img", point_coords=batch.points, point_labels=batch.labels,
                                    boxes=batch.boxes)
    for i, obj in enumerate(RAGGED):
        case = {"point_coords": obj.get("points"), "point_labels": obj.get("labels"), "boxes": obj.get("box")}
        alone = engine.segment_image(image_id="img", **{k: v for k, v in case.items() if v is not None})
        # batch size changes float rounding only (~1e-7); a padding token would move logits ~1e-1
        np.testing.assert_allclose(together.low_res_logits[i], alone.low_res_logits[0], atol=1e-5)
        np.testing.assert_allclose(together.scores[i], alone.scores[0], atol=1e-6)
        np.testing.assert_array_equal(together.masks[i], alone.masks[0])
        assert_matches_reference(alone, predictor, case)


def test_an_embedding_of_another_model_is_refused_by_name(setup):
    engine, _ = setup
    other = load("tiny")
    embedding = other.embed_image(synthetic_image(60, 80), "x")
    with pytest.raises(ValueError, match=f"made by model 'tiny', but this engine runs '{engine.model_name}'"):
        engine.segment(embedding, _one_box())
    with pytest.raises(ValueError, match="made by model 'tiny'"):
        engine.store_embedding(embedding)


def _one_box():
    return Prompts.from_arrays(boxes=[[5, 5, 40, 40]])


@pytest.mark.slow
@pytest.mark.parametrize("model", ["mobile_sam", "sam2.1_t"])
def test_real_size_architecture_matches_reference(model):
    engine = load(model)
    image = synthetic_image(120, 160, seed=2)
    predictor = reference_predictor(engine)
    predictor.set_image(image)
    case = CASES["points with a negative"]
    case = dict(point_coords=np.array(case["point_coords"]) / 3, point_labels=case["point_labels"])
    assert_matches_reference(engine.segment_image(image, **case), predictor, case)
