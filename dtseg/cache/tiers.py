"""A tiered cache: the in-process ``ByteLRUCache`` first, then Redis and/or a folder on disk.

``TieredCache`` has the interface the engine uses on ``engine.embeddings`` and
``engine.mask_logits`` (``get / put / pop / in / stats / keys / clear / len``). A miss in the
first tier asks the next tiers in order (Redis, then disk); a hit there is copied into the
tiers before it. ``put`` writes through to every tier. Tier values are bytes of
``dtseg.cache.serialize``, under a name that digests the kind, the engine's *scope* (model
name, dtype and a fingerprint of the weights) and the key ``(namespace, image_id)``: two
models, two API keys or two image ids never share an entry. The engine still compares the
pixels' content hash of what it gets, so a stale entry is never used.

A tier that fails never fails the caller: its errors count as misses (see each tier).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Hashable, Sequence
from typing import Any, Generic, Protocol, TypeVar

import torch

from dtseg.cache.lru import ByteLRUCache, CacheStats, Sized, namespace_of
from dtseg.cache.serialize import CacheFormatError, dumps, loads

log = logging.getLogger("dtseg.cache")
V = TypeVar("V", bound=Sized)


class Tier(Protocol):
    """A byte store behind the first tier (``RedisTier``, ``DiskTier``); never raises on use."""

    name: str

    def get(self, key: str) -> bytes | None: ...
    def put(self, key: str, data: bytes) -> None: ...
    def delete(self, key: str) -> None: ...
    def exists(self, key: str) -> bool: ...
    def info(self) -> dict[str, Any]: ...


class TieredCache(Generic[V]):
    """``local`` (tier 1) in front of ``tiers``; values of dataclass ``cls`` (see module doc)."""

    def __init__(self, local: ByteLRUCache[V], tiers: Sequence[Tier], cls: type[V], kind: str, scope: str) -> None:
        self.local, self.tiers, self.cls, self.kind, self.scope = local, list(tiers), cls, kind, scope
        self._lock = threading.Lock()
        self._counts: dict[Hashable, dict[str, int]] = {}  # namespace -> hits per tier, misses, corrupt

    @property
    def max_bytes(self) -> int:
        return self.local.max_bytes

    def set_share(self, share_bytes: int | None) -> None:
        """Bound each namespace's share of the first tier (see ``ByteLRUCache.set_share``)."""
        self.local.set_share(share_bytes)

    def name(self, key: Hashable) -> str:
        """The tiers' name for ``key``: ``<kind>-<digest of scope and key>``."""
        parts = list(key) if isinstance(key, tuple) else [key]
        text = json.dumps([self.scope, *parts], ensure_ascii=False, default=str)
        return f"{self.kind}-{hashlib.blake2b(text.encode(), digest_size=20).hexdigest()}"

    def get(self, key: Hashable) -> V | None:
        """Tier 1, then each tier in order; a tier hit is copied into tier 1 and earlier tiers."""
        value = self.local.get(key)
        if value is not None or not self.tiers:
            return value
        name = self.name(key)
        for i, tier in enumerate(self.tiers):
            data = _guard(tier, "get", lambda: tier.get(name), None)  # noqa: B023 - called at once
            if data is None:
                continue
            try:
                value = loads(data, self.cls)
            except CacheFormatError as exc:
                log.warning("%s cache: dropping an unreadable entry (%s)", tier.name, exc)
                self._count(key, "corrupt")
                _guard(tier, "delete", lambda: tier.delete(name), None)  # noqa: B023 - called at once
                continue
            self.local.put(key, value)
            for earlier in self.tiers[:i]:  # e.g. a disk hit fills Redis for the other processes
                _guard(earlier, "put", lambda: earlier.put(name, data), None)  # noqa: B023
            self._count(key, f"{tier.name}_hits")
            return value
        self._count(key, "misses")
        return None

    def put(self, key: Hashable, value: V) -> bool:
        """Store in tier 1 and write through to every tier; returns whether tier 1 kept it."""
        stored = self.local.put(key, value)
        if self.tiers:
            try:
                data = dumps(value)
            except Exception as exc:  # noqa: BLE001 - a cache must never fail the request
                log.warning("cache: cannot serialize a %s (%s): kept in memory only", self.kind, exc)
                return stored
            name = self.name(key)
            for tier in self.tiers:
                _guard(tier, "put", lambda: tier.put(name, data), None)  # noqa: B023
        return stored

    def pop(self, key: Hashable) -> V | None:
        value = self.local.pop(key)
        if self.tiers:
            name = self.name(key)
            for tier in self.tiers:
                _guard(tier, "delete", lambda: tier.delete(name), None)  # noqa: B023
        return value

    def __contains__(self, key: Hashable) -> bool:
        if key in self.local:
            return True
        name = self.name(key) if self.tiers else ""
        return any(_guard(tier, "exists", lambda: tier.exists(name), False) for tier in self.tiers)  # noqa: B023

    def stats(self, *namespace: Hashable) -> CacheStats:
        """Tier 1's counters (of one namespace, if given)."""
        return self.local.stats(*namespace)

    def keys(self) -> list[Hashable]:
        return self.local.keys()

    def clear(self) -> None:
        """Empty tier 1 (the shared tiers are left to their TTL and byte bounds)."""
        self.local.clear()

    def __len__(self) -> int:
        return len(self.local)

    def tier_info(self, *namespace: Hashable) -> dict[str, Any]:
        """The tiers' own counters; with a namespace, only that namespace's hits and misses."""
        with self._lock:
            if namespace:
                return dict(self._counts.get(namespace[0], {}))
            totals: dict[str, int] = {}
            for counts in self._counts.values():
                for name, n in counts.items():
                    totals[name] = totals.get(name, 0) + n
        return {**totals, "tiers": [_guard(t, "info", t.info, {"name": t.name}) for t in self.tiers]}

    def _count(self, key: Hashable, what: str) -> None:
        with self._lock:
            counts = self._counts.setdefault(namespace_of(key), {})
            counts[what] = counts.get(what, 0) + 1


