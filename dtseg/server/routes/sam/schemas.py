"""Request and response models of ``/sam/*``, shaped like Roboflow Inference's SAM v1 API.

Field names, defaults and JSON shapes follow ``SamEmbeddingRequest`` /
``SamSegmentationRequest`` / ``SamEmbeddingResponse`` / ``SamSegmentationResponse`` of
``roboflow/inference``, so client code written for it runs unchanged. Fields marked
*extension* are dtseg's own. Unknown fields are rejected (422 naming the field), except the
bookkeeping fields Roboflow's base request carries, which are accepted and ignored. Values
are strict (``dtseg.server.common.schemas``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from dtseg.server.common.roboflow import RoboflowBase
from dtseg.server.common.schemas import ImageInput, Number, RleMask

SamVersion = Literal["vit_h", "vit_l", "vit_b"]


class RoboflowCompat(RoboflowBase):
    """Roboflow's ``SamInferenceRequest``: ``sam_version_id`` is validated but does not switch
    models: one model is served (see /info)."""

    sam_version_id: SamVersion | None = Field(None, description="vit_h, vit_l or vit_b; validated, ignored")
    use_embeddings_cache: bool | None = None


class EmbedRequest(RoboflowCompat):
    """``POST /sam/embed_image``."""

    image: ImageInput | None = Field(None, description="required unless image_id is already embedded")
    image_id: str | None = Field(None, min_length=1, max_length=512, examples=["example_image_id"],
                                    description="cache key; default: a hash of the pixels. Printable text, no "
                                                "control characters; percent-encoded in X-Image-Id")
    format: Literal["json", "binary"] = Field("json", description="binary: np.save bytes of (1, 256, 64, 64) float32")


class EmbedResponse(BaseModel):
    embeddings: list[list[list[list[float]]]] = Field(description="(1, 256, 64, 64) nested lists")
    time: float = Field(description="seconds, image loading included")
    image_id: str = Field(description="extension: the id the embedding is cached under")


Points2D = list[list[Number]]
Points3D = list[list[list[Number]]]


class SegmentRequest(RoboflowCompat):
    """``POST /sam/segment_image``.

    One object (Roboflow): ``point_coords`` ``[[x, y], ...]`` and ``point_labels`` ``[1, 0, ...]``.
    Several objects (extension): ``point_coords`` ``(N, K, 2)`` with ``point_labels`` ``(N, K)``
    and/or ``boxes`` ``(N, 4)``; one mask per object, in order (``multimask_output``: three).
    Ragged point lists are accepted as they are (each object decoded with its own points).
    Labels follow SAM: 1 foreground, 0 background, -1 SAM's not-a-point token. No prompt at all
    is one object decoded from no prompt (as ``SamPredictor.predict()``).
    """

    image: ImageInput | None = None
    image_id: str | None = Field(None, min_length=1, max_length=512, examples=["example_image_id"])
    point_coords: Points2D | Points3D | None = Field(None, examples=[[[380, 350]]])
    point_labels: list[Number] | list[list[Number]] | None = Field(None, examples=[[1]])
    boxes: list[Number] | list[list[Number]] | None = Field(
        None, description="extension: [x1, y1, x2, y2] or a list of them, original pixels")
    multimask_output: bool = Field(False, description="extension: three masks per object, with scores")
    format: Literal["json", "binary", "rle"] = Field(
        "json", description="json: polygons; binary: np.savez_compressed; rle (extension): COCO RLE")
    embeddings: Any | None = Field(
        None, description="client-held embedding (1, 256, 64, 64) or (256, 64, 64); needs orig_im_size")
    embeddings_format: Literal["json", "binary"] = Field("json", description="binary: base64 of np.save bytes")
    orig_im_size: list[int] | None = Field(None, description="[height, width] of the embedded image")
    has_mask_input: bool = False
    mask_input: Any | None = Field(
        None, description="json: polygons on the 256x256 grid, or logits (256, 256) / (N, 1, 256, 256); "
                          "binary: base64 of np.save bytes of logits")
    mask_input_format: Literal["json", "binary"] = "json"
    use_mask_input_cache: bool = Field(True, description="refine from the last low-res logits of this image_id")


class SegmentResponse(BaseModel):
    masks: list[list[list[int]]] = Field(
        description="one polygon per mask ([[x, y], ...], original pixels; the largest part's exterior, "
                    "as Roboflow); masks are flattened: mask k = object k // M, candidate k % M")
    low_res_masks: list[list[list[int]]] = Field(description="the same on the 256x256 low-res grid")
    time: float
    image_id: str = Field(description="extension")
    scores: list[list[float]] = Field(description="extension: predicted IoU, (N objects, M masks)")
    polygons: list[list[list[list[list[int]]]]] = Field(
        description="extension: every mask's full geometry: parts -> rings [exterior, holes...] -> [x, y]")


class SegmentRleResponse(BaseModel):
    masks: list[RleMask] = Field(description="COCO RLE per mask, flattened as in json")
    low_res_masks: list[RleMask]
    time: float
    image_id: str
    scores: list[list[float]]
