"""Fields every Roboflow Inference response carries (its ``InferenceResponse``), filled for dtseg."""

from __future__ import annotations

import uuid
from typing import Any, Optional

from pydantic import BaseModel, Field

from dtseg.engine import SamEngine


class ResolvedModel(BaseModel):
    """Which model answered: dtseg's model name, its precision and backend."""

    model_id: str
    model_package_id: Optional[str] = None
    backend: str = "torch"
    quantization: Optional[str] = None


class InferenceFields(BaseModel):
    inference_id: str = Field(description="a fresh id per response (uuid4)")
    frame_id: Optional[int] = Field(None, description="always null: no video context")
    resolved_model: ResolvedModel


def inference_fields(engine: SamEngine) -> dict[str, Any]:
    """``inference_id``, ``frame_id`` and ``resolved_model`` for a response of ``engine``."""
    return {"inference_id": str(uuid.uuid4()), "frame_id": None,
            "resolved_model": {"model_id": engine.model_name, "model_package_id": None, "backend": "torch",
                               "quantization": engine.dtype_name}}
