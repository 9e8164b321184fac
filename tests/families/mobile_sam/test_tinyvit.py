"""dtseg's TinyViT forward pass (``dtseg.families.mobile_sam.tinyvit``) against TinyViT's own, on the same weights."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from dtseg import SamEngine
from dtseg.errors import RandomWeightsWarning
from dtseg.families.mobile_sam.family import fold_batch_norms
from dtseg.families.mobile_sam.tinyvit import FastTinyViT
from tests.similarity import cosine, rel_error


def load(model: str, dtype: str = "fp32") -> SamEngine:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomWeightsWarning)
        return SamEngine.load(model, "random", device="cpu", dtype=dtype, seed=3)


def perturbed(encoder: nn.Module) -> nn.Module:
    """``encoder`` with non-trivial batch-norm statistics and attention biases (random init
    leaves them at identity / zero, which would hide a misplaced bias or a wrong fold)."""
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for m in encoder.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.rand(m.bias.shape, generator=g) * 0.4 - 0.2)
            if hasattr(m, "attention_biases"):
                m.attention_biases.copy_(torch.randn(m.attention_biases.shape, generator=g))
            if isinstance(m, nn.LayerNorm):
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.3)  # padded windows see norm(0) = bias
    return encoder.eval()  # refreshes TinyViT's cached eval-mode bias tables




@pytest.fixture(scope="module")
def tiny() -> nn.Module:
    return perturbed(load("tiny_mobile_sam").model.net.image_encoder)


@pytest.fixture(scope="module")
def batch() -> torch.Tensor:
    return torch.randn(2, 3, 1024, 1024, generator=torch.Generator().manual_seed(0))


def test_fp32_equals_tinyvit_forward(tiny, batch):
    with torch.inference_mode():
        ref = tiny(batch)
        ours = FastTinyViT(fold_batch_norms(tiny))(batch)
        single = FastTinyViT(fold_batch_norms(tiny))(batch[1:])
    assert ours.shape == ref.shape == (2, 256, 64, 64) and ours.dtype == torch.float32
    assert rel_error(ours, ref) <= 1e-5
    assert rel_error(single, ref[1:]) <= 1e-5  # each image of a batch is its own


@pytest.mark.parametrize("band_bytes", [1, 300_000])
def test_row_bands_change_nothing(tiny, batch, band_bytes):
    """Bands of one row (the halo logic at every row, stride 1 and 2) or a few rows give the
    whole-map result."""
    folded = fold_batch_norms(tiny)
    with torch.inference_mode():
        whole = FastTinyViT(folded, band_bytes=1 << 40)(batch[:1])
        banded = FastTinyViT(folded, band_bytes=band_bytes)(batch[:1])
    assert rel_error(banded, whole) <= 1e-6


def test_bf16_copy_close_to_fp32(tiny, batch):
    with torch.inference_mode():
        ref = tiny(batch[:1])
        ours = FastTinyViT(fold_batch_norms(tiny).to(torch.bfloat16))(batch[:1])
    assert ours.dtype == torch.bfloat16
    assert cosine(ours, ref) >= 0.999


def test_engine_bf16_owns_a_bf16_encoder_and_keeps_the_fp32_net():
    """The encoder's own copy is in the precision it computes in: bf16, or fp32 on a CPU
    without oneDNN's bf16 kernels (``precision.plan``: fallback)."""
    engine = load("tiny_mobile_sam", "bf16")
    fast = engine.model.image_encoder
    assert isinstance(fast, FastTinyViT)
    assert engine.model.compute == (torch.float32 if engine.info()["dtype_path"] == "fallback" else torch.bfloat16)
    assert {p.dtype for p in fast.encoder.parameters()} == {engine.model.compute}
    assert {p.dtype for p in engine.model.net.parameters()} == {torch.float32}  # decoder, checkpoints
    assert fast.encoder is not engine.model.net.image_encoder


@pytest.mark.slow
def test_real_mobile_sam_shape_equals_tinyvit_forward():
    encoder = perturbed(load("mobile_sam").model.net.image_encoder)
    x = torch.randn(1, 3, 1024, 1024, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        ref = encoder(x)
        ours = FastTinyViT(fold_batch_norms(encoder))(x)
    assert rel_error(ours, ref) <= 1e-5
