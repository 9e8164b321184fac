"""Exception handlers: every error answers ``{"message": ...}`` (plus ``field`` / ``code``)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.responses import Response

from dtseg.errors import ImageNotEmbeddedError, InputError

log = logging.getLogger("dtseg.server")
E = TypeVar("E", bound=Exception)


def install_error_handlers(app: FastAPI) -> None:
    _on(app, InputError, _input_error)
    _on(app, ImageNotEmbeddedError, _not_embedded)
    _on(app, RequestValidationError, _validation_error)
    _on(app, HTTPException, _http_error)
    _on(app, Exception, _unexpected)


def _on(app: FastAPI, kind: type[E], handler: Callable[[Request, E], Awaitable[Response]]) -> None:
    """``app.add_exception_handler(kind, handler)``, typed: Starlette declares every handler as
    taking any ``Exception``; it calls this one with ``kind``'s only."""

    async def handle(request: Request, exc: Exception) -> Response:
        if not isinstance(exc, kind):
            raise exc
        return await handler(request, exc)

    app.add_exception_handler(kind, handle)


async def _input_error(request: Request, exc: InputError) -> JSONResponse:
    return JSONResponse({"message": str(exc), "field": exc.field}, status_code=400)


async def _not_embedded(request: Request, exc: ImageNotEmbeddedError) -> JSONResponse:
    return JSONResponse({"message": str(exc), "code": exc.code, "image_id": exc.image_id}, status_code=404)


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """422 naming the first offending field; ``detail`` lists them all (without echoing inputs)."""
    errors = [{"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
              for e in exc.errors()]
    first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
    loc = [p for p in first["loc"] if p != "body"]
    field = loc[0] if loc else "body"
    path = ".".join(loc) or "body"
    message = f"{path}: unknown field" if first.get("type") == "extra_forbidden" else f"{path}: {first['msg']}"
    return JSONResponse({"message": message, "field": field, "detail": errors}, status_code=422)


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    return JSONResponse({"message": str(exc.detail)}, status_code=exc.status_code,
                        headers=getattr(exc, "headers", None))


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse({"message": f"internal server error: {type(exc).__name__}"}, status_code=500)
