"""Synthetic frames and detections for sink tests (no SAM needed)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import supervision as sv

HEIGHT, WIDTH = 48, 64


def ring_mask() -> np.ndarray:
    """A disc with a hole in the middle (hole center: x=16, y=16): ``(H, W)`` bool."""
    m = np.zeros((HEIGHT, WIDTH), np.uint8)
    cv2.circle(m, (16, 16), 12, 1, -1)
    cv2.circle(m, (16, 16), 5, 0, -1)
    return m.astype(bool)


def make_detections() -> sv.Detections:
    """Three objects like ``SamEngine.segment`` returns: a ring with a hole (two parts: it has an
    island in its hole), a rectangle, and a disc overlapping the rectangle."""
    masks = np.zeros((3, HEIGHT, WIDTH), bool)
    masks[0] = ring_mask()
    masks[0, 15:18, 15:18] = True  # island inside the hole: a second part
    masks[1, 28:44, 30:60] = True
    cv2.circle(disc := np.zeros((HEIGHT, WIDTH), np.uint8), (52, 30), 9, 1, -1)
    masks[2] = disc.astype(bool)
    nan = np.full(4, np.nan, np.float32)
    return sv.Detections(
        xyxy=sv.mask_to_xyxy(masks).astype(np.float32),
        mask=masks,
        class_id=np.array([0, 2, 2]),
        confidence=np.array([0.9, 0.4, 0.6], np.float32),
        tracker_id=np.array([7, 8, 9]),
        data={
            "sam_score": np.array([0.95, 0.5, 0.8], np.float32),
            "class_name": np.array(["donut", "car", "car"]),
            "zone": np.array(["left", "right", "right"]),
            "prompt_box": np.stack([np.array([3, 3, 30, 30], np.float32), nan, nan]),
            "prompt_points": np.array([[[np.nan, np.nan]] * 2, [[40, 35], [31, 29]], [[52, 30], [np.nan, np.nan]]],
                                      np.float32),
            "prompt_labels": np.array([[-1, -1], [1, 0], [1, -1]]),
        },
    )


def make_frame() -> np.ndarray:
    """An RGB uint8 ``(H, W, 3)`` frame: a horizontal gradient."""
    row = np.linspace(0, 255, WIDTH).astype(np.uint8)
    return np.stack([np.tile(row, (HEIGHT, 1))] * 3, axis=-1)


def empty_detections() -> sv.Detections:
    empty = sv.Detections.empty()
    empty.data["sam_score"] = np.zeros(0, np.float32)
    return empty


@pytest.fixture
def frame() -> np.ndarray:
    return make_frame()


@pytest.fixture
def detections() -> sv.Detections:
    return make_detections()


@pytest.fixture
def empty() -> sv.Detections:
    return empty_detections()
