"""The ``sam3`` family through ``SamEngine`` against Meta's reference, on identical random weights.

Visual prompts: the cases every family passes (tests/engine/test_parity.py) against
``Sam3Image.predict_inst``. Concept prompts: one phrase, an exemplar box, a phrase with a
negative box, three phrases in one call, a phrase that matches nothing, against
``Sam3Processor`` and the batched ``Datapoint`` path Roboflow uses (tests/families/sam3/reference.py).
Scores within 1e-4, boxes within 1e-3 pixels, masks IoU >= 0.99.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from dtseg import SamEngine
from dtseg.engine.concepts import ConceptPrompt, ConceptResult, mask_nms, to_detections
from dtseg.errors import CheckpointError, PromptError, RandomWeightsWarning
from dtseg.families.sam3.net import SAM3_SPEC, TINY_SAM3_SPEC, build_sam3_net, on_device, save_sam3_checkpoint
from tests.engine.test_parity import CASES
from tests.families.sam3.reference import Concept, batched_concepts, processor_concepts
from tests.similarity import assert_boxes_match_reference, assert_matches_reference, mask_iou
from tests.tiny import make_engine, synthetic_image

pytest.importorskip("sam3")

HEIGHT, WIDTH = 333, 500
RESOLUTION = TINY_SAM3_SPEC.resolution
DISC, GREEN = (80.0, 60.0, 260.0, 210.0), (280.0, 200.0, 450.0, 300.0)
#: Each case is one call (exemplar boxes in image pixels, label True = positive).
CONCEPTS = {
    "phrase": [Concept("a red disc")],
    "exemplar_box": [Concept(None, ((DISC, True),))],
    "phrase_negative_box": [Concept("a red disc", ((GREEN, False),))],
    "three_phrases": [Concept("a red disc"), Concept("a green box"), Concept("sky")],
}


def load(model: str = "tiny_sam3", checkpoint: str = "random", **options) -> SamEngine:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomWeightsWarning)
        return SamEngine.load(model, checkpoint, device="cpu", seed=3, **options)


def as_prompt(concept: Concept) -> dict:
    return {"text": concept.phrase, "boxes": [box for box, _ in concept.boxes],
            "box_labels": [positive for _, positive in concept.boxes]}


class InstPredictor:
    """``predict_inst`` on a ``Sam3Processor`` image state, called like ``SamPredictor.predict``."""

    def __init__(self, net: torch.nn.Module, image: np.ndarray, resolution: int = RESOLUTION) -> None:
        from sam3.model.sam3_image_processor import Sam3Processor

        self.net = net
        with torch.inference_mode(), on_device("cpu"):
            self.state = Sam3Processor(net, resolution=resolution, device="cpu").set_image(Image.fromarray(image))

    def predict(self, **kwargs):
        with torch.inference_mode():
            return self.net.predict_inst(self.state, **kwargs)


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return synthetic_image(HEIGHT, WIDTH, seed=1)


@pytest.fixture(scope="module")
def engine(image) -> SamEngine:
    engine = load()
    engine.embed_image(image, "img")
    return engine


@pytest.fixture(scope="module")
def net() -> torch.nn.Module:
    """Meta's network with the engine's weights (seed 3), built apart: the engine's own network
    went through ``configure``, which must leave it computing the same."""
    torch.manual_seed(3)
    return build_sam3_net(TINY_SAM3_SPEC)


@pytest.fixture(scope="module")
def predictor(net, image) -> InstPredictor:
    return InstPredictor(net, image)


@pytest.fixture(scope="module")
def reference(net, image) -> dict[str, list[dict[str, np.ndarray]]]:
    """Every concept case through ``Sam3Processor``, all 200 queries kept."""
    pil = Image.fromarray(image)
    return {case: processor_concepts(net, pil, concepts, RESOLUTION) for case, concepts in CONCEPTS.items()}


def assert_same_instances(got: ConceptResult, want: dict[str, np.ndarray]) -> None:
    """``got`` holds exactly ``want``'s queries, in the same order."""
    assert len(got.scores) == len(want["scores"])
    np.testing.assert_allclose(got.scores, want["scores"], atol=1e-4)
    np.testing.assert_allclose(got.boxes, want["boxes"], atol=1e-3)
    for ours, theirs in zip(got.masks, want["masks"], strict=True):
        assert mask_iou(ours, theirs) >= 0.99


