"""Roboflow Inference's common vocabulary: the fields of its base request (accepted, mostly
ignored) and those every response carries (its ``InferenceResponse``), filled for dtseg."""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import BaseModel, Field

from dtseg.engine import SamEngine
from dtseg.server.common.schemas import Strict


class RoboflowBase(Strict):
    """Fields of Roboflow's ``BaseRequest``: accepted, validated, ignored, except
    ``disable_preproc_auto_orient`` (true: EXIF orientation is not applied). Authentication reads
    ``api_key`` from the query string or ``Authorization: Bearer``; a body ``api_key`` is ignored."""

    api_key: str | None = Field(None, description="ignored in the body: pass ?api_key= or a Bearer token")
    id: str | None = None
    model_id: str | None = None
    model_type: str | None = None
    usage_billable: bool | None = None
    start: float | None = None
    source: str | None = None
    source_info: str | None = None
    disable_model_monitoring: bool | None = None
    disable_preproc_auto_orient: bool | None = Field(
        None, description="true: use the pixels as stored, without applying EXIF orientation")


class ResolvedModel(BaseModel):
    """Which model answered: dtseg's model name, its precision and backend."""

    model_id: str
    model_package_id: str | None = None
    backend: str = "torch"
    quantization: str | None = None


class InferenceFields(BaseModel):
    inference_id: str = Field(description="a fresh id per response (uuid4)")
    frame_id: int | None = Field(None, description="always null: no video context")
    resolved_model: ResolvedModel


def inference_fields(engine: SamEngine) -> dict[str, Any]:
    """``inference_id``, ``frame_id`` and ``resolved_model`` for a response of ``engine``."""
    return {"inference_id": str(uuid.uuid4()), "frame_id": None,
            "resolved_model": {"model_id": engine.model_name, "model_package_id": None, "backend": "torch",
                               "quantization": engine.dtype_name}}
