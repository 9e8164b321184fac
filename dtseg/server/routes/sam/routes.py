"""``POST /sam/embed_image`` and ``POST /sam/segment_image`` (Roboflow Inference SAM v1 shapes).

Handlers are plain ``def``: FastAPI runs them in its thread pool, so decoding, fetching and
encoding overlap, while the engine runs one encoder batch and one decoder batch at a time
under separate locks (a cached segment_image never waits for another request's embed).
"""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

import numpy as np
import torch
from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response

from dtseg.engine import Embedding, SamEngine
from dtseg.errors import InputError
from dtseg.ids import check_image_id, header_value
from dtseg.server.common.auth import Namespace
from dtseg.server.common.body import BODY_ERRORS, BodyRoute
from dtseg.server.common.encode import (
    json_payload,
    load_npy,
    mask_input_logits,
    nesting_depth,
    npy_bytes,
    npz_bytes,
    numeric_array,
    rle_payload,
)
from dtseg.server.common.images import load_body_image
from dtseg.server.common.roboflow import inference_fields
from dtseg.server.common.schemas import ErrorResponse
from dtseg.server.families import SAM
from dtseg.server.routes.sam.prompt_limits import check_prompt_counts
from dtseg.server.routes.sam.schemas import (
    EmbedRequest,
    EmbedResponse,
    SegmentRequest,
    SegmentResponse,
    SegmentRleResponse,
)
from dtseg.server.state import Services, ServicesDep

router = APIRouter(prefix="/sam", tags=["sam"], route_class=BodyRoute)
#: The engine of ``sam.model``: any model serves ``/sam``.
Engine = Annotated[SamEngine, Depends(SAM)]
OCTET = "application/octet-stream"

_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "bad image, image_id, shapes or values, or too many prompts; "
                                                "`field` names the culprit"},
    **BODY_ERRORS,
    422: {"model": ErrorResponse, "description": "body does not match the schema"},
}


@router.post("/embed_image", response_model=EmbedResponse, responses={
    **_ERRORS,
    404: {"model": ErrorResponse, "description": "no image and image_id not embedded (code: image_not_embedded)"},
    200: {"content": {OCTET: {}},
          "description": "json, or np.save bytes of (1, 256, 64, 64) float32 with format=binary"}})
def embed_image(body: EmbedRequest, namespace: Namespace, engine: Engine, services: ServicesDep) -> Response:
    """Embed an image and cache it under ``image_id`` (default: a hash of its pixels)."""
    start = time.perf_counter()
    if body.image_id is not None:
        check_image_id(body.image_id)
    if body.image is None:
        if body.image_id is None:
            raise InputError("image", "give an image, or the image_id of an embedded image")
        embedding = engine.get_embedding(body.image_id, namespace)
    else:
        rgb = load_body_image(body, services.config, services.decode_budget)
        embedding = engine.embed_image(rgb, body.image_id, namespace)
    array = embedding.embedding.detach().to("cpu", torch.float32).numpy()[None]
    elapsed = time.perf_counter() - start
    headers = {"X-Image-Id": header_value(embedding.image_id), "X-Time": f"{elapsed:.6f}"}
    if body.format == "binary":
        return Response(npy_bytes(array), media_type=OCTET, headers=headers)
    text = json.dumps({"embeddings": array.tolist(), "time": elapsed, "image_id": embedding.image_id,
                       **inference_fields(engine)})
    return Response(text, media_type="application/json", headers=headers)


@router.post("/segment_image", response_model=SegmentResponse | SegmentRleResponse, responses={
    **_ERRORS,
    404: {"model": ErrorResponse, "description": "image_id not embedded and no image (code: image_not_embedded)"},
    200: {"content": {OCTET: {}},
          "description": "json (polygons), rle, or np.savez_compressed bytes with format=binary"}})
