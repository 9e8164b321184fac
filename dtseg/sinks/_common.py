"""Helpers shared by the built-in sinks: checks and encoders (record values: ``dtseg.records``; where
files go: ``dtseg.sinks.writer``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import supervision as sv

from dtseg.errors import InputError
from dtseg.records import SAM_SCORE


def check_name(name: object) -> str:
    """``name`` must be a plain file stem: no folders, no ``..``, not empty."""
    if not isinstance(name, str) or not name or name in (".", "..") or Path(name).name != name or "\\" in name:
        raise InputError("name", f"expected a file stem without folders, got {name!r}")
    return name


def check_frame(frame: object) -> tuple[int, int]:
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


def encode_image(suffix: str, image: np.ndarray, params: list[int] | None = None) -> bytes:
    """``image`` (BGR ``(H, W, 3)``, or gray 8/16-bit ``(H, W)``) encoded as ``suffix`` says
    (``".png"``, ``".jpg"``) -> the file's bytes."""
    ok, buf = cv2.imencode(suffix, image, params or [])
    if not ok:
        raise OSError(f"cannot encode a {suffix} image")
    return buf.tobytes()


def json_bytes(obj: Any, indent: int | None = None) -> bytes:
    """``obj`` as a JSON file's bytes (UTF-8; NaN is an error: records hold ``None`` instead)."""
    return json.dumps(obj, indent=indent, allow_nan=False).encode("utf-8")


def relative(*parts: str) -> str:
    """A path under the output folder from a sink's ``subdir`` / ``root`` option and names
    (``""`` parts drop out): what a sink hands its writer."""
    return Path(*parts).as_posix()
