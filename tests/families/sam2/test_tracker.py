"""Streaming propagation vs Meta's ``SAM2VideoPredictor`` on the same random tiny SAM 2.1 weights,
and the family's tracker (its preprocessing and fast encoder, the engine's cache) vs that
reference path.

The clip (the video tests' moving shapes, 128 x 96) is written as JPEGs for Meta's predictor,
which reads a folder of JPEGs; dtseg gets the very same decoded frames, one at a time. Per object
and frame the low-res logits must be close and the masks at video size agree (IoU >= 0.99).
The tiny model runs at a 128 input (8 x 8 memory grid) so the test stays fast on a CPU.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from dtseg import SamEngine
from dtseg.engine.checkpoints import save_checkpoint
from dtseg.errors import RandomWeightsWarning
from dtseg.families import IMAGE_EMBED
from dtseg.families.sam2.family import TINY_SAM2_SPEC, Sam2Model, Sam2Spec, model_config
from dtseg.families.sam2.tracker import FILL_HOLE_AREA, ObjectPrompt, Propagator
from tests.similarity import mask_iou
from tests.video import synthetic

# Meta's predictor warns that sam2's CUDA extension (hole filling) is missing; it then skips it, as we do
pytestmark = pytest.mark.filterwarnings("ignore:cannot import name '_C':UserWarning")

FRAMES = 30
SPEC = Sam2Spec(TINY_SAM2_SPEC.config, (*TINY_SAM2_SPEC.overrides, ("image_size", 128)))
# object 1: a click on the red square (frame 0); object 2: a box on the green disc
CLICK = (np.array([[4.0, 30.0]]), np.array([1]))
DISC_BOX = np.array([80.0, 2.0, 112.0, 30.0])


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Any:
    """On a small shared CPU one torch thread is much faster than two fighting for cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def nets() -> tuple[Any, Any]:
    """(dtseg's SAM2Base, Meta's SAM2VideoPredictor) with identical random weights."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    torch.manual_seed(0)
    ours = Sam2Model.build_net(SPEC).eval()
    cfg = OmegaConf.create({"model": OmegaConf.to_container(model_config(SPEC))})
    # what sam2.build_sam.build_sam2_video_predictor overrides
    OmegaConf.update(cfg, "model._target_", "sam2.sam2_video_predictor.SAM2VideoPredictor")
    OmegaConf.update(cfg, "model.binarize_mask_from_pts_for_mem_enc", True, force_add=True)
    OmegaConf.update(cfg, "model.fill_hole_area", FILL_HOLE_AREA, force_add=True)
    meta = instantiate(cfg.model, _recursive_=True)
    meta.load_state_dict(ours.state_dict())
    return ours, meta.eval()


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[np.ndarray]]:
    """A folder of JPEGs ``00000.jpg``... and the same frames decoded, RGB uint8 ``(96, 128, 3)``."""
    folder = tmp_path_factory.mktemp("jpegs")
    frames = []
    for t in range(FRAMES):
        path = folder / f"{t:05d}.jpg"
        Image.fromarray(synthetic.scene(t, FRAMES, 128, 96)).save(path, quality=95)
        frames.append(np.asarray(Image.open(path).convert("RGB")))
    return folder, frames


def meta_run(meta: Any, folder: Path, late_at: int | None) -> dict[int, dict[int, torch.Tensor]]:
    """{frame: {obj_id: low-res logits (1, 1, 32, 32)}} from Meta's predictor. ``late_at``: the
    disc (object 2) is added on that frame after propagating up to it, else on frame 0."""
    state = meta.init_state(str(folder))
    meta.add_new_points_or_box(state, 0, 1, points=CLICK[0], labels=CLICK[1])
    logits: dict[int, dict[int, torch.Tensor]] = {}

    def collect(**options: Any) -> None:
        for t, obj_ids, _ in meta.propagate_in_video(state, **options):
            for k, obj_id in enumerate(obj_ids):
                out = state["output_dict_per_obj"][k]
                entry = out["cond_frame_outputs"].get(t) or out["non_cond_frame_outputs"].get(t)
                if entry is not None:
                    logits.setdefault(t, {})[obj_id] = entry["pred_masks"].clone()

    if late_at is None:
        meta.add_new_points_or_box(state, 0, 2, box=DISC_BOX)
        collect()
    else:
        collect(max_frame_num_to_track=late_at - 1)  # frames 0 .. late_at - 1
        meta.add_new_points_or_box(state, late_at, 2, box=DISC_BOX)
        collect(start_frame_idx=late_at)
    return logits


def ours_run(net: Any, frames: list[np.ndarray], late_at: int | None) -> dict[int, dict[int, Any]]:
    prop = Propagator(net)
    results: dict[int, dict[int, Any]] = {}
    for t, rgb in enumerate(frames):
        frame = prop.encode(rgb)
        prompts = {}
        if t == 0:
            prompts[1] = ObjectPrompt(points=CLICK[0], labels=CLICK[1])
        if t == (late_at or 0):
            prompts[2] = ObjectPrompt(box=DISC_BOX)
        outputs = prop.condition(frame, prompts)
        outputs.update(prop.track(frame))
        results[t] = outputs
    return results


def compare(meta_logits: dict[int, dict[int, torch.Tensor]], ours: dict[int, dict[int, Any]]) -> int:
    """Assert parity frame by frame; return how many (frame, object) pairs were compared."""
    compared = 0
    assert sorted(meta_logits) == sorted(ours)
    for t, per_obj in meta_logits.items():
        assert sorted(per_obj) == sorted(ours[t]), f"frame {t}: objects differ"
        for obj_id, ref in per_obj.items():
            mine = ours[t][obj_id]
            assert mine.logits.shape == ref.shape
            torch.testing.assert_close(mine.logits.float(), ref.float(), atol=2e-3, rtol=1e-3,
                                       msg=lambda m: f"frame {t} object {obj_id}: {m}")  # noqa: B023 - called at once
            ref_mask = (torch.nn.functional.interpolate(ref.float(), size=(96, 128), mode="bilinear",
                                                        align_corners=False)[0, 0] > 0).numpy()
            union = np.logical_or(ref_mask, mine.mask).sum()
            iou = 1.0 if union == 0 else np.logical_and(ref_mask, mine.mask).sum() / union
            assert iou >= 0.99, f"frame {t} object {obj_id}: mask IoU {iou:.4f}"
            compared += 1
    return compared


def test_two_objects_from_frame_0_match_meta(nets: tuple[Any, Any], clip: tuple[Path, list[np.ndarray]]) -> None:
    ours, meta = nets
    folder, frames = clip
    reference = meta_run(meta, folder, late_at=None)
    assert compare(reference, ours_run(ours, frames, late_at=None)) == 2 * FRAMES


def test_object_added_on_a_later_frame_matches_meta(nets: tuple[Any, Any], clip: tuple[Path, list[np.ndarray]]) -> None:
    ours, meta = nets
    folder, frames = clip
    reference = meta_run(meta, folder, late_at=12)
    assert all(sorted(reference[t]) == [1] for t in range(12))  # the disc exists from frame 12 on
    assert compare(reference, ours_run(ours, frames, late_at=12)) == FRAMES + FRAMES - 12


def test_reanchor_mask_prompt_bounds_and_remove(nets: tuple[Any, Any], clip: tuple[Path, list[np.ndarray]]) -> None:
    ours, _ = nets
    _, frames = clip
    prop = Propagator(ours, max_cond_frames=2)
    square = np.zeros((96, 128), bool)
    square[30:60, 40:80] = True
    for t, rgb in enumerate(frames[:25]):
        frame = prop.encode(rgb)
        prompts = {}
        if t == 0:
            prompts[7] = ObjectPrompt(mask=square)
        if t in (0, 5, 10):
            prompts[3] = ObjectPrompt(box=DISC_BOX)  # re-anchored on 5 and 10
        out = prop.condition(frame, prompts)
        out.update(prop.track(frame))
        assert sorted(out) == [3, 7]
        if t == 0:  # a mask prompt is taken as the mask (use_mask_input_as_output_without_sam)
            mask = out[7].mask
            assert (mask & square).sum() / (mask | square).sum() > 0.9
        assert out[3].conditioned == (t in (0, 5, 10)) and not (t > 0 and out[7].conditioned)
    bank = prop.tracks[3]
    assert list(bank.cond) == [0, 10]  # the first and the latest
    assert list(bank.recent) == list(range(11, 25))  # pointers of the last 15 frames but 10, a cond frame
    assert sum(m.maskmem_features is not None for m in bank.recent.values()) == 6
    assert prop.memory_bytes() > 0
    prop.remove(3)
    assert prop.live_ids == [7]


def test_bad_prompts_are_refused() -> None:
    with pytest.raises(ValueError, match="mask prompt goes alone"):
        ObjectPrompt(mask=np.ones((4, 4), bool), box=np.array([0, 0, 2, 2]))
    with pytest.raises(ValueError, match="give points, a box or a mask"):
        ObjectPrompt()
    with pytest.raises(ValueError, match="points and labels go together"):
        ObjectPrompt(points=np.array([[1.0, 2.0]]))


# -- the family's tracker (dtseg's encoder, the engine's precision and cache) ------------------
FAMILY_FRAMES = 6


@pytest.fixture(scope="module")
def textured_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny SAM 2.1 random weights with non-zero biases, norm shifts and ``no_mem_embed`` (random
    init leaves them at zero: masks would be all or nothing, hiding a wrong feature), and the
    object-score head saying "present" (so objects are tracked and their memories encoded)."""
    torch.manual_seed(0)
    net = Sam2Model.build_net(TINY_SAM2_SPEC)
    g = torch.Generator().manual_seed(9)
    with torch.no_grad():
        for p in net.parameters():
            if p.dim() == 1:
                p.add_(torch.randn(p.shape, generator=g) * 0.3)
        net.no_mem_embed.copy_(torch.randn(net.no_mem_embed.shape, generator=g))
        head = net.sam_mask_decoder.pred_obj_score_head
        (head.layers[-1] if hasattr(head, "layers") else head).bias.fill_(10.0)
    return save_checkpoint(net, tmp_path_factory.mktemp("ckpt") / "tiny_sam2_textured.pt")