# -- visual prompts ------------------------------------------------------------------------
@pytest.mark.parametrize("multimask", [True, False], ids=["multimask", "single"])
@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_visual_prompt_matches_predict_inst(engine, predictor, case, multimask):
    result = engine.segment_image(image_id="img", multimask_output=multimask, **CASES[case])
    assert_matches_reference(result, predictor, CASES[case], multimask)


def test_boxes_in_one_call_match_predict_inst_one_by_one(engine, predictor):
    assert_boxes_match_reference(engine, predictor, (HEIGHT, WIDTH), 6, multimask=False)


def test_mask_input_matches_predict_inst(engine, predictor):
    case = CASES["points with a negative"]
    logits = engine.segment_image(image_id="img", multimask_output=False, **case).low_res_logits[0]
    case = {**case, "mask_input": logits}
    result = engine.segment_image(image_id="img", multimask_output=False, **case)
    assert_matches_reference(result, predictor, case, multimask=False)


def test_small_holes_are_filled_as_the_predictor_does(engine):
    logits = torch.full((1, 1, 48, 48), 5.0)
    logits[0, 0, 10:12, 10:12] = -5.0  # a 4-cell hole: filled
    logits[0, 0, 20:, :] = -5.0  # 28 x 48 cells of background: kept
    filled = engine.model.fill_holes(logits)
    assert (filled[0, 0, 10:12, 10:12] == 10.0).all()
    torch.testing.assert_close(filled[0, 0, 20:], logits[0, 0, 20:])
    assert (logits[0, 0, 10:12, 10:12] == -5.0).all()  # the caller's logits are left alone


# -- concept prompts -----------------------------------------------------------------------
@pytest.mark.parametrize("case", CONCEPTS, ids=list(CONCEPTS))
def test_concepts_match_the_processor(engine, reference, case):
    results = engine.segment_concepts(image_id="img", concepts=[as_prompt(c) for c in CONCEPTS[case]], threshold=0.0)
    assert len(results) == len(CONCEPTS[case])
    for got, want in zip(results, reference[case], strict=True):
        assert_same_instances(got, want)
        assert got.image_id == "img" and got.masks.shape[1:] == (HEIGHT, WIDTH)


@pytest.mark.parametrize("chunk", [1, 4], ids=["one_per_pass", "four_per_pass"])
def test_concepts_match_the_batched_path(engine, net, image, chunk, monkeypatch):
    """Every prompt in one call, decoded one per detector pass (the CPU's) or four (a GPU's)."""
    monkeypatch.setattr(engine.model, "concept_chunk", chunk)
    concepts = [c for case in CONCEPTS.values() for c in case]
    results = engine.segment_concepts(image_id="img", concepts=[as_prompt(c) for c in concepts], threshold=0.0)
    for got, want in zip(results, batched_concepts(net, Image.fromarray(image), concepts, RESOLUTION),
                         strict=True):
        assert_same_instances(got, want)


def test_threshold_keeps_what_the_processor_keeps(engine, net, image, reference):
    scores = reference["phrase"][0]["scores"]
    threshold = float(np.quantile(scores, 0.9))  # random weights: keep the top tenth
    (want,) = processor_concepts(net, Image.fromarray(image), CONCEPTS["phrase"], RESOLUTION, threshold)
    (got,) = engine.segment_concepts(image_id="img", concepts="a red disc", threshold=threshold)
    assert 0 < len(got.scores) < len(scores)
    assert_same_instances(got, want)
    (per_prompt,) = engine.segment_concepts(image_id="img", concepts={"text": "a red disc", "threshold": threshold})
    np.testing.assert_array_equal(per_prompt.scores, got.scores)


def test_a_phrase_matching_nothing_gives_empty_results(engine, net, image, reference):
    above_all = float(reference["phrase"][0]["scores"].max()) + 1e-3
    (want,) = processor_concepts(net, Image.fromarray(image), CONCEPTS["phrase"], RESOLUTION, above_all)
    (got,) = engine.segment_concepts(image_id="img", concepts="a red disc", threshold=above_all)
    assert len(want["scores"]) == 0
    assert got.masks.shape == (0, HEIGHT, WIDTH) and got.boxes.shape == (0, 4) and got.scores.shape == (0,)
    detections = to_detections([got])
    assert len(detections) == 0 and detections.mask.shape == (0, HEIGHT, WIDTH)


