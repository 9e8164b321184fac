"""Concept prompts (a phrase, exemplar boxes, or both) and what they find: every matching instance.

``ConceptPrompt.of`` checks one prompt (a phrase string, a dict as the HTTP API and configs
give it, or a ``ConceptPrompt``); ``SamEngine.segment_concepts`` returns one ``ConceptResult``
per prompt; ``to_detections`` merges them into ``sv.Detections`` with one class per prompt.
``mask_nms`` drops a mask overlapping a better one (mask IoU), within a prompt or across.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import supervision as sv

from dtseg.errors import PromptError

#: What a prompt's text is called when it has exemplar boxes only (Meta's placeholder).
VISUAL = "visual"


@dataclass(frozen=True)
class ConceptPrompt:
    """One concept prompt.

    ``text``: a phrase (``None`` or empty: exemplar boxes only); ``boxes`` ``(K, 4)`` exemplar
    boxes ``xyxy`` in image pixels (float32); ``box_labels`` ``(K,)`` bool, True for a positive
    exemplar (more like this), False for a negative one (not like this); ``threshold``: this
    prompt's score threshold in [0, 1], else the call's.
    """

    text: str | None = None
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    box_labels: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    threshold: float | None = None

    @property
    def name(self) -> str:
        """The prompt's class name: its phrase, or ``visual`` for exemplar boxes only."""
        return self.text or VISUAL

    @classmethod
    def of(cls, value: Any, where: str = "concepts[0]") -> ConceptPrompt:
        """A phrase, a mapping ``{text, boxes, box_labels, threshold}`` or a ``ConceptPrompt``,
        checked; a ``PromptError`` naming ``where`` and the field otherwise."""
        if isinstance(value, ConceptPrompt):
            value = {"text": value.text, "boxes": value.boxes, "box_labels": value.box_labels,
                     "threshold": value.threshold}
        elif isinstance(value, str):
            value = {"text": value}
        elif not isinstance(value, Mapping):
            raise PromptError(where, f"expected a phrase or {{text, boxes, box_labels}}, got {type(value).__name__}")
        unknown = set(value) - {"text", "boxes", "box_labels", "threshold"}
        if unknown:
            raise PromptError(where, f"unknown keys {sorted(unknown)}; expected text, boxes, box_labels, threshold")
        text = value.get("text")
        if text is not None and not isinstance(text, str):
            raise PromptError(f"{where}.text", f"expected a string, got {type(text).__name__}")
        text = (text or "").strip() or None
        boxes = _boxes(value.get("boxes"), f"{where}.boxes")
        labels = _labels(value.get("box_labels"), len(boxes), f"{where}.box_labels")
        if text is None and not len(boxes):
            raise PromptError(f"{where}.text", "an empty phrase needs exemplar boxes")
        threshold = value.get("threshold")
        if threshold is not None:
            threshold = check_threshold(threshold, f"{where}.threshold")
        return cls(text, boxes, labels, threshold)


@dataclass(frozen=True)
class ConceptResult:
    """Every instance one ``prompt`` matched, in the detector's query order.

    ``masks`` ``(N, H, W)`` bool; ``boxes`` ``(N, 4)`` float32 ``xyxy`` pixels (the detector's
    box, not the mask's); ``scores`` ``(N,)`` float32 = sigmoid(logit) x presence, above the
    threshold.
    """

    image_id: str
    prompt: ConceptPrompt
    masks: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray


def check_threshold(value: Any, where: str) -> float:
    """A score threshold in [0, 1]."""
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise PromptError(where, f"expected a number in [0, 1], got {value!r}") from exc
    if not 0.0 <= number <= 1.0:
        raise PromptError(where, f"expected a number in [0, 1], got {number:g}")
    return number


def concept_prompts(concepts: Any) -> list[ConceptPrompt]:
    """One prompt or a sequence of them (see ``ConceptPrompt.of``) -> checked prompts (at least one)."""
    if isinstance(concepts, (str, Mapping, ConceptPrompt)):
        concepts = [concepts]
    if not isinstance(concepts, Sequence) or not len(concepts):
        raise PromptError("concepts", "expected at least one concept prompt (a phrase or exemplar boxes)")
    return [ConceptPrompt.of(c, f"concepts[{i}]") for i, c in enumerate(concepts)]


