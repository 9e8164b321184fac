"""API keys never reach uvicorn's access log (the live check is in test_transport.py)."""

from __future__ import annotations

import logging

from dtseg.server.access_log import RedactApiKeys, redact_query


def test_redact_query() -> None:
    assert redact_query("/sam/embed_image?api_key=k1") == "/sam/embed_image?api_key=***"
    assert redact_query("/info?x=1&api_key=k1&y=api_key") == "/info?x=1&api_key=***&y=api_key"
    assert redact_query("/info?api%5Fkey=k1&api_key=k2") == "/info?api%5Fkey=***&api_key=***"  # as Starlette decodes
    assert redact_query("/info?api_keys=k1") == "/info?api_keys=k1"
    assert redact_query("/healthz") == "/healthz"


def test_filter_rewrites_uvicorn_access_records() -> None:
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
                               ("127.0.0.1:5000", "POST", "/sam/embed_image?api_key=secret", "1.1", 200), None)
    assert RedactApiKeys().filter(record)
    assert "secret" not in record.getMessage() and "api_key=***" in record.getMessage()
