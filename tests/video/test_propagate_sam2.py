"""``dtseg video --set video.mode=propagate`` end to end through the real SAM 2 path (tiny random
SAM 2.1 at a 128 input): encoder, memory attention, memory encoder, on the synthetic clip, then
``--resume``.

Random weights make the object-score head say "absent" or "present" at random; the checkpoint
(``present_sam2_checkpoint``) is random weights with that head's bias set high, so objects are
present and the bookkeeping has something to do. (Its masks are still meaningless: they cover the frame, so every
detection overlaps the first object and re-anchors it.)
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from dtseg.cli import main
from tests.video import synthetic

PLUGINS = Path(__file__).parent / "plugins"


def test_propagate_mode_runs_real_sam2_and_resumes(tmp_path: Path, present_sam2_checkpoint: Path,
                                                   one_torch_thread: None) -> None:
    video = synthetic.write_video(tmp_path / "in.mp4", 16)
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"plugins_dir": str(PLUGINS), "prompts": [{"shapes": {}}],
                                      "sinks": [{"annotated": {}}]}))
    out, jsonl = tmp_path / "o.mp4", tmp_path / "o.jsonl"
    args = ["video", str(video), "--config", str(config), "--out", str(out), "--jsonl", str(jsonl),
            "--set", "video.mode=propagate", "--set", "sam.model=tiny_sam2.1",
            "--sam-checkpoint", str(present_sam2_checkpoint), "--set", "video.image_size=128",
            "--set", "video.detect_every=5", "--set", "sam.threads=1", "--no-progress"]
    assert main(args + ["--max-frames", "11"]) == 0
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [line["frame"] for line in lines] == list(range(11))
    assert synthetic.read_video(out)[0] == 11
    objects = [o for line in lines for o in line["objects"]]
    assert objects and {o["tracker_id"] for o in objects} == {0}  # full-frame masks: one object, re-anchored
    assert [line["frame"] for line in lines if line["objects"][0]["data"]["conditioned"]] == [0, 5, 10]
    assert [o["data"]["anchored_at"] for o in objects] == [0] * 5 + [5] * 5 + [10]
    assert all(o["data"]["keyframe"] == 0 and o["class_name"] in ("red", "green") for o in objects)

    assert main(args + ["--resume"]) == 0
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [line["frame"] for line in lines] == list(range(16))
    assert synthetic.read_video(out)[0] == 16
    resumed = {o["tracker_id"] for line in lines[11:] for o in line["objects"]}
    assert resumed == {1}  # re-seeded on the first resumed frame, above the old IDs
    assert lines[11]["objects"][0]["data"]["keyframe"] == 11
