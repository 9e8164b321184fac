"""uvicorn's logging, with API keys kept out of the access log.

Roboflow's clients send the key in the query string (``?api_key=KEY``), which uvicorn's access
log writes out with the path. ``RedactApiKeys`` replaces each ``api_key`` value (the name
percent-encoded or not, as Starlette decodes it) with ``***``.
"""

from __future__ import annotations

import copy
import logging
from typing import Any
from urllib.parse import unquote_plus

from uvicorn.config import LOGGING_CONFIG

KEY_PARAM = "api_key"


def redact_query(target: str) -> str:
    """``/sam/embed_image?api_key=k1&x=2`` -> ``/sam/embed_image?api_key=***&x=2``."""
    path, sep, query = target.partition("?")
    if not sep:
        return target
    parts = [f"{name}=***" if unquote_plus(name) == KEY_PARAM else part
             for part in query.split("&") for name in [part.partition("=")[0]]]
    return path + "?" + "&".join(parts)


class RedactApiKeys(logging.Filter):
    """Filter for ``uvicorn.access``: its records' arguments are (client, method, path with query, version, status)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact_query(a) if isinstance(a, str) and "?" in a else a for a in record.args)
        return True


def log_config() -> dict[str, Any]:
    """uvicorn's default logging config with ``RedactApiKeys`` on the access logger."""
    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["redact_api_keys"] = {"()": f"{__name__}.RedactApiKeys"}
    config["loggers"]["uvicorn.access"]["filters"] = ["redact_api_keys"]
    return config