def segment_image(body: SegmentRequest, namespace: Namespace, engine: Engine, services: ServicesDep) -> Response:
    """Masks for point and/or box prompts on an image, a cached ``image_id``, or a client-held embedding."""
    start = time.perf_counter()
    if body.image_id is not None:
        check_image_id(body.image_id)
    check_prompt_counts(body.point_coords, body.point_labels, body.boxes, services.config)
    point_coords, point_labels = _pad_ragged(body.point_coords, body.point_labels)
    image, image_id = None, body.image_id
    if body.embeddings is not None:
        embedding = _client_embedding(body, engine, services.config.max_image_pixels)
        image_id = embedding.image_id
        engine.store_embedding(embedding, namespace)
    elif body.image is not None:
        image = load_body_image(body, services.config, services.decode_budget)
    mask_input = _mask_input(body, namespace, image_id, engine, services) if body.has_mask_input else None
    result = engine.segment_image(
        image=image, image_id=image_id, point_coords=point_coords, point_labels=point_labels,
        boxes=body.boxes, mask_input=mask_input, multimask_output=body.multimask_output, namespace=namespace,
    )
    headers = {"X-Image-Id": header_value(result.image_id)}
    if body.format == "binary":
        headers["X-Time"] = f"{time.perf_counter() - start:.6f}"
        return Response(npz_bytes(result), media_type=OCTET, headers=headers)
    payload = json_payload(result) if body.format == "json" else rle_payload(result)
    payload.update(time=time.perf_counter() - start, image_id=result.image_id, scores=result.scores.tolist(),
                   **inference_fields(engine))
    return JSONResponse(payload, headers=headers)


def _pad_ragged(point_coords: Any, point_labels: Any) -> tuple[Any, Any]:
    """Several objects with different point counts -> ``(N, K, 2)`` / ``(N, K)`` padded with NaN
    points (label -1), which the engine leaves out: each object is decoded with its own points.
    Anything else is returned as is (the engine checks shapes)."""
    if nesting_depth(point_coords) != 3 or nesting_depth(point_labels) != 2:
        return point_coords, point_labels
    if len({len(c) for c in point_coords if isinstance(c, list)}) <= 1:
        return point_coords, point_labels
    if len(point_labels) != len(point_coords):
        raise InputError("point_labels", f"{len(point_labels)} label lists for {len(point_coords)} point lists")
    k = max(len(c) for c in point_coords)
    for i, (coords, labels) in enumerate(zip(point_coords, point_labels, strict=True)):
        if not isinstance(labels, list) or len(labels) != len(coords):
            raise InputError(f"point_labels[{i}]", f"expected {len(coords)} labels, one per point")
    nan = float("nan")
    return ([c + [[nan, nan]] * (k - len(c)) for c in point_coords],
            [lbl + [-1] * (k - len(lbl)) for lbl in point_labels])


def _client_embedding(body: SegmentRequest, engine: SamEngine, max_pixels: int) -> Embedding:
    """``embeddings`` + ``orig_im_size`` (wire formats) -> the engine's ``Embedding``."""
    size = body.orig_im_size
    if size is None:
        raise InputError("orig_im_size", "required with embeddings: [height, width] of the embedded image")
    if len(size) != 2 or min(size) < 1 or size[0] * size[1] > max_pixels:
        raise InputError("orig_im_size", f"expected [height, width], positive, at most {max_pixels} pixels, got {size}")
    expected = engine.embedding_shape
    if body.embeddings_format == "binary":
        array = load_npy(body.embeddings, "embeddings", lambda shape: shape in (expected, (1, *expected)),
                         f"shape (1, {', '.join(map(str, expected))}) or {expected}").astype(np.float32)
    else:
        array = numeric_array(body.embeddings, "embeddings")
    return engine.embedding_from_array(array, (int(size[0]), int(size[1])), body.image_id)


def _mask_input(body: SegmentRequest, namespace: str, image_id: str | None, engine: SamEngine,
                services: Services) -> np.ndarray | str:
    """The caller's ``mask_input`` when given; else (``use_mask_input_cache``) the engine's last
    logits for ``image_id``; else a 400 naming ``mask_input``."""
    cached = body.use_mask_input_cache and image_id is not None and engine.has_mask_logits(image_id, namespace)
    if body.mask_input is None and cached:
        return "cached"
    return mask_input_logits(body.mask_input, body.mask_input_format, services.config.max_objects)