def mask_nms(masks: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Indices (ascending) kept by greedy non-maximum suppression on mask IoU, best score
    first: a mask whose IoU with a kept one exceeds ``iou`` is dropped. ``masks`` ``(N, H, W)``
    bool (pairs whose tight boxes are disjoint are not compared), ``scores`` ``(N,)``."""
    boxes = sv.mask_to_xyxy(masks).astype(np.int64) if len(masks) else np.zeros((0, 4), np.int64)
    areas = masks.reshape(len(masks), -1).sum(axis=1)
    kept: list[int] = []
    for i in np.argsort(-scores, kind="stable"):
        if areas[i] == 0 or all(_mask_iou(masks, boxes, areas, i, j) <= iou for j in kept):
            kept.append(int(i))
    return np.array(sorted(kept), dtype=np.int64)


def to_detections(results: Sequence[ConceptResult], nms_iou: float | None = None) -> sv.Detections:
    """Per-prompt results -> one ``sv.Detections``: ``class_id`` = the prompt's index,
    ``confidence`` = SAM 3's score, ``xyxy`` = the detector's box, ``data["class_name"]`` = the
    phrase (``visual`` for exemplar boxes only). ``nms_iou``: also drop a mask overlapping a
    better one of another prompt (``mask_nms`` across prompts)."""
    if not results or not any(len(r.scores) for r in results):
        height, width = results[0].masks.shape[1:] if results else (0, 0)
        detections = sv.Detections.empty()
        detections.mask = np.zeros((0, height, width), bool)
        detections.data["class_name"] = np.zeros(0, dtype=object)
        return detections
    masks = np.concatenate([r.masks for r in results])
    boxes = np.concatenate([r.boxes for r in results]).astype(np.float32)
    scores = np.concatenate([r.scores for r in results]).astype(np.float32)
    class_id = np.concatenate([np.full(len(r.scores), i) for i, r in enumerate(results)])
    names = np.array([r.prompt.name for r in results for _ in r.scores], dtype=object)
    keep = np.arange(len(scores)) if nms_iou is None else mask_nms(masks, scores, nms_iou)
    return sv.Detections(xyxy=boxes[keep], mask=masks[keep], confidence=scores[keep], class_id=class_id[keep],
                         data={"class_name": names[keep]})


def _mask_iou(masks: np.ndarray, boxes: np.ndarray, areas: np.ndarray, i: int, j: int) -> float:
    x0, y0 = np.maximum(boxes[i, :2], boxes[j, :2])
    x1, y1 = np.minimum(boxes[i, 2:], boxes[j, 2:]) + 1  # tight boxes: inclusive
    if x1 <= x0 or y1 <= y0:
        return 0.0
    inter = np.logical_and(masks[i, y0:y1, x0:x1], masks[j, y0:y1, x0:x1]).sum()
    union = areas[i] + areas[j] - inter
    return float(inter / union) if union else 0.0


def _boxes(value: Any, where: str) -> np.ndarray:
    if value is None:
        return np.zeros((0, 4), np.float32)
    try:
        boxes = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise PromptError(where, f"expected [[x0, y0, x1, y1], ...] numbers: {exc}") from exc
    if boxes.size == 0:
        return np.zeros((0, 4), np.float32)
    if boxes.ndim == 1:
        boxes = boxes[None]
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise PromptError(where, f"expected boxes (K, 4) as [x0, y0, x1, y1], got shape {boxes.shape}")
    if not np.isfinite(boxes).all():
        raise PromptError(where, "box coordinates must be finite")
    if (boxes[:, 2:] <= boxes[:, :2]).any():
        raise PromptError(where, "each box needs x1 > x0 and y1 > y0")
    return boxes


def _labels(value: Any, count: int, where: str) -> np.ndarray:
    if value is None:
        return np.ones(count, bool)
    labels = np.asarray(value).reshape(-1)
    if len(labels) != count:
        raise PromptError(where, f"{len(labels)} labels for {count} boxes")
    if labels.dtype != bool and not np.isin(labels, (0, 1)).all():
        raise PromptError(where, "expected true (positive) / false (negative), or 1 / 0")
    return labels.astype(bool)
