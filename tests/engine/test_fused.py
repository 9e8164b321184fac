"""Fused linear/convolution + GELU (``dtseg.engine.fused``): same results and same FLOP count as
the plain calls."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from dtseg.engine import fused


def flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


@pytest.mark.parametrize("shape", [(37, 24), (2, 5, 7, 24)])
def test_linear_gelu_equals_plain(shape):
    g = torch.Generator().manual_seed(0)
    x, w, b = torch.randn(shape, generator=g), torch.randn(40, 24, generator=g), torch.randn(40, generator=g)
    plain = F.gelu(F.linear(x, w, b))
    assert torch.allclose(fused.linear_gelu(x, w, b), plain, atol=2e-6, rtol=1e-5)
    assert torch.allclose(fused.linear_gelu(x.bfloat16(), w.bfloat16(), b.bfloat16()).float(), plain,
                          atol=0.05, rtol=0.02)
    assert flops(lambda: fused.linear_gelu(x, w, b)) == flops(lambda: F.linear(x, w, b)) > 0


@pytest.mark.parametrize("stride", [1, 2])
def test_depthwise_conv_gelu_equals_plain(stride):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 16, 9, 10, generator=g).contiguous(memory_format=torch.channels_last)
    w, b = torch.randn(16, 1, 3, 3, generator=g), torch.randn(16, generator=g)
    plain = F.gelu(F.conv2d(x, w, b, stride, 1, groups=16))
    ours = fused.conv_gelu(x, w, b, stride, 1, 16)
    assert ours.shape == plain.shape
    assert torch.allclose(ours, plain, atol=2e-6, rtol=1e-5)
    assert flops(lambda: fused.conv_gelu(x, w, b, stride, 1, 16)) == flops(lambda: F.conv2d(x, w, b, stride, 1, groups=16))


def test_plain_path_where_fusion_is_unavailable(monkeypatch):
    monkeypatch.setattr(fused, "_fused", lambda x: False)
    x, w = torch.randn(3, 8), torch.randn(5, 8)
    assert torch.equal(fused.linear_gelu(x, w, None), F.gelu(F.linear(x, w)))
