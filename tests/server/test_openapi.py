"""The OpenAPI schema is complete and the API docs work offline (assets served by the app)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from dtseg import SamEngine
from dtseg.server import ServerConfig, create_app


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


def test_every_schema_reference_is_defined(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    defined = {f"#/components/schemas/{name}" for name in schema["components"]["schemas"]}
    used = set(refs(schema))
    assert used and used <= defined, f"undefined: {sorted(used - defined)}"
    ok = schema["paths"]["/sam/segment_image"]["post"]["responses"]["200"]["content"]
    assert set(ok) == {"application/json", "application/octet-stream"}
    assert "#/components/schemas/SegmentRleResponse" in set(refs(ok["application/json"]))


def test_docs_pages_load_their_assets_from_the_server(client: TestClient) -> None:
    for page in ("/docs", "/redoc"):
        html = client.get(page)
        assert html.status_code == 200
        sources = re.findall(r'(?:src|href)="([^"]+)"', html.text)
        assets = [s for s in sources if s.endswith((".js", ".css"))]
        assert assets, f"{page} names no script or stylesheet"
        for asset in assets:
            assert asset.startswith("/"), f"{page} loads {asset} from elsewhere: blank offline"
            response = client.get(asset)
            assert response.status_code == 200 and len(response.content) > 10_000, asset
        assert "https://" not in html.text and "http://" not in html.text, f"{page} still reaches out"


#: The error codes each route can answer (401 too, on every route but /healthz, when the server has keys).
#: A route with a body also answers 408 (slow body), 413 (too large) and 503 (shutdown grace over).
BODY = {408, 413, 503}
ERRORS = {
    ("post", "/sam/embed_image"): {400, 404, 422} | BODY,
    ("post", "/sam/segment_image"): {400, 404, 422} | BODY,
    ("post", "/sam2/embed_image"): {400, 404, 422} | BODY,
    ("post", "/sam2/segment_image"): {400, 404, 422} | BODY,
    ("post", "/sam3/embed_image"): {400, 404, 422} | BODY,
    ("post", "/sam3/visual_segment"): {400, 404, 422} | BODY,
    ("post", "/sam3/concept_segment"): {400, 404, 422} | BODY,
    ("post", "/segment"): {400, 404, 422} | BODY,
    ("post", "/fetch_image"): {400, 422} | BODY,
    ("post", "/export"): {400, 422} | BODY,
    ("post", "/everything"): {400, 422} | BODY,
    ("post", "/labelstudio/setup"): {422} | BODY,
    ("post", "/labelstudio/predict"): {422} | BODY,
    ("post", "/labelstudio/webhook"): {422} | BODY,
    ("get", "/labelstudio/versions"): set(),
    ("get", "/labelstudio/health"): set(),
    ("get", "/info"): set(),
    ("get", "/healthz"): set(),
}


@pytest.mark.parametrize("keys", [[], ["a-key"]], ids=["no auth", "auth"])
def test_every_route_lists_its_error_codes(engine: SamEngine, keys: list[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DTSEG_API_KEYS", raising=False)
    schema = create_app(engine, ServerConfig(api_keys=keys)).openapi()
    listed = {(method, path): {int(code) for code in op["responses"] if not code.startswith("2")}
              for path, ops in schema["paths"].items() for method, op in ops.items()}
    open_routes = ("/healthz", "/labelstudio/health")
    expected = {route: codes | ({401} if keys and route[1] not in open_routes else set())
                for route, codes in ERRORS.items()}
    assert listed == expected
    for path, ops in schema["paths"].items():
        for op in ops.values():
            for code, response in op["responses"].items():
                if not code.startswith("2"):
                    assert set(refs(response)) == {"#/components/schemas/ErrorResponse"}, (path, code)
