"""server.max_objects and server.max_points_per_object: refused (400, the limit named) before the
image is decoded or the model runs."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from dtseg import SamEngine
from tests.server.server_helpers import b64_image, synthetic_image


@pytest.mark.parametrize("prompt, field, limit", [
    ({"point_coords": [[1, 1]] * 5, "point_labels": [1] * 5}, "point_coords", "max_points_per_object = 4"),
    ({"point_coords": [[[1, 1]]] * 2 + [[[1, 1]] * 5], "point_labels": [[1], [1], [1] * 5]}, "point_coords",
     "max_points_per_object = 4"),
    ({"point_coords": [[[1, 1]]] * 4, "point_labels": [[1]] * 4}, "point_coords", "max_objects = 3"),
    ({"point_coords": [[1, 1]], "point_labels": [[1]] * 4}, "point_labels", "max_objects = 3"),
    ({"boxes": [[0, 0, 5, 5]] * 4}, "boxes", "max_objects = 3"),
])
def test_too_many_prompts_are_refused_naming_the_limit(make_client, engine: SamEngine, prompt: dict, field: str,
                                                       limit: str) -> None:
    client: TestClient = make_client(max_objects=3, max_points_per_object=4)
    calls = engine.encoder_calls
    response = client.post("/sam/segment_image", json={"image": b64_image(synthetic_image(seed=41)), **prompt})
    assert response.status_code == 400, response.text
    assert response.json()["field"] == field and f"server.{limit}" in response.json()["message"]
    assert engine.encoder_calls == calls  # refused before the image was embedded


def test_prompts_at_the_limits_pass(make_client) -> None:
    client: TestClient = make_client(max_objects=3, max_points_per_object=4)
    body = {"image": b64_image(synthetic_image(seed=42)), "point_coords": [[[5, 5]] * 4] * 3,
            "point_labels": [[1] * 4] * 3, "boxes": [[0, 0, 30, 30]] * 3}
    response = client.post("/sam/segment_image", json=body)
    assert response.status_code == 200, response.text
    assert len(response.json()["masks"]) == 3
    assert client.get("/info").json()["limits"]["max_objects"] == 3
