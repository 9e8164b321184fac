"""Propagate mode's bookkeeping on the synthetic clip (red enters, crosses, leaves; green stays;
blue appears at frame 10 and leaves at 20): joining, re-anchoring, leaving, the object cap and
IDs across --resume.

Random SAM weights give meaningless masks, so ``ColorPropagator`` stands in for SAM 2 here: a
preview is the prompt box's coloured pixels, and an object is carried by the colour it was
conditioned on. ``test_propagate_mode_runs_real_sam2`` runs the real SAM 2 path on the same clip.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dtseg.config import VideoConfig
from dtseg.video import VideoJob
from dtseg.video import propagate as propagate_module
from tests.video.conftest import BoxEngine, shapes_pipeline
from tests.video.plugins.shapes import color_masks


@dataclass
class Out:
    mask: np.ndarray
    score: float
    conditioned: bool = False


class ColorPropagator:
    """``MaskPropagator`` stand-in: objects follow the colour they were conditioned on."""

    def __init__(self) -> None:
        self.colors: dict[int, int] = {}
        self.conditions: list[tuple[int, int]] = []  # (frame number, obj_id) of every condition
        self.frames = -1

    def encode(self, image: np.ndarray) -> np.ndarray:
        self.frames += 1
        return color_masks(image)

    def preview(self, frame: np.ndarray, prompts: list[Any]) -> list[Out]:
        outs = []
        for prompt in prompts:
            x1, y1, x2, y2 = np.asarray(prompt.box).astype(int)
            box = np.zeros(frame.shape[1:], bool)
            box[y1:y2 + 1, x1:x2 + 1] = True
            c = int(np.argmax([(m & box).sum() for m in frame]))
            outs.append(Out(frame[c] & box, 1.0, True))
        return outs

    def condition(self, frame: np.ndarray, prompts: dict[int, Any],
                  previews: dict[int, Out] | None = None) -> dict[int, Out]:
        assert previews is not None and set(previews) == set(prompts)
        for obj_id, out in previews.items():
            self.colors[obj_id] = int(np.argmax([(m & out.mask).sum() for m in frame]))
            self.conditions.append((self.frames, obj_id))
        return dict(previews)

    def track(self, frame: np.ndarray) -> dict[int, Out]:
        return {i: Out(frame[c], 1.0 if frame[c].sum() >= 12 else -1.0) for i, c in self.colors.items()}

    def remove(self, obj_id: int) -> None:
        del self.colors[obj_id]


@pytest.fixture
def stand_in(monkeypatch: pytest.MonkeyPatch) -> ColorPropagator:
    prop = ColorPropagator()
    monkeypatch.setattr(propagate_module, "propagator_for", lambda pipeline, config: prop)
    return prop


def _run(tmp_path: Path, video: Path, name: str = "o", **options: Any) -> list[dict]:
    job_options = {k: options.pop(k) for k in ("resume", "max_frames") if k in options}
    job = VideoJob(video, tmp_path / f"{name}.mp4", tmp_path / f"{name}.jsonl", progress=False,
                   video=VideoConfig(mode="propagate", **options), **job_options)
    job.run(shapes_pipeline(BoxEngine()))
    return [json.loads(line) for line in (tmp_path / f"{name}.jsonl").read_text().splitlines()]


def _frames_by_id(lines: list[dict]) -> dict[int, list[int]]:
    seen: dict[int, list[int]] = {}
    for line in lines:
        for obj in line["objects"]:
            seen.setdefault(obj["tracker_id"], []).append(line["frame"])
    return seen


def _class_by_id(lines: list[dict]) -> dict[int, str]:
    return {obj["tracker_id"]: obj["class_name"] for line in lines for obj in line["objects"]}


def test_objects_join_on_keyframes_and_leave(tmp_path: Path, video_30: Path, stand_in: ColorPropagator) -> None:
    lines = _run(tmp_path, video_30, detect_every=5, lost_s=0.25)
    assert len(lines) == 30
    by_id, classes = _frames_by_id(lines), _class_by_id(lines)
    # frame 0 shows the disc and a sliver of red; blue (there from 10) joins at keyframe 10
    assert classes == {0: "red", 1: "green", 2: "blue"}
    assert by_id[1] == list(range(30))
    assert by_id[0][0] == 0 and by_id[2] == list(range(10, 20))
    assert by_id[0][-1] >= 27  # followed to the right edge
    # blue left at frame 20: retired after lost_s = 0.25 s (3 frames at 10 fps), never reused
    assert 2 not in stand_in.colors
    # the disc and red were re-anchored on later keyframes, keeping their IDs
    assert (10, 0) in stand_in.conditions and (10, 1) in stand_in.conditions
    first = lines[12]["objects"][0]
    assert first["data"]["keyframe"] == 0 and first["data"]["anchored_at"] == 10


def test_first_frame_only_and_no_reanchor(tmp_path: Path, video_30: Path, stand_in: ColorPropagator) -> None:
    lines = _run(tmp_path, video_30, detect_every=0, reanchor=False)
    assert _class_by_id(lines) == {0: "red", 1: "green"}  # blue came later: never detected
    assert stand_in.conditions == [(0, 0), (0, 1)]


def test_every_shape_gets_one_id_and_keeps_it(tmp_path: Path, video_30: Path, stand_in: ColorPropagator) -> None:
    lines = _run(tmp_path, video_30, detect_every=3, lost_s=0.0)
    by_id, classes = _frames_by_id(lines), _class_by_id(lines)
    assert sorted(classes.values()) == ["blue", "green", "red"]  # each shape once: no re-detections as new
    assert len(by_id) == len(set(by_id))
    assert all(frames == list(range(frames[0], frames[-1] + 1)) for frames in by_id.values())


def test_max_objects_caps_and_logs(tmp_path: Path, video_30: Path, stand_in: ColorPropagator,
                                   caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        lines = _run(tmp_path, video_30, detect_every=5, max_objects=2, lost_s=10.0)
    assert _class_by_id(lines) == {0: "red", 1: "green"}  # blue (frame 10) found no room
    assert any("video.max_objects=2" in r.message and "not tracked" in r.message for r in caplog.records)


def test_resume_continues_ids_above_the_old_ones(tmp_path: Path, video_30: Path, stand_in: ColorPropagator) -> None:
    first = _run(tmp_path, video_30, detect_every=0, max_frames=12)
    assert _class_by_id(first) == {0: "red", 1: "green"}
    stand_in.colors.clear()
    lines = _run(tmp_path, video_30, detect_every=0, resume=True)
    assert [line["frame"] for line in lines] == list(range(30))
    resumed = _class_by_id(lines[12:])
    # re-seeded at the first resumed frame (a keyframe): new IDs above the old ones
    assert min(resumed) >= 2 and set(resumed.values()) == {"green", "red", "blue"}


def test_propagate_needs_sam2(tmp_path: Path, video_30: Path, tiny_sam_engine: Any) -> None:
    job = VideoJob(video_30, tmp_path / "o.mp4", progress=False, video=VideoConfig(mode="propagate"))
    with pytest.raises(ValueError, match=r"needs a model with video memory, e.g. SAM 2.1 .* got 'tiny' \(sam\)"):
        job.run(shapes_pipeline(tiny_sam_engine))


class VideoMemoryFamily:
    """A family that declares video memory plugs its tracker in through ``tracker``."""

    def __init__(self, propagator: ColorPropagator) -> None:
        self.propagator = propagator
        self.asked: list[tuple[Any, Any, dict[str, Any]]] = []

    def tracker(self, engine: Any, image_size: int | None = None, **options: Any) -> ColorPropagator:
        self.asked.append((engine, image_size, options))
        return self.propagator


def test_a_family_with_video_memory_gives_the_tracker(tmp_path: Path, video_30: Path) -> None:
    from dtseg.families.base import Capabilities

    engine = BoxEngine()
    engine.capabilities = Capabilities(video_memory=True)
    engine.model = VideoMemoryFamily(ColorPropagator())
    job = VideoJob(video_30, tmp_path / "o.mp4", tmp_path / "o.jsonl", progress=False,
                   video=VideoConfig(mode="propagate", detect_every=0, image_size=512, max_cond_frames=2))
    job.run(shapes_pipeline(engine))
    assert engine.model.asked == [(engine, 512, {"max_cond_frames": 2})]
    lines = [json.loads(line) for line in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert _class_by_id(lines) == {0: "red", 1: "green"}  # the family's tracker carried them


def test_process_video_propagates(video_30: Path, stand_in: ColorPropagator) -> None:
    from dtseg.video import process_video

    results = list(process_video(shapes_pipeline(BoxEngine()), video_30, max_frames=12,
                                 video_config=VideoConfig(mode="propagate", detect_every=0)))
    assert [index for index, _ in results] == list(range(12))
    assert all(sorted(d.tracker_id.tolist()) == [0, 1] for _, d in results[1:])  # red and green, from frame 0
    assert all(d.data["keyframe"].tolist() == [0, 0] for _, d in results[1:])


def test_a_stop_request_leaves_readable_outputs(tmp_path: Path, video_30: Path, stand_in: ColorPropagator) -> None:
    from tests.video import synthetic

    asked = []
    job = VideoJob(video_30, tmp_path / "o.mp4", tmp_path / "o.jsonl", progress=False,
                   video=VideoConfig(mode="propagate", detect_every=5))
    summary = job.run(shapes_pipeline(BoxEngine()), should_stop=lambda: asked.append(1) or len(asked) >= 7)
    assert summary.interrupted and summary.frames == 7
    assert synthetic.read_video(tmp_path / "o.mp4")[0] == 7
    assert len((tmp_path / "o.jsonl").read_text().splitlines()) == 7


class LosingPropagator(ColorPropagator):
    """Loses an object for good once its colour vanishes (as a propagator may after an occlusion)."""

    def __init__(self) -> None:
        super().__init__()
        self.lost: set[int] = set()

    def track(self, frame: np.ndarray) -> dict[int, Out]:
        outs = super().track(frame)
        for i, out in outs.items():
            if i in self.lost or out.score <= 0:
                self.lost.add(i)
                outs[i] = Out(np.zeros_like(out.mask), -1.0)
        return outs

    def condition(self, frame: np.ndarray, prompts: dict[int, Any],
                  previews: dict[int, Out] | None = None) -> dict[int, Out]:
        self.lost -= set(prompts)
        return super().condition(frame, prompts, previews)


def test_a_briefly_hidden_object_is_re_anchored_where_it_was_last_seen() -> None:
    from dtseg.video.propagate import ObjectBook
    from tests.video.plugins.shapes import ShapePrompts

    def scene(hidden: bool) -> np.ndarray:
        img = np.full((48, 64, 3), 60, np.uint8)
        if not hidden:
            img[10:30, 20:40] = (230, 30, 30)
        return img

    prop = LosingPropagator()
    book = ObjectBook(prop, VideoConfig(mode="propagate", detect_every=1, lost_s=1.0))
    detect = ShapePrompts(ShapePrompts.Config())
    ids = []
    for t, hidden in enumerate([False, False, True, True, False, False]):
        detections, _ = book.step(t, t / 10, scene(hidden), lambda rgb, frame: detect(rgb, None), {})
        ids.append(detections.tracker_id.tolist())
    assert ids == [[0], [0], [], [], [0], [0]]  # back under its old ID, not a new one
    assert (4, 0) in prop.conditions and book.next_id == 1
