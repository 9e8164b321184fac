"""``dtseg segment`` over several runs: --skip-existing after a real SIGKILL, Ctrl-C that says what
was done, --recursive, file modes that follow the umask, shortcuts for the yolo stage, and
--sam-checkpoint relative to the current directory (never a silent random fallback)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from dtseg.cli import main
from dtseg.cli.ledger import LEDGER_NAME

ROOT = Path(__file__).parents[2]
CONFIGS = ROOT / "configs"

#: One point per image; sleeps $SLOW_SLEEP_S per call (a slow detector; not an option, so the
#: config stays the same across runs); SIGINT to itself on call ``interrupt_at``.
SLOW_PROVIDER = '''
import os, signal, time
from dtseg.config import StrictModel
from dtseg.hookspecs import hookimpl
from dtseg.prompts import Prompts


class Slow:
    class Config(StrictModel):
        interrupt_at: int | None = None

    def __init__(self, config):
        self.config, self.calls = config, 0

    def __call__(self, frame, prompts):
        self.calls += 1
        if self.calls == self.config.interrupt_at:  # Python's handler raises KeyboardInterrupt in here
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(100):
                time.sleep(0.05)
            raise RuntimeError("SIGINT was not delivered within 5 s")
        time.sleep(float(os.environ.get("SLOW_SLEEP_S", 0)))
        return Prompts.from_objects([{"points": [[40, 40]]}])


@hookimpl
def dtseg_register_prompt_providers(register):
    register("slow", Slow)
'''


@pytest.fixture
def run_args(tmp_path: Path, small_frame: np.ndarray, tiny_sam_checkpoint: Path) -> list[str]:
    """``segment`` over 5 images (a..e) with the slow provider, json + annotated sinks."""
    images, plugs = tmp_path / "images", tmp_path / "plugs"
    images.mkdir(), plugs.mkdir()
    (plugs / "slow.py").write_text(SLOW_PROVIDER)
    for i, name in enumerate("abcde"):
        cv2.imwrite(str(images / f"{name}.png"), np.roll(small_frame, 9 * i, axis=1))
    return ["segment", str(images), "--out", str(tmp_path / "out"), "--sam-checkpoint", str(tiny_sam_checkpoint),
            "--set", "sam.model=tiny", "--device", "cpu", "--plugins-dir", str(plugs), "--set", "prompts=[slow]",
            "--set", "sinks=[json, annotated]"]


def _mtimes(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in sorted(folder.iterdir())}


def test_skip_existing_resumes_a_killed_run(tmp_path: Path, run_args: list[str], capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    env = dict(os.environ, OMP_NUM_THREADS="1", SLOW_SLEEP_S="0.5")
    process = subprocess.Popen([sys.executable, "-m", "dtseg", *run_args], stderr=subprocess.PIPE, text=True,
                               cwd=ROOT, env=env)
    ledger = out / LEDGER_NAME
    try:
        deadline = time.monotonic() + 120
        while not (ledger.exists() and ledger.read_text().count("\n") >= 2):
            if process.poll() is not None or time.monotonic() >= deadline:  # the message read only then
                pytest.fail(process.stderr.read() if process.stderr else "")
            time.sleep(0.05)
        process.kill()
        process.communicate(timeout=60)
    finally:
        process.kill() if process.poll() is None else None
    finished = [json.loads(line)["name"] for line in ledger.read_text().splitlines()]
    assert 2 <= len(finished) < 5
    before = _mtimes(out / "json")
    (out / "annotated" / f"{finished[0]}.png").unlink()  # an output lost since: that image is done again

    assert main(run_args + ["--skip-existing"]) == 0
    err = capsys.readouterr().err
    redone = 5 - len(finished) + 1
    assert f"segmented {redone} of {redone} images" in err and f"({len(finished) - 1} skipped: done before)" in err
    after = _mtimes(out / "json")
    assert sorted(after) == [f"{n}.json" for n in "abcde"]
    assert all(after[f"{n}.json"] == before[f"{n}.json"] for n in finished[1:])  # not rewritten
    assert after[f"{finished[0]}.json"] != before[f"{finished[0]}.json"]
    assert (out / "annotated" / f"{finished[0]}.png").is_file()

    assert main(run_args + ["--skip-existing"]) == 0  # everything is done now
    assert "segmented 0 of 0 images" in capsys.readouterr().err


def test_ledger_trusts_only_the_same_config_source_and_intact_outputs(tmp_path: Path) -> None:
    from dtseg.cli.ledger import Ledger

    source, out = tmp_path / "a.png", tmp_path / "out"
    source.write_bytes(b"pixels")
    (out / "json").mkdir(parents=True)
    (out / "json" / "a.json").write_text("{}")
    ledger = Ledger(out, "config-1")
    ledger.record("a", str(source), [out / "json" / "a.json", tmp_path / "elsewhere.txt"])
    ledger.close()
    with (out / LEDGER_NAME).open("a") as f:
        f.write('{"name": "b", "sour')  # a line cut off by a kill
    assert Ledger(out, "config-1").load().is_done("a", str(source))
    assert not Ledger(out, "config-2").load().is_done("a", str(source))  # another config
    assert not Ledger(out, "config-1").load().is_done("b", str(source))  # never finished
    assert not Ledger(out, "config-1").load().is_done("a", str(tmp_path / "other.png"))  # another source
    (out / "json" / "a.json").write_text("{ }")
    assert not Ledger(out, "config-1").load().is_done("a", str(source))  # output changed
    (out / "json" / "a.json").write_text("{}")
    source.write_bytes(b"new pixels")
    assert not Ledger(out, "config-1").load().is_done("a", str(source))  # source changed


def test_skip_existing_refuses_a_run_level_coco_file(run_args: list[str], capsys: pytest.CaptureFixture) -> None:
    assert main(run_args + ["--skip-existing", "--set", "sinks=[json, coco]"]) == 2
    assert "--skip-existing: the coco sink writes one file for the whole run" in capsys.readouterr().err


@pytest.fixture
def default_sigint() -> Iterator[None]:
    """Ctrl-C as in a fresh process (Python's handler raises KeyboardInterrupt), whatever ran before."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.mark.usefixtures("default_sigint")
def test_ctrl_c_says_how_many_images_were_written_and_where(tmp_path: Path, run_args: list[str],
                                                            capsys: pytest.CaptureFixture) -> None:
    assert main(run_args + ["--set", "prompts.slow.interrupt_at=3"]) == 130
    err = capsys.readouterr().err
    assert f"interrupted: 2 of 5 images written to {tmp_path / 'out'}" in err and "--skip-existing" in err
    assert sorted(p.name for p in (tmp_path / "out" / "json").iterdir()) == ["a.json", "b.json"]


def test_recursive_takes_subfolders_but_not_the_output_folder(tmp_path: Path, run_args: list[str],
                                                              capsys: pytest.CaptureFixture) -> None:
    images = tmp_path / "images"
    (images / "sub" / "deeper").mkdir(parents=True)
    shutil.copy(images / "a.png", images / "sub" / "f.png")
    shutil.copy(images / "b.png", images / "sub" / "deeper" / "g.png")
    args = [a for a in run_args if a != str(tmp_path / "out")]
    out_at = args.index("--out") + 1
    args.insert(out_at, str(images / "out"))  # the output folder inside the input folder
    assert main(args) == 0
    assert "segmented 5 of 5 images" in capsys.readouterr().err
    assert main(args + ["--recursive"]) == 0
    assert "segmented 7 of 7 images" in capsys.readouterr().err  # not the annotated PNGs under out/
    assert {p.name for p in (images / "out" / "json").iterdir()} == {f"{n}.json" for n in "abcdefg"}


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_outputs_follow_the_umask(tmp_path: Path, run_args: list[str], umask: int, mode: int) -> None:
    previous = os.umask(umask)
    try:
        assert main(run_args[:1] + [str(tmp_path / "images" / "a.png")] + run_args[2:]) == 0
    finally:
        os.umask(previous)
    files = [tmp_path / "out" / "json" / "a.json", tmp_path / "out" / "annotated" / "a.png"]
    assert [oct(f.stat().st_mode & 0o777) for f in files] == [oct(mode)] * 2


def test_sam_checkpoint_is_relative_to_the_current_directory(tmp_path: Path, run_args: list[str],
                                                             tiny_sam_checkpoint: Path, monkeypatch,
                                                             capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "weights").mkdir()
    shutil.copy(tiny_sam_checkpoint, tmp_path / "weights" / "sam.pth")
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "run.yaml").write_text("sam: {model: tiny, device: cpu}\nsinks: [json]\n"
                                                   "prompts: [{points: {objects: [{points: [[40, 40]]}]}}]\n")
    monkeypatch.chdir(tmp_path)
    args = ["segment", "images/a.png", "--config", "configs/run.yaml", "--out", "out"]
    assert main(args + ["--sam-checkpoint", "weights/sam.pth"]) == 0, capsys.readouterr().err
    capsys.readouterr()
    # a missing explicit checkpoint is an error, even with --allow-random (no silent random weights)
    assert main(args + ["--sam-checkpoint", "weights/nope.pth", "--allow-random"]) == 2
    err = capsys.readouterr().err
    assert "--sam-checkpoint: no such file: weights/nope.pth" in err and str(tmp_path / "weights" / "nope.pth") in err
    assert main(args + ["--set", "sam.checkpoint=/nope/sam.pth", "--allow-random"]) == 2
    assert "/nope/sam.pth" in capsys.readouterr().err


