"""Synthetic test videos written with OpenCV: coloured shapes moving smoothly on grey.

* red square: enters at the left edge, moves right, leaves at the right edge;
* green disc: moves down the right half, fully inside the whole time;
* blue square: appears at ``frames // 3`` and disappears at ``2 * frames // 3`` (middle, still).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def scene(t: int, frames: int, width: int, height: int) -> np.ndarray:
    """Frame ``t`` of ``frames`` as RGB uint8 ``(height, width, 3)``."""
    img = np.full((height, width, 3), 60, np.uint8)
    side = height // 4
    x = round(-side + (width + side) * t / max(1, frames - 1))
    y = height // 5
    cv2.rectangle(img, (x, y), (x + side, y + side), (230, 30, 30), -1)
    radius = height // 8
    cy = round(radius + 2 + (height - 2 * radius - 4) * t / max(1, frames - 1))
    cv2.circle(img, (3 * width // 4, cy), radius, (30, 220, 40), -1)
    if frames // 3 <= t < 2 * frames // 3:
        cv2.rectangle(img, (width // 2 - side // 2, height - side - 4), (width // 2 + side // 2, height - 4),
                      (30, 40, 230), -1)
    return img


def write_video(path: Path, frames: int, width: int = 128, height: int = 96, fps: float = 10.0) -> Path:
    """Write ``frames`` frames of ``scene`` as an mp4v video; return ``path``."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    assert writer.isOpened()
    for t in range(frames):
        writer.write(cv2.cvtColor(scene(t, frames, width, height), cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def write_frames(folder: Path, frames: int, width: int = 128, height: int = 96) -> Path:
    """Write ``frames`` PNG frames ``frame_0000.png``... into ``folder``; return it."""
    folder.mkdir(parents=True, exist_ok=True)
    for t in range(frames):
        bgr = cv2.cvtColor(scene(t, frames, width, height), cv2.COLOR_RGB2BGR)
        cv2.imwrite(str(folder / f"frame_{t:04d}.png"), bgr)
    return folder


def read_video(path: Path) -> tuple[int, float, tuple[int, int]]:
    """Frames actually decodable, the reported fps and ``(width, height)`` of a video file."""
    capture = cv2.VideoCapture(str(path))
    assert capture.isOpened(), f"cannot open {path}"
    fps = capture.get(cv2.CAP_PROP_FPS)
    size = (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    count = 0
    while capture.grab():
        count += 1
    capture.release()
    return count, fps, size
