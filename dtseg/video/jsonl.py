"""Per-frame JSON Lines: one line per processed frame, written and flushed as the frame finishes.

Line schema (plain JSON; NaN becomes ``null``)::

    {"frame": int,            # index in the source, from 0
     "time_s": float,         # timestamp, seconds
     "width": int, "height": int,
     "objects": [record, ...]}   # dtseg.records.object_records with rle, without polygons/prompt:
                                 # index, class_id, class_name, confidence, sam_score,
                                 # tracker_id (-1 = not tracked yet; null with --no-track),
                                 # zone (when set), box, area, rle, data (when any)

A line is *complete* when it ends in a newline and parses: ``scan_jsonl`` finds the last one, so
``--resume`` can cut off a half-written line and continue after that frame. ``JsonlSink`` is
``dtseg video``'s ``--jsonl`` output: a sink (``dtseg.contracts.Sink``) over ``JsonlWriter``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import supervision as sv

from dtseg.records import FRAME_INDEX, TIME_S, TRACKER_ID, object_records

log = logging.getLogger(__name__)


def frame_record(index: int, time_s: float, shape: tuple[int, int], detections: sv.Detections) -> dict[str, Any]:
    """The JSON object of one frame (module docstring). ``shape``: the frame's ``(H, W)``."""
    height, width = int(shape[0]), int(shape[1])
    objects = object_records(detections, (height, width), output="jsonl", prompt=False, polygons=False)
    return {"frame": int(index), "time_s": round(float(time_s), 6), "width": width, "height": height,
            "objects": objects}


@dataclass(frozen=True)
class JsonlState:
    """What a JSONL file holds: ``frames`` complete lines, the last one for ``last_frame``
    (``None``: none), the largest object ``max_id`` (-1: none) and ``valid_bytes``, the length
    of the file up to the end of its last complete line."""

    frames: int = 0
    last_frame: int | None = None
    max_id: int = -1
    valid_bytes: int = 0


def scan_jsonl(path: str | Path, max_lines: int | None = None) -> JsonlState:
    """Read ``path`` line by line (one line in memory at a time) and stop at the first line that is
    unterminated or does not parse, or after ``max_lines`` lines. A missing file is an empty state."""
    path = Path(path)
    if not path.exists():
        return JsonlState()
    frames, last, max_id, valid = 0, None, -1, 0
    with path.open("rb") as f:
        for line in f:
            if frames == max_lines or not line.endswith(b"\n"):
                break
            try:
                record = json.loads(line)
                index = int(record["frame"])
                ids = [o.get(TRACKER_ID, o.get("id")) for o in record["objects"]]  # "id": older files
            except (ValueError, KeyError, TypeError, AttributeError):
                log.warning("%s: line %d is not a frame record; resuming before it", path, frames + 1)
                break
            frames, last, valid = frames + 1, index, valid + len(line)
            max_id = max([max_id] + [int(i) for i in ids if i is not None])
    return JsonlState(frames, last, max_id, valid)


class JsonlWriter:
    """Appends one line per frame and flushes it, so a killed run leaves whole lines.
    ``keep_bytes``: keep this many bytes of an existing file (``--resume``), else start empty."""

    def __init__(self, path: str | Path, keep_bytes: int | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if keep_bytes is None:
            self._file: IO[bytes] | None = self.path.open("wb")
        else:
            self._file = self.path.open("r+b")
            self._file.truncate(keep_bytes)  # drop a half-written last line
            self._file.seek(keep_bytes)

    def write(self, record: dict[str, Any]) -> None:
        if self._file is None:
            raise ValueError(f"{self.path} is closed")
        self._file.write(json.dumps(record, allow_nan=False, separators=(",", ":")).encode("utf-8") + b"\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class JsonlSink:
    """``dtseg video``'s per-frame lines as a sink: ``write`` appends the frame's line (its index and
    time from ``detections.metadata``: ``frame_index``, ``time_s``; ``name`` is not used).
    ``keep_bytes``: continue an existing file after that many bytes (``--resume``)."""

    per_run = True  # one file for the whole video
    needs_pixels = False  # the frame's size only

    def __init__(self, path: str | Path, keep_bytes: int | None = None) -> None:
        self.lines = JsonlWriter(path, keep_bytes)

    def write(self, name: str, frame: np.ndarray, detections: sv.Detections) -> None:
        meta = detections.metadata
        self.lines.write(frame_record(meta[FRAME_INDEX], meta[TIME_S], frame.shape[:2], detections))

    def close(self) -> None:
        self.lines.close()
