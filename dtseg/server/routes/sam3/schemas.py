"""Request and response models of ``/sam3/concept_segment``, shaped like Roboflow Inference's SAM 3 API.

Field names, defaults and JSON shapes follow ``Sam3SegmentationRequest``, ``Sam3Prompt`` and
``Sam3SegmentationResponse`` of ``roboflow/inference`` 1.8.3, so ``inference_sdk``'s
``sam3_concept_segment`` works unchanged. Extensions are marked. Exemplar boxes are in image
pixels: ``{x, y, width, height}`` with ``x``, ``y`` the TOP-LEFT corner (unlike ``/sam2``'s
centre boxes), or corners ``{x0, y0, x1, y1}``. ``/sam3/embed_image`` and
``/sam3/visual_segment`` take and return ``/sam2``'s models (``dtseg.server.sam2_schemas``), as
Roboflow's do.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, StrictBool

from dtseg.server.common.roboflow import InferenceFields, RoboflowBase
from dtseg.server.common.schemas import ImageInput, Number, Strict
from dtseg.server.routes.sam2.schemas import Sam2Prediction

#: Prompts in one request (Roboflow's ``SAM3_MAX_PROMPT_BATCH_SIZE`` default).
MAX_PROMPTS = 16


class TopLeftBox(Strict):
    """An exemplar box by its top-left corner and size, image pixels (Roboflow's ``Box``)."""

    x: Number = Field(description="left, pixels")
    y: Number = Field(description="top, pixels")
    width: Number = Field(gt=0)
    height: Number = Field(gt=0)

    def xyxy(self) -> list[float]:
        return [self.x, self.y, self.x + self.width, self.y + self.height]


class CornerBox(Strict):
    """An exemplar box by its corners, image pixels (Roboflow's ``BoxXYXY``)."""

    x0: Number
    y0: Number
    x1: Number
    y1: Number

    def xyxy(self) -> list[float]:
        return [self.x0, self.y0, self.x1, self.y1]


class Sam3Prompt(Strict):
    """One concept prompt: a phrase, exemplar boxes, or both -> every matching instance."""

    type: Literal["text", "visual"] | None = Field(
        None, description="a hint, as Roboflow's: 'visual' requires at least one box; boxes are used whatever it says")
    text: str | None = Field(None, max_length=1000, description="a short noun phrase, e.g. 'person'")
    boxes: list[TopLeftBox | CornerBox] | None = Field(
        None, description="exemplar boxes, image pixels: {x, y, width, height} (x, y = top-left) or {x0, y0, x1, y1}")
    box_labels: list[StrictBool | Literal[0, 1]] | None = Field(
        None, description="one per box: 1 / true = more like this, 0 / false = not like this; default: all positive")
    output_prob_thresh: Number | None = Field(
        None, ge=0, le=1, description="this prompt's score threshold; default: the request's")


class Sam3ConceptRequest(RoboflowBase):
    """``POST /sam3/concept_segment``: every instance matching each prompt.

    ``model_id`` (Roboflow's ``sam3/sam3_final``) does not switch models: the server's SAM 3
    model answers (``resolved_model``). ``image`` may be left out when ``image_id`` is embedded
    (extension); with both, an image already embedded under ``image_id`` is not encoded again
    (extension: Roboflow re-encodes on every call)."""

    image: ImageInput | None = None
    image_id: str | None = Field(None, min_length=1, max_length=512,
                                 description="cache key (extension: Roboflow ignores it); "
                                             "default: a hash of the pixels")
    prompts: list[Sam3Prompt] = Field(min_length=1, max_length=MAX_PROMPTS,
                                      description=f"1 to {MAX_PROMPTS} prompts; all share one image embedding")
    output_prob_thresh: Number | None = Field(
        0.5, ge=0, le=1, description="keep instances scoring above this (score = sigmoid(logit) x presence); null: 0.5")
    nms_iou_threshold: Number | None = Field(
        None, ge=0, le=1, description="cross-prompt mask NMS: drop a mask whose IoU with a better one of any prompt "
                                      "exceeds this; null: none")
    format: Literal["polygon", "json", "rle"] = Field("polygon", description="json is polygon")


class Sam3PromptEcho(BaseModel):
    prompt_index: int
    type: Literal["text", "visual"] | None = Field(None, description="visual when the prompt has boxes, else text")
    text: str | None = None
    num_boxes: int | None = None


class Sam3Prediction(Sam2Prediction):
    confidence: float = Field(description="SAM 3's score: sigmoid(logit) x presence")


class Sam3PromptResult(BaseModel):
    prompt_index: int
    echo: Sam3PromptEcho
    predictions: list[Sam3Prediction] = Field(
        description="the instances above the threshold, in the detector's query order; confidence = SAM 3's score")


class Sam3ConceptResponse(InferenceFields):
    prompt_results: list[Sam3PromptResult]
    time: float = Field(description="seconds, image loading included")
    image_id: str = Field(description="extension: the id the embedding is cached under")
