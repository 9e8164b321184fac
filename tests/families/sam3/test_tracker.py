"""SAM 3's tracker on a stream (``Sam3Model.tracker``) vs Meta's ``Sam3TrackerPredictor`` on the
same random tiny SAM 3 weights and the same image features.

Meta's predictor (built as its video model builds it, ``build_tracker``) gets every frame's
tracker-neck features precomputed by the same network (``cached_features``: it has no backbone
of its own), objects added as Meta's SAM 3 video model adds detections (``add_new_mask``) and by
a box; dtseg gets the frames one at a time through the engine. Per object and frame the low-res
logits must be close and the masks at video size agree (IoU >= 0.99).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest
import torch

from dtseg import SamEngine
from dtseg.errors import RandomWeightsWarning
from dtseg.families.sam2.tracker import ObjectPrompt
from dtseg.families.sam3.net import TINY_SAM3_SPEC, on_device, spec_builder
from tests.similarity import mask_iou
from tests.video import synthetic

pytest.importorskip("sam3")

FRAMES, WIDTH, HEIGHT = 8, 128, 96
START = 3  # frames 3..10 of the 30-frame clip: the red square is in view from the first
DISC_BOX = np.array([80.0, 2.0, 112.0, 30.0])  # the green disc


@pytest.fixture(scope="module")
def engine() -> SamEngine:
    """Tiny SAM 3 whose object-score head always says "present" (bias +10): random weights
    would call every object absent, and absent objects' logits are all alike."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomWeightsWarning)
        engine = SamEngine.load("tiny_sam3", "random", device="cpu", dtype="fp32", seed=3)
    head = engine.model.tracker_net.sam_mask_decoder.pred_obj_score_head
    with torch.no_grad():
        (head.layers[-1] if hasattr(head, "layers") else head).bias.fill_(10.0)
    return engine


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    return [synthetic.scene(START + t, 30, WIDTH, HEIGHT) for t in range(FRAMES)]


@pytest.fixture(scope="module")
def square_mask(frames: list[np.ndarray]) -> np.ndarray:
    """The red square on the first frame, ``(H, W)`` bool: what a detection gives the tracker."""
    from tests.video.plugins.shapes import color_masks

    mask = color_masks(frames[0])[0]
    assert mask.sum() > 300
    return mask


def meta_run(engine: SamEngine, frames: list[np.ndarray], mask: np.ndarray) -> dict[int, dict[int, torch.Tensor]]:
    """{frame: {obj_id: low-res logits}} from Meta's predictor: object 1 from ``mask``, object 2
    from ``DISC_BOX``, both on frame 0."""
    model = engine.model
    with spec_builder(TINY_SAM3_SPEC) as builder:
        meta = builder.build_tracker(apply_temporal_disambiguation=False, with_backbone=False)
    meta.bf16_context.__exit__(None, None, None)
    meta.load_state_dict(model.tracker_net.state_dict())
    meta.fill_hole_area = 0
    meta.eval()
    cached = {}
    with torch.inference_mode(), on_device("cpu"):
        for t, rgb in enumerate(frames):
            x = model.preprocess([rgb], [])
            out = model.net.backbone.forward_image(x)["sam2_backbone_out"]
            fpn = list(out["backbone_fpn"])
            fpn[0], fpn[1] = meta.sam_mask_decoder.conv_s0(fpn[0]), meta.sam_mask_decoder.conv_s1(fpn[1])
            cached[t] = (x, {"backbone_fpn": fpn, "vision_pos_enc": list(out["vision_pos_enc"])})
        state = meta.init_state(video_height=HEIGHT, video_width=WIDTH, num_frames=FRAMES, cached_features=cached,
                                offload_state_to_cpu=True)
        meta.add_new_mask(state, 0, 1, torch.from_numpy(mask))
        relative = DISC_BOX / np.array([WIDTH, HEIGHT, WIDTH, HEIGHT])  # Meta's default coordinates
        meta.add_new_points_or_box(state, 0, 2, box=torch.from_numpy(relative).float())
        logits: dict[int, dict[int, torch.Tensor]] = {}
        for t, obj_ids, low_res, _video_res, _scores in meta.propagate_in_video(
                state, start_frame_idx=0, max_frame_num_to_track=FRAMES, reverse=False, tqdm_disable=True,
                propagate_preflight=True):
            logits[t] = {obj_id: low_res[k:k + 1].clone() for k, obj_id in enumerate(obj_ids)}
    return logits


def ours_run(engine: SamEngine, frames: list[np.ndarray], mask: np.ndarray) -> dict[int, dict[int, Any]]:
    prop = engine.model.tracker(engine, fill_hole_area=0)
    results: dict[int, dict[int, Any]] = {}
    for t, rgb in enumerate(frames):
        frame = prop.encode(rgb)
        outputs = {}
        if t == 0:
            outputs = prop.condition(frame, {1: ObjectPrompt(mask=mask), 2: ObjectPrompt(box=DISC_BOX)})
        outputs.update(prop.track(frame))
        results[t] = outputs
    return results


def test_tracking_matches_metas_predictor(engine: SamEngine, frames: list[np.ndarray], square_mask: np.ndarray) -> None:
    expected = meta_run(engine, frames, square_mask)
    ours = ours_run(engine, frames, square_mask)
    assert sorted(expected) == sorted(ours) == list(range(FRAMES))
    for t in range(FRAMES):
        assert sorted(ours[t]) == sorted(expected[t]) == [1, 2], t
        for obj_id, theirs in expected[t].items():
            out = ours[t][obj_id]
            size = theirs.shape[-2:]
            mine = torch.nn.functional.interpolate(out.logits.float(), size=size, mode="bilinear",
                                                   align_corners=False)
            torch.testing.assert_close(mine, theirs.float(), atol=1e-3, rtol=0, msg=f"frame {t} object {obj_id}")
            up = torch.nn.functional.interpolate(theirs.float(), size=(HEIGHT, WIDTH), mode="bilinear",
                                                 align_corners=False)[0, 0] > 0
            assert out.present and up.any()
            assert mask_iou(out.mask, up.numpy()) >= 0.99, (t, obj_id)


def test_one_encoder_pass_per_frame_and_the_embedding_kept(engine: SamEngine, frames: list[np.ndarray]) -> None:
    """The tracker embeds through the engine (not cached), and the frame carries that
    embedding for keyframe concept prompts."""
    prop = engine.model.tracker(engine)
    before = engine.encoder_calls
    frame = prop.encode(frames[0])
    assert engine.encoder_calls == before + 1
    assert frame.embedding is not None and frame.embedding.original_size == (HEIGHT, WIDTH)
    assert engine.embeddings.get(("", frame.embedding.image_id)) is None  # a video frame is not stored


def test_another_image_size_is_refused(engine: SamEngine) -> None:
    with pytest.raises(ValueError, match=r"video\.image_size: tiny_sam3 tracks at its own input size"):
        engine.model.tracker(engine, image_size=336)
