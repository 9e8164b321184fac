"""image_id on the wire: refused outside the id alphabet before any work, percent-encoded in headers."""

from __future__ import annotations

from urllib.parse import unquote

import pytest
from fastapi.testclient import TestClient

from dtseg import SamEngine
from tests.server.server_helpers import b64_image, synthetic_image

POINT = {"point_coords": [[20, 18]], "point_labels": [1]}


def test_a_non_latin1_id_round_trips_through_the_header(client: TestClient, engine: SamEngine) -> None:
    image = synthetic_image(seed=31)
    for fmt in ("binary", "json"):
        embed = client.post("/sam/embed_image", json={"image": b64_image(image), "image_id": "画像 1", "format": fmt})
        assert embed.status_code == 200, embed.text
        assert unquote(embed.headers["x-image-id"]) == "画像 1"
    segment = client.post("/sam/segment_image", json={"image_id": "画像 1", "format": "binary", **POINT})
    assert segment.status_code == 200 and unquote(segment.headers["x-image-id"]) == "画像 1"
    assert client.post("/sam/segment_image", json={"image_id": "画像 1", **POINT}).json()["image_id"] == "画像 1"


@pytest.mark.parametrize("image_id", ["nul\x00id", "line\r\nX-Injected: 1", "   ", "bidi\u202eid"])
@pytest.mark.parametrize("route", ["/sam/embed_image", "/sam/segment_image"])
def test_ids_outside_the_alphabet_are_400_before_any_work(client: TestClient, engine: SamEngine, image_id: str,
                                                          route: str) -> None:
    calls = engine.encoder_calls
    response = client.post(route, json={"image": b64_image(synthetic_image(seed=32)), "image_id": image_id,
                                        **(POINT if route.endswith("segment_image") else {})})
    assert response.status_code == 400, response.text
    assert response.json()["field"] == "image_id"
    assert engine.encoder_calls == calls
    assert client.get("/healthz").status_code == 200
