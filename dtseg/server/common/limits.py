"""Request body limits as ASGI middleware (uvicorn has none): a size limit (413) and a read
deadline (408), both answered as JSON.

The ``Content-Length`` header is checked first; bodies without one (chunked) are counted as
they stream in and cut off at the limit. The deadline starts when the app first reads the
body (a request waiting for its turn is not the client's delay) and covers all of it, so a
client that sends a byte every second does not hold its connection: at ``body_timeout_s`` it
gets a 408 and the connection is closed.
"""

from __future__ import annotations

import json

import anyio
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CLOSE = {"Connection": "close"}


class BodyTooLarge(HTTPException):
    """Raised from ``receive``; an ``HTTPException`` so FastAPI's body parsing passes it through as 413."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, _message(max_bytes), headers=CLOSE)


class BodyTooSlow(HTTPException):
    """Raised from ``receive`` at the body deadline: 408, and the connection is closed."""

    def __init__(self, seconds: float) -> None:
        super().__init__(408, f"request body not received within {seconds:g} s (server.body_timeout_s)", headers=CLOSE)


class BodyLimits:
    def __init__(self, app: ASGIApp, max_bytes: int, timeout_s: float) -> None:
        self.app, self.max_bytes, self.timeout_s = app, int(max_bytes), float(timeout_s)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self._reject(send)
            return
        received, started, complete = 0, False, False
        deadline: float | None = None

        async def limited_receive() -> Message:
            nonlocal received, complete, deadline
            if complete:  # after the body: waiting for a disconnect has no deadline
                return await receive()
            deadline = deadline if deadline is not None else anyio.current_time() + self.timeout_s
            with anyio.move_on_after(deadline - anyio.current_time()) as scope_:
                message = await receive()
            if scope_.cancelled_caught:
                raise BodyTooSlow(self.timeout_s)
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
                complete = not message.get("more_body", False)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except (BodyTooLarge, BodyTooSlow) as exc:
            if not started:
                await self._reject(send, exc)

    async def _reject(self, send: Send, exc: HTTPException | None = None) -> None:
        exc = exc or BodyTooLarge(self.max_bytes)
        data = json.dumps({"message": exc.detail}).encode()
        await send({"type": "http.response.start", "status": exc.status_code,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": data})


def _message(max_bytes: int) -> str:
    return f"request body larger than {max_bytes} bytes ({max_bytes / (1 << 20):g} MiB, server.max_body_mb)"
