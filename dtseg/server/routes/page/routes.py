"""The interactive page at ``/`` (static files shipped in ``dtseg/server/static``) and its two helpers.

* ``GET /``: the page; ``/static/...``: its script and style. No authentication (they hold no data).
* ``POST /fetch_image``: an image URL fetched by the server's guarded fetch (the page cannot
  read other origins), answered as the image bytes after checking that they decode.
* ``POST /export``: objects drawn on the page -> COCO JSON, a zip of PNG masks or the annotated
  image, written by the project's sinks (see :mod:`dtseg.server.routes.page.export`).
* ``POST /everything``: "segment everything" (the ``everything`` provider: a grid of points,
  SAM's masks filtered by score, area and box NMS) with the server's engine; answered like
  ``POST /segment`` with ``format: rle``, plus how many grid points were decoded.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles

from dtseg.records import NUM_PROMPTS, RANDOM_WEIGHTS
from dtseg.server.common.auth import Namespace
from dtseg.server.common.body import BODY_ERRORS, BodyRoute
from dtseg.server.common.images import decode_image, fetch_url, load_request_image
from dtseg.server.common.schemas import ErrorResponse
from dtseg.server.routes.page.export import MEDIA_TYPES, download_name, export_bytes, to_detections
from dtseg.server.routes.page.schemas import EverythingRequest, EverythingResponse, ExportRequest, FetchImageRequest
from dtseg.server.routes.segment.routes import _rows
from dtseg.server.state import Services, ServicesDep

STATIC_DIR = Path(__file__).parent / "static"
router = APIRouter(tags=["page"], route_class=BodyRoute)
_ERRORS = {400: {"model": ErrorResponse}, **BODY_ERRORS, 422: {"model": ErrorResponse}}
_MAGIC = [(b"\x89PNG", "image/png"), (b"\xff\xd8", "image/jpeg"), (b"GIF8", "image/gif"), (b"BM", "image/bmp"),
          (b"RIFF", "image/webp")]


_everything_lock = threading.Lock()
EVERYTHING_KEPT = 4  # built everything pipelines kept (one per option pair)


def install_static(app: FastAPI) -> None:
    """The page's script and style at ``/static`` (a mount: a router cannot hold one)."""
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")


@router.get("/", include_in_schema=False)
def page() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html", headers={"Cache-Control": "no-cache"})


@router.post("/fetch_image", responses={**_ERRORS, 200: {"content": {"image/*": {}}, "description": "the image bytes"}})
def fetch_image(body: FetchImageRequest, namespace: Namespace, services: ServicesDep) -> Response:
    """Fetch an image URL within the server's ``url_fetch`` limits and return its bytes (checked to decode)."""
    data = fetch_url(body.url.strip(), services.config.url_fetch, "url")
    decode_image(data, services.config, services.decode_budget, field="url")
    media = next((m for magic, m in _MAGIC if data.startswith(magic)), "application/octet-stream")
    return Response(data, media_type=media)


@router.post("/export", responses={**_ERRORS, 200: {
    "content": {m: {} for m in MEDIA_TYPES.values()}, "description": "COCO JSON, a zip of PNG masks, or a PNG"}})
def export(body: ExportRequest, namespace: Namespace, services: ServicesDep) -> Response:
    """Objects (polygon masks, class names) on an image -> ``coco`` / ``masks_png`` / ``annotated``."""
    frame = load_request_image(body.image, services.config, services.decode_budget)
    detections = to_detections(body.objects, frame.shape[:2])
    banner = "RANDOM WEIGHTS - masks are meaningless" if services.engine.random_weights else None
    data = export_bytes(body.format, body.name, frame, detections, banner)
    headers = {"Content-Disposition": f'attachment; filename="{download_name(body.format, body.name)}"'}
    return Response(data, media_type=MEDIA_TYPES[body.format], headers=headers)


@router.post("/everything", response_model=EverythingResponse, responses=_ERRORS)
def everything(body: EverythingRequest, namespace: Namespace, services: ServicesDep) -> EverythingResponse:
    """Segment everything on an image: the ``everything`` provider's point grid through the server's
    engine, the masks that pass its filters as detections (RLE)."""
    start = time.perf_counter()
    pipeline = _everything_pipeline(services, body.points_per_side, body.pred_iou_thresh)
    image = load_request_image(body.image, services.config, services.decode_budget)
    detections = pipeline(image)
    return EverythingResponse(detections=_rows(detections, image, "rle"), time=time.perf_counter() - start,
                              config="everything", random_weights=detections.metadata.get(RANDOM_WEIGHTS),
                              prompts=detections.metadata.get(NUM_PROMPTS, 0))


def _everything_pipeline(services: Services, points_per_side: int, pred_iou_thresh: float) -> Any:
    """The pipeline for these options, built once; kept beside the configs' pipelines under a key
    with ``:``, which no config name has, the ``EVERYTHING_KEPT`` latest option pairs at most."""
    from dtseg.pipeline import Pipeline

    key = f"everything:{points_per_side}:{pred_iou_thresh}"
    with _everything_lock:
        if key not in services.pipelines:
            kept = [k for k in services.pipelines if k.startswith("everything:")]
            for old in kept[: max(0, len(kept) - EVERYTHING_KEPT + 1)]:
                del services.pipelines[old]
            config = {"prompts": [{"everything": {"points_per_side": points_per_side,
                                                  "pred_iou_thresh": pred_iou_thresh}}], "sinks": []}
            services.pipelines[key] = Pipeline.from_config(config, engine=services.engine)
        return services.pipelines[key]
