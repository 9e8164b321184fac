"""What the routes share: the engine, the server config, the decode budget and the built pipelines."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastapi import Request

from dtseg.engine import SamEngine
from dtseg.server.config import ServerConfig
from dtseg.server.decode_budget import DecodeBudget


@dataclass
class Services:
    """One per app: the engine of ``/sam`` (and ``/segment``), the engines of ``/sam2`` and
    ``/sam3`` (``None`` when no such model is configured), the config and the built pipelines."""

    engine: SamEngine
    config: ServerConfig
    pipelines: dict[str, Any] = field(default_factory=dict)
    sam2_engine: SamEngine | None = None
    sam3_engine: SamEngine | None = None
    decode_budget: DecodeBudget = field(init=False)

    def __post_init__(self) -> None:
        self.decode_budget = DecodeBudget(int(self.config.decode_megapixels * 1e6))


def get_services(request: Request) -> Services:
    return request.app.state.services
