"""``POST /sam2/embed_image`` and ``POST /sam2/segment_image`` (Roboflow Inference SAM 2 shapes).

Served by the server's SAM 2 engine (``sam2.model``, or ``sam.model`` when that is a SAM 2
model); without one, both routes answer 404 naming the config key. Like Roboflow, each prompt
gives one prediction: the most confident of SAM 2's candidates, as every outer contour.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response

from dtseg.engine import SamEngine
from dtseg.errors import InputError
from dtseg.ids import check_image_id
from dtseg.masks import mask_to_polygons, masks_to_rle
from dtseg.prompts import Prompts
from dtseg.server.common.auth import Namespace
from dtseg.server.common.body import BODY_ERRORS, BodyRoute
from dtseg.server.common.encode import npz_bytes
from dtseg.server.common.images import load_body_image
from dtseg.server.common.roboflow import inference_fields
from dtseg.server.common.schemas import ErrorResponse
from dtseg.server.config import ServerConfig
from dtseg.server.families import EngineNeed
from dtseg.server.routes.sam2.schemas import (
    Sam2EmbedRequest,
    Sam2EmbedResponse,
    Sam2Prompt,
    Sam2SegmentRequest,
    Sam2SegmentResponse,
)
from dtseg.server.state import Services, ServicesDep

#: ``sam2.model``, or ``sam.model`` when that is a SAM 2 model.
SAM2 = EngineNeed("sam2", lineage="sam2", label="SAM 2", example="sam2.1_t")
Engine = Annotated[SamEngine, Depends(SAM2)]
router = APIRouter(prefix="/sam2", tags=["sam2"], route_class=BodyRoute)


def model_errors(need: EngineNeed) -> dict[int | str, dict[str, Any]]:
    """The error answers of a route family that serves ``need``'s model (OpenAPI ``responses``)."""
    return {
        400: {"model": ErrorResponse, "description": "bad image or prompts; `field` names the culprit"},
        404: {"model": ErrorResponse, "description": f"no {need.label} model configured, or image_id not embedded"},
        **BODY_ERRORS,
        422: {"model": ErrorResponse, "description": "body does not match the schema"},
    }


_ERRORS = model_errors(SAM2)


@router.post("/embed_image", response_model=Sam2EmbedResponse, responses=_ERRORS)
def embed_image(body: Sam2EmbedRequest, namespace: Namespace, engine: Engine, services: ServicesDep) -> dict[str, Any]:
    """Embed an image with the SAM 2 model and cache it under ``image_id`` (default: a hash of its pixels)."""
    return embed_response(engine, body, namespace, services)


def embed_response(engine: SamEngine, body: Sam2EmbedRequest, namespace: str, services: Services) -> dict[str, Any]:
    """``/sam2/embed_image``'s answer from ``engine`` (``/sam3/embed_image`` shares it)."""
    start = time.perf_counter()
    if body.image is None:
        if body.image_id is None:
            raise InputError("image", "give an image, or the image_id of an embedded image")
        embedding = engine.get_embedding(body.image_id, namespace)
    else:
        if body.image_id is not None:
            check_image_id(body.image_id)
        image = load_body_image(body, services.config, services.decode_budget)
        embedding = engine.embed_image(image, body.image_id, namespace)
    return {**inference_fields(engine), "time": time.perf_counter() - start, "image_id": embedding.image_id}


@router.post("/segment_image", response_model=Sam2SegmentResponse, responses={
    **_ERRORS, 200: {"content": {"application/octet-stream": {}},
                     "description": "json (polygons), rle, or np.savez_compressed bytes with format=binary"}})
def segment_image(body: Sam2SegmentRequest, namespace: Namespace, engine: Engine, services: ServicesDep) -> Response:
    """One mask per prompt (box and/or points) on an image or an embedded ``image_id``."""
    return segment_response(engine, body, namespace, services)


def segment_response(engine: SamEngine, body: Sam2SegmentRequest, namespace: str, services: Services) -> Response:
    """``/sam2/segment_image``'s answer from ``engine`` (``/sam3/visual_segment`` shares it)."""
    start = time.perf_counter()
    if body.image_id is not None:
        check_image_id(body.image_id)
    prompts = prompts_from_request(body.prompt_list(), services.config)
    image = load_body_image(body, services.config, services.decode_budget) if body.image is not None else None
    cached = (body.load_logits_from_cache and body.image_id is not None
              and engine.has_mask_logits(body.image_id, namespace))
    result = engine.segment_image(
        image=image, image_id=body.image_id, point_coords=prompts.points, point_labels=prompts.labels,
        boxes=prompts.boxes, mask_input="cached" if cached else None, multimask_output=body.multimask_output,
        namespace=namespace)
    best = result.most_confident()
    if body.format == "binary":
        return Response(npz_bytes(best), media_type="application/octet-stream")
    predictions = [{"masks": mask_payload(mask, body.format), "confidence": float(score),
                    "format": "polygon" if body.format == "json" else "rle"}
                   for mask, score in zip(best.masks[:, 0], best.scores[:, 0], strict=True)]
    return JSONResponse({**inference_fields(engine), "predictions": predictions,
                         "time": time.perf_counter() - start, "image_id": result.image_id})


#: Roboflow's stand-in for an empty prompt: one point at (0, 0) labelled -1, SAM's not-a-point token.
EMPTY_PROMPT = {"points": [[0.0, 0.0]], "labels": [-1]}


def prompts_from_request(prompts: list[Sam2Prompt], config: ServerConfig) -> Prompts:
    """Roboflow's prompts -> ``Prompts``: centre boxes to ``xyxy``, ``positive`` to labels 1/0.

    No prompts, or a prompt with neither box nor points, is Roboflow's empty prompt
    (``EMPTY_PROMPT``). Each prompt is decoded as if alone (Roboflow pads ragged point lists
    with -1 points, which SAM reads as tokens). More than ``server.max_objects`` prompts or
    ``server.max_points_per_object`` points is a 400."""
    if len(prompts) > config.max_objects:
        raise InputError("prompts", f"{len(prompts)} prompts: more than server.max_objects = {config.max_objects}")
    objects = []
    for i, prompt in enumerate(prompts):
        if len(prompt.points or []) > config.max_points_per_object:
            raise InputError(f"prompts[{i}].points", f"{len(prompt.points or [])} points: more than "
                                                     f"server.max_points_per_object = {config.max_points_per_object}")
        box = prompt.box
        if box is None and not prompt.points:
            objects.append(EMPTY_PROMPT)
            continue
        objects.append({
            "box": None if box is None else [box.x - box.width / 2, box.y - box.height / 2,
                                             box.x + box.width / 2, box.y + box.height / 2],
            "points": [[p.x, p.y] for p in prompt.points or []],
            "labels": [int(p.positive) for p in prompt.points or []],
        })
    return Prompts.from_objects(objects or [EMPTY_PROMPT])


def mask_payload(mask: np.ndarray, fmt: str) -> Any:
    """One ``(H, W)`` bool mask as Roboflow's ``masks``: COCO RLE ``{size, counts}`` for ``rle``,
    else (``json``, ``polygon``) every outer contour ``[[x, y], ...]``."""
    if fmt == "rle":
        return masks_to_rle(mask[None])[0]
    return [part[0].tolist() for part in mask_to_polygons(mask)]  # every outer contour, holes dropped
