"""Route families as plugins: a third party's family, installed as a distribution with a ``dtseg``
entry point, is served beside the built-ins with the engine of its lineage, or answers 404 naming
its config key; clashing or malformed registrations are errors naming the plugin."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from dtseg import SamEngine
from dtseg.errors import RandomWeightsWarning
from dtseg.plugins import PluginError
from dtseg.server import ServerConfig, create_app
from dtseg.server.families import load_route_families
from tests.test_plugins import fake_distribution, write

#: A route family as a third party writes it: one routes module (its schemas inline, for brevity).
ACME = '''
from typing import Annotated

from fastapi import APIRouter, Depends

from dtseg.engine import SamEngine
from dtseg.hookspecs import hookimpl
from dtseg.server.common.auth import Namespace
from dtseg.server.common.body import BodyRoute
from dtseg.server.common.schemas import Strict
from dtseg.server.families import EngineNeed, RouteFamily

ACME = EngineNeed("acme", lineage="sam2", label="Acme", example="tiny_sam2.1")
router = APIRouter(prefix="/acme", tags=["acme"], route_class=BodyRoute)


class EchoRequest(Strict):
    word: str


@router.post("/echo")
def echo(body: EchoRequest, namespace: Namespace, engine: Annotated[SamEngine, Depends(ACME)]) -> dict:
    return {{"word": body.word, "model": engine.model_name, "lineage": engine.capabilities.lineage}}


@hookimpl
def dtseg_register_route_families(register):
    register("{name}", {family})
'''


def install(site: Path, name: str = "acme", family: str = "RouteFamily(router, ACME)") -> None:
    write(site / "acme_routes.py", ACME.format(name=name, family=family))
    fake_distribution(site, "acme-routes", "0.1", {"acme_routes": "acme_routes"})


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder on sys.path, where distributions are installed; their module is forgotten afterwards."""
    folder = tmp_path / "site"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    yield folder
    sys.modules.pop("acme_routes", None)


@pytest.fixture(scope="module")
def sam2_engine() -> SamEngine:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomWeightsWarning)
        return SamEngine.load("tiny_sam2.1", "random", device="cpu", seed=1)


@pytest.fixture
def acme(site: Path) -> Iterator[None]:
    install(site)
    yield


def test_a_plugins_route_family_is_served_with_the_engine_of_its_key(acme: None, engine: SamEngine,
                                                                     sam2_engine: SamEngine) -> None:
    app = create_app({"sam": engine, "acme": sam2_engine}, ServerConfig())
    assert list(load_route_families())[-1] == "acme"  # after the built-ins
    with TestClient(app) as client:
        response = client.post("/acme/echo", json={"word": "hi"})
        assert response.status_code == 200, response.text
        assert response.json() == {"word": "hi", "model": "tiny_sam2.1", "lineage": "sam2"}
        assert client.post("/acme/echo", json={"word": 1}).json()["field"] == "word"  # the shared strictness
        assert client.post("/sam/embed_image", json={}).json()["field"] == "image"  # the built-ins still there
        assert client.get("/info").json()["acme"]["model"] == "tiny_sam2.1"
        assert "/acme/echo" in client.get("/openapi.json").json()["paths"]


def test_without_its_engine_a_route_family_answers_404_naming_its_config_key(acme: None, engine: SamEngine) -> None:
    with TestClient(create_app(engine, ServerConfig()), raise_server_exceptions=False) as client:
        response = client.post("/acme/echo", json={"word": "hi"})
        assert response.status_code == 404 and "acme.model" in response.json()["message"]
        assert client.get("/info").json()["acme"] is None


def test_the_sam_engine_serves_every_family_of_its_lineage(acme: None, sam2_engine: SamEngine) -> None:
    with TestClient(create_app(sam2_engine, ServerConfig())) as client:
        assert client.post("/acme/echo", json={"word": "hi"}).json()["model"] == "tiny_sam2.1"
        assert client.get("/info").json()["acme"] == "same as sam"


def test_an_engine_of_another_lineage_is_refused_naming_the_key(acme: None, engine: SamEngine) -> None:
    with pytest.raises(ValueError, match=r"acme.model: expected a Acme model \(tiny_sam2.1, ...\), got 'tiny'"):
        create_app({"sam": engine, "acme": engine}, ServerConfig())


def test_a_name_taken_by_a_built_in_is_an_error_naming_both(site: Path) -> None:
    install(site, name="sam2")
    with pytest.raises(PluginError, match=r"'sam2' is registered twice: by built-in \(dtseg.server.routes\) and "
                                          r"by entry point acme_routes = acme_routes \(acme-routes 0.1\)"):
        load_route_families()


def test_registering_something_else_than_a_route_family_is_an_error(site: Path) -> None:
    install(site, family="router")
    with pytest.raises(PluginError, match=r"acme-routes 0\.1.*expected a dtseg\.server\.families\.RouteFamily"):
        load_route_families()


def test_a_route_family_hook_that_raises_is_an_error_naming_the_plugin_and_hook(site: Path) -> None:
    install(site, family="1 / 0")
    with pytest.raises(PluginError, match=r"acme_routes \(acme-routes 0\.1\): dtseg_register_route_families raised "
                                          r"ZeroDivisionError: division by zero"):
        load_route_families()
