"""Route families: the server's routes grouped by resource, registered like every other plugin.

A route family is one ``APIRouter`` (its routes module, beside its schemas module under
``dtseg/server/routes/<family>/``) and the engine it serves (``EngineNeed``: a config key such
as ``sam2`` and the ``Capabilities.lineage`` its model must have). Built-in families register
through the same ``dtseg_register_route_families`` hook as a third party's
(``dtseg.server.routes``); ``create_app`` includes every registered family, in registration
order, built-ins first.

A handler gets its engine by declaring the family's ``EngineNeed`` as a dependency::

    SAM3 = EngineNeed("sam3", lineage="sam3", label="SAM 3", example="sam3")
    router = APIRouter(prefix="/sam3", tags=["sam3"], route_class=BodyRoute)

    @router.post("/embed_image")
    def embed_image(body: EmbedRequest, engine: Annotated[SamEngine, Depends(SAM3)]) -> ...: ...

    @hookimpl
    def dtseg_register_route_families(register):
        register("sam3", RouteFamily(router, SAM3))

A server without that engine answers the family's routes 404 naming the config key.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fastapi import APIRouter, FastAPI, Request
from starlette.exceptions import HTTPException

from dtseg.plugins import NAME, PluginError, call_register_hook, get_plugin_manager, register_plugin

if TYPE_CHECKING:
    from dtseg.engine import SamEngine

BUILTIN = "dtseg.server.routes"


@dataclass(frozen=True)
class EngineNeed:
    """The engine a route family serves: the config section ``key`` (``sam``, ``sam2``, ...), the
    ``Capabilities.lineage`` its model must have (``None``: any model), and words for errors:
    ``label`` (``"SAM 2"``) and an ``example`` model name.

    Without a ``key:`` section, the ``sam`` engine serves the family when its lineage matches.
    Used as a FastAPI dependency it returns the engine, or answers 404 naming ``key.model``."""

    key: str = "sam"
    lineage: str | None = None
    label: str = "SAM"
    example: str = "vit_b"

    def __call__(self, request: Request) -> "SamEngine":  # noqa: UP037 - FastAPI evaluates it; quoted, it stays a name
        engine = request.app.state.services.engines.get(self.key)
        if engine is None:
            raise HTTPException(404, self.not_configured())
        return engine

    def not_configured(self) -> str:
        return (f"no {self.label} model is configured on this server: set {self.key}.model (e.g. {self.example}) "
                f"in its config, or serve a {self.label} model as sam.model")

    def accepts(self, engine: SamEngine) -> bool:
        return self.lineage is None or engine.capabilities.lineage == self.lineage

    def check(self, engine: SamEngine) -> None:
        """``ValueError`` naming ``key.model`` when ``engine`` is not of this family's lineage."""
        if not self.accepts(engine):
            raise ValueError(f"{self.key}.model: expected a {self.label} model ({self.example}, ...), "
                             f"got {engine.model_name!r}")


#: The engine of ``sam:``: every model serves ``/sam``, ``/segment``, the page and Label Studio.
SAM = EngineNeed()


@dataclass(frozen=True)
class RouteFamily:
    """One resource's routes: ``router`` (its routes module's), the ``engine`` it serves, and
    ``install``, called with the app after the router is included, for what a router cannot hold
    (static files)."""

    router: APIRouter
    engine: EngineNeed = SAM
    install: Callable[[FastAPI], None] | None = None


def load_route_families() -> dict[str, RouteFamily]:
    """Every registered route family by name: the built-ins (``dtseg.server.routes``), then those
    of plugins (the ``dtseg`` entry-point group). A name registered twice, or something other
    than a ``RouteFamily``, is a ``PluginError`` naming the plugin."""
    from dtseg.server import routes

    pm = get_plugin_manager()
    register_plugin(pm, routes, BUILTIN, f"built-in ({BUILTIN})")
    families: dict[str, RouteFamily] = {}
    origin: dict[str, str] = {}

    def add(name: object, family: object, source: str) -> None:
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise PluginError(f"{source}: register({name!r}, ...): a route family name must be a word "
                              "such as 'sam3'")
        if not isinstance(family, RouteFamily):
            raise PluginError(f"{source}: register({name!r}, {family!r}): "
                              "expected a dtseg.server.families.RouteFamily")
        if name in families:
            raise PluginError(f"route family {name!r} is registered twice: by {origin[name]} and by {source}")
        families[name], origin[name] = family, source

    call_register_hook(pm, "dtseg_register_route_families", add, first=BUILTIN)
    return families


def engines_for(families: Mapping[str, RouteFamily], engines: Mapping[str, SamEngine]) -> dict[str, SamEngine]:
    """The engine of each config key the families need: its own section's, else ``sam``'s when
    its lineage fits; keys with neither are left out (their routes answer 404). An engine given
    under a key whose families need another lineage is a ``ValueError`` naming ``key.model``."""
    if "sam" not in engines:
        raise ValueError("sam: the server needs an engine for its sam: section")
    resolved = dict(engines)
    for family in families.values():
        need = family.engine
        if need.key in engines:
            need.check(engines[need.key])
        elif need.accepts(engines["sam"]):
            resolved.setdefault(need.key, engines["sam"])
    return resolved
