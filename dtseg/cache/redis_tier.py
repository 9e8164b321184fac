"""The shared cache tier: values in Redis under a TTL, evicted by Redis' own memory policy.

Redis unreachable when the tier is built is an error (``CacheTierError``). Lost later, every
call returns at once as a miss (or a skipped write) and one warning a minute is logged; the
tier tries Redis again at most every ``retry_s`` and says so when it is back.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar, cast

from dtseg.errors import CacheTierError

log = logging.getLogger("dtseg.cache")
R = TypeVar("R")
WARN_EVERY_S = 60.0


class RedisTier:
    """``get / put / delete / exists`` of bytes under string keys, in one Redis database."""

    name = "redis"

    def __init__(self, url: str, ttl_s: int | None = None, timeout_s: float = 1.0, retry_s: float = 1.0) -> None:
        import redis

        self.url, self.ttl_s, self.retry_s = url, ttl_s, retry_s
        try:
            self.client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
            self.client.ping()
        except (redis.RedisError, ValueError, OSError) as exc:
            raise CacheTierError(f"cache.redis_url: cannot reach Redis at {_safe(url)}: {exc}") from exc
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        self._lock = threading.Lock()
        self._down_since: float | None = None
        self._retry_at = self._warned_at = 0.0
        self.hits = self.misses = self.writes = self.errors = 0

    def get(self, key: str) -> bytes | None:
        # bytes: the client does not decode responses
        value = cast("bytes | None", self._call(lambda: self.client.get(key), None))
        with self._lock:
            if value is None:
                self.misses += 1
            else:
                self.hits += 1
        return value

    def put(self, key: str, data: bytes) -> None:
        if self._call(lambda: self.client.set(key, data, ex=self.ttl_s), None) is not None:
            with self._lock:
                self.writes += 1

    def delete(self, key: str) -> None:
        self._call(lambda: self.client.delete(key), None)

    def exists(self, key: str) -> bool:
        return bool(self._call(lambda: self.client.exists(key), 0))

    @property
    def available(self) -> bool:
        return self._down_since is None

    def info(self) -> dict[str, Any]:
        with self._lock:
            return {"url": _safe(self.url), "available": self.available, "ttl_s": self.ttl_s, "hits": self.hits,
                    "misses": self.misses, "writes": self.writes, "errors": self.errors}

    def _call(self, op: Callable[[], R], default: R) -> R:
        """``op()``, or ``default`` while Redis is down (then one warning a minute)."""
        now = time.monotonic()
        if self._down_since is not None and now < self._retry_at:
            return default
        try:
            result = op()
        except self._errors as exc:
            with self._lock:
                self.errors += 1
                self._retry_at = now + self.retry_s
                if self._down_since is None:
                    self._down_since = now
                if now - self._warned_at >= WARN_EVERY_S or self._warned_at == 0.0:
                    self._warned_at = now
                    log.warning("Redis cache at %s unavailable (%s): using the local tiers until it is back",
                                _safe(self.url), exc)
            return default
        if self._down_since is not None:
            with self._lock:
                if self._down_since is not None:
                    log.warning("Redis cache at %s is back after %.0f s", _safe(self.url), now - self._down_since)
                    self._down_since = None
        return result


def _safe(url: str) -> str:
    """``url`` without its password."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))
