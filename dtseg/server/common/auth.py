"""API keys: ``?api_key=`` (Roboflow's way), ``Authorization: Bearer``, or HTTP Basic with the
key as password (how Label Studio calls an ML backend). Each key gets its own cache namespace,
so one client's ``image_id`` is never visible to another."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request, status
from fastapi.security import APIKeyQuery, HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param

_query_key = APIKeyQuery(name="api_key", auto_error=False, description="API key (Roboflow style)")
_bearer = HTTPBearer(auto_error=False, description="API key as a Bearer token")


def namespace_for(key: str) -> str:
    """The cache namespace of an API key (a digest: keys never sit in the cache in clear)."""
    return "key:" + hashlib.sha256(key.encode()).hexdigest()[:32]


def request_namespace(request: Request, close: bool = False) -> str:
    """``""`` when the server has no keys; else the caller's namespace, or 401 (``close``: and
    ``Connection: close``, for a request whose body is left unread)."""
    keys: frozenset[str] = request.app.state.api_keys
    if not keys:
        return ""
    given = request.query_params.get("api_key") or header_key(request.headers.get("authorization"))
    if given and any(hmac.compare_digest(given.encode(), k.encode()) for k in keys):
        return namespace_for(given)
    raise HTTPException(
        status.HTTP_401_UNAUTHORIZED,
        "missing API key: pass ?api_key=KEY or 'Authorization: Bearer KEY'" if not given else "invalid API key",
        headers={"WWW-Authenticate": "Bearer", **({"Connection": "close"} if close else {})},
    )


def header_key(authorization: str | None) -> str | None:
    """The key in an ``Authorization`` header: ``Bearer KEY``, or ``Basic`` with KEY as password."""
    scheme, token = get_authorization_scheme_param(authorization)
    if scheme.lower() == "bearer":
        return token or None
    if scheme.lower() == "basic":
        try:
            return base64.b64decode(token, validate=True).decode().partition(":")[2] or None
        except (binascii.Error, UnicodeDecodeError):
            return None
    return None


def client_namespace(
    request: Request,
    api_key: Annotated[str | None, Depends(_query_key)] = None,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)] = None,
) -> str:
    """Dependency: ``request_namespace``. Its parameters declare the two ways to pass a key in OpenAPI."""
    return request_namespace(request)


Namespace = Annotated[str, Depends(client_namespace)]


def document_auth(app: FastAPI) -> None:
    """With API keys, every OpenAPI operation that takes a key (has ``security``) lists 401
    (without keys no route answers 401)."""
    if not app.state.api_keys:
        return
    build = app.openapi

    def openapi() -> dict[str, Any]:
        first = app.openapi_schema is None
        schema = build()  # built once, then app.openapi_schema
        if first:
            for operations in schema["paths"].values():
                for operation in operations.values():
                    if operation.get("security"):
                        operation["responses"].setdefault("401", UNAUTHORIZED)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


UNAUTHORIZED = {"description": "missing or invalid API key",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}}