def test_serve_resolves_sam_checkpoint_like_segment(tmp_path: Path, tiny_sam_checkpoint: Path, monkeypatch) -> None:
    import argparse

    from dtseg.cli import serve
    from dtseg.errors import CheckpointNotFoundError

    shutil.copy(tiny_sam_checkpoint, tmp_path / "sam.pth")
    monkeypatch.chdir(tmp_path)
    args = argparse.Namespace(overrides=[], sam_checkpoint="sam.pth", device=None, allow_private_urls=False)
    assert serve._overrides(args) == [f"sam.checkpoint={json.dumps(str(tmp_path / 'sam.pth'))}"]
    with pytest.raises(CheckpointNotFoundError, match=r"no such file: nope\.pth"):
        serve._overrides(argparse.Namespace(overrides=[], sam_checkpoint="nope.pth", device=None,
                                            allow_private_urls=False))


def test_zones_config_runs_with_allow_random_and_the_yolo_shortcuts(tmp_path: Path, bus_jpg: Path,
                                                                    tiny_sam_checkpoint: Path, monkeypatch,
                                                                    capsys: pytest.CaptureFixture) -> None:
    """configs/zones.yaml picks classes by name; --allow-random builds a random yolov8n whose
    classes carry COCO's names, so it runs (offline, no weights). --conf / --classes reach yolo."""
    monkeypatch.setenv("DTSEG_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    args = ["segment", str(bus_jpg), "--config", str(CONFIGS / "zones.yaml"), "--out", "out", "--allow-random",
            "--sam-checkpoint", str(tiny_sam_checkpoint), "--set", "sam.model=tiny", "--device", "cpu",
            "--set", "prompts.yolo.imgsz=160", "--set", "sinks=[json]"]
    assert main(args) == 0, capsys.readouterr().err
    capsys.readouterr()
    assert main(args + ["--conf", "0.00001", "--classes", "person,bus", "--set", ("prompts.zones.zones.0.polygon="
                        "[[0, 0], [810, 0], [810, 1080], [0, 1080]]")]) == 0, capsys.readouterr().err
    objects = json.loads((tmp_path / "out" / "json" / "bus.json").read_text())["objects"]
    assert objects and {o["class_name"] for o in objects} <= {"person", "bus"}
    assert {o["zone"] for o in objects} <= {"left", "right"}


def test_detector_shortcuts_need_a_yolo_stage(run_args: list[str], capsys: pytest.CaptureFixture) -> None:
    assert main(run_args + ["--conf", "0.5"]) == 2
    assert "--conf and --classes set options of the yolo stage, and this config has none" in capsys.readouterr().err


def test_class_list_parses_names_and_ids() -> None:
    from dtseg.cli.common import class_list

    assert class_list(["person", "bus"]) == ["person", "bus"]
    assert class_list(["0,5", "car"]) == [0, 5, "car"]


def test_video_takes_the_detector_shortcuts_too() -> None:
    from dtseg.cli import build_parser
    from dtseg.cli.common import overrides

    args = build_parser().parse_args(["video", "in.mp4", "--out", "o.mp4", "--conf", "0.3", "--classes", "person",
                                      "2", "--set", "sam.model=tiny"])
    assert overrides(args) == ["sam.model=tiny", "prompts.yolo.conf=0.3", 'prompts.yolo.classes=["person", 2]']
