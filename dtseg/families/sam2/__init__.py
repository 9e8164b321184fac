"""The ``sam2.1`` family: Meta's SAM 2.1 (Hiera), its fast encoder and its memory tracker for video."""

from __future__ import annotations

from dtseg.hookspecs import Register, hookimpl


@hookimpl
def dtseg_register_model_families(register: Register) -> None:
    from dtseg.families.sam2.family import Sam2Model

    register("sam2.1", Sam2Model)
