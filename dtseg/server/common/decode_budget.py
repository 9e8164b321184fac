"""A pixel budget shared by the request threads: the images being decoded at one time add up to
at most ``server.decode_megapixels`` (decoding needs up to ~12 bytes per pixel: 16-bit RGBA
samples, then 8-bit BGR and RGB copies), so concurrent large images wait instead of piling up."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class DecodeBudget:
    def __init__(self, pixels: int) -> None:
        self.total = max(1, int(pixels))
        self.used = 0
        self._changed = threading.Condition()

    @contextmanager
    def reserve(self, pixels: int) -> Iterator[None]:
        """Hold ``pixels`` (at most the whole budget) for the ``with`` block; waits until they are free."""
        pixels = min(max(0, int(pixels)), self.total)
        with self._changed:
            self._changed.wait_for(lambda: self.used + pixels <= self.total)
            self.used += pixels
        try:
            yield
        finally:
            with self._changed:
                self.used -= pixels
                self._changed.notify_all()
