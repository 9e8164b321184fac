"""The OpenAPI schema is complete and the API docs work offline (assets served by the app)."""

from __future__ import annotations

import re
from typing import Any, Iterator

from fastapi.testclient import TestClient


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
