"""Crash-safe MP4: a fragmented MP4 (PyAV / FFmpeg) that stays playable however the process ends.

A plain MP4 writes its index (the ``moov`` atom) when it is closed, so a killed run leaves an
unplayable file. Here the index comes first (``empty_moov``) and every frame is its own fragment
(``frag_every_frame``), flushed to the file as it is muxed (``flush_packets``): after SIGKILL
the file plays up to the last frame or two written. H.264 (libx264, no B-frames, no lookahead)
where FFmpeg has it, else MPEG-4 part 2.
"""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

#: Muxer options: index first, one fragment per frame, written through at once.
FRAGMENTED = {"movflags": "frag_keyframe+empty_moov+default_base_moof+frag_every_frame", "flush_packets": "1"}
KEYFRAME_EVERY = 30  # frames; a reader seeks to the nearest keyframe before a frame


def _codec() -> tuple[str, dict[str, str]]:
    if "libx264" in av.codecs_available:
        return "libx264", {"preset": "veryfast", "tune": "zerolatency", "crf": "20"}
    return "mpeg4", {"qscale": "3"}


class FragmentedMp4Writer:
    """Appends BGR uint8 ``(height, width, 3)`` frames to a new fragmented MP4 at ``fps`` frames
    per second. ``width`` and ``height`` are rounded up to even numbers (4:2:0 video needs them);
    an odd frame is padded by one black column / row. ``close()`` finishes the file; without it
    (a crash) the frames written so far still play."""

    def __init__(self, path: str | Path, width: int, height: int, fps: float) -> None:
        self.path = Path(path)
        self.frame_size = (int(width), int(height))
        self.size = (self.frame_size[0] + self.frame_size[0] % 2, self.frame_size[1] + self.frame_size[1] % 2)
        self.rate = Fraction(fps).limit_denominator(1001)
        self.frames = 0
        container = av.open(str(self.path), "w", format="mp4", options=dict(FRAGMENTED))
        codec, options = _codec()
        stream = container.add_stream(codec, rate=self.rate, options=options)
        if not isinstance(stream, av.VideoStream):
            container.close()
            raise TypeError(f"codec {codec!r} made a {type(stream).__name__}, not a video stream")
        stream.width, stream.height = self.size
        stream.pix_fmt = "yuv420p"
        stream.codec_context.gop_size = KEYFRAME_EVERY
        stream.codec_context.max_b_frames = 0
        self._container: av.container.OutputContainer | None = container
        self._stream = stream
        self._time_base = 1 / self.rate

    def write(self, bgr: np.ndarray) -> None:
        """Encode and write one BGR uint8 ``(height, width, 3)`` frame (the size given at construction)."""
        if self._container is None:
            raise ValueError(f"{self.path} is closed")
        if (bgr.shape[1], bgr.shape[0]) != self.frame_size:
            raise ValueError(f"frame is {bgr.shape[1]}x{bgr.shape[0]}, "
                             f"the video {self.frame_size[0]}x{self.frame_size[1]}")
        if self.size != self.frame_size:
            padded = np.zeros((self.size[1], self.size[0], 3), np.uint8)
            padded[: bgr.shape[0], : bgr.shape[1]] = bgr
            bgr = padded
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(bgr), format="bgr24")
        frame.pts, frame.time_base = self.frames, self._time_base
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        """Flush the encoder and finish the file (idempotent)."""
        if self._container is None:
            return
        container, self._container = self._container, None
        try:
            for packet in self._stream.encode(None):
                container.mux(packet)
        finally:
            container.close()


def read_frames(path: str | Path) -> Iterator[np.ndarray]:
    """The decodable frames of a video file as BGR uint8 ``(H, W, 3)``, in order; stops quietly at
    a cut-off end (a killed writer). A file that cannot be opened gives no frames."""
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError):
        return
    with container:
        if not container.streams.video:
            return
        try:
            for frame in container.decode(video=0):
                yield frame.to_ndarray(format="bgr24")
        except (av.FFmpegError, EOFError):
            return


def count_frames(path: str | Path) -> int:
    """How many frames of ``path`` decode (0 for a missing or unplayable file)."""
    return sum(1 for _ in read_frames(path))
