"""How a route with a JSON body reads it (``BodyRoute``, the ``route_class`` of the routers).

1. The API key is checked from the headers alone: a client without one gets its 401 before a
   byte of its body is read or parsed (and the connection is closed, the body left unread).
2. The request reserves its share of the body budget (``server.body_budget_mb``) and waits
   while others hold it: twice its declared size (the bytes and their text) plus
   ``VALUE_BYTES`` for each JSON value it may hold (at most ``server.max_json_values``, at most
   one per two bytes: ``0,``). Chunked bodies reserve as for ``server.max_body_mb``. The share
   is held until the handler returns.
3. The body is read, and its values are counted by their commas (a fast scan of the bytes, an
   upper bound): more than ``server.max_json_values`` is a 413, before anything is parsed.
4. A JSON body is parsed in steps that give the event loop its turn (``json_steps``), then
   handed to FastAPI, which validates it as usual. Validation holds the GIL (so would a
   thread): a field typed as numbers keeps the loop for its length, which step 3 bounds;
   ``Any`` fields (embeddings, mask inputs) cost nothing.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from json import JSONDecodeError
from typing import Any

from fastapi import Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from dtseg.server.common.auth import client_namespace, request_namespace
from dtseg.server.common.json_steps import decode_body, parse_json
from dtseg.server.common.schemas import ErrorResponse
from dtseg.server.config import ServerConfig

BODY_ERRORS: dict[int | str, dict[str, Any]] = {
    408: {"model": ErrorResponse,
          "description": "body not received within server.body_timeout_s (the connection is closed)"},
    413: {"model": ErrorResponse,
          "description": "body larger than server.max_body_mb, or more JSON values than server.max_json_values"},
    503: {"model": ErrorResponse, "description": "still running at the end of the shutdown grace"},
}
"""The codes every route with a body can answer before or around its handler (OpenAPI ``responses``)."""

VALUE_BYTES = 160
"""Memory one JSON value (one comma) may take once parsed and validated: a float in a list
takes 32 bytes, a small list about 72, and pydantic copies typed lists once more. Measured
(docs/server.md): about 70 bytes per value for a JSON embedding, 150 for ``point_coords`` pairs."""


class BodyBudget:
    """An async byte budget: ``async with budget.reserve(n):`` waits until ``n`` bytes are free."""

    def __init__(self, total: int) -> None:
        self.total = max(1, int(total))
        self.used = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @asynccontextmanager
    async def reserve(self, amount: int) -> AsyncIterator[None]:
        amount = min(max(0, int(amount)), self.total)
        while self.used + amount > self.total:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
        self.used += amount
        try:
            yield
        finally:
            self.used -= amount
            while self._waiters:  # each waiter checks again whether its amount fits now
                waiter = self._waiters.popleft()
                if not waiter.done():
                    waiter.set_result(None)


def reservation(headers: Any, config: ServerConfig) -> int:
    """Bytes a request reserves before its body is read: its bytes, their text, what its values may take."""
    declared = headers.get("content-length", "")
    size = min(int(declared) if declared.isdigit() else config.max_body_bytes, config.max_body_bytes)
    return 2 * size + VALUE_BYTES * min(config.max_json_values, size // 2 + 1)


def check_json_values(body: bytes, limit: int) -> None:
    """413 when ``body`` may hold more than ``limit`` JSON values (one more than its commas)."""
    if body.count(b",") + 1 > limit:
        raise HTTPException(413, f"request body has more than {limit} JSON values (server.max_json_values); "
                                 "send large arrays as binary (embeddings_format / mask_input_format: binary)")


class BodyRoute(APIRoute):
    """An ``APIRoute`` whose body is read as the module docstring says."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if self.body_field is None:
            return handler
        needs_key = _depends_on(self.dependant, client_namespace)

        async def read_then_handle(request: Request) -> Response:
            if needs_key:
                request_namespace(request, close=True)
            config: ServerConfig = request.app.state.services.config
            async with request.app.state.body_budget.reserve(reservation(request.headers, config)):
                try:
                    body = await request.body()
                except ClientDisconnect:  # nobody to answer; not a server error
                    raise HTTPException(400, "client disconnected before sending its whole body") from None
                check_json_values(body, config.max_json_values)
                if body and _is_json(request.headers.get("content-type", "")):
                    request = ParsedRequest(request, body, await _parse(body))
                return await handler(request)

        return read_then_handle


class ParsedRequest(Request):
    """A request whose body is already read and parsed: FastAPI's ``body()`` and ``json()`` return them."""

    def __init__(self, request: Request, body: bytes, value: Any) -> None:
        super().__init__(request.scope, request.receive)
        self._raw, self._value = body, value

    async def body(self) -> bytes:
        return self._raw

    async def json(self) -> Any:
        return self._value


async def _parse(body: bytes) -> Any:
    """``parse_json``, with FastAPI's errors: 422 ``json_invalid`` at a position, else 400."""
    try:
        return await parse_json(decode_body(body))
    except JSONDecodeError as exc:
        raise RequestValidationError([{"type": "json_invalid", "loc": ("body", exc.pos), "msg": "JSON decode error",
                                       "input": {}, "ctx": {"error": exc.msg}}], body=exc.doc) from None
    except (ValueError, RecursionError) as exc:  # not UTF-8, or nested too deep for a string's scanner
        raise HTTPException(400, "There was an error parsing the body") from exc


def _is_json(content_type: str) -> bool:
    """Whether FastAPI would parse a body of this type as JSON (``application/json`` or ``application/*+json``)."""
    media = content_type.partition(";")[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def _depends_on(dependant: Dependant, call: Callable[..., Any]) -> bool:
    return any(d.call is call or _depends_on(d, call) for d in dependant.dependencies)
