"""The one test stand-in for ``SamEngine``, for tests of the parts around SAM (stages, sinks,
video loops) that would otherwise spend a second per frame in the tiny random SAM.

``FakeEngine`` has exactly the methods of ``dtseg.contracts.Engine`` with ``SamEngine``'s
signatures (``tests/test_contracts.py`` fails when either drifts). Its "mask" for prompt i is the
pixels brighter than ``bright`` (max over RGB) inside prompt i's box; a prompt without a box
gets an empty mask. An empty mask's box is the prompt box, else zeros (as ``SamEngine``'s).
``sam_score`` is 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import supervision as sv

from dtseg.io import load_image
from dtseg.prompts import Prompts
from dtseg.records import PROMPT_BOX, PROMPT_LABELS, PROMPT_POINTS, SAM_SCORE, TRACKER_ID


@dataclass
class FakeEmbedding:
    """What ``FakeEngine.embed_images`` returns: the frame itself."""

    frame: np.ndarray


class FakeEngine:
    """``SamEngine`` stand-in. Records ``calls`` (prompts per ``segment``), ``cache_flags`` (the
    ``cache`` argument of each ``segment``) and ``batches`` (images per ``embed_images``)."""

    def __init__(self, random_weights: bool = False, bright: int = 100) -> None:
        self.random_weights = random_weights
        self.bright = bright
        self.calls: list[int] = []
        self.cache_flags: list[bool] = []
        self.batches: list[int] = []

    def embed_images(
        self,
        images: Sequence[Any],
        image_ids: Sequence[str | None] | None = None,
        namespace: str = "",
        batch_size: int = 4,
        cache: bool = True,
    ) -> list[Any]:
        self.batches.append(len(images))
        return [FakeEmbedding(load_image(image, "image")) for image in images]

    def segment(
        self,
        image: Any,
        prompts: Prompts,
        multimask_output: bool = False,
        namespace: str = "",
        cache: bool = True,
    ) -> sv.Detections:
        self.calls.append(len(prompts))
        self.cache_flags.append(cache)
        frame = image.frame if isinstance(image, FakeEmbedding) else load_image(image, "image")
        h, w = frame.shape[:2]
        masks = np.zeros((len(prompts), h, w), bool)
        bright = frame.max(axis=2) > self.bright
        for i in np.flatnonzero(prompts.has_box):
            x1, y1, x2, y2 = np.clip(prompts.boxes[i], 0, [w, h, w, h]).astype(int)
            masks[i, y1:y2, x1:x2] = bright[y1:y2, x1:x2]
        data = {k: v for k, v in prompts.data.items() if k != TRACKER_ID}
        data.update({SAM_SCORE: np.ones(len(prompts), np.float32), PROMPT_BOX: prompts.boxes,
                     PROMPT_POINTS: prompts.points, PROMPT_LABELS: prompts.labels})
        xyxy = sv.mask_to_xyxy(masks).astype(np.float32)
        empty = ~masks.any(axis=(1, 2))
        xyxy[empty] = np.where(prompts.has_box[:, None], prompts.boxes, 0.0)[empty]  # as SamEngine does
        tracker_id = prompts.data.get(TRACKER_ID)
        return sv.Detections(xyxy=xyxy, mask=masks, class_id=prompts.class_id,
                             confidence=prompts.confidence, data=data,
                             tracker_id=None if tracker_id is None else np.asarray(tracker_id))
