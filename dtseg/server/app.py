"""The FastAPI application: Roboflow-compatible SAM routes, /segment pipelines, health and info."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

import anyio.to_thread
from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from dtseg import __version__
from dtseg.engine import SamEngine
from dtseg.server import labelstudio_routes, sam2_routes, sam3_routes, sam_routes, segment_routes
from dtseg.server.auth import Namespace, document_auth
from dtseg.server.body import BodyBudget
from dtseg.server.page_routes import install_page
from dtseg.server.config import ServeConfig, ServerConfig
from dtseg.server.errors import install_error_handlers
from dtseg.server.limits import BodyLimits
from dtseg.server.state import Services

DESCRIPTION = """\
Segment Anything over HTTP with the request/response shapes of Roboflow Inference's SAM v1
routes (`/sam/embed_image`, `/sam/segment_image`), SAM 2 routes (`/sam2/embed_image`,
`/sam2/segment_image`) and SAM 3 routes (`/sam3/embed_image`, `/sam3/visual_segment`,
`/sam3/concept_segment`: every instance of a phrase or exemplar box): client code written for Roboflow works by changing `base_url`. Extensions (documented per field): several objects per request, `boxes`,
`multimask_output` with `scores`, `format: "rle"`, `polygons` with every part and hole, and
`POST /segment` for detect-then-segment pipelines. Labels follow SAM: 1 foreground,
0 background, -1 SAM's not-a-point token. Errors answer `{"message": ...}` with `field` or `code`.
"""


def create_app(engine: SamEngine, config: ServerConfig | None = None, sam2_engine: SamEngine | None = None,
               sam3_engine: SamEngine | None = None) -> FastAPI:
    """An app serving ``engine`` on ``/sam`` and ``/segment``, ``sam2_engine`` on ``/sam2`` and
    ``sam3_engine`` on ``/sam3`` (default: ``engine`` itself when it runs a SAM 2, a SAM 3
    model). Auth is on when ``config`` or ``$DTSEG_API_KEYS`` has keys."""
    config = config or ServerConfig()
    if sam2_engine is None and engine.family == "sam2.1":
        sam2_engine = engine
    if sam2_engine is not None and sam2_engine.family != "sam2.1":
        raise ValueError(f"sam2.model: expected a SAM 2 model (sam2.1_t, sam2.1_s, ...), got {sam2_engine.model_name!r}")
    if sam3_engine is None and engine.capabilities.lineage == "sam3":
        sam3_engine = engine
    if sam3_engine is not None and sam3_engine.capabilities.lineage != "sam3":
        raise ValueError(f"sam3.model: expected a SAM 3 model (sam3), got {sam3_engine.model_name!r}")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Sync handlers run in anyio's thread pool: its size bounds concurrent requests in work
        # (and so the memory of decoded images), the engine's locks serialize the model.
        anyio.to_thread.current_default_thread_limiter().total_tokens = config.threads
        yield

    # /docs and /redoc with their JS and CSS served from the fastapi-offline package, not a CDN
    app = FastAPIOffline(title="dtseg", version=__version__, description=DESCRIPTION, lifespan=lifespan,
                         swagger_ui_parameters={"validatorUrl": None})
    app.state.services = Services(engine, config, sam2_engine=sam2_engine, sam3_engine=sam3_engine)
    app.state.api_keys = config.effective_api_keys()
    app.state.body_budget = BodyBudget(config.body_budget_bytes)  # see body.py
    share = config.cache_share_of(len(app.state.api_keys))
    served = {id(e): e for e in (engine, sam2_engine, sam3_engine) if e is not None}.values()
    for cache in (c for e in served for c in (e.embeddings, e.mask_logits)):  # each key's share of the in-process cache
        cache.set_share(None if share is None else int(cache.max_bytes * share))
    install_error_handlers(app)
    app.add_middleware(BodyLimits, max_bytes=config.max_body_bytes, timeout_s=config.body_timeout_s)
    app.include_router(sam_routes.router)
    app.include_router(sam2_routes.router)
    app.include_router(sam3_routes.router)
    app.include_router(segment_routes.router)
    app.include_router(labelstudio_routes.router)  # the Label Studio ML backend
    install_page(app)  # the interactive page at / (static files), /fetch_image, /export

    @app.get("/healthz", tags=["server"])
    async def healthz() -> dict[str, str]:
        """Liveness: no authentication; answered on the event loop, never queued behind the
        handlers' thread pool."""
        return {"status": "ok"}

    @app.get("/info", tags=["server"])
    def info(namespace: Namespace) -> dict[str, Any]:
        """Model, device, cache counters (``encoder_calls`` counts images through the encoder).

        With API keys, the cache counters are the caller's own: its entries, bytes, share
        (``max_bytes``), hits, misses and evictions, and its hits in the shared tiers."""
        services: Services = app.state.services
        def other(served: SamEngine | None) -> Any:  # no other key's counters
            return None if served is None else "same as sam" if served is services.engine else \
                {k: v for k, v in served.info().items() if "cache" not in k}

        return {
            **services.engine.info(),
            **cache_info(services.engine, namespace if app.state.api_keys else None),
            "sam2": other(services.sam2_engine),
            "sam3": other(services.sam3_engine),
            "version": __version__,
            "auth": bool(app.state.api_keys),
            "limits": {"max_body_mb": config.max_body_mb, "max_image_pixels": config.max_image_pixels,
                       "threads": config.threads, "max_objects": config.max_objects,
                       "max_points_per_object": config.max_points_per_object,
                       "max_json_values": config.max_json_values, "body_budget_mb": config.body_budget_mb,
                       "header_timeout_s": config.header_timeout_s, "body_timeout_s": config.body_timeout_s},
            "pipelines": segment_routes.available_configs(config),
        }

    document_auth(app)
    return app


def cache_info(engine: SamEngine, namespace: str | None) -> dict[str, Any]:
    """``cache`` / ``mask_logits_cache`` / ``cache_tiers`` of ``/info``: of the whole process, or
    (``namespace`` given) of one API key, which then sees nothing of the others."""
    def counters(cache: Any) -> dict[str, int]:
        stats = cache.stats() if namespace is None else cache.stats(namespace)
        return {"entries": stats.entries, "bytes": stats.bytes, "max_bytes": stats.max_bytes, "hits": stats.hits,
                "misses": stats.misses, "evictions": stats.evictions}

    tiers = engine.embeddings.tier_info() if namespace is None else engine.embeddings.tier_info(namespace)
    return {"cache": counters(engine.embeddings), "mask_logits_cache": counters(engine.mask_logits),
            "cache_tiers": tiers}


def app_from_config(serve: ServeConfig, keep_heap_default: bool = False) -> FastAPI:
    """Build the engines of the ``sam:`` (and ``sam2:``, ``sam3:``) sections and serve them.
    ``keep_heap_default``: what ``keep_heap: null`` means (``dtseg serve``'s workers: ``True``)."""
    sam2, sam3 = (None if section is None else section.build_engine(serve.cache, keep_heap_default=keep_heap_default)
                  for section in (serve.sam2, serve.sam3))
    return create_app(serve.sam.build_engine(serve.cache, keep_heap_default=keep_heap_default), serve.server, sam2,
                      sam3)
