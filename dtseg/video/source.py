"""Video sources: a file, a folder of frames, a webcam index or a stream URL, streamed frame by frame.

Every frame leaves here as RGB uint8 ``(H, W, 3)`` (OpenCV's BGR is converted once, here) with
its index in the source and its timestamp in seconds. Nothing is buffered: one decoded frame
exists at a time.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple

import cv2
import numpy as np

from dtseg.errors import InputError
from dtseg.io import load_image

log = logging.getLogger(__name__)

FRAME_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
DEFAULT_FPS = 30.0
SourceKind = Literal["file", "folder", "webcam", "stream"]
SourceArg = str | int | Path


class Frame(NamedTuple):
    """One frame: ``index`` in the source (from 0), ``time_s`` seconds, ``rgb`` uint8 ``(H, W, 3)``."""

    index: int  # type: ignore[assignment]  # shadows tuple.index, a method nobody calls on a Frame
    time_s: float
    rgb: np.ndarray


@dataclass(frozen=True)
class SourceInfo:
    """What is known before reading: size in pixels, frames per second, frame count (``None`` for
    streams and webcams, or when the container does not say)."""

    name: str
    kind: SourceKind
    width: int
    height: int
    fps: float
    total_frames: int | None

    @property
    def seekable(self) -> bool:
        """Files and folders can be read again from a given frame (``--resume``); streams cannot."""
        return self.kind in ("file", "folder")

    def expected_frames(self, start: int = 0, stride: int = 1, max_frames: int | None = None) -> int | None:
        """How many frames ``frames(start, stride, max_frames)`` will give, when the total is known."""
        if self.total_frames is None:
            return max_frames
        count = max(0, math.ceil((self.total_frames - start) / stride))
        return count if max_frames is None else min(count, max_frames)


def source_kind(source: SourceArg) -> SourceKind:
    """``0`` / ``"0"`` -> webcam, ``scheme://...`` -> stream, a folder -> folder, a file -> file."""
    if isinstance(source, int) or (isinstance(source, str) and source.strip().isdigit()):
        return "webcam"
    text = str(source)
    if "://" in text:
        return "stream"
    path = Path(text)
    if path.is_dir():
        return "folder"
    if path.is_file():
        return "file"
    raise InputError("source", f"no such video file or folder: {text} (give a file, a folder of frames, "
                               "a webcam index like 0, or a stream URL like rtsp://...)")


class VideoSource:
    """An open video source. ``frames(start, stride, max_frames)`` streams ``Frame`` tuples.

    ``fps`` overrides the frame rate (needed for a folder of frames; default 30) and replaces
    a rate the container does not report. Use as a context manager or call ``close()``.
    """

    def __init__(self, source: SourceArg, fps: float | None = None) -> None:
        self.kind = source_kind(source)
        self.name = str(source)
        self._capture: cv2.VideoCapture | None = None
        self._files: list[Path] = []
        if self.kind == "folder":
            self._files = sorted(p for p in Path(self.name).iterdir() if p.suffix.lower() in FRAME_SUFFIXES)
            if not self._files:
                raise InputError("source", f"no image files ({', '.join(sorted(FRAME_SUFFIXES))}) in {self.name}")
            height, width = load_image(self._files[0], "source").shape[:2]
            self.info = SourceInfo(self.name, "folder", width, height, fps or DEFAULT_FPS, len(self._files))
            return
        target: str | int = int(self.name) if self.kind == "webcam" else self.name
        self._capture = cv2.VideoCapture(target)
        if not self._capture.isOpened():
            raise InputError("source", f"OpenCV cannot open {self.name}")
        reported = float(self._capture.get(cv2.CAP_PROP_FPS) or 0.0)
        if fps is None and not (math.isfinite(reported) and reported > 0):
            log.warning("%s does not report its frame rate; assuming %.0f fps (set --fps)", self.name, DEFAULT_FPS)
        count = int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.info = SourceInfo(
            self.name, self.kind,
            int(self._capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(self._capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
            fps or (reported if math.isfinite(reported) and reported > 0 else DEFAULT_FPS),
            count if self.kind == "file" and count > 0 else None,
        )

    def __enter__(self) -> VideoSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None

    def frames(self, start: int = 0, stride: int = 1, max_frames: int | None = None) -> Iterator[Frame]:
        """Frames ``start, start + stride, ...`` (source indices), at most ``max_frames`` of them.

        Skipped frames are grabbed, not decoded to RGB. Timestamps: ``index / fps`` for files and
        folders; seconds since the first frame was read for webcams and streams (wall clock).
        """
        if start < 0 or stride < 1 or (max_frames is not None and max_frames < 0):
            raise InputError("frames",
                             f"need start >= 0, stride >= 1, max_frames >= 0; got {start}, {stride}, {max_frames}")
        if max_frames == 0:
            return
        if self.kind == "folder":
            yield from self._folder_frames(start, stride, max_frames)
        else:
            yield from self._capture_frames(start, stride, max_frames)

    def _folder_frames(self, start: int, stride: int, max_frames: int | None) -> Iterator[Frame]:
        indices = range(start, len(self._files), stride)
        for count, index in enumerate(indices):
            if max_frames is not None and count >= max_frames:
                return
            yield Frame(index, index / self.info.fps, load_image(self._files[index], f"source[{index}]"))

    def _capture_frames(self, start: int, stride: int, max_frames: int | None) -> Iterator[Frame]:
        capture = self._capture
        if capture is None:
            raise InputError("source", f"{self.name} is closed")
        for _ in range(start):  # exact on every codec, unlike CAP_PROP_POS_FRAMES
            if not capture.grab():
                return
        index, count, t0 = start, 0, None
        while max_frames is None or count < max_frames:
            ok, bgr = capture.read()
            if not ok:
                return
            now = time.monotonic()
            t0 = now if t0 is None else t0
            time_s = index / self.info.fps if self.kind == "file" else now - t0
            yield Frame(index, time_s, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            count += 1
            if max_frames is not None and count >= max_frames:
                return
            for _ in range(stride - 1):
                if not capture.grab():
                    return
            index += stride


def iter_frames(source: SourceArg, start: int = 0, stride: int = 1, max_frames: int | None = None,
                fps: float | None = None) -> Iterator[Frame]:
    """Open ``source`` and stream its frames as ``Frame(index, time_s, rgb)``; closes it at the end."""
    with VideoSource(source, fps) as video:
        yield from video.frames(start, stride, max_frames)
