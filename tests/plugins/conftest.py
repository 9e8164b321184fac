"""Build a built-in provider the way the pipeline does: found through the registry, its options
validated against its ``Config``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from dtseg.config import validate
from dtseg.plugins import load_registry


@pytest.fixture(scope="session")
def make_provider() -> Callable[..., Any]:
    registry = load_registry()

    def make(name: str, **options: Any) -> Any:
        info = registry.provider(name)
        return info.cls(validate(info.config_model, options, "<test>", prefix=f"prompts[0].{name}"))

    return make
