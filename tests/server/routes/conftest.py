"""Route family test fixtures: clients of apps serving a family's engine beside the tiny SAM."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack

import pytest
from fastapi.testclient import TestClient

from dtseg import SamEngine
from dtseg.server import ServerConfig, create_app


@pytest.fixture(scope="module")
def family_client(engine: SamEngine) -> Iterator[Callable[[str, SamEngine], TestClient]]:
    """``family_client(key, family_engine)`` -> a TestClient (no auth, default limits, server
    errors answered, not raised) of an app serving the session's tiny SAM as ``sam`` and
    ``family_engine`` as ``key``; closed at the end of the module."""
    with ExitStack() as clients:
        yield lambda key, family_engine: clients.enter_context(TestClient(
            create_app({"sam": engine, key: family_engine}, ServerConfig()), raise_server_exceptions=False))
