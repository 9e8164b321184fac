"""How routes read their bodies: key first, then the body budget, then the JSON value limit."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable

import httpx
from fastapi.testclient import TestClient

from dtseg import SamEngine
from dtseg.server import create_app
from dtseg.server.common.body import VALUE_BYTES, BodyBudget, reservation
from dtseg.server.config import ServerConfig


def test_key_is_checked_before_the_body_is_parsed(make_client: Callable[..., TestClient]) -> None:
    """Without a key, a body that is not even JSON gets 401 (parsing first would answer 422)."""
    client = make_client(api_keys=["alpha"])
    for path in ("/sam/embed_image", "/sam/segment_image", "/sam2/segment_image", "/sam3/concept_segment",
                 "/segment", "/export"):
        response = client.post(path, content=b"{not json", headers={"Content-Type": "application/json"})
        assert response.status_code == 401, (path, response.text)
        assert response.headers["connection"] == "close"
    with_key = client.post("/sam/embed_image", params={"api_key": "alpha"}, content=b"{not json",
                           headers={"Content-Type": "application/json"})
    assert with_key.status_code == 422, with_key.text  # with the key, the body is parsed


def test_json_value_limit(make_client: Callable[..., TestClient]) -> None:
    client = make_client(max_json_values=100)
    small = client.post("/sam/segment_image", json={"image_id": "never-embedded", "point_coords": [[1, 2]] * 20,
                                                    "point_labels": [1] * 20})
    assert small.status_code == 404, small.text  # 60 commas: at most 61 values, parsed and answered
    large = client.post("/sam/segment_image", json={"image_id": "never-embedded", "point_coords": [[1, 2]] * 50,
                                                    "point_labels": [1] * 50})  # 150 commas
    assert large.status_code == 413 and "server.max_json_values" in large.json()["message"], large.text
    assert client.get("/info").json()["limits"]["max_json_values"] == 100


def test_reservation_counts_size_and_values() -> None:
    config = ServerConfig(max_body_mb=1, max_json_values=1000)
    assert reservation({"content-length": "300"}, config) == 600 + VALUE_BYTES * 151  # at most one value per 2 bytes
    assert reservation({"content-length": "100000"}, config) == 200_000 + VALUE_BYTES * 1000
    assert reservation({}, config) == (2 << 20) + VALUE_BYTES * 1000  # chunked: the largest body
    assert reservation({"content-length": str(10 << 20)}, config) == (2 << 20) + VALUE_BYTES * 1000


def test_body_budget_makes_requests_wait_their_turn() -> None:
    async def scenario() -> list[str]:
        budget, order = BodyBudget(10), []
        first_in, release_first = asyncio.Event(), asyncio.Event()

        async def first() -> None:
            async with budget.reserve(8):
                order.append("first in")
                first_in.set()
                await release_first.wait()
            order.append("first out")

        async def second() -> None:
            await first_in.wait()
            async with budget.reserve(5):
                order.append("second in")
            async with budget.reserve(50):  # more than the whole budget: runs alone
                order.append("huge in")

        async def releaser() -> None:
            await first_in.wait()
            for _ in range(5):  # the second request gets every chance to enter early
                await asyncio.sleep(0)
            order.append("releasing")
            release_first.set()

        await asyncio.gather(first(), second(), releaser())
        assert budget.used == 0
        return order

    assert asyncio.run(scenario()) == ["first in", "releasing", "first out", "second in", "huge in"]


def test_healthz_answers_while_a_large_body_is_parsed(engine: SamEngine) -> None:
    """A JSON embedding-sized body (1M numbers) and ``/healthz`` asked again and again on the same
    event loop until the large request is answered: many answers meanwhile (with ``json.loads``
    on the loop, the parse holds them all: one or two get through around it)."""
    app = create_app(engine, ServerConfig())
    rng = random.Random(0)
    body = json.dumps({"image_id": "x", "embeddings": [[rng.random() for _ in range(64)] for _ in range(16384)],
                       "format": "not-a-format"}).encode()  # answered 422 as soon as it is parsed and validated

    async def scenario() -> int:
        answered, large_done = 0, False
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            async def large() -> None:
                nonlocal large_done
                response = await client.post("/sam/segment_image", content=body,
                                             headers={"Content-Type": "application/json"})
                large_done = True
                assert response.status_code == 422 and response.json()["field"] == "format", response.text

            async def health() -> None:
                nonlocal answered
                await asyncio.sleep(0)  # the large request goes first
                while not large_done:
                    assert (await client.get("/healthz")).status_code == 200
                    answered += 0 if large_done else 1
                    await asyncio.sleep(0.001)  # an answer on the loop itself need not suspend: let the rest run

            await asyncio.gather(large(), health())
        return answered

    assert asyncio.run(scenario()) >= 10