def build_tiers(config: Any) -> list[Tier]:
    """The tiers a ``CacheConfig`` asks for: Redis (``redis_url``), then disk (``dir``).

    Raises ``CacheTierError`` when Redis is unreachable or the folder is not writable."""
    tiers: list[Tier] = []
    if config is None:
        return tiers
    if config.redis_url:
        from dtseg.cache.redis_tier import RedisTier

        tiers.append(RedisTier(config.redis_url, config.ttl_s, config.redis_timeout_s))
    if config.dir:
        from dtseg.cache.disk_tier import DiskTier

        tiers.append(DiskTier(config.dir, int(config.dir_max_mb * (1 << 20))))
    return tiers


def cache_scope(model_name: str, dtype: torch.dtype, module: torch.nn.Module) -> str:
    """``<model>-<dtype>-<fingerprint>``: the fingerprint digests the first 4096 values of every
    parameter, so two checkpoints of one architecture (or random weights) never share entries."""
    digest = hashlib.blake2b(digest_size=8)
    with torch.no_grad():
        for name, param in module.state_dict().items():
            head = param.detach().reshape(-1)[:4096].to("cpu", torch.float32).contiguous()
            digest.update(name.encode())
            digest.update(head.numpy().tobytes())
    return f"{model_name}-{str(dtype).removeprefix('torch.')}-{digest.hexdigest()}"


def _guard(tier: Tier, what: str, op: Any, default: Any) -> Any:
    """``op()``; an unexpected error in a tier is logged and answered with ``default``."""
    try:
        return op()
    except Exception as exc:  # noqa: BLE001 - a cache tier must never fail the request
        log.warning("%s cache: %s failed (%s: %s)", getattr(tier, "name", "?"), what, type(exc).__name__, exc)
        return default
