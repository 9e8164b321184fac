"""A prompt provider that follows the coloured shapes of the synthetic test videos.

Each of red, green and blue is one object: the box around that colour's pixels (colour
dominance, tolerant of mp4v's compression), class_id 0/1/2, class_name, confidence 0.9.
``interrupt_after``: send this process SIGINT while handling that many-th frame (tests Ctrl-C
at an exact frame). ``sleep_s``: wait this long per frame (a slow detector, for tests that signal
the process from outside). ``colors``: the shapes to report (``[]``: none, so SAM never runs). ``fail_after``: raise
``RuntimeError`` on that many-th frame.
"""

from __future__ import annotations

import os
import signal
import time

import numpy as np

from dtseg.config import StrictModel
from dtseg.hookspecs import hookimpl
from dtseg.prompts import Prompts

COLORS = ("red", "green", "blue")
MIN_PIXELS = 12


def color_masks(frame: np.ndarray) -> np.ndarray:
    """RGB uint8 ``(H, W, 3)`` -> ``(3, H, W)`` bool: pixels where red / green / blue dominates."""
    rgb = frame.astype(np.int16)
    masks = []
    for c in range(3):
        others = np.delete(rgb, c, axis=2)
        masks.append((rgb[..., c] > 120) & (others.max(axis=2) < rgb[..., c] - 70))
    return np.stack(masks)


class ShapePrompts:
    class Config(StrictModel):
        interrupt_after: int | None = None
        sleep_s: float = 0.0
        colors: list[str] = list(COLORS)  # noqa: RUF012 - pydantic copies defaults
        fail_after: int | None = None

    def __init__(self, config: Config) -> None:
        self.interrupt_after = config.interrupt_after
        self.sleep_s = config.sleep_s
        self.colors = {COLORS.index(c) for c in config.colors}
        self.fail_after = config.fail_after
        self.calls = 0

    def __call__(self, frame: np.ndarray, prompts: Prompts | None) -> Prompts:
        self.calls += 1
        time.sleep(self.sleep_s)
        if self.calls == self.fail_after:
            raise RuntimeError(f"detector failed on call {self.calls}")
        if self.interrupt_after is not None and self.calls == self.interrupt_after:
            os.kill(os.getpid(), signal.SIGINT)
        boxes, classes = [], []
        for c, mask in enumerate(color_masks(frame)):
            ys, xs = np.nonzero(mask)
            if c in self.colors and len(xs) >= MIN_PIXELS:
                boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
                classes.append(c)
        n = len(boxes)
        return Prompts(np.zeros((n, 0, 2)), np.zeros((n, 0)), np.asarray(boxes, np.float32).reshape(n, 4),
                       np.asarray(classes, int), np.full(n, 0.9, np.float32),
                       {"class_name": np.asarray([COLORS[c] for c in classes], dtype=object)})


@hookimpl
def dtseg_register_prompt_providers(register) -> None:
    register("shapes", ShapePrompts)
