"""Request and response models of the page's routes: ``/fetch_image``, ``/everything``, ``/export``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from dtseg.server.common.schemas import ImageInput, RleMask, Strict
from dtseg.server.routes.segment.schemas import SegmentPipelineResponse

ExportFormat = Literal["coco", "masks_png", "annotated"]


class FetchImageRequest(Strict):
    url: str = Field(min_length=1, max_length=4096, description="an http(s) image URL")


class EverythingRequest(Strict):
    image: ImageInput
    points_per_side: int = Field(16, ge=1, le=32, description="grid points per side: n x n prompts, one mask each")
    pred_iou_thresh: float = Field(0.88, ge=0, le=1, description="keep masks whose sam_score is at least this")


class EverythingResponse(SegmentPipelineResponse):
    prompts: int = Field(description="grid points decoded, before the score, area and NMS filters")


class ExportObject(Strict):
    rle: RleMask = Field(description="the mask as COCO compressed RLE, size [height, width] of the image")
    class_name: str | None = Field(None, max_length=200, description="category name; default 'object'")
    sam_score: float | None = Field(None, description="SAM's predicted IoU of the mask")


class ExportRequest(Strict):
    image: ImageInput
    name: str = Field("image", min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.-]+$",
                      description="file stem used inside the export (COCO file_name, PNG names)")
    format: ExportFormat
    objects: list[ExportObject] = Field(max_length=10_000)