def test_phrases_share_the_embedding_and_are_encoded_once(image):
    engine = load()
    backbone = engine.model.net.backbone
    encoded = []
    forward_text = backbone.forward_text

    def counting(captions, *args, **kwargs):
        encoded.extend(captions)
        return forward_text(captions, *args, **kwargs)

    backbone.forward_text = counting
    first = engine.segment_concepts(image, ["person", "red car", "person"], threshold=0.0)
    again = engine.segment_concepts(image, ["red car", "tree"], threshold=0.0)
    assert engine.encoder_calls == 1  # one image pass for five prompts and a visual prompt
    engine.segment_image(image, point_coords=[[100, 100]], point_labels=[1])
    assert engine.encoder_calls == 1
    assert sorted(encoded) == ["person", "red car", "tree"]
    # the same phrase: the same instances (batch rows round differently, ~1e-8)
    np.testing.assert_allclose(first[0].scores, first[2].scores, atol=1e-6)
    np.testing.assert_allclose(first[1].scores, again[0].scores, atol=1e-6)


def test_to_detections_one_class_per_prompt(engine):
    results = engine.segment_concepts(image_id="img", concepts=["a red disc", {"boxes": [DISC]}], threshold=0.0)
    detections = to_detections(results)
    assert len(detections) == 400
    assert detections.class_id.tolist() == [0] * 200 + [1] * 200
    assert set(detections.data["class_name"]) == {"a red disc", "visual"}
    np.testing.assert_array_equal(detections.confidence[:200], results[0].scores)
    merged = to_detections(results, nms_iou=0.5)
    assert 0 < len(merged) < len(detections)


def test_nms_drops_overlapping_masks():
    masks = np.zeros((3, 20, 20), bool)
    masks[0, 2:12, 2:12] = masks[1, 3:12, 2:12] = masks[2, 14:18, 14:18] = True
    scores = np.array([0.6, 0.9, 0.5], np.float32)
    assert mask_nms(masks, scores, 0.5).tolist() == [1, 2]  # IoU 0.9
    assert mask_nms(masks, scores, 0.95).tolist() == [0, 1, 2]


def test_nms_within_a_prompt(engine):
    (everything,) = engine.segment_concepts(image_id="img", concepts="a red disc", threshold=0.0)
    (kept,) = engine.segment_concepts(image_id="img", concepts="a red disc", threshold=0.0, nms_iou=0.5)
    index = mask_nms(everything.masks, everything.scores, 0.5)
    assert 0 < len(kept.scores) < len(everything.scores)
    np.testing.assert_array_equal(kept.scores, everything.scores[index])


@pytest.mark.parametrize("concepts, field", [
    ([], "concepts"),
    ("  ", r"concepts\[0\].text"),
    ({"text": "", "boxes": []}, r"concepts\[0\].text"),
    ({"text": "a", "boxes": [DISC], "box_labels": [True, False]}, r"concepts\[0\].box_labels"),
    ({"text": "a", "boxes": [[10, 10, 5, 20]]}, r"concepts\[0\].boxes"),
    ({"text": "a", "boxes": [[1, 2, 3]]}, r"concepts\[0\].boxes"),
    (["a", {"text": "b", "threshold": 1.5}], r"concepts\[1\].threshold"),
    ({"txt": "a"}, r"concepts\[0\]"),
    (3, "concepts"),
], ids=["empty", "blank-phrase", "no-phrase-no-box", "labels", "box-order", "box-shape", "threshold", "key", "type"])
def test_bad_concepts_say_which_field_before_any_encoder_pass(engine, image, concepts, field):
    calls = engine.encoder_calls
    with pytest.raises(PromptError, match=field):
        engine.segment_concepts(synthetic_image(40, 40, seed=9), concepts)
    assert engine.encoder_calls == calls


def test_bad_threshold_and_missing_image(engine):
    with pytest.raises(PromptError, match="threshold"):
        engine.segment_concepts(image_id="img", concepts="a", threshold=-0.1)
    with pytest.raises(PromptError, match="nms_iou"):
        engine.segment_concepts(image_id="img", concepts="a", nms_iou=2)
    with pytest.raises(ValueError, match="image"):
        engine.segment_concepts(concepts="a")


def test_a_family_without_concepts_says_so():
    engine = make_engine()
    assert "concepts" not in engine.capabilities.prompts
    with pytest.raises(PromptError, match=r"concept prompts .* need a SAM 3 model"):
        engine.segment_concepts(synthetic_image(40, 40), "person")
    assert engine.encoder_calls == 0


