"""Helpers shared by the built-in sinks: checks, atomic writes (record values: ``dtseg.records``)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

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


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to a temp file beside ``path``, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_image(path: Path, image: np.ndarray, params: list[int] | None = None) -> None:
    """Encode ``image`` (BGR, or gray 8/16-bit) by ``path``'s suffix and write it atomically."""
    ok, buf = cv2.imencode(path.suffix, image, params or [])
    if not ok:
        raise OSError(f"cannot encode {path.name}")
    write_atomic(path, buf.tobytes())


def write_json(path: Path, obj: Any, indent: int | None = None) -> None:
    write_atomic(path, json.dumps(obj, indent=indent, allow_nan=False).encode("utf-8"))
