"""The writers sinks write through (``dtseg.contracts.Writer``): files on disk, or bytes in memory.

A sink names each file by its path relative to the output folder (``"json/bus.json"``) and hands
over the whole file; the writer decides where it goes. ``FileWriter`` writes it atomically and
remembers it (what ``dtseg segment`` records for ``--skip-existing``); ``MemoryWriter`` keeps it
in a dict (what ``/export`` answers with).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from dtseg.contracts import Writer


def _umask() -> int:
    """The process umask, read without changing it where Linux allows (setting it, even for a
    moment, races with other threads creating files)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to a temp file beside ``path``, then rename it over ``path``. The file gets
    the mode a plain ``open()`` would give it (0666 minus the umask), not mkstemp's 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class FileWriter:
    """Atomic files under ``root`` (temp file + rename: a crash never leaves half a file). With
    ``record``, every file written is remembered until ``take_written()`` hands the list over."""

    def __init__(self, root: str | Path, record: bool = False) -> None:
        self._folder = Path(root)
        self.root: Path | None = self._folder
        self.record = record
        self._written: list[Path] = []

    def write(self, path: str, data: bytes) -> None:
        target = self._folder / path
        write_atomic(target, data)
        if self.record:
            self._written.append(target)

    def take_written(self) -> list[Path]:
        """The files written since the last call, in order."""
        written, self._written = self._written, []
        return written


class MemoryWriter:
    """Files as ``{path: bytes}`` in ``files``, in write order; a path written twice keeps the last."""

    root: Path | None = None

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}

    def write(self, path: str, data: bytes) -> None:
        self.files[path] = data


def as_writer(out: str | Path | Writer) -> Writer:
    """A sink's ``out`` argument as a writer: a folder becomes a ``FileWriter`` there."""
    return FileWriter(out) if isinstance(out, (str, os.PathLike)) else out
