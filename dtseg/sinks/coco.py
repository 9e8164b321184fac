"""``coco`` sink: one COCO dataset JSON for a whole run, written at ``close()``.

Holds no masks: each image's masks are RLE-encoded (strings) as the image finishes, and only
those records are kept until ``close()`` writes ``<out_dir>/<file>`` atomically (temp file +
rename). The result loads with ``pycocotools.coco.COCO`` and ``annToMask`` gives the masks back.

* ``images``: ``{"id", "file_name", "width", "height"}``, ids from 1 in write order;
  ``file_name`` is ``<name><image_suffix>``.
* ``annotations``: ``{"id", "image_id", "category_id", "segmentation": {"size", "counts"}``
  (compressed RLE), ``"area"`` (mask pixels), ``"bbox": [x, y, w, h]`` (the mask's tight box,
  as pycocotools ``toBbox``), ``"iscrowd": 0``, ``"score"`` (``confidence``, else ``sam_score``),
  ``"sam_score"``, ``"tracker_id"`` (when present)}``, ids from 1.
* ``categories``: ``{"id", "name"}`` of every category used, sorted by id. ``category_id`` is
  the detector's ``class_id``; objects without one get ``unlabeled_id`` (default -1, name
  ``"object"``). Names come from ``data["class_name"]``, else ``category_names``, else the id.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any

import numpy as np
import supervision as sv
from pycocotools import mask as mask_utils

from dtseg.config import StrictModel
from dtseg.contracts import Writer
from dtseg.masks import masks_to_rle
from dtseg.records import CLASS_NAME, SAM_SCORE, TRACKER_ID, column, masks_of
from dtseg.sinks._common import check_frame, check_name, json_bytes, relative
from dtseg.sinks.writer import as_writer


class CocoConfig(StrictModel):
    file: str = "coco.json"
    image_suffix: str = ""  # e.g. ".jpg": file_name = name + suffix
    category_names: dict[int, str] = {}  # noqa: RUF012 - pydantic copies defaults
    unlabeled_id: int = -1
    indent: int | None = None


class CocoSink:
    """Collects RLE annotations per image; writes the dataset JSON once, at ``close()``. ``out``:
    the output folder, or a ``Writer``."""

    Config = CocoConfig
    per_run = True  # one file for the whole run
    needs_pixels = False  # the frame's size only
    takes_writer = True

    def __init__(self, config: CocoConfig, out: Path | Writer) -> None:
        self.config = config
        self.writer = as_writer(out)
        self.images: list[dict[str, Any]] = []
        self.annotations: list[dict[str, Any]] = []
        self.categories: dict[int, str] = {}
        self.closed = False

    def write(self, name: str, frame: np.ndarray, detections: sv.Detections) -> None:
        if self.closed:
            raise RuntimeError("coco sink: write() after close()")
        height, width = check_frame(frame)
        masks = masks_of(detections, (height, width), "coco")
        image_id = len(self.images) + 1
        self.images.append({"id": image_id, "file_name": check_name(name) + self.config.image_suffix,
                            "width": width, "height": height})
        rles = masks_to_rle(masks)
        if not rles:
            return
        encoded = [{"size": r["size"], "counts": r["counts"].encode("ascii")} for r in rles]
        # one RLE at a time: pycocotools' area() of a list overflows past 255 masks (a uint8 count)
        areas, boxes = [mask_utils.area(e) for e in encoded], mask_utils.toBbox(encoded)
        for i, rle in enumerate(rles):
            category = self._category(detections, i)
            sam_score, confidence = column(detections, SAM_SCORE, i), column(detections, "confidence", i)
            annotation = {
                "id": len(self.annotations) + 1, "image_id": image_id, "category_id": category,
                "segmentation": rle, "area": int(areas[i]), "bbox": [float(v) for v in boxes[i]], "iscrowd": 0,
                "score": confidence if confidence is not None else sam_score, SAM_SCORE: sam_score,
            }
            tracker_id = column(detections, TRACKER_ID, i)
            if tracker_id is not None:
                annotation[TRACKER_ID] = tracker_id
            self.annotations.append(annotation)

    def _category(self, detections: sv.Detections, i: int) -> int:
        class_id = column(detections, "class_id", i)
        category = self.config.unlabeled_id if class_id is None else int(class_id)
        if category not in self.categories or self.categories[category] == str(category):
            name = column(detections, CLASS_NAME, i) if class_id is not None else None
            default = "object" if class_id is None else str(category)
            self.categories[category] = str(name or self.config.category_names.get(category, default))
        return category

    def dataset(self) -> dict[str, Any]:
        """The COCO document as a dict (what ``close()`` writes)."""
        return {
            "info": {"description": "dtseg run", "date_created": _dt.datetime.now(_dt.timezone.utc).isoformat()},
            "images": self.images,
            "annotations": self.annotations,
            "categories": [{"id": k, "name": v} for k, v in sorted(self.categories.items())],
        }

    def close(self) -> None:
        """Write the dataset JSON (once; later calls do nothing)."""
        if self.closed:
            return
        self.writer.write(relative(self.config.file), json_bytes(self.dataset(), self.config.indent))
        self.closed = True
