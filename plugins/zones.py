"""``zones``: polygon zones. First stage: one prompt per zone. After another stage: keep only the
objects in a zone, and say which (``data["zone"]``).

```yaml
prompts:
  - yolo: {}
  - zones:
      zones:
        - name: lane
          polygon: [[0, 600], [810, 600], [810, 1080], [0, 1080]]   # pixels [x, y]
      anchor: bottom_center    # the box point that must lie in the zone ...
      # min_overlap: 0.5       # ... or, instead: the fraction of the mask inside the zone
```

The zones travel with the result (``detections.metadata["zones"]``: name -> polygon), and the
``annotated`` sink draws them. ``min_overlap`` filters after segmentation, whatever the stage's
position (as the first stage it keeps the zones whose own mask lies enough inside them); it also
records ``data["zone_overlap"]``.
Objects without a box (``yolo`` with ``prompt: center``) are anchored by their detector box
(``data["detector_box"]``) when there is one, else by the mean of their foreground points.
An object in several zones gets the first one listed.
"""

from __future__ import annotations

import logging
from typing import Literal, cast

import cv2
import numpy as np
import supervision as sv
from pydantic import Field, field_validator

from dtseg.config import StrictModel
from dtseg.hookspecs import Register, hookimpl
from dtseg.prompts import Prompts
from dtseg.records import ZONES

log = logging.getLogger(__name__)

Anchor = Literal["center", "center_left", "center_right", "top_center", "top_left", "top_right",
                 "bottom_left", "bottom_center", "bottom_right"]


class Zone(StrictModel):
    name: str | None = Field(None, description="default: zone<index>")
    polygon: list[tuple[float, float]] = Field(min_length=3, description="vertices [x, y], pixels")


