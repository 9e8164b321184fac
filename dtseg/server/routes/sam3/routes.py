"""``POST /sam3/embed_image``, ``/sam3/visual_segment``, ``/sam3/concept_segment`` (Roboflow Inference SAM 3 shapes).

Served by the server's SAM 3 engine (``sam3.model``, or ``sam.model`` when that is a SAM 3
model: an engine whose ``capabilities.lineage`` is ``sam3``); without one, every route answers
404 naming the config key. ``embed_image`` and ``visual_segment`` are ``/sam2``'s routes on this
engine (one best mask per prompt). ``concept_segment`` returns every instance matching each
prompt, from the cached embedding when the image was embedded before (Roboflow encodes the
image again on every concept call).
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends
from fastapi.responses import Response

from dtseg.engine import SamEngine
from dtseg.engine.concepts import ConceptPrompt, to_detections
from dtseg.errors import InputError
from dtseg.ids import check_image_id
from dtseg.server.common.auth import Namespace
from dtseg.server.common.body import BodyRoute
from dtseg.server.common.images import load_body_image
from dtseg.server.common.roboflow import inference_fields
from dtseg.server.config import ServerConfig
from dtseg.server.families import EngineNeed
from dtseg.server.routes.sam2.routes import embed_response, mask_payload, model_errors, segment_response
from dtseg.server.routes.sam2.schemas import (
    Sam2EmbedRequest,
    Sam2EmbedResponse,
    Sam2SegmentRequest,
    Sam2SegmentResponse,
)
from dtseg.server.routes.sam3.schemas import Sam3ConceptRequest, Sam3ConceptResponse, Sam3Prompt
from dtseg.server.state import ServicesDep

router = APIRouter(prefix="/sam3", tags=["sam3"], route_class=BodyRoute)
SAM3 = EngineNeed("sam3", lineage="sam3", label="SAM 3", example="sam3")
Engine = Annotated[SamEngine, Depends(SAM3)]

_ERRORS = model_errors(SAM3)


@router.post("/embed_image", response_model=Sam2EmbedResponse, responses=_ERRORS)
def embed_image(body: Sam2EmbedRequest, namespace: Namespace, engine: Engine, services: ServicesDep) -> dict[str, Any]:
    """Embed an image with the SAM 3 model and cache it under ``image_id`` (default: a hash of its
    pixels); visual and concept prompts on that ``image_id`` then cost no encoder pass."""
    return embed_response(engine, body, namespace, services)


@router.post("/visual_segment", response_model=Sam2SegmentResponse, responses={
    **_ERRORS, 200: {"content": {"application/octet-stream": {}},
                     "description": "json (polygons), rle, or np.savez_compressed bytes with format=binary"}})
def visual_segment(body: Sam2SegmentRequest, namespace: Namespace, engine: Engine, services: ServicesDep) -> Response:
    """One mask per prompt (box and/or points; box ``x``, ``y`` = centre) on an image or an
    embedded ``image_id``: ``/sam2/segment_image`` on the SAM 3 model."""
    return segment_response(engine, body, namespace, services)


@router.post("/concept_segment", response_model=Sam3ConceptResponse, responses=_ERRORS)
def concept_segment(body: Sam3ConceptRequest, namespace: Namespace, engine: Engine,
                    services: ServicesDep) -> dict[str, Any]:
    """Every instance matching each prompt (a phrase, exemplar boxes, or both), its mask and
    SAM 3's score, prompt by prompt in request order."""
    start = time.perf_counter()
    if body.image_id is not None:
        check_image_id(body.image_id)
    prompts = [concept_prompt(prompt, i, services.config) for i, prompt in enumerate(body.prompts)]
    image = load_body_image(body, services.config, services.decode_budget) if body.image is not None else None
    threshold = 0.5 if body.output_prob_thresh is None else body.output_prob_thresh
    results = engine.segment_concepts(image, prompts, image_id=body.image_id, threshold=threshold, namespace=namespace)
    detections = to_detections(results, nms_iou=body.nms_iou_threshold)  # NMS across prompts, as Roboflow's
    fmt = "rle" if body.format == "rle" else "polygon"
    none = np.zeros((0, 0, 0), bool)  # when nothing was found, mask / confidence may be None
    masks = none if detections.mask is None else detections.mask
    scores = none[:, 0, 0] if detections.confidence is None else detections.confidence
    prompt_results = []
    for i, (asked, prompt) in enumerate(zip(body.prompts, prompts, strict=True)):
        mine = np.flatnonzero(detections.class_id == i)
        predictions = [{"masks": mask_payload(masks[k], fmt), "confidence": float(scores[k]), "format": fmt}
                       for k in mine]
        echo = {"prompt_index": i, "type": "visual" if len(prompt.boxes) else "text", "text": asked.text,
                "num_boxes": len(prompt.boxes)}
        prompt_results.append({"prompt_index": i, "echo": echo, "predictions": predictions})
    return {**inference_fields(engine), "prompt_results": prompt_results, "time": time.perf_counter() - start,
            "image_id": results[0].image_id}


def concept_prompt(prompt: Sam3Prompt, index: int, config: ServerConfig) -> ConceptPrompt:
    """A request prompt -> a checked ``ConceptPrompt`` (boxes ``xyxy`` pixels); a 400 naming
    ``prompts[index].<field>`` for a visual prompt without boxes, more boxes than
    ``server.max_objects``, ``box_labels`` of another length than ``boxes``, an inverted box,
    or an empty phrase without boxes."""
    where = f"prompts[{index}]"
    boxes = prompt.boxes or []
    if prompt.type == "visual" and not boxes:
        raise InputError(f"{where}.boxes", "a visual prompt needs at least one box")
    if len(boxes) > config.max_objects:
        raise InputError(f"{where}.boxes", f"{len(boxes)} boxes: more than server.max_objects = {config.max_objects}")
    return ConceptPrompt.of({"text": prompt.text, "boxes": [box.xyxy() for box in boxes],
                             "box_labels": prompt.box_labels, "threshold": prompt.output_prob_thresh}, where)
