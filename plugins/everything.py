"""``everything``: SAM's automatic mask generator as a prompt provider ("segment everything").

As ``segment_anything.SamAutomaticMaskGenerator`` does, the provider prompts SAM with a regular
grid of single foreground points (``segment_anything.utils.amg.build_point_grid``:
``points_per_side`` x ``points_per_side`` points, offset half a cell from the edges), and after
decoding keeps the masks that

* SAM itself rates well: predicted IoU (``sam_score``) at least ``pred_iou_thresh``;
* have at least ``min_area`` pixels (empty masks never pass);
* are not duplicates: box non-maximum suppression at ``box_nms_thresh`` (torchvision's
  ``batched_nms``, on the masks' tight boxes, highest ``sam_score`` wins), as the generator does.

Each image logs (INFO) how many prompts the grid makes, then how many masks each filter kept and,
when none is kept, which option to lower. Kept objects stay in grid order (row-major from the top
left); ``data["grid_point"]`` is each one's index in the grid. What does not carry over: the
generator's *stability score* filter needs the mask logits, which the pipeline's detections do not
hold; its image crops (``crop_n_layers``) and small-region cleanup are not done either. The
pipeline decodes each point once (``multimask_output: true`` in the config keeps the best of SAM's
three masks per point, where the generator keeps all three that pass).

```yaml
prompts:
  - everything: {points_per_side: 16, pred_iou_thresh: 0.88}
```
"""

from __future__ import annotations

import logging
from typing import cast

import numpy as np
import supervision as sv
from pydantic import Field

from dtseg.config import StrictModel
from dtseg.errors import PromptError
from dtseg.hookspecs import Register, hookimpl
from dtseg.prompts import Prompts

log = logging.getLogger(__name__)


class EverythingPrompts:
    """A point grid as prompts; ``after_segment`` filters the masks like SAM's generator."""

    class Config(StrictModel):
        points_per_side: int = Field(32, ge=1, le=128, description="grid points per side (n x n prompts)")
        pred_iou_thresh: float = Field(0.88, ge=0, le=1, description="keep masks whose sam_score is at least this")
        box_nms_thresh: float = Field(0.7, gt=0, le=1, description="drop a mask whose box overlaps a better "
                                                                    "one's by more than this IoU")
        min_area: int = Field(1, ge=1, description="keep masks of at least this many pixels")

    def __init__(self, config: Config) -> None:
        from segment_anything.utils.amg import build_point_grid

        self.config = config
        self.grid = build_point_grid(config.points_per_side).astype(np.float32)  # (n*n, 2) in [0, 1]

    def __call__(self, frame: np.ndarray, prompts: Prompts | None) -> Prompts:
        """``frame`` RGB ``(H, W, 3)`` -> one foreground point per grid cell, ``(n*n, 1, 2)`` pixels."""
        if prompts is not None:
            raise PromptError("prompts", "everything makes its own prompts: put it first in the prompt stages")
        h, w = frame.shape[:2]
        points = self.grid * np.array([w, h], np.float32)
        n = len(points)
        log.info("everything: %d grid points (%d x %d, points_per_side) go to SAM's mask decoder, one prompt each",
                 n, self.config.points_per_side, self.config.points_per_side)
        return Prompts(points[:, None, :], np.ones((n, 1), np.int32), np.full((n, 4), np.nan, np.float32),
                       data={"grid_point": np.arange(n)})

    def after_segment(self, frame: np.ndarray, detections: sv.Detections) -> sv.Detections:
        """Keep the masks ``(N, H, W)`` that pass the score and area filters and box NMS."""
        if len(detections) == 0:
            return detections
        c = self.config
        scores = np.asarray(detections.data["sam_score"], np.float32)
        areas = np.asarray(detections.mask).reshape(len(detections), -1).sum(axis=1)
        scored = scores >= c.pred_iou_thresh
        passing = np.flatnonzero(scored & (areas >= c.min_area))
        keep = np.sort(passing[box_nms(detections.xyxy[passing], scores[passing], c.box_nms_thresh)])
        log.info("%s", kept_report(len(detections), int(scored.sum()), len(passing), len(keep), float(scores.max()), c))
        return cast(sv.Detections, detections[keep])


def kept_report(masks: int, scored: int, passing: int, kept: int, best: float, config: EverythingPrompts.Config) -> str:
    """One line: how many of ``masks`` passed each filter in turn, and what to lower if none is kept."""
    line = (f"everything: kept {kept} of {masks} masks ({scored} with sam_score >= pred_iou_thresh "
            f"{config.pred_iou_thresh:g}, the highest {best:.2f}; {passing} of those with >= min_area "
            f"{config.min_area} pixels; {kept} after box NMS at {config.box_nms_thresh:g})")
    if kept == 0 and scored == 0 and best <= 0:
        line += "; no threshold keeps a mask that scores below 0 (random weights?)"
    elif kept == 0 and scored == 0:
        line += (f"; no mask scored {config.pred_iou_thresh:g}: lower prompts.everything.pred_iou_thresh "
                 f"(below {best:.2f}) to keep some")
    elif kept == 0:
        line += "; lower prompts.everything.min_area to keep some"
    return line


def box_nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Indices of ``boxes`` ``(N, 4)`` xyxy kept by NMS on ``scores`` ``(N,)``, best first."""
    if len(boxes) == 0:
        return np.zeros(0, np.int64)
    import torch
    from torchvision.ops import batched_nms

    kept = batched_nms(torch.as_tensor(boxes, dtype=torch.float32), torch.as_tensor(scores, dtype=torch.float32),
                       torch.zeros(len(boxes), dtype=torch.int64), iou_threshold)
    return kept.numpy()


@hookimpl
def dtseg_register_prompt_providers(register: Register) -> None:
    register("everything", EverythingPrompts)
