"""What sink classes declare (``SinkTraits``), and a sink written against the documented contract
alone (no traits, no writer) still working in every run that uses sinks."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from dtseg.cli.ledger import Ledger
from dtseg.cli.segment import check_skippable
from dtseg.config import StrictModel
from dtseg.contracts import Sink, SinkTraits
from dtseg.errors import ConfigError
from dtseg.hookspecs import hookimpl
from dtseg.pipeline import Pipeline, open_sinks
from dtseg.plugins import Registry, get_plugin_manager, register_plugin
from dtseg.runner import Item, RunSummary, segment_items, write_results
from dtseg.sinks import BUILTIN_SINKS
from dtseg.sinks.writer import FileWriter
from tests.fakes import FakeEngine


class CountSink:
    """Written as docs/plugins.md and the hookspecs said before sinks had traits or writers:
    ``Config``, ``__init__(config, out_dir)``, ``write``, ``close``; it writes its own files."""

    class Config(StrictModel):
        file: str = "counts.txt"

    def __init__(self, config, out_dir):
        self.path = Path(out_dir) / config.file
        self.lines: list[str] = []

    def write(self, name, frame, detections):
        self.lines.append(f"{name} {frame.shape[1]}x{frame.shape[0]} {len(detections)} {int(frame.sum())}")
        (self.path.parent / f"{name}.count").write_text(str(len(detections)))

    def close(self):
        self.path.write_text("\n".join(self.lines) + "\n")


class RunCountSink(CountSink):
    per_run = True


CONFIG = {"prompts": [{"points": {"objects": [{"box": [20, 20, 60, 60]}, {"box": [90, 60, 130, 100]}]}}],
          "sinks": ["json", "counts"]}


def registry_with(**sinks: type) -> Registry:
    """The normal registry plus ``sinks``, registered through the hook as a plugin would."""
    @hookimpl
    def dtseg_register_sinks(register):
        for name, cls in sinks.items():
            register(name, cls)

    pm = get_plugin_manager()
    register_plugin(pm, SimpleNamespace(dtseg_register_sinks=dtseg_register_sinks), name="third-party-sinks")
    return Registry.collect(pm)


def test_traits_default_for_a_sink_that_declares_none_and_the_builtins_declare_theirs() -> None:
    assert SinkTraits.of(CountSink) == SinkTraits(per_run=False, needs_pixels=True, takes_writer=False)
    assert SinkTraits.of(RunCountSink).per_run
    assert {name: SinkTraits.of(cls) for name, cls in BUILTIN_SINKS.items()} == {
        "annotated": SinkTraits(takes_writer=True),
        "masks_png": SinkTraits(needs_pixels=False, takes_writer=True),
        "json": SinkTraits(needs_pixels=False, takes_writer=True),
        "coco": SinkTraits(per_run=True, needs_pixels=False, takes_writer=True),
        "yolo_seg": SinkTraits(takes_writer=True),
    }


def test_an_old_contract_sink_runs_beside_the_builtins_and_the_ledger_records_the_writers_files(
        tmp_path: Path, small_frame: np.ndarray) -> None:
    import cv2

    images = tmp_path / "images"
    images.mkdir()
    for name in ("a", "b"):
        cv2.imwrite(str(images / f"{name}.png"), small_frame[..., ::-1])
    pipeline = Pipeline.from_config(CONFIG, registry=registry_with(counts=CountSink), engine=FakeEngine())
    out = tmp_path / "out"
    writer = FileWriter(out, record=True)
    sinks = pipeline.open_sinks(out, writer=writer)
    assert isinstance(sinks[1], CountSink) and isinstance(sinks[1], Sink) and sinks[1].path == out / "counts.txt"
    check_skippable(pipeline.registry, pipeline.loaded)  # a sink that declares nothing writes per image
    ledger = Ledger(out, "cfg")
    items = [Item(str(images / "a.png"), "a"), Item(str(images / "b.png"), "b")]
    summary = write_results(segment_items(pipeline, items), sinks, RunSummary(out), total=2, progress=False,
                            ledger=ledger, writer=writer)
    ledger.close()
    assert summary.done == ["a", "b"] and summary.objects == 4
    assert (out / "counts.txt").read_text().splitlines() == [
        f"{n} 160x120 2 {int(small_frame.sum())}" for n in ("a", "b")]  # the real frame, pixels and all
    lines = [json.loads(line) for line in (out / ".dtseg-done.jsonl").read_text().splitlines()]
    assert [line["outputs"] for line in lines] == [{f"json/{n}.json": (out / "json" / f"{n}.json").stat().st_size}
                                                   for n in ("a", "b")]  # what went through the writer


def test_skip_existing_refuses_any_per_run_sink_by_its_declaration(tmp_path: Path) -> None:
    pipeline = Pipeline.from_config({**CONFIG, "sinks": ["json", "tally"]}, registry=registry_with(tally=RunCountSink),
                                    engine=FakeEngine())
    with pytest.raises(ConfigError, match="--skip-existing: the tally sink writes one file for the whole run"):
        check_skippable(pipeline.registry, pipeline.loaded)
    only_run = open_sinks(pipeline.registry, pipeline.loaded, tmp_path, per_run=True)
    assert [type(s) for s in only_run] == [RunCountSink]
    assert [type(s).__name__ for s in open_sinks(pipeline.registry, pipeline.loaded, tmp_path, per_run=False)] == [
        "JsonSink"]
