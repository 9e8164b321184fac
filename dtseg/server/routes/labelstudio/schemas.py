"""Request and response bodies of ``/labelstudio`` (Label Studio's ML backend protocol).

Label Studio adds fields from version to version: requests accept unknown fields.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _LabelStudioBody(BaseModel):
    model_config = ConfigDict(extra="allow")


class PredictRequest(_LabelStudioBody):
    tasks: list[dict[str, Any]] = Field(description="Label Studio tasks: {id, data: {image: URL}, ...}")
    label_config: str | None = Field(None, description="the project's label config (XML)")
    project: str | int | None = Field(None, description="'<project id>.<created timestamp>'")
    params: dict[str, Any] | None = Field(None, description="{context: {result: [the annotator's smart regions]}, "
                                                               "login, password}; no context: pre-annotation")


class SetupRequest(_LabelStudioBody):
    project: str | int | None = None
    schema_: str | None = Field(None, alias="schema", description="the project's label config (XML)")
    hostname: str | None = Field(None, description="Label Studio's address, for task URLs starting with '/'")
    access_token: str | None = Field(None, description="a Label Studio API token to read task images with")


class Prediction(BaseModel):
    """One task's prediction; ``error`` set (and ``result`` empty) when that task failed."""

    model_config = ConfigDict(extra="allow")
    result: list[dict[str, Any]] = Field(description="brushlabels or polygonlabels regions")
    score: float
    model_version: str
    error: str | None = None
    unmapped_classes: dict[str, int] | None = Field(None, description="detector classes without a label in the "
                                                                         "label config, and how many objects each had")


class PredictResponse(BaseModel):
    results: list[Prediction]
    model_version: str


class SetupResponse(BaseModel):
    model_version: str


class HealthResponse(BaseModel):
    status: str = "UP"
    model_version: str
