"""The built-in sinks register through the public hook, like a third-party plugin's would."""

from __future__ import annotations

import json

import numpy as np
import pluggy
import pytest

import dtseg.sinks
from dtseg import hookspecs
from dtseg.config import StrictModel

EXPECTED = {"annotated", "masks_png", "json", "coco", "yolo_seg"}


@pytest.fixture
def registered() -> dict[str, type]:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.register(dtseg.sinks, name="dtseg.sinks")
    pm.check_pending()
    found: dict[str, type] = {}
    pm.hook.dtseg_register_sinks(register=lambda name, cls: found.setdefault(name, cls))
    return found


def test_hook_registers_the_builtins(registered) -> None:
    assert set(registered) == EXPECTED
    for cls in registered.values():
        assert issubclass(cls.Config, StrictModel)
        assert callable(cls.write) and callable(cls.close)


def test_every_sink_with_defaults_shares_one_out_dir(registered, tmp_path, frame, detections) -> None:
    sinks = [cls(cls.Config(), tmp_path) for cls in registered.values()]
    for name in ("a", "b"):
        for sink in sinks:
            sink.write(name, frame, detections)
    for sink in sinks:
        sink.close()
    files = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert files == sorted(["annotated/a.png", "annotated/b.png", "coco.json", "json/a.json", "json/b.json",
                            *(f"masks/{n}_{i}.png" for n in "ab" for i in range(3)),
                            "yolo/data.yaml", "yolo/images/a.jpg", "yolo/images/b.jpg", "yolo/labels/a.txt",
                            "yolo/labels/b.txt"])
    assert len(json.loads((tmp_path / "coco.json").read_text())["annotations"]) == 2 * len(detections)


def test_unknown_options_are_rejected(registered) -> None:
    for cls in registered.values():
        with pytest.raises(ValueError):
            cls.Config(no_such_option=np.int64(1))
