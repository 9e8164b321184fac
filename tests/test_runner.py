"""``Pipeline.run`` / ``dtseg.runner``: folder runs into sinks, failures skipped, a summary back."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from dtseg.errors import ConfigError
from dtseg.pipeline import Pipeline
from dtseg.runner import MISSING
from tests.fakes import FakeEngine

BOX_CONFIG = {"prompts": [{"points": {"objects": [{"box": [20, 20, 60, 60], "class_name": "square",
                                                   "class_id": 0}]}}],
              "sinks": [{"json": {}}]}


class Recorder:
    """A sink object given to ``run`` directly: records the names it wrote, and its close."""

    def __init__(self, fail_on: str | None = None, interrupt_on: str | None = None) -> None:
        self.names: list[str] = []
        self.closed = 0
        self.fail_on, self.interrupt_on = fail_on, interrupt_on

    def write(self, name, frame, detections):
        if name == self.interrupt_on:
            raise KeyboardInterrupt
        if name == self.fail_on:
            raise RuntimeError("disk full")
        self.names.append(name)

    def close(self):
        self.closed += 1


@pytest.fixture
def folder(tmp_path: Path, small_frame: np.ndarray) -> Path:
    images = tmp_path / "images"
    images.mkdir()
    for name in ("a", "c", "d"):
        cv2.imwrite(str(images / f"{name}.png"), small_frame[..., ::-1])
    (images / "b.jpg").write_bytes(b"not an image")
    (images / "notes.txt").write_text("not an image either")
    return images


def test_run_writes_every_image_with_the_given_sinks_and_summarizes(folder: Path, tmp_path: Path, capsys):
    engine = FakeEngine()
    pipeline = Pipeline.from_config(BOX_CONFIG, engine=engine)
    recorder = Recorder()
    summary = pipeline.run(folder, out=tmp_path / "out", sinks=["json", {"yolo_seg": {"images": "none"}}, recorder])
    err = capsys.readouterr().err
    assert summary.done == ["a", "c", "d"] and recorder.names == ["a", "c", "d"] and recorder.closed == 1
    assert [s for s, _ in summary.failed] == [str(folder / "b.jpg")] and "not a decodable image" in summary.failed[0][1]
    assert engine.calls == [1, 1, 1]
    out = tmp_path / "out"
    assert sorted(p.name for p in (out / "json").iterdir()) == ["a.json", "c.json", "d.json"]
    assert yaml.safe_load((out / "yolo" / "data.yaml").read_text())["names"] == {0: "square"}  # closed
    assert len((out / "yolo" / "labels" / "a.txt").read_text().splitlines()) == 1
    assert f"error: {folder / 'b.jpg'}: image: not a decodable image" in err
    assert err.startswith("segmenting 4 images")  # before the first encoder pass (no estimate for a fake engine)
    assert "4/4" in err  # the progress bar
    assert summary.objects == 3 and ", 3 objects -> " in summary.report()
    assert not summary.ok and summary.total == 4 and not summary.interrupted
    assert summary.report().startswith("segmented 3 of 4 images in ") and "1 failed:" in summary.report()


def test_default_sinks_are_the_configs_and_sources_can_be_a_list(folder: Path, tmp_path: Path, capsys):
    pipeline = Pipeline.from_config(BOX_CONFIG, engine=FakeEngine())
    summary = pipeline.run([folder / "a.png", str(tmp_path / "nope*.png"), folder / "c.png"], out=tmp_path / "o",
                           progress=False)
    assert summary.done == ["a", "c"] and summary.failed == [(str(tmp_path / "nope*.png"), MISSING)]
    assert sorted(p.name for p in (tmp_path / "o" / "json").iterdir()) == ["a.json", "c.json"]
    assert "it/s" not in capsys.readouterr().err


def test_a_failing_sink_costs_its_image_and_ctrl_c_stops_after_the_image_in_progress(folder: Path, tmp_path: Path):
    pipeline = Pipeline.from_config(BOX_CONFIG, engine=FakeEngine())
    recorder = Recorder(fail_on="a", interrupt_on="d")
    summary = pipeline.run(folder, out=tmp_path / "out", sinks=[recorder], progress=False)
    assert recorder.names == ["c"] and recorder.closed == 1
    assert summary.done == ["c"] and summary.interrupted and not summary.ok
    assert (str(folder / "a.png"), "RuntimeError: disk full") in summary.failed
    assert summary.report().startswith("interrupted after 1 of 3 images")


def test_bad_sinks_are_refused_before_any_image(folder: Path, tmp_path: Path):
    engine = FakeEngine()
    pipeline = Pipeline.from_config(BOX_CONFIG, engine=engine)
    with pytest.raises(ConfigError, match=r"sinks\[0\]\.json.*colour"):
        pipeline.run(folder, out=tmp_path / "out", sinks=[{"json": {"colour": 1}}])
    with pytest.raises(ConfigError, match=r"sinks\[1\]: expected a sink name.*got int"):
        pipeline.run(folder, out=tmp_path / "out", sinks=["json", 3])
    assert engine.calls == []
