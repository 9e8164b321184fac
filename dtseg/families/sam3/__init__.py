"""The ``sam3`` family: Meta's SAM 3 (visual prompts as its interactive predictor, concept prompts
through its detector on the same embedding), built from its spec and run on the CPU."""

from __future__ import annotations

from dtseg.hookspecs import Register, hookimpl


@hookimpl
def dtseg_register_model_families(register: Register) -> None:
    from dtseg.families.sam3.family import Sam3Model

    register("sam3", Sam3Model)
