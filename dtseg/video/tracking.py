"""Stable object IDs across frames: Roboflow's ``trackers`` ByteTrack, wrapped so no row moves or vanishes.

``ObjectTracker.update(detections, time_s)`` returns the same detections, rows in the same order
(row i is still prompt i, mask i), with ``tracker_id`` ``(N,)`` int filled in:

* ``>= first_id`` -- a confirmed track; the same object keeps its ID while it stays in view and
  for ``lost_s`` seconds after it was last seen (so brief misses/occlusions keep the ID);
* ``-1`` -- not tracked (yet): an object's first frame (ByteTrack confirms a track on its second
  consecutive match), or a detection below ``track_thresh`` that continues no track.
  Such objects are still written, with ``id: -1``; nothing is dropped.

Association uses the boxes (IoU, with a Kalman motion model that runs on timestamps, so a
``--stride`` or a stream's uneven frame times are accounted for).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import supervision as sv
from trackers import ByteTrackTracker

#: ``trackers`` expresses the lost-track budget in frames of a 30 fps video.
_TRACKERS_REFERENCE_FPS = 30.0


@dataclass(frozen=True)
class TrackerConfig:
    """ByteTrack's settings, in dtseg's units.

    ``track_thresh``: a detection at least this confident can start a track and is matched
    first; less confident ones only continue existing tracks (ByteTrack's second stage).
    Detections without a confidence count as 1.0. ``match_iou``: least box IoU between a
    track's predicted box and a detection. ``lost_s``: seconds a track survives unseen.
    ``min_frames``: consecutive matches before a new track gets an ID.
    """

    track_thresh: float = 0.5
    match_iou: float = 0.1
    lost_s: float = 1.0
    min_frames: int = 2


class ObjectTracker:
    """ByteTrack over a video whose frames arrive with timestamps. ``fps``: the source's rate
    (the Kalman model's time unit). ``first_id``: the smallest ID handed out (``--resume``
    continues above the IDs already written)."""

    def __init__(self, fps: float, config: TrackerConfig = TrackerConfig(), first_id: int = 0) -> None:
        self.config = config
        self.first_id = int(first_id)
        self._tracker = ByteTrackTracker(
            lost_track_buffer=max(0, round(config.lost_s * _TRACKERS_REFERENCE_FPS)),
            frame_rate=fps,
            track_activation_threshold=config.track_thresh,
            high_conf_det_threshold=config.track_thresh,
            minimum_consecutive_frames=config.min_frames,
            minimum_iou_threshold=config.match_iou,
        )

    def update(self, detections: sv.Detections, time_s: float) -> sv.Detections:
        """Set ``detections.tracker_id`` (``(N,)`` int, -1 = untracked) in place and return them.
        ``time_s``: the frame's timestamp in seconds, increasing from call to call."""
        n = len(detections)
        boxes = sv.Detections(
            xyxy=np.asarray(detections.xyxy, np.float32).reshape(-1, 4),
            confidence=None if detections.confidence is None else np.asarray(detections.confidence, np.float32),
            data={"row": np.arange(n)},
        )
        tracked = self._tracker.update(boxes, timestamp=float(time_s))
        ids = np.full(n, -1, dtype=int)
        if len(tracked):  # ByteTrack returns every detection, possibly reordered: put rows back
            raw = np.asarray(tracked.tracker_id, dtype=int)
            ids[np.asarray(tracked.data["row"], dtype=int)] = np.where(raw >= 0, raw + self.first_id, -1)
        detections.tracker_id = ids
        return detections
