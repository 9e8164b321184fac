"""Which forward passes an engine runs on its device: dtseg's fast ones or the reference modules.

dtseg's own encoder and decoder passes (``encoder.py``, ``tinyvit.py``, ``hiera.py``,
``decoder.py``) were measured against the reference modules on CPUs only (docs/encoder.md).
``auto``, the default of ``sam.encoder`` and ``sam.decoder``, runs them on the device types in
``MEASURED`` and the reference modules elsewhere (CUDA, MPS) until a benchmark there
(``bench/gpu.sh``: fast vs reference per family, same weights, time and mask IoU) shows they
pay; ``fast`` and ``reference`` choose one on any device.
"""

from __future__ import annotations

from typing import Literal

import torch

#: What runs: dtseg's pass or the family's reference module.
ImplKind = Literal["fast", "reference"]
#: What a config asks for.
ImplChoice = Literal["auto", "fast", "reference"]
CHOICES: tuple[str, ...] = ("auto", "fast", "reference")
#: Device types on which the fast passes were benchmarked against the reference (``torch.device.type``).
MEASURED = frozenset({"cpu"})


def choose(part: str, choice: str, device: torch.device) -> ImplKind:
    """The pass ``part`` (``encoder`` / ``decoder``) runs on ``device`` for ``choice``; a
    ``ValueError`` naming ``part`` for anything but ``auto``, ``fast``, ``reference``."""
    if choice not in CHOICES:
        raise ValueError(f"{part}: expected one of {', '.join(CHOICES)}, got {choice!r}")
    if choice != "auto":
        return choice  # type: ignore[return-value]
    return "fast" if device.type in MEASURED else "reference"


def describe(encoder: ImplKind, decoder: ImplKind, device: torch.device) -> str:
    """Which passes run, for a command's first line: ``fast encoder and decoder``, or e.g.
    ``reference encoder and decoder (fast passes not benchmarked on cuda; sam.encoder/decoder: fast)``."""
    what = f"{encoder} encoder and decoder" if encoder == decoder else f"{encoder} encoder, {decoder} decoder"
    if "reference" in (encoder, decoder) and device.type not in MEASURED:
        what += f" (fast passes not benchmarked on {device.type}; sam.encoder/decoder: fast)"
    return what
