"""A thread-safe LRU cache bounded by bytes, used for image embeddings and mask logits.

Keys that are tuples belong to the namespace ``key[0]`` (the engine's keys are
``(namespace, image_id)``; a namespace is an API key's digest). Each namespace has its own
counters, and ``set_share`` bounds the bytes one namespace may hold, so one client cannot
evict another's entries.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import asdict, dataclass
from typing import Generic, Protocol, TypeVar


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

    def counters(self) -> dict[str, int]:
        """Every field by name (what ``/info`` shows)."""
        return asdict(self)


def namespace_of(key: Hashable) -> Hashable:
    """``key[0]`` for a tuple key (the engine's ``(namespace, image_id)``), else ``None``."""
    return key[0] if isinstance(key, tuple) and key else None


class _Books:
    """One namespace's keys (LRU order), bytes and counters."""

    __slots__ = ("bytes", "evictions", "hits", "keys", "misses")

    def __init__(self) -> None:
        self.keys: OrderedDict[Hashable, None] = OrderedDict()
        self.bytes = self.hits = self.misses = self.evictions = 0


class ByteLRUCache(Generic[V]):
    """Least-recently-used mapping whose values' ``nbytes`` add up to at most ``max_bytes``.

    ``get`` and ``put`` are atomic under one lock: any number of threads may read and write.
    A value larger than ``max_bytes`` (or than its namespace's share) is not stored (it would
    evict everything and still not fit). With a share set, a namespace over its share evicts
    its own least recently used entries first; as long as the shares of the namespaces in use
    add up to at most ``max_bytes``, no namespace ever evicts another's entries.
    """

    def __init__(self, max_bytes: int, share_bytes: int | None = None) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.max_bytes = int(max_bytes)
        self.share_bytes: int | None = None
        self._items: OrderedDict[Hashable, V] = OrderedDict()
        self._books: dict[Hashable, _Books] = {}
        self._bytes = 0
        self._lock = threading.Lock()
        self._hits = self._misses = self._evictions = 0
        self.set_share(share_bytes)

    def set_share(self, share_bytes: int | None) -> None:
        """Bound each namespace to ``share_bytes`` (``None``: the whole cache)."""
        if share_bytes is not None and share_bytes < 0:
            raise ValueError(f"share_bytes must be >= 0, got {share_bytes}")
        with self._lock:
            self.share_bytes = None if share_bytes is None else min(int(share_bytes), self.max_bytes)

    def get(self, key: Hashable) -> V | None:
        """The value under ``key`` (marked most recently used), or ``None``."""
        with self._lock:
            books = self._books_of(key)
            value = self._items.get(key)
            if value is None:
                self._misses += 1
                books.misses += 1
                return None
            self._items.move_to_end(key)
            books.keys.move_to_end(key)
            self._hits += 1
            books.hits += 1
            return value

    def put(self, key: Hashable, value: V) -> bool:
        """Store ``value`` under ``key``, replacing any old value; evict LRU entries to fit.

        Returns whether the value was stored.
        """
        size = int(value.nbytes)
        with self._lock:
            self._remove(key)
            books = self._books_of(key)
            share = self.max_bytes if self.share_bytes is None else self.share_bytes
            if size > share:
                return False
            while books.bytes + size > share:  # over its share: the namespace's own LRU goes first
                self._evict(next(iter(books.keys)))
            while self._bytes + size > self.max_bytes:
                self._evict(next(iter(self._items)))
            self._items[key] = value
            books.keys[key] = None
            books.bytes += size
            self._bytes += size
            return True

    def pop(self, key: Hashable) -> V | None:
        with self._lock:
            return self._remove(key)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            for books in self._books.values():
                books.keys.clear()
                books.bytes = 0
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

    def stats(self, namespace: Hashable = ..., /) -> CacheStats:
        """Counters of the whole cache, or of one namespace (``max_bytes`` is then its share)."""
        with self._lock:
            if namespace is ...:
                return CacheStats(len(self._items), self._bytes, self.max_bytes, self._hits, self._misses,
                                  self._evictions)
            books = self._books.get(namespace) or _Books()
            share = self.max_bytes if self.share_bytes is None else self.share_bytes
            return CacheStats(len(books.keys), books.bytes, share, books.hits, books.misses, books.evictions)

    # -- under the lock ---------------------------------------------------------------------
    def _books_of(self, key: Hashable) -> _Books:
        namespace = namespace_of(key)
        books = self._books.get(namespace)
        if books is None:
            books = self._books[namespace] = _Books()
        return books

    def _remove(self, key: Hashable) -> V | None:
        value = self._items.pop(key, None)
        if value is not None:
            books = self._books_of(key)
            del books.keys[key]
            books.bytes -= value.nbytes
            self._bytes -= value.nbytes
        return value

    def _evict(self, key: Hashable) -> None:
        self._remove(key)
        self._evictions += 1
        self._books_of(key).evictions += 1
