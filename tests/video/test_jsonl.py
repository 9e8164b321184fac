"""JSONL records: masks round-trip through RLE, lines are flushed whole, a torn last line is found."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import supervision as sv

from dtseg.masks import rle_to_mask
from dtseg.video.jsonl import JsonlWriter, frame_record, scan_jsonl


def _detections() -> sv.Detections:
    masks = np.zeros((2, 6, 8), bool)
    masks[0, 1:3, 2:5] = True
    masks[1, 4:6, 0:8] = True
    return sv.Detections(xyxy=sv.mask_to_xyxy(masks).astype(np.float32), mask=masks, class_id=np.array([3, 1]),
                         confidence=np.array([0.75, 0.5], np.float32), tracker_id=np.array([7, -1]),
                         data={"class_name": np.array(["car", "dog"]), "sam_score": np.array([0.9, 0.8], np.float32),
                               "zone": np.array(["a", "b"]), "prompt_box": np.zeros((2, 4), np.float32)})


def test_frame_record_fields_and_masks() -> None:
    detections = _detections()
    record = json.loads(json.dumps(frame_record(12, 0.4, (6, 8), detections)))
    assert (record["frame"], record["time_s"], record["width"], record["height"]) == (12, 0.4, 8, 6)
    first, second = record["objects"]
    assert first == {"index": 0, "tracker_id": 7, "class_id": 3, "class_name": "car", "confidence": 0.75,
                     "sam_score": 0.9, "zone": "a", "box": [2.0, 1.0, 4.0, 2.0], "area": 6, "rle": first["rle"]}
    assert second["tracker_id"] == -1
    for obj, mask in zip(record["objects"], detections.mask, strict=True):
        assert np.array_equal(rle_to_mask(obj["rle"]), mask)


def test_frame_record_without_tracking_or_objects() -> None:
    detections = _detections()
    detections.tracker_id = None
    assert [o["tracker_id"] for o in frame_record(0, 0.0, (6, 8), detections)["objects"]] == [None, None]
    assert frame_record(1, 0.1, (6, 8), sv.Detections.empty())["objects"] == []


def _record(frame: int, ids: list[int | None]) -> dict:
    return {"frame": frame, "time_s": frame / 10, "width": 8, "height": 6,
            "objects": [{"tracker_id": i} for i in ids]}


def test_scan_finds_last_complete_frame_and_torn_line(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    writer = JsonlWriter(path)
    for frame, ids in [(0, [-1, -1]), (2, [4, 0]), (4, [None, 1])]:
        writer.write(_record(frame, ids))
        assert path.read_bytes().endswith(b"\n")  # flushed whole, before close
    complete = path.stat().st_size
    writer.close()
    with path.open("ab") as f:
        f.write(b'{"frame": 6, "objects": [{"id": 9')  # killed mid-line
    state = scan_jsonl(path)
    assert (state.frames, state.last_frame, state.max_id, state.valid_bytes) == (3, 4, 4, complete)
    writer = JsonlWriter(path, keep_bytes=state.valid_bytes)  # resume: cut the torn line, append
    writer.write(_record(6, [5]))
    writer.close()
    lines = path.read_text().splitlines()
    assert [json.loads(line)["frame"] for line in lines] == [0, 2, 4, 6]


def test_scan_stops_at_a_line_that_is_not_a_frame(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    path.write_text(json.dumps(_record(0, [1])) + "\nnot json\n" + json.dumps(_record(1, [2])) + "\n")
    state = scan_jsonl(path)
    assert (state.frames, state.last_frame, state.max_id) == (1, 0, 1)
    assert scan_jsonl(tmp_path / "missing.jsonl").last_frame is None


def test_scan_reads_the_tracker_ids_of_older_files(tmp_path: Path) -> None:
    path = tmp_path / "old.jsonl"  # written before the shared record: the tracker ID was "id"
    path.write_text(json.dumps({"frame": 0, "objects": [{"id": 5}, {"id": -1}]}) + "\n")
    assert scan_jsonl(path).max_id == 5
