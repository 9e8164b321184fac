"""The FastAPI application: Roboflow-compatible SAM routes, /segment pipelines, health and info."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

import anyio.to_thread
from fastapi import Depends, FastAPI

from dtseg import __version__
from dtseg.engine import SamEngine
from dtseg.server import sam_routes, segment_routes
from dtseg.server.page_routes import install_page
from dtseg.server.auth import client_namespace
from dtseg.server.config import ServeConfig, ServerConfig
from dtseg.server.errors import install_error_handlers
from dtseg.server.limits import BodySizeLimit
from dtseg.server.state import Services

DESCRIPTION = """\
Segment Anything over HTTP with the request/response shapes of Roboflow Inference's SAM v1
routes (`/sam/embed_image`, `/sam/segment_image`): client code written for Roboflow works by
changing `base_url`. Extensions (documented per field): several objects per request, `boxes`,
`multimask_output` with `scores`, `format: "rle"`, `polygons` with every part and hole, and
`POST /segment` for detect-then-segment pipelines. Labels follow SAM: 1 foreground,
0 background, -1 ignored. Errors answer `{"message": ...}` with `field` or `code`.
"""


def create_app(engine: SamEngine, config: ServerConfig | None = None) -> FastAPI:
    """An app serving ``engine``. Auth is on when ``config`` or ``$DTSEG_API_KEYS`` has keys."""
    config = config or ServerConfig()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Sync handlers run in anyio's thread pool: its size bounds concurrent requests in work
        # (and so the memory of decoded images), the engine's locks serialize the model.
        anyio.to_thread.current_default_thread_limiter().total_tokens = config.threads
        yield

    app = FastAPI(title="dtseg", version=__version__, description=DESCRIPTION, lifespan=lifespan)
    app.state.services = Services(engine, config)
    app.state.api_keys = config.effective_api_keys()
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=config.max_body_bytes)
    app.include_router(sam_routes.router)
    app.include_router(segment_routes.router)
    install_page(app)  # the interactive page at / (static files), /fetch_image, /export

    @app.get("/healthz", tags=["server"])
    def healthz() -> dict[str, str]:
        """Liveness: no authentication."""
        return {"status": "ok"}

    @app.get("/info", tags=["server"], dependencies=[Depends(client_namespace)])
    def info() -> dict[str, Any]:
        """Model, device, cache counters (``encoder_calls`` counts images through the encoder)."""
        services: Services = app.state.services
        return {
            **services.engine.info(),
            "version": __version__,
            "auth": bool(app.state.api_keys),
            "limits": {"max_body_mb": config.max_body_mb, "max_image_pixels": config.max_image_pixels,
                       "threads": config.threads},
            "pipelines": segment_routes.available_configs(config),
        }

    return app


def app_from_config(serve: ServeConfig) -> FastAPI:
    """Build the engine from the ``sam:`` section and serve it."""
    return create_app(serve.sam.build_engine(), serve.server)
