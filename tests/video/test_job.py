"""VideoJob: output video frame count / fps / size, JSONL lines = processed frames, stride and
max_frames, a stop request that leaves readable files, and --resume that completes them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dtseg.errors import InputError
from dtseg.masks import rle_to_mask
from dtseg.video import VideoJob
from dtseg.video.job import plan_resume
from dtseg.video.jsonl import JsonlState
from tests.video import synthetic
from tests.video.conftest import BoxEngine, shapes_pipeline


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize(("stride", "start", "max_frames", "frames"), [
    (1, 0, None, list(range(30))),
    (3, 0, None, list(range(0, 30, 3))),
    (2, 5, 4, [5, 7, 9, 11]),
])
def test_outputs_match_processed_frames(tmp_path: Path, video_30: Path, stride: int, start: int,
                                        max_frames: int | None, frames: list[int]) -> None:
    job = VideoJob(video_30, tmp_path / "out.mp4", tmp_path / "out.jsonl", start=start, stride=stride,
                   max_frames=max_frames, progress=False)
    summary = job.run(shapes_pipeline(BoxEngine()))
    assert (summary.frames, summary.first_frame, summary.last_frame) == (len(frames), frames[0], frames[-1])
    count, fps, size = synthetic.read_video(tmp_path / "out.mp4")
    assert (count, size) == (len(frames), (128, 96))
    assert fps == pytest.approx(10.0 / stride, rel=1e-3)  # mp4 stores the rate as a rounded fraction
    lines = _lines(tmp_path / "out.jsonl")
    assert [line["frame"] for line in lines] == frames
    assert [line["time_s"] for line in lines] == pytest.approx([f / 10 for f in frames])
    assert summary.objects == sum(len(line["objects"]) for line in lines)
    blue = [line["frame"] for line in lines if any(o["class_name"] == "blue" for o in line["objects"])]
    assert blue == [f for f in frames if 10 <= f < 20]  # appears and leaves


def test_masks_in_jsonl_are_the_detections(tmp_path: Path, video_30: Path) -> None:
    VideoJob(video_30, tmp_path / "o.mp4", tmp_path / "o.jsonl", start=12, max_frames=1, progress=False).run(
        shapes_pipeline(BoxEngine()))
    (line,) = _lines(tmp_path / "o.jsonl")
    for obj in line["objects"]:
        mask = rle_to_mask(obj["rle"])
        ys, xs = np.nonzero(mask)
        assert obj["box"] == [xs.min(), ys.min(), xs.max(), ys.max()]  # supervision's inclusive xyxy


def test_annotated_frames_show_the_masks(tmp_path: Path, video_30: Path) -> None:
    """The written video is the annotated picture, not the input: boxes and labels change pixels."""
    VideoJob(video_30, tmp_path / "o.mp4", None, max_frames=3, progress=False).run(shapes_pipeline(BoxEngine()))
    import cv2

    original, annotated = cv2.VideoCapture(str(video_30)), cv2.VideoCapture(str(tmp_path / "o.mp4"))
    difference = [np.abs(original.read()[1].astype(int) - annotated.read()[1].astype(int)).mean() for _ in range(3)]
    assert min(difference) > 3


def _stop_after(n: int):
    calls = []

    def stop() -> bool:
        calls.append(1)
        return len(calls) >= n
    return stop


def test_stop_then_resume_completes_both_files(tmp_path: Path, video_30: Path) -> None:
    out, jsonl = tmp_path / "run.mp4", tmp_path / "run.jsonl"
    job = VideoJob(video_30, out, jsonl, stride=2, max_frames=12, progress=False)
    first = job.run(shapes_pipeline(BoxEngine()), should_stop=_stop_after(5))
    assert (first.interrupted, first.frames, first.last_frame) == (True, 5, 8)
    assert synthetic.read_video(out)[0] == 5 and len(_lines(jsonl)) == 5  # both readable, same frames
    first_ids = {o["tracker_id"] for line in _lines(jsonl) for o in line["objects"]} - {-1}

    with jsonl.open("ab") as f:
        f.write(b'{"frame": 10, "obje')  # as if killed while writing the next line
    job.resume = True
    second = job.run(shapes_pipeline(BoxEngine()))
    assert (second.interrupted, second.resumed, second.frames, second.first_frame) == (False, 5, 7, 10)
    lines = _lines(jsonl)
    assert [line["frame"] for line in lines] == list(range(0, 24, 2))  # 12 frames: max_frames counts from --start
    count, fps, _ = synthetic.read_video(out)
    assert (count, fps) == (12, pytest.approx(5.0))
    new_ids = {o["tracker_id"] for line in lines[5:] for o in line["objects"]} - {-1}
    assert min(new_ids) > max(first_ids)  # a resumed run never reuses an ID for another object
    assert not list(tmp_path.glob(".*"))  # the resume temp file was renamed over the video


def test_resume_without_a_jsonl_starts_over(tmp_path: Path, video_30: Path) -> None:
    job = VideoJob(video_30, tmp_path / "o.mp4", tmp_path / "o.jsonl", max_frames=3, resume=True, progress=False)
    assert job.run(shapes_pipeline(BoxEngine())).frames == 3
    assert len(_lines(tmp_path / "o.jsonl")) == 3
    with pytest.raises(InputError, match="--jsonl"):
        VideoJob(video_30, tmp_path / "o.mp4", None, resume=True).run(shapes_pipeline(BoxEngine()))


def test_plan_resume() -> None:
    assert plan_resume(JsonlState(), 3, 2, 10).start == 3
    plan = plan_resume(JsonlState(frames=4, last_frame=9, max_id=6, valid_bytes=123), 3, 2, 10)
    assert (plan.start, plan.max_frames, plan.done, plan.keep_bytes, plan.first_id) == (11, 6, 4, 123, 7)
    assert plan_resume(JsonlState(frames=4, last_frame=9, valid_bytes=1), 3, 2, None).max_frames is None
    with pytest.raises(InputError, match="before --start"):
        plan_resume(JsonlState(frames=1, last_frame=2, valid_bytes=1), 5, 1, None)


@pytest.mark.parametrize("video_frames", [0, 3])
def test_resume_redoes_the_frames_a_lagging_video_lacks(tmp_path: Path, video_30: Path, video_frames: int,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    """The JSONL holds 5 frames, the video fewer (cut off, or gone): the resumed run keeps the
    JSONL's first ``video_frames`` lines and redoes the rest, so video frame k is JSONL line k."""
    from dtseg.video.mp4 import FragmentedMp4Writer, count_frames, read_frames

    out, jsonl = tmp_path / "run.mp4", tmp_path / "run.jsonl"
    job = VideoJob(video_30, out, jsonl, max_frames=8, progress=False)
    job.run(shapes_pipeline(BoxEngine(), colors=[]), should_stop=_stop_after(5))
    frames = list(read_frames(out))
    out.unlink()
    if video_frames:
        writer = FragmentedMp4Writer(out, 128, 96, 10.0)
        for bgr in frames[:video_frames]:
            writer.write(bgr)
        writer.close()
    job.resume = True
    summary = job.run(shapes_pipeline(BoxEngine(), colors=[]))
    assert (summary.resumed, summary.first_frame) == (video_frames, video_frames)
    assert [line["frame"] for line in _lines(jsonl)] == list(range(8))
    assert count_frames(out) == 8
    assert "video frame k stays JSONL line k" in caplog.text
    # no objects, so the video shows the source: frame k is nearest source frame k
    originals = [f.astype(np.int16) for f in read_frames(video_30)][:12]
    nearest = [int(np.argmin([np.abs(f.astype(np.int16) - o).mean() for o in originals])) for f in read_frames(out)]
    assert nearest == list(range(8))
