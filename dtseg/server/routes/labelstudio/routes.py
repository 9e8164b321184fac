"""``/labelstudio``: dtseg as a Label Studio ML backend (the protocol of label-studio-ml-backend).

In Label Studio: project Settings -> Model -> Connect Model, URL ``http://HOST:PORT/labelstudio``.
Label Studio then calls ``GET /health`` and ``POST /setup``; annotators' smart clicks and
boxes come to ``POST /predict`` with ``params.context``, and "Retrieve predictions" sends
tasks without context (pre-annotation by ``server.labelstudio.pipeline``). ``/webhook`` takes
Label Studio's events and does nothing (dtseg does not train). With API keys, Label Studio
authenticates with HTTP Basic auth (any user name, the API key as password); ``?api_key=``
and ``Authorization: Bearer`` work too.
"""

from __future__ import annotations

import threading
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.security import HTTPBasic, HTTPBasicCredentials

from dtseg.labelstudio.settings import Connection
from dtseg.server.common.auth import client_namespace
from dtseg.server.common.body import BODY_ERRORS, BodyRoute
from dtseg.server.common.schemas import ErrorResponse
from dtseg.server.routes.labelstudio.backend import Backend, Connections, model_version
from dtseg.server.routes.labelstudio.schemas import (
    HealthResponse,
    PredictRequest,
    PredictResponse,
    SetupRequest,
    SetupResponse,
)
from dtseg.server.routes.segment.routes import pipeline_named
from dtseg.server.state import ServicesDep

router = APIRouter(prefix="/labelstudio", tags=["labelstudio"], route_class=BodyRoute)
_state_lock = threading.Lock()
_basic = HTTPBasic(auto_error=False, description="Label Studio's ML backend basic auth: the API key as password")


def labelstudio_namespace(
    namespace: Annotated[str, Depends(client_namespace)],
    basic: Annotated[HTTPBasicCredentials | None, Depends(_basic)] = None,
) -> str:
    """``client_namespace`` (which reads Basic auth too); ``basic`` declares Label Studio's way
    to pass the key in OpenAPI."""
    return namespace


Namespace = Annotated[str, Depends(labelstudio_namespace)]
_ERRORS: dict[int | str, dict[str, Any]] = {**BODY_ERRORS, 422: {"model": ErrorResponse}}


def _connections(request: Request) -> Connections:
    """The app's ``/setup`` records, made on first use."""
    state = request.app.state
    with _state_lock:
        if not hasattr(state, "labelstudio"):
            state.labelstudio = Connections()
        return state.labelstudio


@router.get("/health", response_model=HealthResponse)
@router.get("/", response_model=HealthResponse, include_in_schema=False)
def health(services: ServicesDep) -> HealthResponse:
    """Label Studio's connection check (no authentication, like ``/healthz``)."""
    return HealthResponse(model_version=model_version(services.engine))


@router.post("/setup", response_model=SetupResponse, responses=_ERRORS)
def setup(body: SetupRequest, request: Request, namespace: Namespace, services: ServicesDep) -> SetupResponse:
    """Remember the project's Label Studio address, token and label config (to read task images)."""
    _connections(request).remember(str(body.project), Connection(body.hostname or None, body.access_token or None),
                                   body.schema_)
    return SetupResponse(model_version=model_version(services.engine))


@router.post("/predict", response_model=PredictResponse, response_model_exclude_none=True, responses=_ERRORS)
def predict(body: PredictRequest, request: Request, namespace: Namespace, services: ServicesDep) -> dict[str, Any]:
    """One prediction per task: a mask from ``params.context``'s clicks and boxes, or, without
    context, every object of the pre-annotation pipeline. A task that fails gets ``error``."""
    context = (body.params or {}).get("context")
    backend = Backend(services, pipeline_named, _connections(request))
    results = backend.predict(body.tasks, body.label_config, str(body.project), context, namespace)
    version = results[0]["model_version"] if results else model_version(services.engine)
    return {"results": results, "model_version": version}


@router.post("/webhook", status_code=201, responses=_ERRORS)
def webhook(body: dict[str, Any], namespace: Namespace) -> dict[str, Any]:
    """Label Studio's events (annotation created, start training, ...): accepted, nothing is trained."""
    return {"action": body.get("action"), "status": "ignored"}


@router.get("/versions")
def versions(namespace: Namespace, services: ServicesDep) -> dict[str, Any]:
    """The model versions this backend offers (one: the served model)."""
    return {"versions": [model_version(services.engine)]}
