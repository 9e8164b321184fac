"""Model families behind one seam, and the registry of every model dtseg knows by name.

``resolve_model("sam2.1_t")`` -> the family class, its architecture and the official
checkpoint row. Test-size models (random weights only) are named ``tiny`` (SAM),
``tiny_mobile_sam`` and ``tiny_sam2.1``.
"""

from __future__ import annotations

from typing import Any

from dtseg.families.base import IMAGE_EMBED, Family, OfficialModel
from dtseg.families.mobile_sam.family import TINY_MOBILE_SPEC, MobileSamFamily
from dtseg.families.mobile_sam.family import MODELS as _MOBILE_SAM
from dtseg.families.sam.family import TINY_SPEC, SamFamily, SamSpec
from dtseg.families.sam.family import MODELS as _SAM
from dtseg.families.sam2.family import TINY_SAM2_SPEC, Sam2Family
from dtseg.families.sam2.family import MODELS as _SAM2
from dtseg.families.sam3 import family as _sam3

#: Every family, by name. A new family: its module, and one entry here.
FAMILY_CLASSES: dict[str, type[Family]] = {cls.name: cls for cls in (SamFamily, MobileSamFamily, Sam2Family, _sam3.Sam3Family)}

#: Every official checkpoint, by model name.
MODELS: dict[str, OfficialModel] = {m.name: m for m in (*_SAM, *_MOBILE_SAM, *_SAM2, *_sam3.MODELS)}

#: Test-size architectures (random weights, saved and loaded like real checkpoints).
TEST_MODELS: dict[str, tuple[str, Any]] = {
    "tiny": ("sam", TINY_SPEC),
    "tiny_mobile_sam": ("mobile_sam", TINY_MOBILE_SPEC),
    "tiny_sam2.1": ("sam2.1", TINY_SAM2_SPEC),
    **{name: ("sam3", spec) for name, spec in _sam3.TINY_MODELS.items()},
}


def model_names() -> list[str]:
    return [*MODELS, *TEST_MODELS]


def resolve_model(model: Any) -> tuple[type[Family], Any, OfficialModel | None, str]:
    """A model name, or a family architecture (instance or dict) -> ``(family class, arch,
    official row or None, display name)``. Unknown names list the known ones."""
    if isinstance(model, str):
        if model in MODELS:
            row = MODELS[model]
            return FAMILY_CLASSES[row.family], row.arch, row, model
        if model in TEST_MODELS:
            family, arch = TEST_MODELS[model]
            return FAMILY_CLASSES[family], arch, None, model
        raise ValueError(f"model: unknown model {model!r}; known models: {', '.join(model_names())}")
    for cls in FAMILY_CLASSES.values():
        arch = cls.arch_from(model)
        if arch is not None:
            return cls, arch, None, "custom"
    raise ValueError(f"model: expected a model name ({', '.join(model_names())}) or an architecture, got {model!r}")


__all__ = ["FAMILY_CLASSES", "IMAGE_EMBED", "MODELS", "TEST_MODELS", "Family", "OfficialModel", "SamSpec",
           "model_names", "resolve_model"]
