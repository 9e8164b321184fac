"""Memory stays flat with the number of frames: frames are streamed, nothing accumulates.

300 frames of 192 x 256 pixels go through the whole job (prompts, segmentation, tracking,
annotated video, JSONL). Were anything per frame kept -- the frame (147 KB), its masks
(3 x 49 KB) or its detections -- RSS would grow by > 30 MiB between frame 50 and frame 300.
"""

from __future__ import annotations

import gc
from pathlib import Path

import psutil

from dtseg.video import VideoJob
from tests.video import synthetic
from tests.video.conftest import BoxEngine, shapes_pipeline

FRAMES, WARMUP = 300, 50
MiB = 1 << 20
TOLERANCE = 8 * MiB


def test_rss_does_not_grow_with_frames(tmp_path: Path) -> None:
    video = synthetic.write_video(tmp_path / "long.mp4", FRAMES, width=256, height=192)
    process = psutil.Process()
    rss: list[int] = []

    def sample() -> bool:  # asked after every finished frame
        if len(rss) in (WARMUP - 1, FRAMES - 1):
            gc.collect()
        rss.append(process.memory_info().rss)
        return False

    summary = VideoJob(video, tmp_path / "out.mp4", tmp_path / "out.jsonl", progress=False).run(
        shapes_pipeline(BoxEngine()), should_stop=sample)
    assert summary.frames == FRAMES and len(rss) >= FRAMES
    growth = rss[FRAMES - 1] - rss[WARMUP - 1]
    assert growth < TOLERANCE, f"RSS grew {growth / MiB:.1f} MiB from frame {WARMUP} to {FRAMES}"


def test_propagate_mode_memory_is_bounded(tmp_path: Path, monkeypatch, one_torch_thread: None,
                                          present_sam2_checkpoint: Path) -> None:
    """The real SAM 2 path (tiny, 128 input, objects present): RSS flat from frame 50 to 300, and
    each object's memory bank stays within its bound (num_maskmem - 1 frames, 15 pointers, 3
    conditioning frames) though a keyframe re-anchors every 10 frames."""
    from dtseg.config import VideoConfig
    from dtseg.video import propagate
    video = synthetic.write_video(tmp_path / "long.mp4", FRAMES)
    made: list = []
    real = propagate.propagator_for
    monkeypatch.setattr(propagate, "propagator_for", lambda p, c: made.append(real(p, c)) or made[-1])
    process = psutil.Process()
    rss: list[int] = []
    state: list[int] = []

    def sample() -> bool:
        if len(rss) in (WARMUP - 1, FRAMES - 1):
            gc.collect()
        rss.append(process.memory_info().rss)
        state.append(made[0].memory_bytes() / max(1, len(made[0].live_ids)))
        return False

    pipeline = shapes_pipeline(sam={"model": "tiny_sam2.1", "checkpoint": str(present_sam2_checkpoint), "threads": 1})
    job = VideoJob(video, tmp_path / "out.mp4", tmp_path / "out.jsonl", progress=False,
                   video=VideoConfig(mode="propagate", detect_every=10, image_size=128, max_cond_frames=3))
    summary = job.run(pipeline, should_stop=sample)
    assert summary.frames == FRAMES and summary.objects >= FRAMES
    # per object: 6 recent memories + 3 conditioning ones (64 x 8 x 8 bf16), 15 + 3 pointers (256 fp32)
    net = made[0].net
    per_object = (net.num_maskmem - 1 + 3) * 64 * 8 * 8 * 2 + (net.max_obj_ptrs_in_encoder - 1 + 3) * 256 * 4
    assert 0 < max(state) <= per_object and state[FRAMES - 1] > per_object / 2
    growth = rss[FRAMES - 1] - rss[WARMUP - 1]
    assert growth < TOLERANCE, f"RSS grew {growth / MiB:.1f} MiB from frame {WARMUP} to {FRAMES}"
