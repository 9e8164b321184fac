"""Frame sources: files, folders, start/stride/max_frames, RGB at the boundary, timestamps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dtseg.errors import InputError
from dtseg.video.source import VideoSource, iter_frames, source_kind
from tests.video import synthetic
from tests.video.plugins.shapes import color_masks


def test_file_frames_are_rgb_with_index_and_time(video_30: Path) -> None:
    frames = list(iter_frames(video_30))
    assert [f.index for f in frames] == list(range(30))
    assert [f.time_s for f in frames] == pytest.approx([i / 10.0 for i in range(30)])
    rgb = frames[12].rgb
    assert rgb.shape == (96, 128, 3) and rgb.dtype == np.uint8
    expected = color_masks(synthetic.scene(12, 30, 128, 96))
    # red stays red (not blue): BGR was converted once; mp4v blurs only the edges
    assert (color_masks(rgb) & expected).sum(axis=(1, 2))[0] > 0.8 * expected[0].sum()


@pytest.mark.parametrize(("start", "stride", "max_frames", "expected"), [
    (0, 1, None, list(range(30))),
    (5, 1, 3, [5, 6, 7]),
    (0, 4, None, [0, 4, 8, 12, 16, 20, 24, 28]),
    (3, 10, None, [3, 13, 23]),
    (7, 5, 2, [7, 12]),
    (29, 3, None, [29]),
    (30, 1, None, []),
    (0, 1, 0, []),
])
def test_start_stride_max_frames(video_30: Path, start: int, stride: int, max_frames: int | None,
                                 expected: list[int]) -> None:
    with VideoSource(video_30) as video:
        got = [f.index for f in video.frames(start, stride, max_frames)]
        assert video.info.expected_frames(start, stride, max_frames) == len(expected)
    assert got == expected


def test_folder_of_frames(tmp_path: Path) -> None:
    folder = synthetic.write_frames(tmp_path / "frames", 7)
    (folder / "notes.txt").write_text("not a frame")
    with VideoSource(folder, fps=5.0) as video:
        assert (video.info.kind, video.info.total_frames, video.info.fps) == ("folder", 7, 5.0)
        assert (video.info.width, video.info.height) == (128, 96)
        frames = list(video.frames(1, 2))
    assert [f.index for f in frames] == [1, 3, 5]
    assert [f.time_s for f in frames] == pytest.approx([0.2, 0.6, 1.0])
    assert np.array_equal(frames[0].rgb, synthetic.scene(1, 7, 128, 96))  # PNG: lossless, RGB order


def test_source_kinds(tmp_path: Path, video_30: Path) -> None:
    assert source_kind(0) == source_kind("1") == "webcam"
    assert source_kind("rtsp://camera.local/stream") == source_kind("http://host/video.mjpg") == "stream"
    assert source_kind(video_30) == "file" and source_kind(tmp_path) == "folder"
    with pytest.raises(InputError, match="no such video file"):
        source_kind(tmp_path / "missing.mp4")


def test_unreadable_sources(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no image files"):
        VideoSource(tmp_path)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    with pytest.raises(InputError, match="cannot open"):
        VideoSource(bad)
    with pytest.raises(InputError, match="stride"):
        list(iter_frames(synthetic.write_frames(tmp_path / "f", 2), stride=0))
