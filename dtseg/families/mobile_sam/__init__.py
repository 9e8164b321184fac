"""The ``mobile_sam`` family: SAM's decoder behind ultralytics' TinyViT encoder."""

from __future__ import annotations

from dtseg.hookspecs import Register, hookimpl


@hookimpl
def dtseg_register_model_families(register: Register) -> None:
    from dtseg.families.mobile_sam.family import MobileSamModel

    register("mobile_sam", MobileSamModel)
