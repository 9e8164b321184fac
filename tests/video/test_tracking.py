"""Tracking: rows keep their order and count, IDs stay stable for smoothly moving shapes,
objects appear and leave, and IDs never repeat for another object."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import supervision as sv

from dtseg.video import ObjectTracker, TrackerConfig, process_video


def _boxes(xyxy: list[list[float]], confidence: list[float] | None = None) -> sv.Detections:
    n = len(xyxy)
    return sv.Detections(xyxy=np.asarray(xyxy, np.float32).reshape(n, 4),
                         confidence=None if confidence is None else np.asarray(confidence, np.float32),
                         data={"name": np.asarray([f"obj{i}" for i in range(n)])})


def test_rows_keep_order_and_nothing_is_dropped() -> None:
    tracker = ObjectTracker(fps=10.0)
    ids = []
    for t in range(4):
        # a confident object, a weak one (cannot start a track) and a second confident one
        boxes = [[10 + 2 * t, 10, 30 + 2 * t, 30], [50, 50, 60, 60], [80 - 2 * t, 5, 95 - 2 * t, 25]]
        detections = tracker.update(_boxes(boxes, [0.9, 0.2, 0.8]), time_s=t / 10)
        assert len(detections) == 3
        assert detections.data["name"].tolist() == ["obj0", "obj1", "obj2"]  # same rows, same order
        assert np.array_equal(detections.xyxy, np.asarray(boxes, np.float32))
        ids.append(detections.tracker_id.tolist())
    assert ids[0] == [-1, -1, -1]  # a track is confirmed on its second match
    assert ids[1][1] == ids[3][1] == -1  # too weak to start a track: kept, id -1
    assert ids[1][0] == ids[2][0] == ids[3][0] >= 0
    assert ids[1][2] == ids[2][2] == ids[3][2] >= 0
    assert ids[1][0] != ids[1][2]


def test_empty_frames_and_first_id() -> None:
    tracker = ObjectTracker(fps=30.0, first_id=100)
    assert tracker.update(_boxes([]), 0.0).tracker_id.tolist() == []
    for t in range(1, 4):
        detections = tracker.update(_boxes([[0, 0, 10, 10]], None), t / 30)  # no confidence: counts as 1.0
    assert detections.tracker_id.tolist() == [100]


def test_lost_track_keeps_id_within_lost_s_only() -> None:
    tracker = ObjectTracker(fps=10.0, config=TrackerConfig(lost_s=0.5))
    box = [[20, 20, 40, 40]]
    for t in range(3):
        first = tracker.update(_boxes(box, [0.9]), t / 10).tracker_id[0]
    tracker.update(_boxes([], []), 0.3)  # one frame unseen: kept
    assert tracker.update(_boxes(box, [0.9]), 0.4).tracker_id[0] == first
    tracker.update(_boxes([], []), 0.5)
    tracker.update(_boxes([], []), 1.5)  # a second unseen: gone, the object comes back as a new track
    again = [tracker.update(_boxes(box, [0.9]), 1.6 + t / 10).tracker_id[0] for t in range(2)]
    assert again[0] == -1 and again[1] not in (-1, first)


def test_ids_follow_moving_shapes(video_30: Path, box_pipeline) -> None:
    """Red crosses the frame, green moves down, blue appears at frame 10 and leaves at 20:
    each keeps one ID for all its frames after its first, and the three IDs differ."""
    ids_by_class: dict[int, set[int]] = {0: set(), 1: set(), 2: set()}
    blue_frames = []
    for index, detections in process_video(box_pipeline, video_30):
        assert sorted(detections.class_id.tolist()) == sorted(set(detections.class_id.tolist()))
        for class_id, track_id in zip(detections.class_id.tolist(), detections.tracker_id.tolist(), strict=True):
            ids_by_class[class_id].add(track_id)
            if class_id == 2:
                blue_frames.append(index)
    assert blue_frames == list(range(10, 20))
    stable = {c: ids - {-1} for c, ids in ids_by_class.items()}
    assert all(len(ids) == 1 for ids in stable.values()), ids_by_class
    assert len(set.union(*stable.values())) == 3


def test_stride_keeps_ids(video_30: Path, box_pipeline) -> None:
    """Every 3rd frame: the shapes jump 3x further per step; timestamps keep the motion model right."""
    red = [d.tracker_id[d.class_id == 0].tolist() for _, d in process_video(box_pipeline, video_30, stride=3)]
    red_ids = {i for ids in red for i in ids} - {-1}
    assert len(red_ids) == 1 and sum(len(ids) for ids in red) >= 8


def test_no_track_leaves_tracker_id_unset(video_30: Path, box_pipeline) -> None:
    results = list(process_video(box_pipeline, video_30, max_frames=3, track=False))
    assert [i for i, _ in results] == [0, 1, 2]
    assert all(d.tracker_id is None for _, d in results)
