"""``POST /segment``: an image through one of the server's pipeline configs -> detections with masks.

Pipelines are built on first use, with the server's own engine (one model in memory), and
kept. Their ``sinks`` are not run: the detections come back as JSON.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import APIRouter, HTTPException

from dtseg.errors import CheckpointNotFoundError, DtsegError, InputError
from dtseg.records import RANDOM_WEIGHTS, object_records
from dtseg.server.common.auth import Namespace
from dtseg.server.common.body import BODY_ERRORS, BodyRoute
from dtseg.server.common.images import load_request_image
from dtseg.server.common.schemas import ErrorResponse
from dtseg.server.config import ServerConfig
from dtseg.server.routes.segment.schemas import Detection, SegmentPipelineRequest, SegmentPipelineResponse
from dtseg.server.state import Services, ServicesDep

router = APIRouter(tags=["pipelines"], route_class=BodyRoute)
_build_lock = threading.Lock()


def available_configs(config: ServerConfig) -> list[str]:
    """Names (file stems) of the YAML pipeline configs in ``configs_dir``."""
    if not config.configs_dir or not Path(config.configs_dir).is_dir():
        return []
    return sorted({p.stem for p in Path(config.configs_dir).iterdir() if p.suffix in (".yaml", ".yml") and p.is_file()})


@router.post("/segment", response_model=SegmentPipelineResponse, responses={
    400: {"model": ErrorResponse}, 404: {"model": ErrorResponse}, **BODY_ERRORS, 422: {"model": ErrorResponse}})
def segment(body: SegmentPipelineRequest, namespace: Namespace, services: ServicesDep) -> SegmentPipelineResponse:
    """Run a named detect-then-segment pipeline on an image."""
    start = time.perf_counter()
    pipeline = pipeline_named(services, body.config)
    image = load_request_image(body.image, services.config, services.decode_budget)
    detections = pipeline(image)
    return SegmentPipelineResponse(detections=_rows(detections, image, body.format), time=time.perf_counter() - start,
                                   config=body.config, random_weights=detections.metadata.get(RANDOM_WEIGHTS))


def pipeline_named(services: Services, name: str) -> Any:
    """The pipeline of config ``name`` in ``configs_dir``, built on first use with the server's engine."""
    names = available_configs(services.config)
    if not names:
        raise InputError("config", "this server has no pipeline configs: start it with server.configs_dir set to a "
                                   "folder of pipeline YAML files (e.g. --set server.configs_dir=configs)")
    if name not in names:
        raise InputError("config", f"unknown pipeline config {name!r}; this server has {names}")
    with _build_lock:
        if name not in services.pipelines:
            from dtseg.pipeline import Pipeline

            path = next(p for p in Path(services.config.configs_dir or ".").iterdir()
                        if p.stem == name and p.suffix in (".yaml", ".yml"))
            try:  # the server's engine serves every pipeline: their sam: sections are not used
                services.pipelines[name] = Pipeline.from_config(path, engine=services.engine,
                                                                allow_random=services.config.allow_random)
            except (DtsegError, ValueError, OSError, ImportError) as exc:
                raise HTTPException(503, f"pipeline config {name!r} cannot be built on this server: "
                                         f"{_server_hint(exc)}") from None
        return services.pipelines[name]


def _server_hint(exc: Exception) -> str:
    """The error, with the CLI's ``--allow-random`` (which ``dtseg serve`` has not) put in server terms."""
    text = str(exc)
    if "--allow-random" in text:
        return text.replace("--allow-random", "start the server with --set server.allow_random=true")
    if isinstance(exc, CheckpointNotFoundError):
        text += " (demo servers only: --set server.allow_random=true gives detectors without weights random ones)"
    return text


def _rows(detections: Any, image: np.ndarray, fmt: str) -> list[Detection]:
    records = object_records(detections, image.shape[:2], output="/segment", polygons=fmt == "json",
                             rle=fmt == "rle")
    return [Detection(**record) for record in records]
