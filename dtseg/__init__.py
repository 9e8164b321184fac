"""dtseg: detect-then-segment with a cached Segment Anything engine.

``import dtseg`` is light: the names that need torch or supervision (``SamEngine``, ``Embedding``,
``SegmentResult``, ``Prompts``, ``Pipeline``) are imported the first time they are used.
"""

from __future__ import annotations

import importlib
from typing import Any

from dtseg.errors import (
    CheckpointError,
    CheckpointNotFoundError,
    ChecksumMismatchError,
    ConfigError,
    DtsegError,
    ImageDecodeError,
    ImageNotEmbeddedError,
    InputError,
    PromptError,
    RandomWeightsWarning,
)

__version__ = "0.1.0"

#: name -> the module it is imported from, on first use (module-level ``__getattr__``, PEP 562).
_LAZY = {
    "Embedding": "dtseg.engine",
    "SamEngine": "dtseg.engine",
    "SegmentResult": "dtseg.engine",
    "Prompts": "dtseg.prompts",
    "Pipeline": "dtseg.pipeline",
}

__all__ = [
    "CheckpointError", "CheckpointNotFoundError", "ChecksumMismatchError", "ConfigError", "DtsegError",
    "Embedding", "ImageDecodeError", "ImageNotEmbeddedError", "InputError", "Pipeline", "PromptError", "Prompts",
    "RandomWeightsWarning", "SamEngine", "SegmentResult", "__version__",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'dtseg' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
