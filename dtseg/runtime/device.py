"""Which device a model runs on, and in which precision."""

from __future__ import annotations

import torch

from dtseg.runtime.precision import resolve_dtype

__all__ = ["select_device", "select_dtype"]


def select_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; anything else is checked to exist."""
    if str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        chosen = torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f"device: {exc}") from exc
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device: cuda was asked for but torch sees no CUDA device")
    if chosen.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError("device: mps was asked for but is not available")
    return chosen


def select_dtype(dtype: str | torch.dtype, device: torch.device) -> torch.dtype:
    """``auto`` (bf16 where ``device`` runs it natively, else fp32), ``fp32``, ``bf16`` or ``fp16``
    -> the torch dtype (see ``dtseg.runtime.precision``)."""
    return resolve_dtype(dtype, device)
