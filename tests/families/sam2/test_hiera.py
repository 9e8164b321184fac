"""dtseg's SAM 2 encoder pass (``dtseg.families.sam2.hiera``) against ``sam2``'s own, on the same weights."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dtseg import SamEngine
from dtseg.errors import RandomWeightsWarning
from dtseg.families.sam2.hiera import FastSam2Encoder, _max_pool, _upsample2x, fast_sam2_encoder
from tests.similarity import cosine, rel_error


def load(model: str, dtype: str = "fp32", **options) -> SamEngine:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomWeightsWarning)
        return SamEngine.load(model, "random", device="cpu", dtype=dtype, seed=4, **options)


def perturbed(net: nn.Module) -> nn.Module:
    """``net`` with non-zero biases, norm shifts and ``no_mem_embed`` (random init leaves them at
    zero, which would hide a missing bias, a wrong pad value or a dropped addition)."""
    g = torch.Generator().manual_seed(9)
    with torch.no_grad():
        for p in [*net.image_encoder.parameters(), *net.sam_mask_decoder.conv_s0.parameters(),
                  *net.sam_mask_decoder.conv_s1.parameters()]:
            if p.dim() == 1:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
        net.no_mem_embed.copy_(torch.randn(net.no_mem_embed.shape, generator=g))
    return net


def reference(net: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """The three maps as ``SAM2ImagePredictor.set_image`` makes them."""
    _, feats, _, sizes = net._prepare_backbone_features(net.forward_image(x))
    feats[-1] = feats[-1] + net.no_mem_embed
    return [f.permute(1, 2, 0).reshape(len(x), -1, *size) for f, size in zip(feats, sizes, strict=True)]




@pytest.fixture(scope="module")
def net() -> nn.Module:
    return perturbed(load("tiny_sam2.1").model.net)


@pytest.fixture(scope="module")
def batch() -> torch.Tensor:
    return torch.randn(2, 3, 1024, 1024, generator=torch.Generator().manual_seed(0))


def test_fp32_equals_sam2_forward(net, batch):
    with torch.inference_mode():
        ref = reference(net, batch)
        ours = FastSam2Encoder(net)(batch)
        single = FastSam2Encoder(net)(batch[1:])
    assert [tuple(t.shape) for t in ours] == [tuple(t.shape) for t in ref]
    for o, s, r in zip(ours, single, ref, strict=True):
        assert o.dtype == torch.float32
        assert rel_error(o, r) <= 1e-5
        assert rel_error(s, r[1:]) <= 1e-5  # each image of a batch is its own


def test_bands_change_nothing(net, batch):
    with torch.inference_mode():
        whole = FastSam2Encoder(net, band_bytes=1 << 40)(batch[:1])
        banded = FastSam2Encoder(net, band_bytes=1)(batch[:1])  # one window row per band
    for b, w in zip(banded, whole, strict=True):
        assert rel_error(b, w) <= 1e-6


def test_bf16_copy_close_to_fp32_and_net_untouched(net, batch):
    fast = fast_sam2_encoder(net, torch.bfloat16)
    assert {p.dtype for p in fast.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in net.parameters()} == {torch.float32}
    with torch.inference_mode():
        ref = reference(net, batch[:1])
        ours = fast(batch[:1])
    for o, r in zip(ours, ref, strict=True):
        assert o.dtype == torch.bfloat16
        assert cosine(o, r) >= 0.999


def test_engine_picks_the_encoder():
    """bf16: the fast pass on its own copy, the reference under autocast (on a CPU without
    oneDNN's bf16 kernels both in fp32: ``precision.plan``), each as ``LoadedModel.embed`` runs it."""
    fast, ref = load("tiny_sam2.1", "bf16"), load("tiny_sam2.1", "bf16", encoder="reference")
    assert fast.model.fast_encoder is not None and ref.model.fast_encoder is None
    assert not fast.model.autocast and ref.model.autocast is (ref.model.compute == torch.bfloat16)
    x = torch.randn(1, 3, 1024, 1024, generator=torch.Generator().manual_seed(2))
    a, b = encoded(fast.model, x), encoded(ref.model, x)
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].dtype == fast.model.compute
        assert cosine(a[key], b[key]) >= 0.999


def encoded(model, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """``model.encode(x)`` in the precision and autocast ``LoadedModel.embed`` uses."""
    with torch.inference_mode(), torch.autocast("cpu", model.compute, enabled=model.autocast):
        return model.encode(x)


@pytest.mark.parametrize("shape", [(1, 8, 8, 3), (2, 7, 9, 5)])
def test_max_pool_equals_maxpool2d(shape):
    x = torch.randn(shape)
    ref = nn.MaxPool2d(2, 2)(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
    assert torch.equal(_max_pool(x, (2, 2)), ref)


def test_upsample_equals_interpolate():
    x = torch.randn(2, 5, 6, 4)
    ref = F.interpolate(x.permute(0, 3, 1, 2), scale_factor=2.0, mode="nearest").permute(0, 2, 3, 1)
    assert torch.equal(_upsample2x(x, "nearest"), ref)


@pytest.mark.slow
def test_real_sam2_1_t_shape_equals_sam2_forward():
    net = perturbed(load("sam2.1_t").model.net)
    x = torch.randn(1, 3, 1024, 1024, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        ref, ours = reference(net, x), FastSam2Encoder(net)(x)
    for o, r in zip(ours, ref, strict=True):
        assert rel_error(o, r) <= 1e-5