class ZonePrompts:
    """Polygon zones: prompts of their own, or a filter on earlier prompts / masks."""

    class Config(StrictModel):
        zones: list[Zone] = Field(min_length=1)
        anchor: Anchor = Field("bottom_center", description="box point tested against the zones")
        min_overlap: float | None = Field(None, gt=0, le=1, description="instead of the anchor: keep an "
                                          "object whose mask lies at least this much (fraction) in a zone")

        @field_validator("zones")
        @classmethod
        def _unique_names(cls, zones: list[Zone]) -> list[Zone]:
            names = [z.name or f"zone{i}" for i, z in enumerate(zones)]
            if len(set(names)) != len(names):
                raise ValueError(f"zone names must be unique, got {names}")
            return zones

    def __init__(self, config: Config) -> None:
        self.config = config
        self.names = [z.name or f"zone{i}" for i, z in enumerate(config.zones)]
        self.polygons = [np.asarray(z.polygon, np.float32) for z in config.zones]  # each (V, 2)

    def __call__(self, frame: np.ndarray, prompts: Prompts | None) -> Prompts:
        if prompts is None:
            return self.zone_prompts(frame.shape[:2])
        if self.config.min_overlap is not None:
            return prompts  # filtered in after_segment, on the masks
        zone = self.zone_of_points(anchor_points(prompts, self.config.anchor))
        keep = np.flatnonzero(zone >= 0)
        log.debug("zones: %d of %d objects are in a zone", len(keep), len(prompts))
        kept = prompts[keep]
        kept.data["zone"] = np.array([self.names[z] for z in zone[keep]], dtype=object)
        return kept

    def after_segment(self, frame: np.ndarray, detections: sv.Detections) -> sv.Detections:
        """Record the zones in ``detections.metadata["zones"]``; with ``min_overlap``, keep the
        objects whose mask ``(N, H, W)`` lies enough in a zone."""
        detections.metadata[ZONES] = dict(zip(self.names, self.polygons, strict=True))
        if self.config.min_overlap is None:
            return detections
        if len(detections) == 0:
            detections.data.update(zone=np.zeros(0, dtype=object), zone_overlap=np.zeros(0, np.float32))
            return detections
        if detections.mask is None:
            raise ValueError("zones: min_overlap needs masks; it works after segmentation only")
        overlap = self.mask_overlap(np.asarray(detections.mask), frame.shape[:2])  # (N, Z)
        best = overlap.argmax(axis=1) if overlap.size else np.zeros(len(detections), int)
        keep = np.flatnonzero(overlap.max(axis=1, initial=0.0) >= self.config.min_overlap)
        kept = cast(sv.Detections, detections[keep])
        kept.data["zone"] = np.array([self.names[z] for z in best[keep]], dtype=object)
        kept.data["zone_overlap"] = overlap[keep, best[keep]].astype(np.float32)
        return kept

    # -- geometry --------------------------------------------------------------------------
    def zone_prompts(self, shape: tuple[int, int]) -> Prompts:
        """One prompt per zone: its bounding box (clipped to the frame) and its most interior point."""
        h, w = shape
        boxes, points = [], []
        for polygon in self.polygons:
            x1, y1 = np.clip(polygon.min(axis=0), 0, [w - 1, h - 1])
            x2, y2 = np.clip(polygon.max(axis=0), 0, [w - 1, h - 1])
            boxes.append([x1, y1, max(x1, x2), max(y1, y2)])
            points.append(interior_point(polygon, shape))
        n = len(self.polygons)
        return Prompts(np.asarray(points, np.float32)[:, None], np.ones((n, 1), np.int32),
                       np.asarray(boxes, np.float32), class_id=np.arange(n),
                       data={"class_name": np.array(self.names), "zone": np.array(self.names, dtype=object)})

    def zone_of_points(self, points: np.ndarray) -> np.ndarray:
        """``points`` ``(N, 2)`` pixels -> ``(N,)`` index of the first zone holding each (edges count), or -1."""
        zone = np.full(len(points), -1)
        for i, polygon in reversed(list(enumerate(self.polygons))):
            inside = np.array([np.isfinite(x) and np.isfinite(y)
                               and cv2.pointPolygonTest(polygon, (float(x), float(y)), False) >= 0
                               for x, y in points], dtype=bool)
            zone[inside] = i
        return zone

    def mask_overlap(self, masks: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        """``masks`` ``(N, H, W)`` bool -> ``(N, Z)`` fraction of each mask's pixels inside each zone."""
        h, w = shape
        zone_masks = np.stack([sv.polygon_to_mask(p, (w, h)) > 0 for p in self.polygons])  # (Z, H, W)
        flat = masks.reshape(len(masks), -1)
        area = flat.sum(axis=1).astype(np.float64)
        inside = flat.astype(np.float32) @ zone_masks.reshape(len(zone_masks), -1).T.astype(np.float32)
        return np.divide(inside, area[:, None], out=np.zeros_like(inside, dtype=np.float64), where=area[:, None] > 0)


def anchor_points(prompts: Prompts, anchor: Anchor) -> np.ndarray:
    """``(N, 2)`` anchor of each object: from its box, else ``data["detector_box"]``, else the mean
    of its foreground points."""
    boxes = prompts.boxes.copy()
    detector = prompts.data.get("detector_box")
    missing = ~prompts.has_box
    if detector is not None:
        boxes[missing] = np.asarray(detector, np.float32)[missing]
        missing = np.isnan(boxes).any(axis=1)
    anchors = np.full((len(prompts), 2), np.nan, np.float32)
    if (~missing).any():
        position = sv.Position(anchor.upper())
        anchors[~missing] = sv.Detections(xyxy=boxes[~missing]).get_anchors_coordinates(position)
    for i in np.flatnonzero(missing):
        fg = prompts.points[i][prompts.labels[i] == 1]
        anchors[i] = fg.mean(axis=0) if len(fg) else (np.nan, np.nan)
    return anchors


def interior_point(polygon: np.ndarray, shape: tuple[int, int]) -> tuple[float, float]:
    """The pixel of ``polygon`` ``(V, 2)`` farthest from its edges (inside the frame ``(H, W)``)."""
    h, w = shape
    mask = sv.polygon_to_mask(polygon, (w, h)).astype(np.uint8)
    if not mask.any():  # a zone outside the frame: its clipped centre
        cx, cy = polygon.mean(axis=0)
        return float(np.clip(cx, 0, w - 1)), float(np.clip(cy, 0, h - 1))
    distance = cv2.distanceTransform(np.pad(mask, 1), cv2.DIST_L2, 3)[1:-1, 1:-1]
    y, x = np.unravel_index(int(distance.argmax()), distance.shape)
    return float(x), float(y)


@hookimpl
def dtseg_register_prompt_providers(register: Register) -> None:
    register("zones", ZonePrompts)
