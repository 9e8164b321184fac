"""Server configuration: the ``sam:`` section (``SamConfig``) plus a ``server:`` section.

```yaml
sam: {model: vit_b, checkpoint: null, device: auto}   # /sam/* and /segment
sam2: {model: sam2.1_t}                               # /sam2/* (optional; default: sam, if it is SAM 2)
sam3: {model: sam3}                                   # /sam3/* (optional; default: sam, if it is SAM 3)
cache: {redis_url: redis://127.0.0.1:6379/0, ttl_s: 86400}   # shared by workers/replicas (optional)
server:
  api_keys: [key-one, key-two]     # or DTSEG_API_KEYS="key-one,key-two"; empty: no auth
  max_body_mb: 64                  # larger request bodies -> 413
  max_image_pixels: 50000000       # larger images (declared or decoded) -> 400
  threads: 16                      # request threads (bounds memory under load)
  max_objects: 100                 # objects (point sets, boxes, masks) in one segment_image -> 400 beyond
  max_points_per_object: 64        # points in one object -> 400 beyond
  decode_megapixels: 100           # pixels being decoded at once, all requests together (memory bound)
  auto_orient: true                # apply EXIF orientation (a request may opt out: disable_preproc_auto_orient)
  allow_random: false              # /segment pipelines: detectors without weights get random ones (demos)
  url_fetch: {allow_private: false, timeout_s: 10, max_mb: 20, max_redirects: 3}
  configs_dir: configs             # pipeline YAML files served by POST /segment (default: none)
  cache_share: null                # fraction of the in-process cache one API key may hold
                                   # (null: 1 / number of keys, so no key evicts another's entries)
  header_timeout_s: 10             # a request's headers must arrive within this (from connecting,
                                   # or from its first byte on a kept-alive connection); else closed
  body_timeout_s: 60               # its whole body within this, once the server starts reading it -> 408
  keep_alive_s: 5                  # an idle kept-alive connection is closed after this
  shutdown_grace_s: 10             # SIGTERM/SIGINT: running requests get this long (503 just before), then exit
  max_json_values: 1500000         # values in one JSON body (counted by its commas) -> 413 beyond
  body_budget_mb: 1024             # bodies being read, parsed and handled at once, in memory (each request
                                   # reserves 2 x its size + 160 bytes per value it may hold); more wait their turn
  labelstudio: {url: null, pipeline: null}   # /labelstudio, the Label Studio ML backend (dtseg.labelstudio.settings)
```
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import Field

from dtseg.config import CacheConfig, SamConfig, StrictModel, apply_overrides, load_yaml, validate
from dtseg.labelstudio.settings import LabelStudioConfig

API_KEYS_ENV = "DTSEG_API_KEYS"


class UrlFetchConfig(StrictModel):
    """Limits for ``{"type": "url"}`` images."""

    allow_private: bool = False  # loopback, private, link-local, reserved addresses
    timeout_s: float = Field(10.0, gt=0)  # whole fetch, redirects included
    max_mb: float = Field(20.0, gt=0)  # downloaded bytes
    max_redirects: int = Field(3, ge=0)


class ServerConfig(StrictModel):
    """The ``server:`` section."""

    api_keys: list[str] = Field(default_factory=list)
    max_body_mb: float = Field(64.0, gt=0)
    max_image_pixels: int = Field(50_000_000, gt=0)
    threads: int = Field(16, ge=1, le=256)
    url_fetch: UrlFetchConfig = Field(default_factory=UrlFetchConfig)
    max_objects: int = Field(100, ge=1)
    max_points_per_object: int = Field(64, ge=1)
    decode_megapixels: float = Field(100.0, gt=0)
    auto_orient: bool = True
    allow_random: bool = False
    configs_dir: str | None = None
    cache_share: float | None = Field(None, gt=0, le=1)
    header_timeout_s: float = Field(10.0, gt=0)
    body_timeout_s: float = Field(60.0, gt=0)
    keep_alive_s: float = Field(5.0, gt=0)
    shutdown_grace_s: float = Field(10.0, gt=0)
    max_json_values: int = Field(1_500_000, ge=1)
    body_budget_mb: float = Field(1024.0, gt=0)
    labelstudio: LabelStudioConfig = Field(default_factory=LabelStudioConfig)

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * (1 << 20))

    @property
    def body_budget_bytes(self) -> int:
        return int(self.body_budget_mb * (1 << 20))

    def effective_api_keys(self) -> frozenset[str]:
        """Configured keys plus those in ``$DTSEG_API_KEYS`` (comma-separated)."""
        keys = set(self.api_keys)
        keys.update(k.strip() for k in os.environ.get(API_KEYS_ENV, "").split(",") if k.strip())
        return frozenset(keys)

    def cache_share_of(self, num_keys: int) -> float | None:
        """The fraction of the in-process cache each API key may hold (``None``: no bound)."""
        if self.cache_share is not None:
            return self.cache_share
        return 1.0 / num_keys if num_keys > 1 else None


class ServeCacheConfig(CacheConfig):
    """``cache:`` of a server: refinement logits go through the shared tiers by default."""

    mask_logits: bool = True


class ServeConfig(StrictModel):
    """A ``dtseg serve --config`` file."""

    sam: SamConfig = Field(default_factory=SamConfig)
    sam2: SamConfig | None = Field(None, description="the model of /sam2/* (a SAM 2 model); default: sam's, "
                                                        "when that is a SAM 2 model")
    sam3: SamConfig | None = Field(None, description="the model of /sam3/* (a SAM 3 model); default: sam's, "
                                                        "when that is a SAM 3 model")
    cache: ServeCacheConfig = Field(default_factory=ServeCacheConfig)
    server: ServerConfig = Field(default_factory=ServerConfig)

    def model_sections(self) -> dict[str, SamConfig]:
        """The model sections given, by config key (``sam``, and ``sam2`` when set): one engine each."""
        sections = {name: getattr(self, name) for name in type(self).model_fields}
        return {name: section for name, section in sections.items() if isinstance(section, SamConfig)}

    def random_if_missing(self) -> ServeConfig:
        """``--allow-random``: every model section without weights gets random ones, loudly
        (``dtseg.pipeline.random_if_missing``). Decided once, so that every worker loads the same."""
        from dtseg.pipeline import random_if_missing

        return self.model_copy(update={name: random_if_missing(section, name)
                                       for name, section in self.model_sections().items()})


def load_serve_config(path: str | Path | None = None, overrides: list[str] | None = None) -> ServeConfig:
    """Read and validate a server config (``None``: defaults), after ``--set`` overrides."""
    data: dict[str, Any] = load_yaml(path) if path else {}
    apply_overrides(data, overrides or [])
    return validate(ServeConfig, data, str(path or "defaults"))
