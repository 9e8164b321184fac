"""``dtseg video --text``: SAM 3 concept prompts on a short clip, in both video modes, on
``tiny_sam3`` with random weights (the masks are meaningless; what is checked is the flow:
classes from the phrases, IDs, keyframes, encoder passes, the tracker used)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dtseg.cli import main
from dtseg.config import VideoConfig
from dtseg.pipeline import Pipeline
from tests.video import synthetic

FRAMES = 6
PHRASES = ["red square", "green disc"]


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthetic.write_video(tmp_path_factory.mktemp("clip") / "shapes.mp4", FRAMES)


def run(tmp_path: Path, clip: Path, *options: str) -> list[dict[str, Any]]:
    jsonl = tmp_path / "out.jsonl"
    args = ["video", str(clip), "-o", str(tmp_path / "out.mp4"), "--jsonl", str(jsonl), "--text", ", ".join(PHRASES),
            "--allow-random", "--no-progress", *options]
    assert main(args) == 0
    return [json.loads(line) for line in jsonl.read_text().splitlines()]


def objects(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [obj for line in lines for obj in line["objects"]]


def assert_phrase_classes(lines: list[dict[str, Any]]) -> None:
    found = objects(lines)
    assert found, "no object at all: lower --conf"
    assert {(o["class_id"], o["class_name"]) for o in found} <= set(enumerate(PHRASES))


def test_detect_mode_finds_every_phrase_on_every_frame(tmp_path: Path, clip: Path) -> None:
    lines = run(tmp_path, clip, "--set", "sam.model=tiny_sam3", "--conf", "0.1")
    assert [line["frame"] for line in lines] == list(range(FRAMES))
    assert_phrase_classes(lines)
    assert all(o["data"]["prompt_source"] == "text" and "tracker_id" in o for o in objects(lines))


def test_propagate_mode_tracks_with_sam3s_tracker(tmp_path: Path, clip: Path) -> None:
    lines = run(tmp_path, clip, "--set", "sam.model=tiny_sam3", "--conf", "0.1", "--set", "video.mode=propagate",
                "--set", "video.detect_every=2", "--set", "video.lost_s=10")
    assert [line["frame"] for line in lines] == list(range(FRAMES))
    assert_phrase_classes(lines)
    for line in lines:
        ids = [o["tracker_id"] for o in line["objects"]]
        assert len(ids) == len(set(ids)) and all(i >= 0 for i in ids)
        for obj in line["objects"]:  # objects join and re-anchor on keyframes only
            assert obj["data"]["keyframe"] % 2 == 0 and obj["data"]["anchored_at"] % 2 == 0
            assert obj["data"]["keyframe"] <= obj["data"]["anchored_at"] <= line["frame"]


def test_propagate_mode_encodes_each_frame_once(clip: Path) -> None:
    """Keyframe concept prompts are decoded on the embedding the tracker made."""
    from dtseg.families.sam3.tracker import Sam3Propagator
    from dtseg.video.process import process_video
    from dtseg.video.propagate import propagator_for

    config = {"sam": {"model": "tiny_sam3", "checkpoint": "random"}, "sinks": [],
              "prompts": [{"text": {"phrases": PHRASES, "conf": 0.1}}]}
    pipeline = Pipeline.from_config(config)
    video = VideoConfig(mode="propagate", detect_every=1)
    assert isinstance(propagator_for(pipeline, video), Sam3Propagator)
    before = pipeline.engine.encoder_calls
    results = list(process_video(pipeline, clip, video_config=video))
    assert len(results) == FRAMES
    assert pipeline.engine.encoder_calls - before == FRAMES
    assert any(len(detections) for _, detections in results)


def test_propagate_mode_with_sam2_uses_the_text_stages_own_sam3(tmp_path: Path, clip: Path,
                                                                present_sam2_checkpoint: Path) -> None:
    """With a SAM 2.1 engine the text stage's own SAM 3 finds the boxes on keyframes and SAM 2.1's
    tracker carries them."""
    lines = run(tmp_path, clip, "--set", "sam.model=tiny_sam2.1", "--sam-checkpoint", str(present_sam2_checkpoint),
                "--set", "prompts.text.model=tiny_sam3",
                "--set", "prompts.text.checkpoint=random", "--conf", "0.15", "--set", "video.mode=propagate",
                "--set", "video.detect_every=3", "--set", "video.image_size=128", "--max-frames", "4")
    assert [line["frame"] for line in lines] == list(range(4))
    assert_phrase_classes(lines)


def test_text_with_a_family_without_concepts_or_memory_is_a_clear_error(tmp_path: Path, clip: Path,
                                                                         capsys: pytest.CaptureFixture) -> None:
    args = ["video", str(clip), "-o", str(tmp_path / "o.mp4"), "--text", "person", "--allow-random",
            "--set", "sam.model=tiny", "--set", "video.mode=propagate", "--set", "prompts.text.checkpoint=random",
            "--set", "prompts.text.model=tiny_sam3"]
    assert main(args) == 1
    assert "video.mode: propagate needs a model with video memory" in capsys.readouterr().err
