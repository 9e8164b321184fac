"""App factory for uvicorn workers: ``uvicorn dtseg.server.factory:build --factory``.

Each worker process imports this and builds its own engine (its own model and cache) from
the validated config that ``dtseg serve`` passes in ``$DTSEG_SERVE_CONFIG`` (JSON).
"""

from __future__ import annotations

import json
import os

from fastapi import FastAPI

from dtseg.server.app import app_from_config
from dtseg.server.config import ServeConfig

CONFIG_ENV = "DTSEG_SERVE_CONFIG"


def build() -> FastAPI:
    config = ServeConfig.model_validate(json.loads(os.environ.get(CONFIG_ENV, "{}")))
    return app_from_config(config, keep_heap_default=True)  # a worker of dtseg serve: the process is dtseg's
