"""``json`` sink: one ``<subdir>/<name>.json`` per image, written as the image finishes.

Schema (every value plain JSON; NaN becomes ``null``)::

    {
      "image": {"name": str, "width": int, "height": int},      # pixels
      "objects": [record, ...]   # dtseg.records.object_records: index, class_id, class_name,
    }                            # confidence, sam_score, tracker_id, zone (when set), box,
                                 # prompt, area, polygons (polygons: true), rle (rle: true), data

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
from dtseg.contracts import Writer
from dtseg.records import object_records
from dtseg.sinks._common import check_frame, check_name, json_bytes, relative
from dtseg.sinks.writer import as_writer


class JsonConfig(StrictModel):
    polygons: bool = True
    rle: bool = True
    indent: int | None = Field(None, ge=0)
    subdir: str = "json"


def image_record(name: str, frame: np.ndarray, detections: sv.Detections, *, polygons: bool = True,
                 rle: bool = True) -> dict[str, Any]:
    """The JSON document of one image (see the module docstring)."""
    height, width = check_frame(frame)
    objects = object_records(detections, (height, width), output="json", polygons=polygons, rle=rle)
    return {"image": {"name": name, "width": width, "height": height}, "objects": objects}


class JsonSink:
    """Writes one JSON document per image; holds nothing between images. ``out``: the output
    folder, or a ``Writer``."""

    Config = JsonConfig
    needs_pixels = False  # the frame's size only
    takes_writer = True

    def __init__(self, config: JsonConfig, out: Path | Writer) -> None:
        self.config = config
        self.writer = as_writer(out)

    def write(self, name: str, frame: np.ndarray, detections: sv.Detections) -> None:
        record = image_record(check_name(name), frame, detections, polygons=self.config.polygons,
                              rle=self.config.rle)
        self.writer.write(relative(self.config.subdir, f"{name}.json"), json_bytes(record, self.config.indent))

    def close(self) -> None:
        """Nothing is held between images."""