def test_concept_prompt_of_keeps_its_values():
    prompt = ConceptPrompt.of({"text": " person ", "boxes": [DISC, GREEN], "box_labels": [1, 0], "threshold": 0.3})
    assert prompt.text == "person" and prompt.name == "person" and prompt.threshold == 0.3
    assert prompt.boxes.shape == (2, 4) and prompt.box_labels.tolist() == [True, False]
    again = ConceptPrompt.of(prompt)
    assert again.text == "person" and again.boxes.tolist() == prompt.boxes.tolist() and again.threshold == 0.3
    assert ConceptPrompt.of({"boxes": [DISC]}).name == "visual"


# -- the family ----------------------------------------------------------------------------
def test_configure_keeps_the_rotary_tables(engine, net):
    ours = dict(engine.model.net.named_buffers())
    tables = {name: buffer for name, buffer in net.named_buffers() if buffer.is_complex()}
    assert tables
    for name, buffer in tables.items():
        assert ours[name].is_complex()
        torch.testing.assert_close(ours[name], buffer, rtol=0, atol=0)


def test_capabilities_and_features(engine):
    capabilities = engine.capabilities
    assert capabilities.prompts == {"points", "boxes", "masks", "concepts"}
    assert capabilities.lineage == "sam3" and capabilities.video_memory
    embedding = engine.get_embedding("img")
    assert {k: tuple(v.shape) for k, v in embedding.features.items()} == engine.model.feature_shapes()
    assert engine.embedding_shape == (256, 12, 12)


def test_features_are_the_processors(engine, predictor):
    """The cached features are what ``Sam3Processor.set_image`` computes (both necks)."""
    features = engine.get_embedding("img").features
    sam2 = predictor.state["backbone_out"]["sam2_backbone_out"]["backbone_fpn"]
    detector = predictor.state["backbone_out"]["backbone_fpn"]
    tracker = engine.model.tracker_net
    expected = {"high_res_0": sam2[0], "high_res_1": sam2[1],
                "image_embed": sam2[2] + tracker.no_mem_embed.reshape(1, -1, 1, 1),
                "detector_0": detector[0], "detector_1": detector[1], "detector_2": detector[2]}
    for name, tensor in expected.items():
        torch.testing.assert_close(features[name], tensor[0], atol=1e-4, rtol=0, msg=name)


def test_sam3_pt_checkpoint_loads_through_the_engine(engine, image, tmp_path):
    path = save_sam3_checkpoint(engine.model.net, tmp_path / "sam3_tiny.pt")
    loaded = SamEngine.load("tiny_sam3", path, device="cpu", seed=5)
    assert not loaded.random_weights
    (want,) = engine.segment_concepts(image_id="img", concepts="a red disc", threshold=0.0)
    (got,) = loaded.segment_concepts(image, "a red disc", threshold=0.0)
    np.testing.assert_array_equal(got.scores, want.scores)
    with pytest.raises(CheckpointError, match="looks like a tiny_sam3 checkpoint"):
        load("tiny", path)


def test_bf16_runs_both_prompt_kinds(engine, image):
    low_engine = load(dtype="bf16")
    embedding = low_engine.embed_image(image, "img")
    assert {t.dtype for t in embedding.features.values()} == {torch.bfloat16}
    (low,), (full,) = (e.segment_concepts(image_id="img", concepts="a red disc", threshold=0.0)
                       for e in (low_engine, engine))
    assert np.abs(np.sort(low.scores) - np.sort(full.scores)).max() < 0.05
    visual = low_engine.segment_image(image_id="img", point_coords=[[200, 120]], point_labels=[1])
    assert np.isfinite(visual.scores).all()


@pytest.mark.heavy
def test_real_size_architecture_matches_the_processor():
    """The official architecture (860 M parameters, random weights): one phrase and one
    exemplar box against ``Sam3Processor``, and a click against ``predict_inst``."""
    engine = load("sam3")
    torch.manual_seed(3)
    net = build_sam3_net(SAM3_SPEC)
    image = synthetic_image(120, 160, seed=2)
    concepts = [Concept("a red disc"), Concept(None, (((20.0, 20.0, 80.0, 70.0), True),))]
    reference = processor_concepts(net, Image.fromarray(image), concepts, 1008)
    results = engine.segment_concepts(image, [as_prompt(c) for c in concepts], threshold=0.0)
    for got, want in zip(results, reference, strict=True):
        assert_same_instances(got, want)
    case = {"point_coords": [[60, 50]], "point_labels": [1]}
    predictor = InstPredictor(net, image, 1008)
    assert_matches_reference(engine.segment_image(image, **case), predictor, case)
