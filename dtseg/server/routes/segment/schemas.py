"""Request and response models of ``POST /segment`` (a named pipeline config on an image)."""

from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

from dtseg.server.common.schemas import ImageInput, Strict


class SegmentPipelineRequest(Strict):
    image: ImageInput
    config: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.-]+$",
                        description="a pipeline config name from the server's configs_dir (file stem)")
    format: Literal["json", "rle"] = Field("json", description="json: polygons (every part and hole); rle: COCO RLE")


class Prompt(BaseModel):
    model_config = ConfigDict(extra="forbid")

    box: Optional[list[float]] = Field(None, description="[x1, y1, x2, y2] pixels, or null")
    points: list[list[float]] = Field(description="[[x, y], ...] pixels")
    labels: list[int] = Field(description="1 foreground, 0 background, one per point")


class Detection(BaseModel):
    """One object: ``dtseg.records.object_records`` (the same fields as the json sink and video JSONL)."""

    model_config = ConfigDict(extra="forbid")
    index: int
    class_id: Optional[int] = None
    class_name: Optional[str] = None
    confidence: Optional[float] = None
    sam_score: Optional[float] = None
    tracker_id: Optional[int] = None
    zone: Optional[Any] = Field(None, description="the zone the object lies in (zones provider), when set")
    box: list[float] = Field(description="[x1, y1, x2, y2] pixels")
    prompt: Prompt
    area: int = Field(description="mask pixels")
    polygons: Optional[list[list[list[list[int]]]]] = Field(None, description="parts -> rings [exterior, holes...] -> [x, y]")
    rle: Optional[dict[str, Any]] = None
    data: Optional[dict[str, Any]] = Field(None, description="other per-object data from the providers")


class SegmentPipelineResponse(BaseModel):
    detections: list[Detection]
    time: float
    config: str
    random_weights: Optional[str] = Field(None, description="set when a model has random weights: masks are meaningless")
