"""``GET /healthz`` (liveness) and ``GET /info`` (models, devices, cache counters, limits, pipelines)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from dtseg import __version__
from dtseg.engine import SamEngine
from dtseg.server.common.auth import Namespace
from dtseg.server.routes.segment.routes import available_configs
from dtseg.server.state import Services, get_services

router = APIRouter(tags=["server"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness: no authentication; answered on the event loop, never queued behind the
    handlers' thread pool."""
    return {"status": "ok"}


@router.get("/info")
def info(request: Request, namespace: Namespace,
         services: Annotated[Services, Depends(get_services)]) -> dict[str, Any]:
    """Model, device, cache counters (``encoder_calls`` counts images through the encoder).

    With API keys, the cache counters are the caller's own: its entries, bytes, share
    (``max_bytes``), hits, misses and evictions, and its hits in the shared tiers."""
    config, keyed = services.config, bool(request.app.state.api_keys)
    other_engines = {need.key for need in request.app.state.engine_needs} - {"sam"}
    return {
        **services.engine.info(),
        **cache_info(services.engine, namespace if keyed else None),
        **{key: _other_engine(services, key) for key in sorted(other_engines)},
        "version": __version__,
        "auth": keyed,
        "limits": {"max_body_mb": config.max_body_mb, "max_image_pixels": config.max_image_pixels,
                   "threads": config.threads, "max_objects": config.max_objects,
                   "max_points_per_object": config.max_points_per_object,
                   "max_json_values": config.max_json_values, "body_budget_mb": config.body_budget_mb,
                   "header_timeout_s": config.header_timeout_s, "body_timeout_s": config.body_timeout_s},
        "pipelines": available_configs(config),
    }


def _other_engine(services: Services, key: str) -> Any:
    """``/info``'s entry for the engine of config key ``key`` (``sam2``): ``None`` without one,
    ``"same as sam"``, or its info without cache counters (no other API key's counters)."""
    engine = services.engines.get(key)
    if engine is None:
        return None
    if engine is services.engine:
        return "same as sam"
    return {k: v for k, v in engine.info().items() if "cache" not in k}


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
