"""The annotated video: a sink (``dtseg.contracts.Sink``) that draws each frame with the ``annotated``
sink's ``Annotator`` (masks, boxes, labels with track IDs) into a crash-safe fragmented MP4
(``dtseg.video.mp4``).

On ``--resume`` the earlier video is *continued*: its first ``keep_frames`` frames are copied
into a new file, which then replaces the old one, and new frames are appended. (MP4 cannot be
appended in place; the copy re-encodes, which costs a little quality on those frames.) Until
the copy is done the old file is untouched, so a crash never loses it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import supervision as sv

from dtseg.sinks.annotated import AnnotatedConfig, Annotator
from dtseg.video.mp4 import FragmentedMp4Writer, read_frames

log = logging.getLogger(__name__)

#: The video's default label: the track ID first (``-1``: not tracked yet).
VIDEO_LABEL = "#{tracker_id} {class_name} {confidence:.2f}"


def video_annotator(sink_options: dict[str, Any] | None = None, banner: str | None = None) -> Annotator:
    """The ``annotated`` sink's drawing with the config's ``annotated`` options where given, else
    colours by track and labels ``#ID class confidence``; ``banner`` unless the options set one."""
    options = {"color_by": "track", "label": VIDEO_LABEL, **(sink_options or {})}
    return Annotator(AnnotatedConfig(**options), banner)


class AnnotatedVideo:
    """A sink that writes annotated frames to ``path`` at ``fps`` frames per second, ``(width,
    height)`` pixels, as a fragmented MP4 that stays playable if the process is killed
    (``dtseg.video.mp4``). ``write``'s ``name`` is not used: frames follow each other.

    ``keep_frames``: continue an existing video at ``path`` after its first ``keep_frames``
    frames (``--resume``; the caller checks that it has that many: ``count_frames``). Frames of
    another size are resized to the video's (a folder of mixed-size images).
    """

    per_run = True  # one file for the whole video

    def __init__(self, path: str | Path, width: int, height: int, fps: float, annotator: Annotator,
                 keep_frames: int = 0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.size = (int(width), int(height))
        self.annotator = annotator
        self.frames = 0
        resuming = keep_frames > 0 and self.path.exists()
        target = self.path.with_name(f".{self.path.stem}.resume{self.path.suffix}") if resuming else self.path
        self._writer: FragmentedMp4Writer | None = FragmentedMp4Writer(target, width, height, fps)
        self._warned_size = False
        self._pending: Path | None = None  # a resume copy still to be renamed over ``path``
        if resuming:
            self._copy_from(self.path, keep_frames)
            # the copy is itself crash-safe from here on: it replaces the old video now, and
            # the open writer goes on appending to it (POSIX keeps the file open across a rename)
            self._pending = target
            try:
                os.replace(target, self.path)
                self._pending = None
            except PermissionError:  # Windows cannot rename an open file: at close, then
                pass
        elif keep_frames > 0:
            log.warning("%s does not exist: the new video starts at the resumed frame (VideoJob redoes "
                        "the frames it lacks, so this happens only when it is used alone)", self.path)

    def _copy_from(self, old: Path, count: int) -> None:
        """Re-encode the first ``count`` frames of ``old`` (a little quality is lost on them)."""
        for bgr in read_frames(old):
            if self.frames >= count:
                break
            self._write_bgr(bgr[: self.size[1], : self.size[0]])  # drop an odd size's padding
        if self.frames < count:
            log.warning("%s held %d readable frames, the JSONL %d: the video misses %d frames before the "
                        "resumed part", old, self.frames, count, count - self.frames)

    def write(self, name: str, frame: np.ndarray, detections: sv.Detections) -> None:
        """Annotate RGB ``frame`` ``(H, W, 3)`` uint8 with ``detections`` and append it."""
        self._write_bgr(self.annotator.render(frame, detections))

    def _write_bgr(self, bgr: np.ndarray) -> None:
        if self._writer is None:
            raise ValueError(f"{self.path} is closed")
        if (bgr.shape[1], bgr.shape[0]) != self.size:
            if not self._warned_size:
                log.warning("frame of %dx%d resized to the video's %dx%d", bgr.shape[1], bgr.shape[0], *self.size)
                self._warned_size = True
            bgr = cv2.resize(bgr, self.size, interpolation=cv2.INTER_AREA)
        self._writer.write(bgr)
        self.frames += 1

    def close(self) -> None:
        """Finish the file (idempotent)."""
        if self._writer is not None:
            writer, self._writer = self._writer, None
            writer.close()
        if self._pending is not None:
            pending, self._pending = self._pending, None
            os.replace(pending, self.path)
