"""Label Studio regions <-> pixels: annotator clicks to SAM prompts, masks to brush or polygon regions.

Label Studio places regions in percent of the image (``x``, ``y``, ``width``, ``height`` in
0..100); brush masks travel as its RLE (label-studio-sdk's ``converter.brush``), an RGBA bitmap
whose alpha channel is the mask.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from dtseg.errors import InputError
from dtseg.labelstudio.label_config import LabelConfig
from dtseg.masks import mask_to_polygons


@dataclass(frozen=True)
class ClickPrompt:
    """One object from the annotator's smart regions: ``points`` ``(K, 2)`` pixels ``[x, y]``,
    ``labels`` ``(K,)`` 1 foreground / 0 background, ``box`` ``(4,)`` ``[x1, y1, x2, y2]`` pixels or
    ``None``; ``label``: the output label (the label config's spelling)."""

    points: np.ndarray
    labels: np.ndarray
    box: np.ndarray | None
    label: str

    @property
    def size(self) -> int:
        """Points plus boxes: more than one means the annotator is refining an object."""
        return len(self.points) + (self.box is not None)


def prompt_from_context(context: object, config: LabelConfig, size: tuple[int, int],
                        negative_labels: Iterable[str] = ()) -> ClickPrompt:
    """The ``context.result`` items (``keypointlabels`` / ``rectanglelabels``) of one region ->
    one object's prompt on an image of ``size`` ``(H, W)`` pixels.

    A keypoint is background when Label Studio sends ``is_positive: false`` (Alt-click) or its
    label is one of ``negative_labels``. Of several rectangles the last counts (SAM takes one box
    per object). Raises ``InputError`` (field ``context``) for anything it cannot place.
    """
    items = context.get("result") if isinstance(context, dict) else None
    if not isinstance(items, list) or not items:
        raise InputError("context", "expected {'result': [keypointlabels or rectanglelabels regions]}")
    height, width = size
    negatives = {n.casefold() for n in negative_labels}
    points: list[tuple[float, float]] = []
    labels: list[int] = []
    box: list[float] | None = None
    names: list[str] = []
    for i, item in enumerate(items):
        field = f"context.result[{i}]"
        kind = item.get("type") if isinstance(item, dict) else None
        value = item.get("value") if isinstance(item, dict) else None
        if kind not in ("keypointlabels", "rectanglelabels") or not isinstance(value, dict):
            raise InputError(field, f"expected a keypointlabels or rectanglelabels region, got type {kind!r}")
        item_labels = value.get(kind) or []
        name = str(item_labels[0]) if item_labels else None
        x, y = _number(value, "x", field), _number(value, "y", field)
        if kind == "keypointlabels":
            if not (0 <= x <= 100 and 0 <= y <= 100):
                raise InputError(field, f"keypoint at ({x:g} %, {y:g} %) lies outside the image")
            negative = item.get("is_positive") is False or (name is not None and name.casefold() in negatives)
            points.append((x * width / 100, y * height / 100))
            labels.append(0 if negative else 1)
            if not negative and name is not None:
                names.append(name)
        else:
            w, h = _number(value, "width", field), _number(value, "height", field)
            x1, y1, x2, y2 = max(x, 0.0), max(y, 0.0), min(x + w, 100.0), min(y + h, 100.0)
            if w <= 0 or h <= 0 or x2 <= x1 or y2 <= y1:
                raise InputError(field, f"rectangle ({x:g}, {y:g}, {w:g} x {h:g} %) has no area inside the image")
            box = [x1 * width / 100, y1 * height / 100, x2 * width / 100, y2 * height / 100]
            if name is not None:
                names.append(name)
    if not names:
        raise InputError("context", "no positive keypoint or rectangle with a label: nothing names the object")
    label = config.label_named(names[-1])
    if label is None:
        raise InputError("context", f"label {names[-1]!r} is not one of the {config.output_type} tag "
                                    f"{config.from_name!r}'s labels {list(config.labels)}")
    return ClickPrompt(np.asarray(points, np.float32).reshape(-1, 2), np.asarray(labels, np.int64),
                       None if box is None else np.asarray(box, np.float32), label)


def _number(value: dict[str, Any], key: str, field: str) -> float:
    number = value.get(key)
    if isinstance(number, bool) or not isinstance(number, (int, float)) or not np.isfinite(number):
        raise InputError(f"{field}.value.{key}", f"expected a number (percent of the image), got {number!r}")
    return float(number)


def mask_region(mask: np.ndarray, label: str, score: float | None, config: LabelConfig) -> dict[str, Any] | None:
    """A ``(H, W)`` bool mask -> one Label Studio result region of ``config``'s output tag.

    Brush: the whole mask as Label Studio RLE. Polygon: the exterior ring of the mask's largest
    part (a polygon region has one ring), in percent. ``None`` when the mask is empty.
    """
    height, width = mask.shape
    if not mask.any():
        return None
    if config.output_type == "brushlabels":
        from label_studio_sdk.converter.brush import mask2rle

        value: dict[str, Any] = {"format": "rle", "rle": mask2rle(mask.astype(np.uint8) * 255)}
    else:
        parts = mask_to_polygons(mask)
        exterior = max((part[0] for part in parts), key=lambda ring: _area(ring))
        value = {"points": [[float(x) * 100 / width, float(y) * 100 / height] for x, y in exterior], "closed": True}
    value[config.output_type] = [label]
    region = {"id": uuid.uuid4().hex[:10], "from_name": config.from_name, "to_name": config.to_name,
              "type": config.output_type, "original_width": width, "original_height": height, "image_rotation": 0,
              "value": value, "readonly": False}
    if score is not None:
        region["score"] = float(score)
    return region


def _area(ring: np.ndarray) -> float:
    x, y = ring[:, 0].astype(np.float64), ring[:, 1].astype(np.float64)
    return abs(float(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1)))) / 2


def brush_mask(region: dict[str, Any]) -> np.ndarray:
    """A brush region's RLE -> ``(H, W)`` bool mask (the inverse of ``mask_region`` for brushes)."""
    from label_studio_sdk.converter.brush import decode_rle

    height, width = int(region["original_height"]), int(region["original_width"])
    return decode_rle(region["value"]["rle"]).reshape(height, width, 4)[:, :, 3] > 0
