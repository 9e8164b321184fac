"""The ``sam`` family: Meta's Segment Anything (ViT-B/L/H) and its fast ViT encoder."""

from __future__ import annotations

from dtseg.hookspecs import Register, hookimpl


@hookimpl
def dtseg_register_model_families(register: Register) -> None:
    from dtseg.families.sam.family import SamModel

    register("sam", SamModel)
