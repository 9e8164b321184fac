"""The persistent cache tier: one file per value in a folder, bounded by bytes, LRU eviction.

Writes go to a temp file beside the target, then ``os.replace``: a crash leaves either the old
file or the new one, never half of one (a torn file that still appears, e.g. after a power
loss, fails its checksum when read and is deleted: see ``dtseg.cache.serialize``). A read
refreshes the file's mtime, so least-recently-used order survives restarts. Several
processes may share a folder; each rescans it every ``RESCAN_EVERY`` writes to count the others'
files against the bound.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

from dtseg.errors import CacheTierError

log = logging.getLogger("dtseg.cache")
SUFFIX = ".safetensors"
RESCAN_EVERY = 256
STALE_TMP_S = 3600.0
WARN_EVERY_S = 60.0


class DiskTier:
    """``get / put / delete / exists`` of bytes under string keys (``[A-Za-z0-9_-]``), as files."""

    name = "disk"

    def __init__(self, root: str | Path, max_bytes: int) -> None:
        self.root, self.max_bytes = Path(root).expanduser(), int(max_bytes)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.root, prefix=".probe-", delete=True):
                pass
        except OSError as exc:
            raise CacheTierError(f"cache.dir: cannot write to {self.root}: {exc.strerror or exc}") from exc
        self._lock = threading.Lock()
        self._index: OrderedDict[str, int] = OrderedDict()  # key -> bytes, least recently used first
        self._bytes = self._puts = 0
        self._warned_at = 0.0
        self.hits = self.misses = self.writes = self.evictions = self.errors = 0
        self._rescan()

    def path(self, key: str) -> Path:
        return self.root / key[-2:] / (key + SUFFIX)

    def get(self, key: str) -> bytes | None:
        path = self.path(key)
        try:
            data = path.read_bytes()
            os.utime(path)
        except FileNotFoundError:
            with self._lock:
                self._forget(key)
                self.misses += 1
            return None
        except OSError as exc:
            self._failed("read", exc)
            return None
        with self._lock:
            self._bytes += len(data) - self._index.pop(key, 0)
            self._index[key] = len(data)
            self.hits += 1
        return data

    def put(self, key: str, data: bytes) -> None:
        if len(data) > self.max_bytes:
            return
        path = self.path(key)
        try:
            path.parent.mkdir(exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=SUFFIX)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            self._failed("write", exc)
            return
        with self._lock:
            self._bytes += len(data) - self._index.pop(key, 0)
            self._index[key] = len(data)
            self.writes += 1
            self._puts += 1
            rescan = self._puts % RESCAN_EVERY == 0
        if rescan:
            self._rescan()
        self._evict()

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)
        with self._lock:
            self._forget(key)

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def info(self) -> dict[str, Any]:
        with self._lock:
            return {"dir": str(self.root), "entries": len(self._index), "bytes": self._bytes,
                    "max_bytes": self.max_bytes, "hits": self.hits, "misses": self.misses, "writes": self.writes,
                    "evictions": self.evictions, "errors": self.errors}

    # ---------------------------------------------------------------------------------------
    def _evict(self) -> None:
        """Delete least recently used files until the folder fits ``max_bytes``."""
        while True:
            with self._lock:
                if self._bytes <= self.max_bytes or not self._index:
                    return
                key, _ = next(iter(self._index.items()))
                self._forget(key)
                self.evictions += 1
            self.path(key).unlink(missing_ok=True)

    def _rescan(self) -> None:
        """Rebuild the index from the folder (mtime order); drop temp files left by crashes."""
        found: list[tuple[float, str, int]] = []
        now = time.time()
        for sub in self.root.iterdir() if self.root.is_dir() else []:
            if not sub.is_dir():
                continue
            for entry in os.scandir(sub):
                try:
                    stat = entry.stat()
                except FileNotFoundError:
                    continue
                if entry.name.startswith(".tmp-"):
                    if now - stat.st_mtime > STALE_TMP_S:
                        Path(entry.path).unlink(missing_ok=True)
                elif entry.name.endswith(SUFFIX):
                    found.append((stat.st_mtime, entry.name[: -len(SUFFIX)], stat.st_size))
        with self._lock:
            self._index = OrderedDict((key, size) for _, key, size in sorted(found))
            self._bytes = sum(self._index.values())

    def _forget(self, key: str) -> None:
        self._bytes -= self._index.pop(key, 0)

    def _failed(self, what: str, exc: OSError) -> None:
        now = time.monotonic()
        with self._lock:
            self.errors += 1
            if now - self._warned_at < WARN_EVERY_S and self._warned_at:
                return
            self._warned_at = now
        log.warning("disk cache %s: cannot %s (%s): going on without it", self.root, what, exc)
