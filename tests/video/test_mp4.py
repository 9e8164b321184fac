"""The crash-safe MP4 writer: frames round-trip, odd sizes are padded, and a writer that is never
closed (a killed process: here SIGKILL) leaves a file that plays."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from dtseg.video.mp4 import FragmentedMp4Writer, count_frames, read_frames
from tests.video import synthetic


def _frame(t: int, width: int = 128, height: int = 96) -> np.ndarray:
    return synthetic.scene(t, 20, width, height)[:, :, ::-1].copy()  # BGR


def test_frames_round_trip_with_their_rate(tmp_path: Path) -> None:
    path = tmp_path / "v.mp4"
    writer = FragmentedMp4Writer(path, 128, 96, 7.5)
    for t in range(10):
        writer.write(_frame(t))
    writer.close()
    writer.close()  # idempotent
    frames = list(read_frames(path))
    assert len(frames) == 10 and frames[0].shape == (96, 128, 3)
    assert all(np.abs(f.astype(int) - _frame(t).astype(int)).mean() < 4 for t, f in enumerate(frames))
    count, fps, size = synthetic.read_video(path)  # OpenCV plays it too
    assert (count, size) == (10, (128, 96)) and abs(fps - 7.5) < 1e-6


def test_odd_sizes_are_padded_to_even(tmp_path: Path) -> None:
    writer = FragmentedMp4Writer(tmp_path / "odd.mp4", 127, 95, 10)
    writer.write(_frame(3, 127, 95))
    writer.close()
    (frame,) = read_frames(tmp_path / "odd.mp4")
    assert frame.shape == (96, 128, 3) and frame[95].max() < 40 and frame[:, 127].max() < 40  # black padding


def test_unplayable_or_missing_files_have_no_frames(tmp_path: Path) -> None:
    (tmp_path / "junk.mp4").write_bytes(b"\0" * 100)
    assert count_frames(tmp_path / "junk.mp4") == 0 and count_frames(tmp_path / "missing.mp4") == 0


WRITER = """
import sys, time
import numpy as np
from dtseg.video.mp4 import FragmentedMp4Writer
writer = FragmentedMp4Writer(sys.argv[1], 64, 48, 10)
for t in range(10_000):
    writer.write(np.full((48, 64, 3), (t * 20) % 240, np.uint8))
    print(t + 1, flush=True)
    time.sleep(0.02)
"""


def test_a_killed_writer_leaves_a_playable_file(tmp_path: Path) -> None:
    path = tmp_path / "killed.mp4"
    process = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        written = 0
        deadline = time.monotonic() + 60
        while written < 20 and time.monotonic() < deadline:
            written = int(process.stdout.readline() or 0) or written
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        process.kill() if process.poll() is None else None
    assert written >= 20
    frames = list(read_frames(path))
    assert written - 2 <= len(frames) <= written + 1
    assert np.allclose([f.mean() for f in frames], [(t * 20) % 240 for t in range(len(frames))], atol=4)
