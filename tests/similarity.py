"""How close two feature tensors are: the measures the encoder parity tests share."""

from __future__ import annotations

import torch


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """Cosine similarity of ``a`` and ``b`` flattened, in float64."""
    a, b = a.double().flatten(), b.double().flatten()
    return float(a @ b / (a.norm() * b.norm()))


def rel_error(ours: torch.Tensor, ref: torch.Tensor) -> float:
    """Largest absolute difference relative to the largest magnitude of ``ref``."""
    return float((ours.float() - ref).abs().max() / ref.abs().max())
