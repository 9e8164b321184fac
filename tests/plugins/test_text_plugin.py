"""``text``: concept prompts through the pipeline on ``tiny_sam3`` (random weights)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml

from dtseg.engine import SamEngine
from dtseg.errors import ConfigError, PromptError, RandomWeightsWarning
from dtseg.pipeline import Pipeline
from tests.tiny import synthetic_image

PHRASES = ["a red disc", "a green box"]


@pytest.fixture(scope="module")
def engine() -> SamEngine:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomWeightsWarning)
        return SamEngine.load("tiny_sam3", "random", device="cpu", seed=3)


def text_pipeline(engine: SamEngine, **options) -> Pipeline:
    config = {"sam": {"model": "tiny_sam3", "checkpoint": "random"},
              "prompts": [{"text": {"phrases": PHRASES, "conf": 0.0, **options}}]}
    return Pipeline.from_config(config, engine=engine)


def test_stage_gives_concept_prompts_and_no_objects(make_provider, small_frame):
    provider = make_provider("text", phrases=[" person ", "red car"], conf=0.4,
                             exemplars=[{"boxes": [[1, 2, 30, 40]], "negative": [[50, 50, 60, 70]]}])
    prompts = provider(small_frame, None)
    assert len(prompts) == 0
    query = prompts.concepts
    assert [p.name for p in query.prompts] == ["person", "red car", "visual"]
    assert query.threshold == 0.4 and query.nms_iou is None
    np.testing.assert_array_equal(query.prompts[2].boxes, [[1, 2, 30, 40], [50, 50, 60, 70]])
    np.testing.assert_array_equal(query.prompts[2].box_labels, [True, False])
    with pytest.raises(PromptError, match="must come first"):
        provider(small_frame, prompts)


@pytest.mark.parametrize(("options", "field"), [
    ({"phrases": []}, "phrases"), ({"phrases": ["person", " "]}, "phrases"),
    ({"phrases": ["a", "a"]}, "phrases"), ({"phrases": ["a"], "conf": 1.5}, "conf"),
    ({"phrases": ["a"], "conf": -0.1}, "conf"), ({"phrases": ["a"], "nms_iou": 2}, "nms_iou"),
    ({"exemplars": [{"text": "a"}]}, "exemplars"),
])
def test_bad_options_name_the_field(make_provider, options, field):
    with pytest.raises(ConfigError, match=rf"prompts\[0\]\.text.*{field}"):
        make_provider("text", **options)


def test_output_matches_segment_concepts_with_one_class_per_phrase(engine):
    image = synthetic_image(96, 128)
    pipeline = text_pipeline(engine)
    before = engine.encoder_calls
    detections = pipeline(image, cache=False)
    assert engine.encoder_calls == before + 1  # the phrases and the masks share one embedding
    direct = engine.segment_concepts(image, PHRASES, threshold=0.0, cache=False)
    assert len(detections) == sum(len(r.scores) for r in direct) > 0
    for i, result in enumerate(direct):
        rows = detections.class_id == i
        np.testing.assert_allclose(detections.confidence[rows], result.scores, atol=1e-5)
        np.testing.assert_allclose(detections.xyxy[rows], result.boxes, atol=1e-3)
        np.testing.assert_array_equal(detections.mask[rows], result.masks)
        assert set(detections.data["class_name"][rows]) == {PHRASES[i]}
    assert set(detections.data["prompt_source"]) == {"text"}
    assert detections.metadata["num_prompts"] == 0


def test_nms_across_phrases_drops_overlapping_masks(engine):
    image = synthetic_image(96, 128)
    full = text_pipeline(engine)(image)
    kept = text_pipeline(engine, nms_iou=0.0)(image)
    assert 0 < len(kept) < len(full)
    masks = kept.mask.reshape(len(kept), -1)
    assert not (masks[:, None] & masks[None]).any(axis=2)[~np.eye(len(kept), dtype=bool)].any()


def test_a_phrase_that_matches_nothing_gives_an_empty_result_every_sink_writes(engine, tmp_path: Path):
    pipeline = text_pipeline(engine, conf=1.0)
    out = tmp_path / "out"
    summary = pipeline.run(str(write_image(tmp_path)), out,
                           sinks=["json", "annotated", "coco", "yolo_seg", "masks_png"], progress=False)
    assert not summary.failed
    assert json.loads((out / "coco.json").read_text())["annotations"] == []


def test_coco_categories_and_yolo_names_are_the_phrases(engine, tmp_path: Path):
    out = tmp_path / "out"
    text_pipeline(engine).run(str(write_image(tmp_path)), out, sinks=["coco", "yolo_seg"], progress=False)
    coco = json.loads((out / "coco.json").read_text())
    assert {c["id"]: c["name"] for c in coco["categories"]} == dict(enumerate(PHRASES))
    assert yaml.safe_load((out / "yolo" / "data.yaml").read_text())["names"] == dict(enumerate(PHRASES))


def test_another_family_gets_its_boxes_from_the_stage_own_sam3_engine(engine):
    """sam.model without concept prompts: the stage's SAM 3 finds boxes, the pipeline's model cuts the masks."""
    image = synthetic_image(96, 128)
    config = {"sam": {"model": "tiny", "checkpoint": "random"},
              "prompts": [{"text": {"phrases": PHRASES, "conf": 0.0, "model": "tiny_sam3", "checkpoint": "random",
                                    "device": "cpu"}}]}
    pipeline = Pipeline.from_config(config)
    detector = pipeline.stages[0].provider.detector
    assert "text" in pipeline.random_parts and "concepts" in detector.capabilities.prompts
    detections = pipeline(image)
    direct = detector.segment_concepts(image, PHRASES, threshold=0.0, cache=False)
    assert detections.metadata["num_prompts"] == len(detections) == sum(len(r.scores) for r in direct) > 0
    for i, result in enumerate(direct):
        rows = detections.class_id == i
        np.testing.assert_allclose(detections.confidence[rows], result.scores, atol=1e-5)
        np.testing.assert_allclose(detections.data["prompt_box"][rows], result.boxes, atol=1e-3)
        assert set(detections.data["class_name"][rows]) == {PHRASES[i]}
    assert pipeline.engine.model_name == "tiny" and pipeline.engine.encoder_calls == 1


def test_the_stage_model_must_take_concept_prompts():
    config = {"sam": {"model": "tiny", "checkpoint": "random"},
              "prompts": [{"text": {"phrases": ["person"], "model": "tiny", "checkpoint": "random"}}]}
    with pytest.raises(ConfigError, match=r"prompts\[0\]\.text\.model: tiny takes no concept prompts"):
        Pipeline.from_config(config)


def write_image(folder: Path) -> Path:
    from PIL import Image

    path = folder / "img.png"
    Image.fromarray(synthetic_image(96, 128)).save(path)
    return path
