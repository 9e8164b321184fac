"""API keys on and off; each key's embedding cache is its own."""

from __future__ import annotations

import base64

import numpy as np
import pytest
from fastapi.testclient import TestClient

from dtseg import SamEngine
from tests.server.server_helpers import b64_image

POINT = {"point_coords": [[20, 18]], "point_labels": [1]}


def test_no_keys_means_no_auth(client: TestClient, embedded: str) -> None:
    assert client.get("/info").json()["auth"] is False
    assert client.post("/sam/segment_image", json={"image_id": embedded, **POINT}).status_code == 200


def test_every_route_but_health_requires_a_key(make_client) -> None:
    client: TestClient = make_client(api_keys=["alpha", "beta"])
    assert client.get("/healthz").status_code == 200
    for method, path in [("GET", "/info"), ("POST", "/sam/embed_image"), ("POST", "/sam/segment_image"),
                         ("POST", "/segment")]:
        missing = client.request(method, path, json={})
        assert missing.status_code == 401, path
        assert "api_key" in missing.json()["message"] and missing.headers["www-authenticate"] == "Bearer"
        wrong = client.request(method, path, json={}, params={"api_key": "gamma"})
        assert wrong.status_code == 401 and wrong.json()["message"] == "invalid API key"
    assert client.get("/info", params={"api_key": "alpha"}).json()["auth"] is True
    assert client.get("/info", headers={"Authorization": "Bearer beta"}).status_code == 200
    assert client.get("/info", headers={"Authorization": "Bearer gamma"}).status_code == 401


@pytest.mark.parametrize(("header", "status"), [
    ("Basic " + base64.b64encode(b"labelstudio:alpha").decode(), 200),  # Label Studio's way: the key as password
    ("Basic " + base64.b64encode(b"alpha:").decode(), 401),  # the key as user name is not a key
    ("Basic " + base64.b64encode(b"labelstudio:gamma").decode(), 401),
    ("Basic not-base64!", 401),
    ("Token alpha", 401),
])
def test_basic_auth_takes_the_key_as_password(make_client, header: str, status: int) -> None:
    client: TestClient = make_client(api_keys=["alpha", "beta"])
    assert client.get("/info", headers={"Authorization": header}).status_code == status


def test_keys_from_the_environment(make_client, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DTSEG_API_KEYS", "env-one, env-two")
    client: TestClient = make_client()
    assert client.get("/info").status_code == 401
    assert client.get("/info", params={"api_key": "env-two"}).status_code == 200


def test_image_ids_are_private_to_each_key(make_client, engine: SamEngine, image: np.ndarray) -> None:
    client: TestClient = make_client(api_keys=["alpha", "beta"])
    alpha, beta = {"api_key": "alpha"}, {"api_key": "beta"}
    embed = client.post("/sam/embed_image", params=alpha, json={"image": b64_image(image), "image_id": "mine",
                                                                "format": "binary"})
    assert embed.status_code == 200
    assert client.post("/sam/segment_image", params=alpha, json={"image_id": "mine", **POINT}).status_code == 200
    other = client.post("/sam/segment_image", params=beta, json={"image_id": "mine", **POINT})
    assert other.status_code == 404 and other.json()["code"] == "image_not_embedded"
    assert client.post("/sam/embed_image", params=beta, json={"image_id": "mine"}).status_code == 404
    # nor through the no-auth namespace of the same engine
    assert engine.embeddings.get(("", "mine")) is None


def test_each_key_has_its_share_of_the_cache_and_sees_only_its_own_counters(
        tiny_checkpoint, monkeypatch: pytest.MonkeyPatch) -> None:
    from dtseg.server import ServerConfig, create_app
    from tests.server.server_helpers import synthetic_image

    monkeypatch.delenv("DTSEG_API_KEYS", raising=False)
    engine = SamEngine.load("tiny", tiny_checkpoint, device="cpu", cache_bytes=4 * 4 * 2**20)  # 4 embeddings
    with TestClient(create_app(engine, ServerConfig(api_keys=["alpha", "beta"]))) as client:
        alpha, beta = {"api_key": "alpha"}, {"api_key": "beta"}
        assert client.post("/sam/embed_image", params=beta, json={"image": b64_image(synthetic_image(seed=9)),
                                                                  "image_id": "keep"}).status_code == 200
        for i in range(5):  # alpha alone could fill the whole cache: her share is half of it
            assert client.post("/sam/embed_image", params=alpha, json={"image": b64_image(synthetic_image(seed=i)),
                                                                       "image_id": f"a{i}"}).status_code == 200
        assert client.post("/sam/segment_image", params=beta, json={"image_id": "keep", **POINT}).status_code == 200
        mine, theirs = (client.get("/info", params=p).json()["cache"] for p in (beta, alpha))
    assert (mine["entries"], mine["evictions"], mine["max_bytes"]) == (1, 0, 8 * 2**20)
    assert mine["hits"] >= 1 and theirs["hits"] == 0
    assert (theirs["entries"], theirs["evictions"]) == (2, 3)
