"""The writers sinks write through: atomic files, recorded until taken; bytes in memory."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from dtseg.contracts import Writer
from dtseg.sinks import CocoSink, JsonSink
from dtseg.sinks.writer import FileWriter, MemoryWriter, as_writer


def test_file_writer_writes_whole_files_with_open_modes_and_records_them(tmp_path: Path) -> None:
    writer = FileWriter(tmp_path, record=True)
    writer.write("json/a.json", b"{}")
    writer.write("b.txt", b"b")
    assert writer.take_written() == [tmp_path / "json" / "a.json", tmp_path / "b.txt"]
    assert writer.take_written() == []  # handed over once
    assert (tmp_path / "json" / "a.json").read_bytes() == b"{}"
    mask = os.umask(0o022)
    os.umask(mask)
    assert stat.S_IMODE((tmp_path / "b.txt").stat().st_mode) == 0o666 & ~mask  # not mkstemp's 0600
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a.json", "b.txt", "json"]  # no temp file left


def test_a_failed_write_leaves_neither_the_file_nor_a_record(tmp_path: Path) -> None:
    writer = FileWriter(tmp_path, record=True)
    (tmp_path / "taken").write_text("a file where a folder should be")
    with pytest.raises(OSError):
        writer.write("taken/a.json", b"{}")
    assert writer.take_written() == []


def test_memory_writer_keeps_bytes_and_as_writer_turns_folders_into_file_writers(tmp_path: Path) -> None:
    memory = MemoryWriter()
    memory.write("masks/a_0.png", b"1")
    memory.write("masks/a_0.png", b"2")
    assert memory.files == {"masks/a_0.png": b"2"} and memory.root is None
    assert isinstance(memory, Writer) and isinstance(FileWriter(tmp_path), Writer)
    assert as_writer(memory) is memory
    for folder in (tmp_path, str(tmp_path)):
        writer = as_writer(folder)
        assert isinstance(writer, FileWriter) and writer.root == tmp_path
        writer.write("x.txt", b"x")
        assert writer.take_written() == []  # remembers nothing unless asked (a long run would pile up paths)


def test_a_sink_writes_the_same_bytes_to_memory_and_to_disk(tmp_path: Path, frame, detections) -> None:
    memory = MemoryWriter()
    for out in (memory, tmp_path):
        sink = JsonSink(JsonSink.Config(indent=1), out)
        sink.write("a", frame, detections)
        sink.close()
    assert memory.files == {"json/a.json": (tmp_path / "json" / "a.json").read_bytes()}
    assert not list(tmp_path.glob("coco.json"))
    coco = CocoSink(CocoSink.Config(file="sub/c.json"), memory)
    coco.write("a", frame, detections)
    assert "sub/c.json" not in memory.files  # a per-run sink writes at close
    coco.close()
    assert memory.files["sub/c.json"].startswith(b'{"info"')