def engine_of(checkpoint: Path, dtype: str) -> SamEngine:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomWeightsWarning)
        return SamEngine.load("tiny_sam2.1", checkpoint, device="cpu", dtype=dtype)


def run_clip(prop: Propagator, frames: list[np.ndarray]) -> list[dict[int, Any]]:
    """Object 1 (a click) from frame 0, object 2 (a box) from frame 3; outputs per frame."""
    results = []
    for t, rgb in enumerate(frames):
        frame = prop.encode(rgb)
        prompts = {}
        if t == 0:
            prompts[1] = ObjectPrompt(points=CLICK[0], labels=CLICK[1])
        if t == 3:
            prompts[2] = ObjectPrompt(box=DISC_BOX)
        outputs = prop.condition(frame, prompts)
        outputs.update(prop.track(frame))
        results.append(outputs)
    return results


@pytest.fixture(scope="module")
def reference_run(textured_checkpoint: Path, clip: tuple[Path, list[np.ndarray]]) -> list[dict[int, Any]]:
    """The reference path at a 128 input: PIL resize and ``forward_image`` (fp32)."""
    engine = engine_of(textured_checkpoint, "fp32")
    prop = Propagator(engine.model.resized_net(128))
    return run_clip(prop, clip[1][:FAMILY_FRAMES])


