"""How ``dtseg serve`` runs uvicorn: its h11 protocol with a header deadline and a shutdown drain.

uvicorn closes an idle kept-alive connection (``timeout_keep_alive``) but has no deadline for
a request's headers: a client that connects and sends nothing, or one header byte every few
seconds, holds its connection forever. ``DeadlineProtocol`` closes it ``header_timeout_s``
after connecting, or after the first byte of a later request on a kept-alive connection.
(The body deadline is ASGI middleware: ``limits.BodyLimits``.)

On shutdown uvicorn waits ``timeout_graceful_shutdown`` for running requests, then cancels
them, which answers 500 and, since a handler thread cannot be cancelled, the process still
waits for it. Here a request still running one second before the grace is over is answered
503 (its handler's answer, when it comes, is dropped, as for a client that left), and the
process exits at the end of the grace whatever its threads are doing.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import sys
import threading
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol, RequestResponseCycle

from dtseg.server.access_log import log_config
from dtseg.server.config import ServerConfig

log = logging.getLogger("uvicorn.error")
_exit_timer: threading.Timer | None = None  # one per process: the end of the shutdown grace


class DeadlineProtocol(H11Protocol):
    """uvicorn's h11 protocol plus a header deadline and the shutdown drain (module docstring)."""

    def __init__(self, *args: Any, header_timeout_s: float = 10.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout_s = header_timeout_s
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()  # a connection that never sends anything is closed too

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._track_headers()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._track_headers()  # a pipelined next request may be half there

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)

    def shutdown(self) -> None:
        super().shutdown()
        self._disarm_header_timer()
        cycle: RequestResponseCycle | None = self.cycle  # None between requests (uvicorn types it without)
        if cycle is not None and not cycle.response_complete:
            grace = float(self.config.timeout_graceful_shutdown or 0)
            self.loop.call_later(max(grace - 1.0, grace / 2), self._answer_unavailable)
            _exit_after(grace)

    def _track_headers(self) -> None:
        """Headers pending (bytes of a request, no complete head yet): deadline on; else off."""
        if self.conn.their_state is not h11.IDLE:
            self._disarm_header_timer()
        elif self.conn.trailing_data[0] and self._header_timer is None:
            self._arm_header_timer()

    def _arm_header_timer(self) -> None:
        self._disarm_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_too_slow)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        with contextlib.suppress(h11.LocalProtocolError):
            self.conn.send(h11.ConnectionClosed())
        self.transport.close()

    def _answer_unavailable(self) -> None:
        """The grace is nearly over and this request has no answer yet: 503, close, drop the handler's answer."""
        cycle: RequestResponseCycle | None = self.cycle  # None between requests
        if cycle is None or cycle.response_started or cycle.disconnected or self.transport.is_closing():
            return
        log.warning("shutdown: %s %s still running at the end of the grace: answered 503",
                    cycle.scope["method"], cycle.scope["path"])
        body = json.dumps({"message": "server shutting down: the request did not finish in time, retry it"}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                   (b"connection", b"close"), (b"retry-after", b"1")]
        cycle.disconnected = True  # the handler's own answer is dropped, its receive() sees a disconnect
        cycle.message_event.set()
        for event in (h11.Response(status_code=503, headers=headers, reason=b"Service Unavailable"),
                      h11.Data(data=body), h11.EndOfMessage()):
            self.transport.write(self.conn.send(event))
        self.transport.close()


def _exit_after(seconds: float) -> None:
    """End this process ``seconds`` from now if it is still running (handler threads cannot be stopped)."""
    global _exit_timer
    if _exit_timer is None:
        _exit_timer = threading.Timer(seconds, _exit)
        _exit_timer.daemon = True
        _exit_timer.start()


def _exit() -> None:
    log.warning("shutdown grace over with handlers still running: exiting")
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(0)


def uvicorn_options(config: ServerConfig, log_level: str) -> dict[str, Any]:
    """``uvicorn.run`` keyword arguments for the transport settings of ``config``."""
    return {
        "http": functools.partial(DeadlineProtocol, header_timeout_s=config.header_timeout_s),
        "timeout_keep_alive": config.keep_alive_s,
        "timeout_graceful_shutdown": config.shutdown_grace_s,
        "log_config": log_config(),
        "log_level": log_level,
    }
