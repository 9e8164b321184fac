"""The record of finished images that ``dtseg segment --skip-existing`` trusts.

``<out>/.dtseg-done.jsonl`` gets one line per image, appended and flushed only after *every*
sink wrote that image (sinks write each file atomically)::

    {"name": "bus", "source": "/abs/bus.jpg", "size": 137419, "mtime_ns": 17..., "config": "9f2c...",
     "outputs": {"annotated/bus.png": 912345, "json/bus.json": 20411}}   # path under out -> bytes

An image counts as done when its last line has the same output name, the same source file (path,
size, modification time; a URL by its text), the same pipeline config (a hash) and every output
listed is still there with its size. Anything else is done again.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import IO, Any

from dtseg.io import is_url

log = logging.getLogger("dtseg.segment")

LEDGER_NAME = ".dtseg-done.jsonl"


def config_hash(config: Any) -> str:
    """A short hash of a pydantic config (what decides the outputs)."""
    text = config.model_dump_json() if hasattr(config, "model_dump_json") else json.dumps(config, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def source_key(source: str) -> dict[str, Any]:
    """A source as the ledger identifies it: absolute path, size and mtime; a URL as given."""
    if is_url(source):
        return {"source": source}
    path = Path(source)
    try:
        stat = path.stat()
    except OSError:
        return {"source": str(path.resolve())}
    return {"source": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


class Ledger:
    """The finished images of runs into ``out_dir`` with config hash ``config``."""

    def __init__(self, out_dir: str | Path, config: str) -> None:
        self.out = Path(out_dir)
        self.path = self.out / LEDGER_NAME
        self.config = config
        self._entries: dict[str, dict[str, Any]] = {}
        self._file: IO[str] | None = None

    def load(self) -> Ledger:
        """Read the existing lines (a half-written last line, from a kill, is ignored)."""
        if not self.path.exists():
            return self
        with self.path.open(encoding="utf-8") as f:
            for line in f:
                try:
                    entry = json.loads(line)
                    self._entries[str(entry["name"])] = entry
                except (ValueError, KeyError, TypeError):
                    continue
        return self

    def is_done(self, name: str, source: str) -> bool:
        """Whether ``name`` from ``source`` was finished with this config and its outputs are intact."""
        entry = self._entries.get(name)
        if entry is None or entry.get("config") != self.config:
            return False
        if {k: entry.get(k) for k in source_key(source)} != source_key(source):
            return False
        outputs = entry.get("outputs")
        if not isinstance(outputs, dict):
            return False
        for relative, size in outputs.items():
            path = self.out / relative
            if not path.is_file() or path.stat().st_size != size:
                log.info("%s: %s is missing or changed: doing it again", name, path)
                return False
        return True

    def record(self, name: str, source: str, outputs: list[Path]) -> None:
        """Append the line for a finished image; ``outputs``: the files its sinks wrote."""
        if self._file is None:
            self.out.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("a", encoding="utf-8")
        files = {}
        for path in outputs:
            try:
                files[Path(path).resolve().relative_to(self.out.resolve()).as_posix()] = Path(path).stat().st_size
            except (ValueError, OSError):  # outside --out, or gone already: not ours to check
                continue
        entry = {"name": name, **source_key(source), "config": self.config, "outputs": files}
        self._file.write(json.dumps(entry) + "\n")
        self._file.flush()
        self._entries[name] = entry

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
