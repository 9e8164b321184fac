"""What the routes share: the engine, the server config, and the built pipelines."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastapi import Request

from dtseg.engine import SamEngine
from dtseg.server.config import ServerConfig


@dataclass
class Services:
    """One per app. Refinement logits live in the engine (``engine.mask_logits``)."""

    engine: SamEngine
    config: ServerConfig
    pipelines: dict[str, Any] = field(default_factory=dict)


def get_services(request: Request) -> Services:
    return request.app.state.services
