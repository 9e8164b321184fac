"""One wall-clock deadline over a whole httpx exchange (connect, headers, body, redirects).

httpx's timeouts bound each socket operation: a server sending one byte per second never
trips them. ``Deadline`` learns each connection's socket through httpx's ``trace`` extension
and, when time is up, shuts the sockets down, so the blocked read fails at once.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import Any


class Deadline:
    """``with Deadline(seconds) as d: client.get(url, timeout=d.remaining(), extensions={"trace": d.trace})``."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._end = time.monotonic() + seconds
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self.expired = False
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> Deadline:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()

    def remaining(self) -> float:
        """Seconds left (``<= 0`` once past the deadline)."""
        return self._end - time.monotonic()

    def trace(self, event: str, info: dict[str, Any]) -> None:
        """httpx/httpcore trace hook: remember the socket of every new connection."""
        if event not in ("connection.connect_tcp.complete", "connection.start_tls.complete"):
            return
        sock = info["return_value"].get_extra_info("socket")
        if sock is None:
            return
        with self._lock:
            self._sockets.append(sock)
            if self.expired:
                _shut(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._sockets:
                _shut(sock)


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed
        sock.shutdown(socket.SHUT_RDWR)
