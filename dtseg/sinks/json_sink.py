"""``json`` sink: one ``<subdir>/<name>.json`` per image, written as the image finishes.

Schema (every value plain JSON; NaN becomes ``null``)::

    {
      "image": {"name": str, "width": int, "height": int},      # pixels
      "objects": [
        {
          "index": int,                  # row in the detections, from 0
          "class_id": int | null,
          "class_name": str | null,      # data["class_name"] when the provider gives one
          "confidence": float | null,    # the detector's confidence
          "sam_score": float | null,     # SAM's predicted IoU
          "tracker_id": int | null,
          "zone": any,                   # only when data["zone"] exists
          "box": [x1, y1, x2, y2],       # float pixels (the mask's tight box)
          "prompt": {
            "box": [x1, y1, x2, y2] | null,
            "points": [[x, y], ...],     # padding (label -1) removed
            "labels": [int, ...]         # 1 foreground, 0 background
          },
          "area": int,                   # mask pixels
          "polygons": [                  # every part of the mask; omitted with polygons: false
            [ring, ...]                  # ring 0 the exterior, rings 1.. its holes;
          ],                             # ring = [[x, y], ...] int pixel centers (dtseg.masks)
          "rle": {"size": [H, W], "counts": str},   # COCO compressed RLE; omitted with rle: false
          "data": {key: value}           # other per-object data from providers, if any
        }
      ]
    }

``dtseg.masks.polygons_to_mask(obj["polygons"], (H, W))`` and ``dtseg.masks.rle_to_mask(obj["rle"])``
give the mask back exactly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import supervision as sv
from pydantic import Field

from dtseg.config import StrictModel
from dtseg.masks import mask_to_polygons, masks_to_rle
from dtseg.sinks._common import check_frame, check_name, column, json_safe, masks_of, write_json

#: ``data`` keys with a field of their own in the schema.
KNOWN_DATA = ("class_name", "sam_score", "zone", "prompt_box", "prompt_points", "prompt_labels")


class Config(StrictModel):
    polygons: bool = True
    rle: bool = True
    indent: int | None = Field(None, ge=0)
    subdir: str = "json"


def prompt_of(detections: sv.Detections, i: int) -> dict[str, Any]:
    """Object ``i``'s prompt: box (``None`` for a NaN row) and its valid points and labels."""
    data = detections.data
    box = data.get("prompt_box")
    box_i = None if box is None or np.isnan(np.asarray(box[i], float)).any() else json_safe(box[i])
    points, labels = data.get("prompt_points"), data.get("prompt_labels")
    if points is None or labels is None:
        return {"box": box_i, "points": [], "labels": []}
    valid = np.asarray(labels[i]) != -1
    return {"box": box_i, "points": json_safe(np.asarray(points[i])[valid]),
            "labels": json_safe(np.asarray(labels[i])[valid])}


def image_record(name: str, frame: np.ndarray, detections: sv.Detections, *, polygons: bool = True,
                 rle: bool = True) -> dict[str, Any]:
    """The JSON document of one image (see the module docstring)."""
    height, width = check_frame(frame)
    masks = masks_of(detections, (height, width), "json")
    rles = masks_to_rle(masks) if rle else []
    objects = []
    for i in range(len(detections)):
        obj: dict[str, Any] = {"index": i}
        for key in ("class_id", "class_name", "confidence", "sam_score", "tracker_id"):
            obj[key] = column(detections, key, i)
        if "zone" in detections.data:
            obj["zone"] = column(detections, "zone", i)
        obj["box"] = json_safe(np.asarray(detections.xyxy[i], float))
        obj["prompt"] = prompt_of(detections, i)
        obj["area"] = int(masks[i].sum())
        if polygons:
            obj["polygons"] = [[ring.tolist() for ring in part] for part in mask_to_polygons(masks[i])]
        if rle:
            obj["rle"] = rles[i]
        extra = {k: column(detections, k, i) for k in detections.data if k not in KNOWN_DATA}
        if extra:
            obj["data"] = extra
        objects.append(obj)
    return {"image": {"name": name, "width": width, "height": height}, "objects": objects}


class JsonSink:
    """Writes one JSON document per image; holds nothing between images."""

    Config = Config

    def __init__(self, config: Config, out_dir: Path) -> None:
        self.config = config
        self.dir = Path(out_dir) / config.subdir

    def write(self, name: str, frame: np.ndarray, detections: sv.Detections) -> None:
        record = image_record(check_name(name), frame, detections, polygons=self.config.polygons,
                              rle=self.config.rle)
        write_json(self.dir / f"{name}.json", record, self.config.indent)

    def close(self) -> None:
        """Nothing is held between images."""