def test_family_tracker_fp32_matches_the_reference_path(textured_checkpoint: Path, clip: tuple[Path, list[np.ndarray]],
                                                        reference_run: list[dict[int, Any]]) -> None:
    engine = engine_of(textured_checkpoint, "fp32")
    calls = engine.encoder_calls
    ours = run_clip(engine.model.tracker(engine, image_size=128), clip[1][:FAMILY_FRAMES])
    assert engine.encoder_calls == calls + FAMILY_FRAMES  # the engine's encoder, once a frame
    coverage = []
    for t, (mine, ref) in enumerate(zip(ours, reference_run, strict=True)):
        assert sorted(mine) == sorted(ref) == ([1] if t < 3 else [1, 2])
        for obj_id, out in ref.items():
            assert mine[obj_id].conditioned == out.conditioned
            assert mask_iou(mine[obj_id].mask, out.mask) >= 0.99, f"frame {t} object {obj_id}"
            coverage.append(out.mask.mean())
    assert min(coverage) > 0.05 and max(coverage) < 0.98  # masks that say something


def test_family_tracker_bf16_close_to_the_reference_path(textured_checkpoint: Path,
                                                         clip: tuple[Path, list[np.ndarray]],
                                                         reference_run: list[dict[int, Any]]) -> None:
    """bf16 (its encoder computes in bf16 where the CPU has the kernels, else fp32): masks agree
    on >= 98% of the pixels, the tolerance of the precision tests."""
    engine = engine_of(textured_checkpoint, "bf16")
    ours = run_clip(engine.model.tracker(engine, image_size=128), clip[1][:FAMILY_FRAMES])
    for t, (mine, ref) in enumerate(zip(ours, reference_run, strict=True)):
        for obj_id, out in ref.items():
            agree = (mine[obj_id].mask == out.mask).mean()
            assert agree >= 0.98, f"frame {t} object {obj_id}: {agree:.4f}"


def test_family_tracker_reads_the_engine_cache_and_stores_no_frame(textured_checkpoint: Path,
                                                                  clip: tuple[Path, list[np.ndarray]]) -> None:
    """At the model's own input size a frame the engine already embedded is not encoded again
    (its cached features are what memory attention reads, ``no_mem_embed`` taken off); a new
    frame is encoded once and not cached."""
    engine = engine_of(textured_checkpoint, "fp32")
    frames = clip[1]
    cached = engine.embed_image(frames[0])
    prop = engine.model.tracker(engine)
    calls, entries = engine.encoder_calls, len(engine.embeddings)
    frame = prop.encode(frames[0])
    assert engine.encoder_calls == calls
    net = engine.model.net
    raw = cached.features[IMAGE_EMBED] - net.no_mem_embed.view(-1, 1, 1)
    torch.testing.assert_close(frame.feats[-1][:, 0], raw.flatten(1).T)
    assert frame.sizes == [(256, 256), (128, 128), (64, 64)] and frame.pos[0].shape == (64 * 64, 1, 256)
    prop.encode(frames[1])
    assert engine.encoder_calls == calls + 1 and len(engine.embeddings) == entries


def test_family_tracker_refuses_a_size_not_a_multiple_of_64(textured_checkpoint: Path) -> None:
    engine = engine_of(textured_checkpoint, "fp32")
    with pytest.raises(ValueError, match="multiple of 64"):
        engine.model.tracker(engine, image_size=100)
