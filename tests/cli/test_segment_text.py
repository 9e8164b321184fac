"""``dtseg segment --text``: the text stage alone, on ``tiny_sam3`` with random weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dtseg.cli import main
from dtseg.cli.common import phrase_list


def test_text_writes_one_class_per_phrase(tmp_path: Path, bus_jpg: Path) -> None:
    out = tmp_path / "out"
    args = ["segment", str(bus_jpg), "--set", "sam.model=tiny_sam3", "--text", "person, bus", "--allow-random",
            "--conf", "0", "-o", str(out), "--set", "sinks=[json, coco, yolo_seg]"]
    assert main(args) == 0
    objects = json.loads((out / "json" / "bus.json").read_text())["objects"]
    assert objects
    assert {(o["class_id"], o["class_name"]) for o in objects} == {(0, "person"), (1, "bus")}
    assert all(o["data"]["prompt_source"] == "text" for o in objects)
    categories = json.loads((out / "coco.json").read_text())["categories"]
    assert {c["id"]: c["name"] for c in categories} == {0: "person", 1: "bus"}


@pytest.mark.parametrize(("args", "field"), [
    (["--text", " , "], "give at least one phrase in phrases"),
    (["--text", "person", "--conf", "1.5"], "prompts[0].text.conf"),
    (["--text", "person", "--set", "sam.model=tiny"], "prompts[0].text: sam.model takes no concept prompts"),
])
def test_bad_text_input_is_a_clear_error(tmp_path: Path, bus_jpg: Path, capsys: pytest.CaptureFixture,
                                         args: list[str], field: str) -> None:
    base = ["segment", str(bus_jpg), "--set", "sam.model=tiny_sam3", "--allow-random", "-o", str(tmp_path)]
    assert main(base + args) == 2
    assert field in capsys.readouterr().err


def test_phrase_list_splits_on_commas() -> None:
    assert phrase_list(" person, red car ,,") == ["person", "red car"]
