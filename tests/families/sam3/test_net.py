"""Meta's SAM 3 reference on the CPU with ``tiny_sam3`` random weights, and ``sam3.pt`` loading.

The reference runs through Meta's own entry points (tests/families/sam3/reference.py):
``Sam3Processor`` for concept prompts (a phrase, exemplar boxes, both), the batched
``Datapoint`` path Roboflow uses, and ``Sam3Image.predict_inst`` for visual prompts.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dtseg.errors import CheckpointError, CheckpointNotFoundError
from dtseg.families.sam3.net import (
    BPE_SHA256,
    SAM3,
    SAM3_SPEC,
    TINY_SAM3_SPEC,
    bpe_path,
    build_sam3_net,
    load_sam3_weights,
    on_device,
    sam3_checkpoint,
    sam3_state,
    save_sam3_checkpoint,
    spec_builder,
)
from tests.families.sam3.reference import Concept, batched_concepts, processor_concepts
from tests.tiny import synthetic_image

pytest.importorskip("sam3")

HEIGHT, WIDTH = 150, 220
#: Concept prompts, by case: each ``Concept`` is one call (exemplar boxes in image pixels).
CONCEPTS = {
    "phrase": [Concept("a red disc")],
    "exemplar_box": [Concept(None, (((30.0, 30.0, 100.0, 90.0), True),))],
    "phrase_negative_box": [Concept("a red disc", (((125.0, 90.0, 190.0, 135.0), False),))],
    "three_phrases": [Concept("a red disc"), Concept("a green box"), Concept("sky")],
}
POINT = {"point_coords": np.array([[70.0, 60.0]]), "point_labels": np.array([1])}
BOX = {"box": np.array([30.0, 30.0, 100.0, 90.0])}
RESOLUTION = TINY_SAM3_SPEC.resolution


def tiny_net(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_sam3_net(TINY_SAM3_SPEC)


@pytest.fixture(scope="module")
def net() -> torch.nn.Module:
    return tiny_net()


@pytest.fixture(scope="module")
def image() -> Image.Image:
    return Image.fromarray(synthetic_image(HEIGHT, WIDTH, seed=2))


def run_reference(net: torch.nn.Module, image: Image.Image) -> dict[str, list[dict[str, np.ndarray]]]:
    """Every concept case through ``Sam3Processor`` (all 200 queries kept), and
    ``predict_inst`` for a point (3 masks), a box, the point (1 mask), and the point with the
    box's low-res mask as mask input (1 mask)."""
    from sam3.model.sam3_image_processor import Sam3Processor

    results = {case: processor_concepts(net, image, concepts, RESOLUTION) for case, concepts in CONCEPTS.items()}
    with torch.inference_mode(), on_device("cpu"):
        state = Sam3Processor(net, resolution=RESOLUTION, device="cpu").set_image(image)
        point = net.predict_inst(state, multimask_output=True, **POINT)
        box = net.predict_inst(state, multimask_output=False, **BOX)
        single = net.predict_inst(state, multimask_output=False, **POINT)
        mask_input = net.predict_inst(state, multimask_output=False, mask_input=box[2], **POINT)
    results["predict_inst"] = [{"masks": masks, "scores": scores, "logits": logits}
                               for masks, scores, logits in (point, box, single, mask_input)]
    return results


@pytest.fixture(scope="module")
def reference(net, image) -> dict[str, list[dict[str, np.ndarray]]]:
    return run_reference(net, image)


def assert_same(a: dict[str, list[dict[str, np.ndarray]]], b: dict[str, list[dict[str, np.ndarray]]]) -> None:
    assert a.keys() == b.keys()
    for case in a:
        for ra, rb in zip(a[case], b[case], strict=True):
            for key in ra:
                np.testing.assert_array_equal(ra[key], rb[key], err_msg=f"{case}: {key}")


# -- the tokenizer's vocabulary ------------------------------------------------------------
def test_bpe_vocabulary_is_metas():
    assert hashlib.sha256(bpe_path().read_bytes()).hexdigest() == BPE_SHA256


# -- building ------------------------------------------------------------------------------
def test_official_spec_is_what_metas_builder_passes():
    """Meta's ``build_sam3_image_model``, run with every overridden class recording the values
    it is given (and built at tiny size): the official spec's values are Meta's."""
    from unittest import mock

    import sam3.model_builder as builder

    official, tiny, seen = SAM3_SPEC.overrides(), TINY_SAM3_SPEC.overrides(), {}

    def recording(name, cls):
        def build(*args, **kwargs):
            given = {key: kwargs[key] for key in official[name] if kwargs[key] is not None}
            seen.setdefault(name, []).append(given)
            return cls(*args, **{**kwargs, **{key: tiny[name][key] for key in given}})
        return build

    patches = {name: recording(name, getattr(builder, name)) for name in official}
    with on_device("cpu"), mock.patch.multiple(builder, **patches):
        net = builder.build_sam3_image_model(bpe_path=str(bpe_path()), device="cpu", load_from_HF=False,
                                             enable_inst_interactivity=True)
    net.inst_interactive_predictor.model.bf16_context.__exit__(None, None, None)
    assert seen.keys() == official.keys()
    for name, calls in seen.items():
        assert any(calls), name
        for given in calls:
            assert given == {key: official[name][key] for key in given}, name


