"""Helpers shared by the built-in sinks: checks, atomic writes (record values: ``dtseg.records``)."""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np
import supervision as sv

from dtseg.errors import InputError
from dtseg.records import SAM_SCORE, column  # noqa: F401 - column: for the annotated sink


def check_name(name: str) -> str:
    """``name`` must be a plain file stem: no folders, no ``..``, not empty."""
    if not isinstance(name, str) or not name or name in (".", "..") or Path(name).name != name or "\\" in name:
        raise InputError("name", f"expected a file stem without folders, got {name!r}")
    return name


def check_frame(frame: np.ndarray) -> tuple[int, int]:
    """``frame`` must be RGB uint8 ``(H, W, 3)``; returns ``(H, W)``."""
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        shape = getattr(frame, "shape", None)
        raise InputError("frame", f"expected an RGB uint8 array (H, W, 3), got {type(frame).__name__} {shape}")
    return int(frame.shape[0]), int(frame.shape[1])


def score_of(detections: sv.Detections) -> np.ndarray | None:
    """``data["sam_score"]`` ``(N,)``, else ``confidence``, else ``None``."""
    if SAM_SCORE in detections.data:
        return np.asarray(detections.data[SAM_SCORE], np.float64)
    if detections.confidence is not None:
        return np.asarray(detections.confidence, np.float64)
    return None


#: Files written by ``write_atomic`` in the current ``recording_writes`` block (``None``: not recording).
_WRITTEN: ContextVar[list[Path] | None] = ContextVar("dtseg_written", default=None)


@contextmanager
def recording_writes() -> Iterator[list[Path]]:
    """Collect the paths every ``write_atomic`` in the block writes (``dtseg segment``'s record
    of finished images)."""
    written: list[Path] = []
    token = _WRITTEN.set(written)
    try:
        yield written
    finally:
        _WRITTEN.reset(token)


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
    written = _WRITTEN.get()
    if written is not None:
        written.append(path)


def write_image(path: Path, image: np.ndarray, params: list[int] | None = None) -> None:
    """Encode ``image`` (BGR, or gray 8/16-bit) by ``path``'s suffix and write it atomically."""
    ok, buf = cv2.imencode(path.suffix, image, params or [])
    if not ok:
        raise OSError(f"cannot encode {path.name}")
    write_atomic(path, buf.tobytes())


def write_json(path: Path, obj: Any, indent: int | None = None) -> None:
    write_atomic(path, json.dumps(obj, indent=indent, allow_nan=False).encode("utf-8"))
