"""What the routes share: the engines by config key, the server config, the decode budget and the
built pipelines."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Request

from dtseg.engine import SamEngine
from dtseg.server.common.decode_budget import DecodeBudget
from dtseg.server.config import ServerConfig


@dataclass
class Services:
    """One per app: ``engines`` by config key (``sam``; ``sam2`` when a SAM 2 model serves
    ``/sam2``: ``dtseg.server.families.engines_for``), the config and the built pipelines."""

    engines: dict[str, SamEngine]
    config: ServerConfig
    pipelines: dict[str, Any] = field(default_factory=dict)
    decode_budget: DecodeBudget = field(init=False)

    def __post_init__(self) -> None:
        self.decode_budget = DecodeBudget(int(self.config.decode_megapixels * 1e6))

    @property
    def engine(self) -> SamEngine:
        """The engine of the ``sam:`` section (``/sam``, ``/segment``, the page, Label Studio)."""
        return self.engines["sam"]


def get_services(request: Request) -> Services:
    return request.app.state.services


#: A handler's ``Services`` (``services: ServicesDep``).
ServicesDep = Annotated[Services, Depends(get_services)]