@pytest.mark.parametrize("bad", [{"resolution": 1000}, {"resolution": 0}, {"vit_pretrain_size": 100},
                                 {"vit_global_blocks": (7, 32)}], ids=str)
def test_bad_spec_says_why(bad):
    import dataclasses

    with pytest.raises(ValueError, match="Sam3Spec: " + next(iter(bad))):
        dataclasses.replace(SAM3_SPEC, **bad)


@pytest.mark.skipif(torch.cuda.is_available(), reason="Meta's builder works as it is where CUDA is")
def test_metas_builder_needs_the_device_patch():
    import sam3.model_builder as builder

    with pytest.raises((RuntimeError, AssertionError)):
        builder.build_sam3_image_model(bpe_path=str(bpe_path()), device="cpu", load_from_HF=False)


def test_build_leaves_autocast_as_it_was():
    state = lambda: [(torch.is_autocast_enabled(d), torch.get_autocast_dtype(d)) for d in ("cpu", "cuda")]  # noqa: E731
    before = state()
    build_sam3_net(TINY_SAM3_SPEC)
    assert state() == before


def test_same_seed_same_weights_including_the_text_encoders_empty_tensors():
    a, b, c = tiny_net(0).state_dict(), tiny_net(0).state_dict(), tiny_net(1).state_dict()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)
        assert torch.isfinite(a[key]).all(), key
    text = "backbone.language_backbone.encoder."
    for key in (text + "positional_embedding", text + "text_projection"):
        assert not torch.equal(a[key], c[key])


# -- the reference on the CPU --------------------------------------------------------------
def test_concept_outputs(reference):
    queries, side = 200, (HEIGHT, WIDTH)
    for case, concepts in CONCEPTS.items():
        results = reference[case]
        assert len(results) == len(concepts)
        for result in results:
            assert result["boxes"].shape == (queries, 4)
            assert result["scores"].shape == (queries,)
            assert result["masks"].shape == (queries, *side) and result["masks"].dtype == bool
            assert ((result["scores"] > 0) & (result["scores"] < 1)).all()
            assert np.isfinite(result["boxes"]).all()


def test_prompts_change_the_outputs(reference):
    phrase, box = reference["phrase"][0]["scores"], reference["exemplar_box"][0]["scores"]
    negative, three = reference["phrase_negative_box"][0]["scores"], reference["three_phrases"]
    assert not np.array_equal(phrase, box)
    assert not np.array_equal(phrase, negative)
    assert not np.array_equal(three[1]["scores"], three[2]["scores"])
    np.testing.assert_array_equal(three[0]["scores"], phrase)  # same phrase, same image state


def test_a_phrase_matching_nothing_gives_empty_results(net, image, reference):
    above_all = float(reference["phrase"][0]["scores"].max()) + 1e-3
    (result,) = processor_concepts(net, image, CONCEPTS["phrase"], RESOLUTION, threshold=above_all)
    assert result["boxes"].shape == (0, 4) and result["scores"].shape == (0,)
    assert result["masks"].shape == (0, HEIGHT, WIDTH)


def test_batched_path_matches_the_processor(net, image, reference):
    """Roboflow's path (every concept a query of one ``Datapoint``, one forward) gives what the
    processor gives one call at a time: the same queries in the same order."""
    concepts = [concept for case in CONCEPTS.values() for concept in case]
    expected = [result for case in CONCEPTS for result in reference[case]]
    for got, want in zip(batched_concepts(net, image, concepts, RESOLUTION), expected, strict=True):
        np.testing.assert_allclose(got["scores"], want["scores"], atol=1e-4)
        np.testing.assert_allclose(got["boxes"], want["boxes"], atol=1e-3)
        union = (got["masks"] | want["masks"]).sum(axis=(1, 2))
        iou = (got["masks"] & want["masks"]).sum(axis=(1, 2)) / np.maximum(union, 1)
        assert iou[union > 0].min() >= 0.99


def test_predict_inst(reference):
    side = TINY_SAM3_SPEC.grid * 4
    for result, count in zip(reference["predict_inst"], (3, 1, 1, 1), strict=True):
        assert result["masks"].shape == (count, HEIGHT, WIDTH)
        assert result["scores"].shape == (count,)
        assert result["logits"].shape == (count, side, side)
    _, _, single, with_mask = reference["predict_inst"]
    assert not np.array_equal(with_mask["logits"], single["logits"])  # the mask input is used


