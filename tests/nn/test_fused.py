"""Fused linear/convolution + GELU (``dtseg.nn.fused``): same results and same FLOP count as
the plain calls."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from dtseg.nn import fused
from tests.similarity import cosine


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
    plain_flops = flops(lambda: F.conv2d(x, w, b, stride, 1, groups=16))
    assert flops(lambda: fused.conv_gelu(x, w, b, stride, 1, 16)) == plain_flops > 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_plain_path_where_the_cpu_lacks_the_kernel(no_onednn_kernels, dtype):
    """Each kernel is probed once per precision (then the answer is cached) and the plain ops run."""
    g = torch.Generator().manual_seed(2)
    x, w, b = torch.randn(3, 8, generator=g).to(dtype), torch.randn(5, 8, generator=g).to(dtype), None
    assert torch.equal(fused.linear_gelu(x, w, b), F.gelu(F.linear(x, w, b)))
    assert torch.equal(fused.linear(x, w, b), F.linear(x, w, b))
    image = torch.randn(1, 4, 5, 6, generator=g).to(dtype).contiguous(memory_format=torch.channels_last)
    kernel = torch.randn(4, 1, 3, 3, generator=g).to(dtype)
    assert torch.equal(fused.conv_gelu(image, kernel, None, 1, 1, 4),
                       F.gelu(F.conv2d(image, kernel, None, 1, 1, groups=4)))
    fused.linear_gelu(x, w, b), fused.conv_gelu(image, kernel, None, 1, 1, 4)
    assert no_onednn_kernels == [("linear", dtype), ("conv", dtype)]  # one probe each, none per call
    assert not fused.kernel_runs("linear", dtype) and not fused.kernel_runs("conv", dtype)


def test_a_kernel_with_wrong_results_is_not_used(monkeypatch):
    """The probe checks the kernel's result against the plain ops, not only that it runs."""
    monkeypatch.setattr(torch.ops.mkldnn, "_linear_pointwise",
                        lambda x, w, *args: torch.zeros(len(x), len(w), dtype=x.dtype))
    fused.kernel_runs.cache_clear()
    try:
        assert not fused.kernel_runs("linear", torch.bfloat16)
    finally:
        fused.kernel_runs.cache_clear()


def test_probe_agrees_with_the_kernels():
    """On this CPU: the probe says yes exactly where oneDNN's kernels run (fp32 everywhere
    oneDNN is; bf16 on AVX-512/AMX; fp16 on AVX512-FP16/AMX-FP16)."""
    x = torch.randn(4, 16)
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        try:
            torch.ops.mkldnn._linear_pointwise(x.to(dtype), x[:8].to(dtype), None, "none", [], "")
            runs = True
        except RuntimeError:
            runs = False
        assert fused.kernel_runs("linear", dtype) is runs, dtype
    with pytest.raises(ValueError, match="kernel: expected one of"):
        fused.kernel_runs("matmul", torch.float32)



@pytest.mark.parametrize("with_bias", [False, True])
def test_low_precision_attention_matches_sdpa(with_bias):
    """Per head, three query chunks (700 queries), on strided views of one qkv tensor."""
    g = torch.Generator().manual_seed(3)
    qkv = torch.randn(2, 700, 3, 3, 24, generator=g)  # (n, L, q/k/v, heads, d)
    q, k, v = qkv.unbind(2)
    bias = torch.randn(1, 3, 700, 700, generator=g) if with_bias else None
    ref = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                         attn_mask=bias, scale=0.3).transpose(1, 2)
    q16, k16, v16 = qkv.bfloat16().unbind(2)
    ours = fused.attention(q16, k16, v16, 0.3, None if bias is None else bias.bfloat16())
    assert ours.shape == ref.shape and ours.dtype == torch.bfloat16
    assert cosine(ours, ref) >= 0.999
    assert torch.allclose(fused.attention(q, k, v, 0.3, bias), ref, atol=1e-6)  # fp32: SDPA itself


def test_linear_equals_plain_in_each_precision():
    g = torch.Generator().manual_seed(4)
    x, w, b = torch.randn(3, 50, 24, generator=g), torch.randn(40, 24, generator=g), torch.randn(40, generator=g)
    assert torch.equal(fused.linear(x, w, b), F.linear(x, w, b))  # fp32: the plain call itself
    low = fused.linear(x.bfloat16(), w.bfloat16(), b.bfloat16())
    assert low.dtype == torch.bfloat16 and low.shape == (3, 50, 40)
    assert cosine(low, F.linear(x, w, b)) >= 0.999
    assert flops(lambda: fused.linear(x.bfloat16(), w.bfloat16(), None)) == flops(lambda: F.linear(x, w)) > 0


