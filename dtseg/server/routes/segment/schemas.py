"""Request and response models of ``POST /segment`` (a named pipeline config on an image)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from dtseg.server.common.schemas import ImageInput, Strict


class SegmentPipelineRequest(Strict):
    image: ImageInput
    config: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.-]+$",
                        description="a pipeline config name from the server's configs_dir (file stem)")
    format: Literal["json", "rle"] = Field("json", description="json: polygons (every part and hole); rle: COCO RLE")


class Prompt(BaseModel):
    model_config = ConfigDict(extra="forbid")

    box: list[float] | None = Field(None, description="[x1, y1, x2, y2] pixels, or null")
    points: list[list[float]] = Field(description="[[x, y], ...] pixels")
    labels: list[int] = Field(description="1 foreground, 0 background, one per point")


class Detection(BaseModel):
    """One object: ``dtseg.records.object_records`` (the same fields as the json sink and video JSONL)."""

    model_config = ConfigDict(extra="forbid")
    index: int
    class_id: int | None = None
    class_name: str | None = None
    confidence: float | None = None
    sam_score: float | None = None
    tracker_id: int | None = None
    zone: Any | None = Field(None, description="the zone the object lies in (zones provider), when set")
    box: list[float] = Field(description="[x1, y1, x2, y2] pixels")
    prompt: Prompt
    area: int = Field(description="mask pixels")
    polygons: list[list[list[list[int]]]] | None = Field(
        None, description="parts -> rings [exterior, holes...] -> [x, y]")
    rle: dict[str, Any] | None = None
    data: dict[str, Any] | None = Field(None, description="other per-object data from the providers")


class SegmentPipelineResponse(BaseModel):
    detections: list[Detection]
    time: float
    config: str
    random_weights: str | None = Field(None, description="set when a model has random weights: masks are meaningless")
