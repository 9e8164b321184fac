"""Bounded property-based run over the OpenAPI schema (schemathesis + hypothesis): no 500, no crash.

Schemathesis's pytest plugin does not load under this pytest, so its strategies are driven
with hypothesis directly: 15 valid and 15 schema-violating requests per operation.
"""

from __future__ import annotations

import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from dtseg import SamEngine
from dtseg.server import ServerConfig, create_app

EXAMPLES_PER_MODE = 15  # positive and negative (schema-violating) requests: 30 per operation


def test_no_server_errors_over_the_openapi_schema(engine: SamEngine) -> None:
    # No loopback fetching: a generated URL must never reach anything.
    app = create_app(engine, ServerConfig(url_fetch={"allow_private": False, "timeout_s": 1}))
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/sam/embed_image", "/sam/segment_image", "/segment", "/info"}
    seen: dict[str, set[int]] = {}

    runs = [(op, mode) for op in operations for mode in schemathesis.GenerationMode
            if op.method.upper() == "POST" or mode is schemathesis.GenerationMode.POSITIVE]  # GETs take no input
    for operation, mode in runs:
        @given(case=operation.as_strategy(mode))
        @settings(max_examples=EXAMPLES_PER_MODE, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def check(case: schemathesis.Case) -> None:
            response = case.call()
            # check() runs at once, in this iteration
            seen.setdefault(operation.label, set()).add(response.status_code)  # noqa: B023
            assert response.status_code < 500, \
                f"{case.method} {case.path} -> {response.status_code}: {response.text[:300]}"
            case.validate_response(response, checks=[not_a_server_error])

        check()

    assert set(seen) == {op.label for op in operations}
    assert 422 in seen["POST /sam/segment_image"] and 400 in seen["POST /sam/segment_image"]
    with TestClient(app) as client:  # still serving, and still correct
        assert client.get("/healthz").json() == {"status": "ok"}
        assert client.post("/sam/segment_image", json={"image_id": "nope", "point_coords": [[1, 1]],
                                                       "point_labels": [1]}).json()["code"] == "image_not_embedded"