def test_reference_is_deterministic_and_leaves_no_autocast(net, image, reference):
    state = [(torch.is_autocast_enabled(d), torch.get_autocast_dtype(d)) for d in ("cpu", "cuda")]
    assert_same(run_reference(net, image), reference)
    assert [(torch.is_autocast_enabled(d), torch.get_autocast_dtype(d)) for d in ("cpu", "cuda")] == state


@pytest.mark.skipif(torch.cuda.is_available(), reason="pin_memory works where CUDA is")
def test_box_prompts_need_the_device_patch(net, image):
    from sam3.model.sam3_image_processor import Sam3Processor

    with torch.inference_mode():
        processor = Sam3Processor(net, resolution=TINY_SAM3_SPEC.resolution, device="cpu")
        state = processor.set_image(image)
        with pytest.raises(RuntimeError):
            processor.add_geometric_prompt([0.5, 0.5, 0.2, 0.2], True, state)


# -- checkpoints ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def checkpoint(net, tmp_path_factory) -> Path:
    return save_sam3_checkpoint(net, tmp_path_factory.mktemp("sam3") / "sam3_tiny.pt")


def test_checkpoint_has_sam3_pt_layout(checkpoint):
    """``sam3.pt`` is Meta's video model's state dict, which Meta's video builder loads
    strictly: a saved tiny checkpoint has exactly its keys and shapes."""
    with spec_builder(TINY_SAM3_SPEC) as builder:
        video = builder.build_sam3_video_model(bpe_path=str(bpe_path()), device="cpu", load_from_HF=False)
    video.tracker.bf16_context.__exit__(None, None, None)
    saved = torch.load(checkpoint, weights_only=True)
    assert {k: v.shape for k, v in saved.items()} == {k: v.shape for k, v in video.state_dict().items()}


def test_loaded_checkpoint_gives_identical_outputs(net, image, reference, checkpoint):
    other = tiny_net(seed=1)
    assert not torch.equal(other.state_dict()["geometry_encoder.cls_embed.weight"],
                           net.state_dict()["geometry_encoder.cls_embed.weight"])
    load_sam3_weights(other, checkpoint)
    assert_same(run_reference(other, image), reference)


def test_loader_maps_keys_as_metas(net, checkpoint):
    from sam3.model_builder import _load_checkpoint

    ours, metas = tiny_net(seed=1), tiny_net(seed=1)
    load_sam3_weights(ours, checkpoint)
    _load_checkpoint(metas, str(checkpoint))
    for key, value in metas.state_dict().items():
        torch.testing.assert_close(ours.state_dict()[key], value, rtol=0, atol=0, msg=key)


def test_checkpoint_under_model_key_loads(net, checkpoint, tmp_path):
    wrapped = tmp_path / "wrapped.pt"
    torch.save({"model": torch.load(checkpoint, weights_only=True)}, wrapped)
    other = tiny_net(seed=1)
    load_sam3_weights(other, wrapped)
    torch.testing.assert_close(other.state_dict(), net.state_dict(), rtol=0, atol=0)


def test_bad_checkpoints_say_why(checkpoint, tmp_path):
    state, net = torch.load(checkpoint, weights_only=True), tiny_net()  # a failed load changes nothing
    cases = {
        "[1-9][0-9]* missing keys": {k: v for k, v in state.items() if not k.startswith("tracker.sam_mask_decoder.")},
        "[1-9][0-9]* with other shapes": {**state, "detector.geometry_encoder.cls_embed.weight": torch.zeros(3, 3)},
        "neither detector": {**state, "image_encoder.patch_embed.proj.weight": torch.zeros(1)},
    }
    for message, bad in cases.items():
        path = tmp_path / "bad.pt"
        torch.save(bad, path)
        with pytest.raises(CheckpointError, match=message):
            load_sam3_weights(net, path)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_sam3_weights(net, path)
    with pytest.raises(CheckpointError, match="neither detector"):
        sam3_state({"sam_mask_decoder.x": torch.zeros(1)})


def test_missing_official_checkpoint_says_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setenv("DTSEG_HOME", str(tmp_path))
    with pytest.raises(CheckpointNotFoundError) as error:
        sam3_checkpoint()
    message = str(error.value)
    assert SAM3.url in message and str(tmp_path / "checkpoints" / "sam3.pt") in message
    assert "no sha256" in message
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "sam3.pt").write_bytes(b"x")
    assert sam3_checkpoint() == tmp_path / "checkpoints" / "sam3.pt"
    with pytest.raises(CheckpointNotFoundError, match="not found"):
        sam3_checkpoint(tmp_path / "elsewhere.pt")


@pytest.mark.slow
def test_official_network_is_the_published_size():
    """The official spec built for real (860 M parameters, about a minute and 3.5 GB here):
    the ``SAM3`` row's parameter count and size are this network's."""
    net = build_sam3_net(SAM3_SPEC)
    assert round(sum(p.numel() for p in net.parameters()) / 1e6, 1) == SAM3.params_m
    state_bytes = sum(t.numel() * t.element_size() for t in net.state_dict().values())
    assert round(state_bytes / 1e6, -1) == SAM3.size_mb
