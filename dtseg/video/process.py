"""The frame loop: every frame runs the whole pipeline (prompt stages -> embed -> one batched
decode -> ``after_segment``), then the tracker. Frames are streamed; nothing is kept between them
except the tracker's state (a few numbers per live track).

```python
for index, detections in process_video(pipeline, "traffic.mp4", stride=2):
    print(index, detections.tracker_id, detections.metadata["time_s"])
```
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import supervision as sv

from dtseg.contracts import Segmenter
from dtseg.records import FRAME_INDEX, TIME_S
from dtseg.video.source import SourceArg, VideoSource
from dtseg.video.tracking import ObjectTracker, TrackerConfig

if TYPE_CHECKING:
    from dtseg.config import VideoConfig


@dataclass
class FrameResult:
    """One processed frame: source ``index``, ``time_s`` seconds, the RGB ``frame`` ``(H, W, 3)``
    uint8 and its ``detections`` (row i = prompt i; ``tracker_id`` set when tracking).
    ``seconds``: wall time spent on ``segment`` (prompts + SAM) and ``track``."""

    index: int
    time_s: float
    frame: np.ndarray
    detections: sv.Detections
    seconds: dict[str, float] = field(default_factory=dict)


def segment_frame(pipeline: Segmenter, frame: np.ndarray) -> sv.Detections:
    """``pipeline(frame)`` without caching: the frame's embedding and logits are not stored, so a
    video never evicts the image embedding cache. ``frame``: RGB uint8 ``(H, W, 3)``."""
    return pipeline(frame, cache=False)


def iter_results(
    pipeline: Segmenter,
    video: VideoSource,
    *,
    start: int = 0,
    stride: int = 1,
    max_frames: int | None = None,
    tracker: ObjectTracker | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> Iterator[FrameResult]:
    """Process ``video``'s frames ``start, start + stride, ...`` one at a time.

    ``should_stop()`` is asked before each frame is read (the CLI's Ctrl-C flag): the frame in
    progress always finishes. ``detections.metadata`` gets ``frame_index`` and ``time_s``.
    """
    for index, time_s, rgb in video.frames(start, stride, max_frames):
        t0 = time.perf_counter()
        detections = segment_frame(pipeline, rgb)
        t1 = time.perf_counter()
        if tracker is not None:
            detections = tracker.update(detections, time_s)
        t2 = time.perf_counter()
        detections.metadata.update({FRAME_INDEX: index, TIME_S: time_s})
        yield FrameResult(index, time_s, rgb, detections, {"segment": t1 - t0, "track": t2 - t1})
        if should_stop():
            return


def process_video(
    pipeline: Segmenter,
    source: SourceArg,
    *,
    start: int = 0,
    stride: int = 1,
    max_frames: int | None = None,
    track: bool = True,
    tracker_config: TrackerConfig | None = None,
    fps: float | None = None,
    video_config: VideoConfig | None = None,
) -> Iterator[tuple[int, sv.Detections]]:
    """Yield ``(frame_index, sv.Detections)`` for frames ``start, start + stride, ...`` of ``source``
    (a video file, a folder of frames, a webcam index or a stream URL), at most ``max_frames``.

    ``track``: stable ``tracker_id`` across frames (ByteTrack; -1 = not tracked yet), else the
    providers' own ``tracker_id``, if any. ``fps`` overrides the source's frame rate.
    ``detections.metadata["time_s"]`` is the frame's timestamp in seconds. ``video_config``: a
    ``VideoConfig`` (default: the pipeline config's ``video`` section); with ``mode: propagate``
    SAM 2 carries the objects (``dtseg.video.propagate``) and ``tracker_id`` is the object ID. The source is closed
    when the generator finishes or is closed (``break`` out of the loop is fine).
    """
    config = video_config if video_config is not None else pipeline_video_config(pipeline)
    with VideoSource(source, fps) as video:
        if config is not None and config.mode == "propagate":
            from dtseg.video.propagate import ObjectBook, iter_propagated, propagator_for

            book = ObjectBook(propagator_for(pipeline, config), config)
            results = iter_propagated(pipeline, video, book, start=start, stride=stride, max_frames=max_frames)
        else:
            tracker = ObjectTracker(video.info.fps, tracker_config or TrackerConfig()) if track else None
            results = iter_results(pipeline, video, start=start, stride=stride, max_frames=max_frames,
                                   tracker=tracker)
        for result in results:
            yield result.index, result.detections


def pipeline_video_config(pipeline: Segmenter) -> VideoConfig | None:
    """The pipeline config's ``video`` section, if the pipeline came from a config."""
    return pipeline.loaded.config.video if pipeline.loaded is not None else None
