"""A thread-safe LRU cache bounded by bytes, used for image embeddings and mask logits."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Generic, Hashable, Protocol, TypeVar


class Sized(Protocol):
    @property
    def nbytes(self) -> int: ...


V = TypeVar("V", bound=Sized)


@dataclass
class CacheStats:
    entries: int
    bytes: int
    max_bytes: int
    hits: int
    misses: int
    evictions: int


class ByteLRUCache(Generic[V]):
    """Least-recently-used mapping whose values' ``nbytes`` add up to at most ``max_bytes``.

    ``get`` and ``put`` are atomic under one lock: any number of threads may read and write.
    A value larger than ``max_bytes`` is not stored (it would evict everything and still not fit).
    """

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.max_bytes = int(max_bytes)
        self._items: OrderedDict[Hashable, V] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self._hits = self._misses = self._evictions = 0

    def get(self, key: Hashable) -> V | None:
        """The value under ``key`` (marked most recently used), or ``None``."""
        with self._lock:
            value = self._items.get(key)
            if value is None:
                self._misses += 1
                return None
            self._items.move_to_end(key)
            self._hits += 1
            return value

    def put(self, key: Hashable, value: V) -> bool:
        """Store ``value`` under ``key``, replacing any old value; evict LRU entries to fit.

        Returns whether the value was stored.
        """
        size = int(value.nbytes)
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old.nbytes
            if size > self.max_bytes:
                return False
            while self._bytes + size > self.max_bytes:
                _, evicted = self._items.popitem(last=False)
                self._bytes -= evicted.nbytes
                self._evictions += 1
            self._items[key] = value
            self._bytes += size
            return True

    def pop(self, key: Hashable) -> V | None:
        with self._lock:
            value = self._items.pop(key, None)
            if value is not None:
                self._bytes -= value.nbytes
            return value

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0

    def keys(self) -> list[Hashable]:
        """Keys from least to most recently used."""
        with self._lock:
            return list(self._items)

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._items

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(len(self._items), self._bytes, self.max_bytes, self._hits, self._misses, self._evictions)
