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
