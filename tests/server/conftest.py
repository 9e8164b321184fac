"""Server test fixtures: a tiny random-weight SAM saved as a checkpoint, apps, encoded images."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from dtseg import SamEngine
from dtseg.engine.checkpoints import TINY_SPEC, RandomWeightsWarning, build_sam, save_checkpoint
from dtseg.server import ServerConfig, create_app
from tests.server.server_helpers import b64_image, synthetic_image


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny SAM with seeded random weights, saved and loaded through the real checkpoint code."""
    path = tmp_path_factory.mktemp("weights") / "sam_tiny.pth"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomWeightsWarning)
        save_checkpoint(build_sam(TINY_SPEC, "random"), path)
    return path


@pytest.fixture(scope="session")
def engine(tiny_checkpoint: Path) -> SamEngine:
    """One engine for the in-process tests (they share its cache: use distinct image ids / keys)."""
    return SamEngine.load("tiny", tiny_checkpoint, device="cpu")


@pytest.fixture(scope="session")
def image() -> np.ndarray:
    return synthetic_image()


@pytest.fixture(scope="session")
def client(engine: SamEngine) -> Iterator[TestClient]:
    """No auth, default limits, loopback URLs allowed (tests fetch from a local http.server)."""
    config = ServerConfig(url_fetch={"allow_private": True, "timeout_s": 5})
    with TestClient(create_app(engine, config), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture(scope="session")
def embedded(client: TestClient, image: np.ndarray) -> str:
    """The session's image embedded once as ``"img"`` in the no-auth namespace."""
    response = client.post("/sam/embed_image", json={"image": b64_image(image), "image_id": "img"})
    assert response.status_code == 200, response.text
    return "img"


@pytest.fixture
def make_client(engine: SamEngine, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., TestClient]]:
    """``make_client(**server_config)`` -> a TestClient on the shared engine with that config."""
    clients: list[TestClient] = []
    monkeypatch.delenv("DTSEG_API_KEYS", raising=False)

    def make(**config: Any) -> TestClient:
        c = TestClient(create_app(engine, ServerConfig(**config)), raise_server_exceptions=False)
        c.__enter__()
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.__exit__(None, None, None)