@pytest.mark.parametrize("shape,ws", [((2, 14, 21, 3), 7), ((1, 16, 13, 4), 8), ((1, 13, 16, 4), 8),
                                      ((2, 9, 11, 5), 4), ((1, 3, 3, 2), 7)])
def test_window_partition_equals_pad_then_partition(shape, ws):
    """One pass vs padding first, then transpose + reshape (as segment-anything's
    ``window_partition`` does): whole windows, padding in rows only, columns only, both, and a
    map smaller than one window; ``window_unpartition`` gives the map back."""
    g = torch.Generator().manual_seed(5)
    x, pad = torch.randn(shape, generator=g), torch.randn(shape[-1], generator=g)
    B, H, W, D = shape
    Hp, Wp = -(-H // ws) * ws, -(-W // ws) * ws
    padded = pad.expand(B, Hp, Wp, D).clone()
    padded[:, :H, :W] = x
    expected = padded.view(B, Hp // ws, ws, Wp // ws, ws, D).transpose(2, 3).reshape(-1, ws, ws, D)
    windows = fused.window_partition(x, ws, pad)
    assert torch.equal(windows, expected)
    assert torch.equal(fused.window_unpartition(windows, B, H, W), x)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_bias_mask_equals_the_broadcast_add(dtype):
    g = torch.Generator().manual_seed(9)
    rel_h, rel_w = torch.randn(2, 3, 5, 7, 7, generator=g).to(dtype), torch.randn(2, 3, 5, 7, 9, generator=g).to(dtype)
    out = torch.empty(2, 3, 5, 7, 7, 9, dtype=dtype)
    fused.bias_mask(rel_h, rel_w, out=out)
    assert torch.equal(out, rel_h[..., :, None] + rel_w[..., None, :])  # exact, not just close


@pytest.mark.parametrize("chunk_bytes", [1, 3 * 4 * 32 * 32 * 32 * 2 * 3, 1 << 30])  # 1 row, 3 rows (32 % 3 != 0), all
def test_rel_pos_attention_matches_fp32_sdpa(chunk_bytes):
    """bf16 attention with SAM's decomposed rel-pos bias, in row chunks, against fp32 SDPA with
    the bias as its mask."""
    g = torch.Generator().manual_seed(8)
    B, heads, h, w, d = 1, 4, 32, 32, 16
    q, k, v = (torch.randn(B, heads, h * w, d, generator=g) for _ in range(3))
    rel_h, rel_w = torch.randn(B, heads, h, w, h, generator=g), torch.randn(B, heads, h, w, w, generator=g)
    mask = (rel_h[..., :, None] + rel_w[..., None, :]).reshape(B, heads, h * w, h * w)
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=d**-0.5).transpose(1, 2)
    out = fused.rel_pos_attention(*(t.to(torch.bfloat16) for t in (q, k, v, rel_h, rel_w)), d**-0.5, chunk_bytes)
    assert out.shape == (B, h, w, heads * d) and out.dtype == torch.bfloat16
    assert cosine(out.reshape(B, h * w, heads, d), expected) >= 0.999
    assert (out.float().reshape(B, h * w, heads, d) - expected).abs().max() < 0.05


def test_fp16_takes_the_plain_ops():
    """oneDNN's fp16 kernels need AVX512-FP16/AVX-NE-CONVERT: fp16 must not reach them."""
    g = torch.Generator().manual_seed(6)
    x, w, b = torch.randn(4, 6, 8, generator=g), torch.randn(12, 8, generator=g), torch.randn(12, generator=g)
    ours = fused.linear_gelu(x.half(), w.half(), b.half())
    assert ours.dtype == torch.float16
    assert torch.equal(ours, F.gelu(F.linear(x.half(), w.half(), b.half())))
    conv = fused.conv_gelu(x[None].half(), torch.randn(4, 1, 3, 3, generator=g).half(), None, 1, 1, 4)
    assert conv.dtype == torch.float16 and conv.shape == (1, 4, 6, 8)
