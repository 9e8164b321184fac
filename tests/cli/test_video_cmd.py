"""``dtseg video`` end to end with the tiny random SAM checkpoint and the shape-following test
plugin (loaded with --plugins-dir): outputs, Ctrl-C (SIGINT) that leaves readable files, --resume
that completes them, setup errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from dtseg.cli import main
from tests.video import synthetic

ROOT = Path(__file__).parents[2]
PLUGINS = ROOT / "tests" / "video" / "plugins"


@pytest.fixture
def config(tmp_path: Path, tiny_sam_config: dict) -> Path:
    path = tmp_path / "video.yaml"
    path.write_text(yaml.safe_dump({"sam": tiny_sam_config, "plugins_dir": str(PLUGINS),
                                    "prompts": [{"shapes": {}}], "sinks": [{"annotated": {"opacity": 0.6}}]}))
    return path


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthetic.write_video(tmp_path_factory.mktemp("cli-video") / "in.mp4", 24)


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """The tiny SAM runs in-process here; on a small shared CPU one torch thread is faster."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_sigint_stops_after_the_frame_and_resume_completes(tmp_path: Path, config: Path, video: Path,
                                                           capsys: pytest.CaptureFixture) -> None:
    out, jsonl = tmp_path / "out.mp4", tmp_path / "out.jsonl"
    args = ["video", str(video), "--config", str(config), "--out", str(out), "--jsonl", str(jsonl),
            "--start", "9", "--stride", "2", "--max-frames", "3", "--no-progress"]
    handler = signal.getsignal(signal.SIGINT)
    # the provider sends SIGINT to this process while handling the 2nd frame
    assert main(args + ["--set", "prompts.shapes.interrupt_after=2"]) == 130
    assert signal.getsignal(signal.SIGINT) is handler  # restored
    err = capsys.readouterr().err
    assert "stopping after this frame" in err and "--resume" in err
    assert [line["frame"] for line in _lines(jsonl)] == [9, 11]  # the current frame finished
    count, fps, size = synthetic.read_video(out)
    assert (count, size) == (2, (128, 96)) and fps == pytest.approx(5.0)

    assert main(args + ["--resume"]) == 0
    lines = _lines(jsonl)
    assert [line["frame"] for line in lines] == [9, 11, 13]
    assert synthetic.read_video(out)[0] == 3
    assert all(sorted(o["class_name"] for o in line["objects"]) == ["blue", "green", "red"] for line in lines)
    assert all(o["sam_score"] is not None and o["rle"]["size"] == [96, 128] for line in lines for o in line["objects"])
    assert "after 2 done before" in capsys.readouterr().err


def test_external_sigint_leaves_playable_outputs(tmp_path: Path, config: Path, video: Path) -> None:
    """Ctrl-C from another process, at whatever moment: exit 130, a video and JSONL of the same frames."""
    out, jsonl = tmp_path / "out.mp4", tmp_path / "out.jsonl"
    command = [sys.executable, "-m", "dtseg", "video", str(video), "--config", str(config), "--out", str(out),
               "--jsonl", str(jsonl), "--set", "prompts.shapes.sleep_s=0.5",
               "--set", "prompts.shapes.colors=[]"]  # no objects: SAM never runs, only the loop and its files
    env = dict(os.environ, OMP_NUM_THREADS="1")
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        deadline = time.monotonic() + 60
        while not (jsonl.exists() and jsonl.read_bytes().count(b"\n") >= 1):
            if process.poll() is not None or time.monotonic() >= deadline:  # the message read only then
                pytest.fail(process.stderr.read() if process.stderr else "")
            time.sleep(0.1)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    finally:
        process.kill() if process.poll() is None else None
    assert process.returncode == 130, err
    done = len(_lines(jsonl))
    assert 1 <= done < 24 and synthetic.read_video(out)[0] == done
    assert "interrupted" in err and "frames/s" in err


def test_setup_errors(tmp_path: Path, config: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["video", str(tmp_path / "missing.mp4"), "--config", str(config), "--out", str(tmp_path / "o.mp4"),
                 "--no-progress"]) == 1
    assert "no such video file" in capsys.readouterr().err
    assert main(["video", "x.mp4", "--config", str(tmp_path / "nope.yaml"), "--out", "o.mp4"]) == 2
    with pytest.raises(SystemExit):
        main(["video", "x.mp4", "--out", "o.mp4", "--stride", "0"])


def test_a_failing_frame_closes_the_outputs(tmp_path: Path, config: Path, video: Path,
                                            capsys: pytest.CaptureFixture) -> None:
    out, jsonl = tmp_path / "out.mp4", tmp_path / "out.jsonl"
    code = main(["video", str(video), "--config", str(config), "--out", str(out), "--jsonl", str(jsonl),
                 "--no-progress", "--set", "prompts.shapes.colors=[]", "--set", "prompts.shapes.fail_after=3"])
    assert code == 1
    assert "detector failed on call 3" in capsys.readouterr().err
    assert len(_lines(jsonl)) == 2 and synthetic.read_video(out)[0] == 2


def _aligned(out: Path, lines: list[dict], source: Path) -> bool:
    """Frame k of the video ``out`` is (nearest to) source frame ``lines[k]["frame"]``, for every k."""
    from dtseg.video.mp4 import read_frames

    originals = [f.astype(np.int16) for f in read_frames(source)]
    nearest = [int(np.argmin([np.abs(f.astype(np.int16) - o).mean() for o in originals])) for f in read_frames(out)]
    return nearest == [line["frame"] for line in lines]


def test_sigkill_leaves_a_playable_video_and_resume_keeps_it_aligned(tmp_path: Path, config: Path,
                                                                      video: Path) -> None:
    """kill -9 mid-run: the mp4 plays up to the frames written; --resume ends with video frame k =
    JSONL line k for all 24 frames (no objects, so each video frame shows its source frame)."""
    from dtseg.video.mp4 import count_frames

    out, jsonl = tmp_path / "out.mp4", tmp_path / "out.jsonl"
    args = ["video", str(video), "--config", str(config), "--out", str(out), "--jsonl", str(jsonl),
            "--set", "prompts.shapes.colors=[]", "--no-progress"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    process = subprocess.Popen([sys.executable, "-m", "dtseg", *args, "--set", "prompts.shapes.sleep_s=0.3"],
                               stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        deadline = time.monotonic() + 60
        while not (jsonl.exists() and jsonl.read_bytes().count(b"\n") >= 4):
            if process.poll() is not None or time.monotonic() >= deadline:  # the message read only then
                pytest.fail(process.stderr.read() if process.stderr else "")
            time.sleep(0.05)
        process.kill()  # SIGKILL: no handler, no close
        process.communicate(timeout=60)
    finally:
        process.kill() if process.poll() is None else None
    assert process.returncode == -signal.SIGKILL
    done = len(_lines(jsonl))
    assert 4 <= done < 24
    assert done - 2 <= count_frames(out) <= done  # playable, at most a frame or two behind the JSONL
    assert main(args + ["--resume"]) == 0
    lines = _lines(jsonl)
    assert [line["frame"] for line in lines] == list(range(24))
    assert count_frames(out) == 24 and _aligned(out, lines, video)
