"""Model families behind one seam, and every model dtseg knows, by name.

A family registers itself through the ``dtseg_register_model_families`` hook (dtseg's own:
``sam``, ``mobile_sam``, ``sam2.1``; a third party's: through its package's entry point), and
its models come with it: ``resolve_model("sam2.1_t")`` -> the family's class, the architecture,
the official checkpoint row and the name. Test-size models (random weights only) are named
``tiny`` (SAM), ``tiny_mobile_sam`` and ``tiny_sam2.1``.
"""

from __future__ import annotations

from typing import Any

from dtseg.families.base import IMAGE_EMBED, Capabilities, LoadedModel, OfficialModel
from dtseg.plugins import KnownModel, ModelFamily, Registry, default_registry


def model_names(registry: Registry | None = None) -> list[str]:
    """Every model name: the official models, then the test-size ones."""
    return list((registry or default_registry()).models)


def resolve_model(model: Any, registry: Registry | None = None) -> KnownModel:
    """A model name, or a family's architecture (an instance, or a dict of its fields) ->
    ``(family class, arch, official row or None, name)``; a custom architecture is named
    ``custom``. Unknown names list the known ones (``ValueError``)."""
    registry = registry or default_registry()
    if isinstance(model, str):
        try:
            return registry.model(model)
        except ValueError as exc:
            raise ValueError(f"model: {exc}") from None
    for family in registry.families.values():
        arch = family.cls.arch_from(model)
        if arch is not None:
            return KnownModel(family.cls, arch, None, "custom")
    raise ValueError(f"model: expected a model name ({', '.join(registry.models)}) or an architecture, got {model!r}")


__all__ = ["IMAGE_EMBED", "Capabilities", "KnownModel", "LoadedModel", "ModelFamily", "OfficialModel",
           "model_names", "resolve_model"]
