"""Objects drawn on the page -> files, through the project's own sinks (one writer per format).

``coco`` is :class:`~dtseg.sinks.CocoSink`'s dataset, ``masks_png`` a zip of
:class:`~dtseg.sinks.MasksPngSink`'s per-object PNGs, ``annotated`` the PNG that
:class:`~dtseg.sinks.AnnotatedSink` renders. Masks arrive as polygons in the convention of
:func:`dtseg.masks.mask_to_polygons` (what ``/sam/segment_image`` answers), so
:func:`dtseg.masks.polygons_to_mask` restores them pixel for pixel.
"""

from __future__ import annotations

import io
import json
import tempfile
import zipfile
from pathlib import Path
from typing import Literal, Optional

import cv2
import numpy as np
import supervision as sv
from pydantic import Field

from dtseg.errors import InputError
from dtseg.masks import polygons_to_mask
from dtseg.server.schemas import ImageInput, Strict
from dtseg.sinks import AnnotatedSink, CocoSink, MasksPngSink

ExportFormat = Literal["coco", "masks_png", "annotated"]
MEDIA_TYPES = {"coco": "application/json", "masks_png": "application/zip", "annotated": "image/png"}
SUFFIXES = {"coco": ".json", "masks_png": "_masks.zip", "annotated": "_annotated.png"}


class ExportObject(Strict):
    polygons: list[list[list[list[float]]]] = Field(
        description="the mask: parts -> rings [exterior, holes...] -> [x, y] pixel centres (as /sam/segment_image answers)")
    class_name: Optional[str] = Field(None, max_length=200, description="category name; default 'object'")
    sam_score: Optional[float] = Field(None, description="SAM's predicted IoU of the mask")


class ExportRequest(Strict):
    image: ImageInput
    name: str = Field("image", min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.-]+$",
                      description="file stem used inside the export (COCO file_name, PNG names)")
    format: ExportFormat
    objects: list[ExportObject] = Field(max_length=10_000)


def to_detections(objects: list[ExportObject], shape: tuple[int, int]) -> sv.Detections:
    """Objects -> ``sv.Detections`` with masks ``(N, H, W)``; class ids 1.. by first appearance of each name."""
    names = [o.class_name.strip() if o.class_name and o.class_name.strip() else "object" for o in objects]
    ids = {name: i + 1 for i, name in enumerate(dict.fromkeys(names))}
    masks = np.zeros((len(objects), *shape), bool)
    for i, obj in enumerate(objects):
        for j, part in enumerate(obj.polygons):
            if not part or any(len(ring) == 0 or any(len(p) != 2 for p in ring) for ring in part):
                raise InputError(f"objects[{i}].polygons[{j}]", "expected rings of [x, y] points, the first the exterior")
        masks[i] = polygons_to_mask(obj.polygons, shape)
    xyxy = sv.mask_to_xyxy(masks).astype(np.float32) if len(objects) else np.zeros((0, 4), np.float32)
    scores = [np.nan if o.sam_score is None else o.sam_score for o in objects]
    return sv.Detections(xyxy=xyxy, mask=masks, class_id=np.array([ids[n] for n in names], int),
                         data={"class_name": np.array(names, dtype=object), "sam_score": np.array(scores, np.float32)})


def export_bytes(fmt: ExportFormat, name: str, frame: np.ndarray, detections: sv.Detections,
                 banner: str | None = None) -> bytes:
    """Render ``detections`` on ``frame`` (RGB uint8 ``(H, W, 3)``) in ``fmt`` with the matching sink."""
    with tempfile.TemporaryDirectory(prefix="dtseg-export-") as tmp:
        out = Path(tmp)
        if fmt == "coco":
            sink = CocoSink(CocoSink.Config(), out)
            sink.write(name, frame, detections)
            return json.dumps(sink.dataset(), allow_nan=False).encode()
        if fmt == "annotated":
            annotated = AnnotatedSink(AnnotatedSink.Config(annotators=["mask", "polygon", "label"],
                                                           label="{class_name}", color_by="index"), out)
            annotated.banner = banner
            ok, buffer = cv2.imencode(".png", annotated.render(frame, detections))
            if not ok:
                raise OSError("cannot encode the annotated PNG")
            return buffer.tobytes()
        masks_sink = MasksPngSink(MasksPngSink.Config(mode="per_object"), out)
        masks_sink.write(name, frame, detections)
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:  # PNGs are compressed already
            for path in sorted(masks_sink.dir.glob("*.png")):
                archive.write(path, path.name)
        return buffer.getvalue()


def download_name(fmt: ExportFormat, name: str) -> str:
    return name + SUFFIXES[fmt]


