"""The FastAPI application: the registered route families around the engines, by config key."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from dtseg import __version__
from dtseg.engine import SamEngine
from dtseg.server.common.auth import document_auth
from dtseg.server.common.body import BodyBudget
from dtseg.server.common.errors import install_error_handlers
from dtseg.server.common.limits import BodyLimits
from dtseg.server.config import ServeConfig, ServerConfig
from dtseg.server.families import RouteFamily, engines_for, load_route_families
from dtseg.server.state import Services

DESCRIPTION = """\
Segment Anything over HTTP with the request/response shapes of Roboflow Inference's SAM v1
routes (`/sam/embed_image`, `/sam/segment_image`), SAM 2 routes (`/sam2/embed_image`,
`/sam2/segment_image`) and SAM 3 routes (`/sam3/embed_image`, `/sam3/visual_segment`,
`/sam3/concept_segment`: every instance of a phrase or exemplar box): client code written for
Roboflow works by changing `base_url`. Extensions (documented per field): several objects per request, `boxes`,
`multimask_output` with `scores`, `format: "rle"`, `polygons` with every part and hole, and
`POST /segment` for detect-then-segment pipelines. Labels follow SAM: 1 foreground,
0 background, -1 SAM's not-a-point token. Errors answer `{"message": ...}` with `field` or `code`.
"""


def create_app(engines: SamEngine | Mapping[str, SamEngine], config: ServerConfig | None = None,
               route_families: Mapping[str, RouteFamily] | None = None) -> FastAPI:
    """An app serving ``engines`` by config key (``{"sam": engine, "sam2": sam2_engine}``; one
    engine alone is ``{"sam": engine}``) through ``route_families`` (default: every registered
    one, ``dtseg.server.families.load_route_families``). A family whose engine is missing
    answers 404 naming its config key; ``sam``'s engine serves the families of its lineage
    (``/sam2`` for a SAM 2 model). Auth is on when ``config`` or ``$DTSEG_API_KEYS`` has keys."""
    config = config or ServerConfig()
    families = load_route_families() if route_families is None else dict(route_families)
    given = {"sam": engines} if isinstance(engines, SamEngine) else dict(engines)
    services = Services(engines_for(families, given), config)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Sync handlers run in anyio's thread pool: its size bounds concurrent requests in work
        # (and so the memory of decoded images), the engine's locks serialize the model.
        anyio.to_thread.current_default_thread_limiter().total_tokens = config.threads
        yield

    # /docs and /redoc with their JS and CSS served from the fastapi-offline package, not a CDN
    app = FastAPIOffline(title="dtseg", version=__version__, description=DESCRIPTION, lifespan=lifespan,
                         swagger_ui_parameters={"validatorUrl": None})
    app.state.services = services
    app.state.engine_needs = [family.engine for family in families.values()]
    app.state.api_keys = config.effective_api_keys()
    app.state.body_budget = BodyBudget(config.body_budget_bytes)  # see common/body.py
    share = config.cache_share_of(len(app.state.api_keys))
    served = {id(engine): engine for engine in services.engines.values()}.values()  # an engine serving two keys once
    for cache in (c for engine in served for c in (engine.embeddings, engine.mask_logits)):  # each API key's share
        cache.set_share(None if share is None else int(cache.max_bytes * share))
    install_error_handlers(app)
    app.add_middleware(BodyLimits, max_bytes=config.max_body_bytes, timeout_s=config.body_timeout_s)
    for family in families.values():
        app.include_router(family.router)
        if family.install is not None:
            family.install(app)
    document_auth(app)
    return app


def app_from_config(serve: ServeConfig, keep_heap_default: bool = False) -> FastAPI:
    """Build the engine of every model section (``sam:``, ``sam2:``) and serve them.
    ``keep_heap_default``: what ``keep_heap: null`` means (``dtseg serve``: ``True``)."""
    engines = {key: section.build_engine(serve.cache, keep_heap_default=keep_heap_default)
               for key, section in serve.model_sections().items()}
    return create_app(engines, serve.server)
