"""Objects drawn on the page -> files: the project's own sinks, writing into memory.

``coco`` is :class:`~dtseg.sinks.CocoSink`'s dataset, ``masks_png`` a zip of
:class:`~dtseg.sinks.MasksPngSink`'s per-object PNGs, ``annotated`` the PNG that
:class:`~dtseg.sinks.AnnotatedSink` writes, each through a ``MemoryWriter``. Masks arrive as COCO
compressed RLE, exactly as ``/sam/segment_image`` and ``/segment`` answer with ``format: "rle"``;
the runs are checked before pycocotools decodes them (it trusts them to fit the image).
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from pathlib import PurePosixPath
from typing import Any

import numpy as np
import supervision as sv

from dtseg.contracts import Sink
from dtseg.errors import InputError
from dtseg.masks import rle_to_mask
from dtseg.records import CLASS_NAME, SAM_SCORE
from dtseg.server.routes.page.schemas import ExportFormat, ExportObject
from dtseg.sinks import AnnotatedSink, CocoSink, MasksPngSink
from dtseg.sinks.writer import MemoryWriter

MEDIA_TYPES = {"coco": "application/json", "masks_png": "application/zip", "annotated": "image/png"}
SUFFIXES = {"coco": ".json", "masks_png": "_masks.zip", "annotated": "_annotated.png"}
#: Mask pixels one export may hold in memory (objects x height x width, one byte each).
MAX_MASK_PIXELS = 500_000_000


def to_detections(objects: list[ExportObject], shape: tuple[int, int]) -> sv.Detections:
    """Objects -> ``sv.Detections`` with masks ``(N, H, W)``; class ids 1.. by first appearance of each name."""
    names = [o.class_name.strip() if o.class_name and o.class_name.strip() else "object" for o in objects]
    ids = {name: i + 1 for i, name in enumerate(dict.fromkeys(names))}
    if len(objects) * shape[0] * shape[1] > MAX_MASK_PIXELS:
        raise InputError("objects", f"{len(objects)} masks of {shape[1]} x {shape[0]} pixels are more than one export "
                                    f"holds ({MAX_MASK_PIXELS} mask pixels): export fewer objects at a time")
    masks = np.zeros((len(objects), *shape), bool)
    for i, obj in enumerate(objects):
        masks[i] = checked_rle_mask(obj.rle.model_dump(), shape, f"objects[{i}].rle")
    xyxy = sv.mask_to_xyxy(masks).astype(np.float32) if len(objects) else np.zeros((0, 4), np.float32)
    scores = [np.nan if o.sam_score is None else o.sam_score for o in objects]
    return sv.Detections(xyxy=xyxy, mask=masks, class_id=np.array([ids[n] for n in names], int),
                         data={CLASS_NAME: np.array(names, dtype=object), SAM_SCORE: np.array(scores, np.float32)})


def rle_runs(counts: str, field: str) -> list[int]:
    """The run lengths of a COCO compressed ``counts`` string (pycocotools' ``rleFrString``)."""
    runs: list[int] = []
    p = 0
    while p < len(counts):
        x = k = 0
        more = True
        while more:
            if p >= len(counts):
                raise InputError(field, "counts ends inside a number")
            c = ord(counts[p]) - 48
            if not 0 <= c < 64:
                raise InputError(field, f"counts has a character outside COCO's alphabet: {counts[p]!r}")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p, k = p + 1, k + 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        runs.append(x + runs[-2] if len(runs) > 2 else x)
    return runs


def checked_rle_mask(rle: dict[str, Any], shape: tuple[int, int], field: str) -> np.ndarray:
    """A request's RLE -> ``(H, W)`` bool mask, after checking its size and that its runs tile the image."""
    if list(rle["size"]) != list(shape):
        raise InputError(field, f"size is {rle['size']}, the image is [{shape[0]}, {shape[1]}]")
    runs = rle_runs(rle["counts"], field)
    if any(n < 0 for n in runs) or sum(runs) != shape[0] * shape[1]:
        raise InputError(field, f"the runs must be non-negative and cover the {shape[0]} x {shape[1]} image exactly")
    return rle_to_mask(rle)


#: The sink behind each format, writing into a ``MemoryWriter``; ``banner``: the random-weights label.
EXPORT_SINKS: dict[str, Callable[[MemoryWriter, str | None], Sink]] = {
    "coco": lambda writer, banner: CocoSink(CocoSink.Config(), writer),
    "masks_png": lambda writer, banner: MasksPngSink(MasksPngSink.Config(mode="per_object"), writer),
    "annotated": lambda writer, banner: AnnotatedSink(AnnotatedSink.Config(
        annotators=["mask", "polygon", "label"], label="{class_name}", color_by="index", banner=banner), writer),
}


def export_bytes(fmt: ExportFormat, name: str, frame: np.ndarray, detections: sv.Detections,
                 banner: str | None = None) -> bytes:
    """``detections`` on ``frame`` (RGB uint8 ``(H, W, 3)``) as the ``fmt`` sink writes them: its one
    file, or a zip of its files (``masks_png``, by file name)."""
    writer = MemoryWriter()
    sink = EXPORT_SINKS[fmt](writer, banner)
    sink.write(name, frame, detections)
    sink.close()
    if fmt != "masks_png":
        (data,) = writer.files.values()
        return data
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:  # PNGs are compressed already
        for path, data in sorted((PurePosixPath(p).name, d) for p, d in writer.files.items()):
            archive.writestr(path, data)
    return buffer.getvalue()


def download_name(fmt: ExportFormat, name: str) -> str:
    return name + SUFFIXES[fmt]


