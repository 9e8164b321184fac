"""Request and response models of ``/sam2/*``, shaped like Roboflow Inference's SAM 2 API.

Field names, defaults and JSON shapes follow ``Sam2EmbeddingRequest`` /
``Sam2SegmentationRequest`` / ``Sam2EmbeddingResponse`` / ``Sam2SegmentationResponse`` of
``roboflow/inference`` (1.8), so ``inference_sdk``'s ``sam2_segment_image`` works unchanged.
Extensions are marked. Boxes are centre-based (``x``, ``y`` = centre), as Roboflow's.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Discriminator, Field, Tag

from dtseg.server.common.roboflow import InferenceFields, RoboflowBase
from dtseg.server.common.schemas import ImageInput, Number, Strict

Sam2Version = Literal["hiera_tiny", "hiera_small", "hiera_b_plus", "hiera_large"]
#: Roboflow's version ids and the dtseg model of each.
SAM2_VERSIONS: dict[str, str] = {"hiera_tiny": "sam2.1_t", "hiera_small": "sam2.1_s", "hiera_b_plus": "sam2.1_b+",
                                 "hiera_large": "sam2.1_l"}


class Sam2Compat(RoboflowBase):
    """Roboflow's ``Sam2InferenceRequest``: ``sam2_version_id`` does not switch models: the server
    holds one SAM 2 model (``sam2.model`` in its config, reported as ``resolved_model``)."""

    sam2_version_id: Sam2Version | None = Field(None, description="validated; the configured model answers")


class Sam2EmbedRequest(Sam2Compat):
    """``POST /sam2/embed_image``."""

    image: ImageInput | None = Field(None, description="required unless image_id is already embedded")
    image_id: str | None = Field(None, min_length=1, max_length=512,
                                 description="cache key; default: a hash of the pixels")


class Box(Strict):
    x: Number = Field(description="centre x, pixels")
    y: Number = Field(description="centre y, pixels")
    width: Number = Field(ge=0)
    height: Number = Field(ge=0)


class Point(Strict):
    x: Number
    y: Number
    positive: bool


class Sam2Prompt(Strict):
    box: Box | None = None
    points: list[Point] | None = None


class Sam2PromptSet(Strict):
    prompts: list[Sam2Prompt] | None = None


def _prompts_form(value: Any) -> str:
    """Which of Roboflow's three ``prompts`` forms ``value`` is (its ``_coerce_prompts``)."""
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict) and "prompts" not in value:
        return "one"
    return "set"


#: ``{"prompts": [...]}`` (documented, ``inference_sdk``), a flat list ``[...]``, or one prompt ``{...}``.
PromptsField = Annotated[
    Annotated[Sam2PromptSet, Tag("set")] | Annotated[list[Sam2Prompt], Tag("list")] | Annotated[Sam2Prompt, Tag("one")],
    Discriminator(_prompts_form),
]


class Sam2SegmentRequest(Sam2Compat):
    """``POST /sam2/segment_image``: one prediction per prompt, in order.

    ``image`` may be left out when ``image_id`` is embedded (extension: Roboflow requires it)."""

    image: ImageInput | None = None
    image_id: str | None = Field(None, min_length=1, max_length=512)
    prompts: PromptsField = Field(default_factory=Sam2PromptSet, description=(
        "{\"prompts\": [...]} as documented; a flat list of prompts or a single prompt are accepted too "
        "(as Roboflow does). No prompt at all, or a prompt with neither box nor points, is Roboflow's "
        "empty prompt: one not-a-point token at (0, 0)"))
    multimask_output: bool = Field(True, description="SAM 2 predicts 3 candidates; the most confident is returned")
    format: Literal["json", "rle", "binary"] = "json"
    save_logits_to_cache: bool = Field(False, description="the best logits of every call are kept for refinement")
    load_logits_from_cache: bool = Field(False, description="refine from the last call's logits on this image_id")

    def prompt_list(self) -> list[Sam2Prompt]:
        """The prompts, whichever form the request used."""
        if isinstance(self.prompts, Sam2PromptSet):
            return self.prompts.prompts or []
        return self.prompts if isinstance(self.prompts, list) else [self.prompts]


class Sam2EmbedResponse(InferenceFields):
    time: float
    image_id: str


class Sam2Prediction(BaseModel):
    masks: list[list[list[int]]] | dict = Field(
        description="json: every outer contour [[x, y], ...] of the mask; rle: {size, counts}")
    confidence: float = Field(description="SAM 2's predicted IoU of the mask")
    format: Literal["polygon", "rle"] = "polygon"


class Sam2SegmentResponse(InferenceFields):
    predictions: list[Sam2Prediction]
    time: float
    image_id: str = Field(description="extension")
