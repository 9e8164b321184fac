"""``yolo_seg`` sink: an ultralytics segmentation dataset (what ``yolo segment train`` reads).

Layout under ``<out_dir>/<root>`` (default ``yolo``)::

    images/<name>.jpg      # the input image (``images: none`` writes none; then copy your own)
    labels/<name>.txt      # one line per object: ``class x1 y1 x2 y2 ...`` (normalized 0..1)
    data.yaml              # train/val: images, names: {id: name}; written at close()

A label line is the object's polygon in continuous image coordinates (the outline's pixel
centers + 0.5), each divided by the image width or height (6 decimals), as in ultralytics' own
converters; ``ultralytics.data.utils.polygon2mask`` gives an axis-aligned mask back exactly. The YOLO
format has one polygon per object and
no holes: a mask in several parts is joined into one polygon by zero-width bridges between the
parts' outlines (``ultralytics.data.converter.merge_multi_segment``, as its COCO converter does),
and holes are filled. An object whose outline has fewer than 3 vertices (an empty mask, a
single pixel) gets no line. ``class`` is the detector's ``class_id``; objects without one get
``unlabeled_id`` (default 0). ``names`` comes from ``data["class_name"]``, else
``category_names``, else the id; ids missing from 0..max are named by their number, since
ultralytics expects every id below the class count to have a name. An image with no objects
gets an empty label file (a background image for training).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import supervision as sv
import yaml
from pydantic import Field

from dtseg.config import StrictModel
from dtseg.contracts import Writer
from dtseg.errors import InputError
from dtseg.masks import mask_to_polygons
from dtseg.records import CLASS_NAME, column, masks_of
from dtseg.sinks._common import check_frame, check_name, encode_image, relative
from dtseg.sinks.writer import as_writer


class YoloSegConfig(StrictModel):
    root: str = "yolo"  # folder under the output folder ("": the folder itself)
    images: Literal["jpg", "png", "none"] = "jpg"
    jpg_quality: int = Field(95, ge=1, le=100)
    category_names: dict[int, str] = {}  # noqa: RUF012 - pydantic copies defaults
    unlabeled_id: int = Field(0, ge=0)
    data_yaml: str = "data.yaml"


def polygon_of(mask: np.ndarray) -> np.ndarray | None:
    """``(H, W)`` bool mask -> one ``(P, 2)`` float polygon in pixels (parts bridged, holes
    filled), or ``None`` when it has fewer than 3 vertices."""
    exteriors = [part[0] for part in mask_to_polygons(mask) if len(part[0])]
    if not exteriors:
        return None
    if len(exteriors) == 1:
        polygon = exteriors[0]
    else:
        from ultralytics.data.converter import merge_multi_segment  # heavy import: only when needed

        polygon = np.concatenate(merge_multi_segment([e.reshape(-1).tolist() for e in exteriors]), axis=0)
    return polygon.astype(np.float64) if len(polygon) >= 3 else None


def label_lines(detections: sv.Detections, masks: np.ndarray, unlabeled_id: int) -> list[tuple[int, str]]:
    """``(class, line)`` for every object with a polygon; ``masks`` ``(N, H, W)`` bool."""
    height, width = masks.shape[1:]
    lines = []
    for i, mask in enumerate(masks):
        polygon = polygon_of(mask)
        if polygon is None:
            continue
        class_id = column(detections, "class_id", i)
        cls = unlabeled_id if class_id is None else int(class_id)
        if cls < 0:
            raise InputError("detections", f"object {i} has class_id {cls}: YOLO class ids are 0 or more")
        # outline vertices are pixel centers; YOLO coordinates are continuous (pixel i spans i..i+1)
        normalized = np.clip((polygon + 0.5) / (width, height), 0.0, 1.0).reshape(-1)
        lines.append((cls, " ".join([str(cls), *(f"{v:.6f}" for v in normalized)])))
    return lines


class YoloSegSink:
    """Writes each image's label file (and image) as it finishes; ``data.yaml`` at ``close()``.
    ``out``: the output folder, or a ``Writer``."""

    Config = YoloSegConfig
    takes_writer = True

    def __init__(self, config: YoloSegConfig, out: Path | Writer) -> None:
        self.config = config
        self.writer = as_writer(out)
        self.names: dict[int, str] = {}
        self.closed = False

    def write(self, name: str, frame: np.ndarray, detections: sv.Detections) -> None:
        if self.closed:
            raise RuntimeError("yolo_seg sink: write() after close()")
        name = check_name(name)
        masks = masks_of(detections, check_frame(frame), "yolo_seg")
        lines = label_lines(detections, masks, self.config.unlabeled_id)
        for i in range(len(detections)):
            self._name_class(detections, i)
        if self.config.images != "none":
            params = [cv2.IMWRITE_JPEG_QUALITY, self.config.jpg_quality] if self.config.images == "jpg" else None
            self.writer.write(relative(self.config.root, "images", f"{name}.{self.config.images}"),
                              encode_image(f".{self.config.images}", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), params))
        text = "".join(line + "\n" for _, line in lines)
        self.writer.write(relative(self.config.root, "labels", f"{name}.txt"), text.encode("ascii"))

    def _name_class(self, detections: sv.Detections, i: int) -> None:
        class_id = column(detections, "class_id", i)
        cls = self.config.unlabeled_id if class_id is None else int(class_id)
        named = column(detections, CLASS_NAME, i) if class_id is not None else None
        default = "object" if class_id is None else str(cls)
        if cls not in self.names or self.names[cls] == str(cls):
            self.names[cls] = str(named or self.config.category_names.get(cls, default))

    def data_yaml(self) -> dict:
        """The dataset YAML as a dict (what ``close()`` writes). No ``path``: ultralytics then
        resolves ``images`` against the YAML's own folder, so the dataset can be moved."""
        top = max([*self.names, *self.config.category_names], default=-1)
        names = {i: self.names.get(i, self.config.category_names.get(i, str(i))) for i in range(top + 1)}
        return {"train": "images", "val": "images", "nc": len(names), "names": names}

    def close(self) -> None:
        """Write ``data.yaml`` (once; later calls do nothing)."""
        if self.closed:
            return
        text = yaml.safe_dump(self.data_yaml(), sort_keys=False, allow_unicode=True)
        self.writer.write(relative(self.config.root, self.config.data_yaml), text.encode("utf-8"))
        self.closed = True
