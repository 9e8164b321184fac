"""Every family by name through the commands: ``dtseg segment`` and ``dtseg video`` with
``--set sam.model=...`` (test-size models, random weights)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from dtseg.cli import main

POINTS = ["--set", "prompts=[{points: {objects: [{points: [[40, 30]]}, {box: [80, 50, 140, 100]}]}}]",
          "--set", "sam.checkpoint=random", "--set", "sam.device=cpu"]


@pytest.mark.parametrize("model", ["tiny_mobile_sam", "tiny_sam2.1"])
def test_segment_runs_every_family_by_name(model, tmp_path: Path, small_frame: np.ndarray) -> None:
    image = tmp_path / "frame.png"
    cv2.imwrite(str(image), cv2.cvtColor(small_frame, cv2.COLOR_RGB2BGR))
    out = tmp_path / "out"
    assert main(["segment", str(image), "--out", str(out), "--set", f"sam.model={model}", *POINTS]) == 0
    objects = json.loads((out / "json" / "frame.json").read_text())["objects"]
    assert len(objects) == 2 and (out / "annotated" / "frame.png").is_file()


def test_video_runs_sam2_by_name(tmp_path: Path, small_frame: np.ndarray) -> None:
    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 5, (160, 120))
    for shift in range(3):
        writer.write(cv2.cvtColor(np.roll(small_frame, 4 * shift, axis=1), cv2.COLOR_RGB2BGR))
    writer.release()
    jsonl = tmp_path / "clip.jsonl"
    assert main(["video", str(video), "--out", str(tmp_path / "out.mp4"), "--jsonl", str(jsonl),
                 "--set", "sam.model=tiny_sam2.1", *POINTS]) == 0
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert len(lines) == 3 and all(len(line["objects"]) == 2 for line in lines)


def test_an_unknown_model_lists_the_known_ones(tmp_path: Path, capsys) -> None:
    assert main(["segment", str(tmp_path), "--set", "sam.model=sam9"]) == 2
    assert "unknown model 'sam9'; known models: vit_h" in capsys.readouterr().err
