"""What the routes share: the engine, the server config, and the refinement cache."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from fastapi import Request

from dtseg.engine import SamEngine
from dtseg.engine.cache import ByteLRUCache
from dtseg.server.config import ServerConfig


@dataclass(frozen=True)
class RefineEntry:
    """Best low-res logits ``(N, 1, 256, 256)`` of the last segment_image on an image, and which pixels."""

    logits: np.ndarray
    image_hash: str

    @property
    def nbytes(self) -> int:
        return int(self.logits.nbytes)


@dataclass
class Services:
    """One per app. ``refine`` maps ``(namespace, image_id)`` to the last logits (``use_mask_input_cache``)."""

    engine: SamEngine
    config: ServerConfig
    refine: ByteLRUCache[RefineEntry] = field(init=False)
    pipelines: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.refine = ByteLRUCache(self.config.refine_cache_mb << 20)

    def bind(self, namespace: str, image_id: str, image_hash: str) -> None:
        """``image_id`` now names these pixels: drop refinement logits of other pixels."""
        entry = self.refine.get((namespace, image_id))
        if entry is not None and entry.image_hash != image_hash:
            self.refine.pop((namespace, image_id))


def get_services(request: Request) -> Services:
    return request.app.state.services
