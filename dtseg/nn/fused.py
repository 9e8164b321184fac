"""CPU compute shared by the image encoders: linear/convolution + GELU as one oneDNN call
(TinyViT, Hiera), softmax attention for low precision (``attention`` with a dense bias for
TinyViT's and Hiera's windows; ``rel_pos_attention`` with SAM ViT's decomposed rel-pos bias,
written in place), and the window partition every windowed encoder uses.

``torch.ops.mkldnn._linear_pointwise`` / ``_convolution_pointwise`` apply the exact (erf)
GELU to the output while it is still in cache: in bf16 a separate GELU pass over an expanded
map costs as much as its matmul (measured 2x faster together for TinyViT's 64->256 and
160->640 expansions). Elsewhere (no oneDNN, other devices) the two plain calls run instead;
results agree to rounding (fp32: <= 2e-6, tested in the encoders' parity tests).

Whether oneDNN has a kernel in a precision depends on the CPU (bf16 needs AVX-512 BW/VL/DQ,
AVX-NE-CONVERT or AMX; fp16 AVX512-FP16, AVX-NE-CONVERT or AMX-FP16): ``kernel_runs`` tries
each fused kernel once per precision on a tiny input and caches the answer for the process;
where it fails, the plain ops run (ATen's own kernels, emulated in low precision).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["attention", "bias_mask", "conv_gelu", "kernel_runs", "linear", "linear_gelu", "rel_pos_attention",
           "window_partition", "window_unpartition"]

#: Query rows per chunk of ``attention`` (bounds the score matrix to chunk x keys per head).
QUERY_CHUNK = 256
#: The fused oneDNN kernels, by the name ``kernel_runs`` takes.
KERNELS = ("linear", "conv")


@functools.cache
def kernel_runs(kernel: str, dtype: torch.dtype) -> bool:
    """Whether oneDNN's fused ``kernel`` (``linear``: ``_linear_pointwise``; ``conv``:
    ``_convolution_pointwise``) runs in ``dtype`` on this CPU and gives the plain ops' result:
    tried once on a tiny input of small integers (exact in every precision), cached per process.
    A CPU without the kernel raises oneDNN's or torch's error: that answer is ``False``."""
    if kernel not in KERNELS:
        raise ValueError(f"kernel: expected one of {KERNELS}, got {kernel!r}")
    mkldnn = torch.ops.mkldnn
    if not torch.backends.mkldnn.is_available() or not hasattr(mkldnn, "_linear_pointwise"):
        return False
    g = torch.Generator().manual_seed(0)
    if kernel == "linear":
        x, w, b = (torch.randint(-3, 4, shape, generator=g).float() for shape in ((4, 16), (8, 16), (8,)))
        expected = F.gelu(F.linear(x, w, b))
        def run() -> Tensor:
            return mkldnn._linear_pointwise(x.to(dtype), w.to(dtype), b.to(dtype), "gelu", [], "none")
    else:
        x = torch.randint(-3, 4, (1, 8, 6, 6), generator=g).float().contiguous(memory_format=torch.channels_last)
        w, b = torch.randint(-1, 2, (8, 1, 3, 3), generator=g).float(), torch.randint(-3, 4, (8,), generator=g).float()
        expected = F.gelu(F.conv2d(x, w, b, 1, 1, groups=8))
        def run() -> Tensor:
            return mkldnn._convolution_pointwise(x.to(dtype), w.to(dtype), b.to(dtype), [1, 1], [1, 1], [1, 1],
                                                            8, "gelu", [], "none")
    try:
        with torch.inference_mode():
            out = run()
    except (RuntimeError, NotImplementedError):  # no primitive for this CPU and precision
        return False
    return out.dtype == dtype and torch.allclose(out.float(), expected, atol=0.05, rtol=0.02)


def _fused(x: Tensor, kernel: str) -> bool:
    """Whether oneDNN's fused ``kernel`` serves ``x``: on the CPU, in a precision the CPU has the
    kernel for (``kernel_runs``), not while tracing for ``torch.compile``."""
    return (x.device.type == "cpu" and x.dtype in (torch.float32, torch.bfloat16, torch.float16)
            and not torch.compiler.is_compiling() and kernel_runs(kernel, x.dtype))


def linear(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """``F.linear``; in bf16/fp16 on the CPU through oneDNN with the bias fused (``addmm`` first
    copies the bias into its output: ~10% of a bf16 linear here). fp32 stays on MKL's sgemm."""
    if x.dtype != torch.float32 and _fused(x, "linear"):
        return torch.ops.mkldnn._linear_pointwise(x.contiguous(), weight, bias, "none", [], "")
    return F.linear(x, weight, bias)


def linear_gelu(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """``gelu(F.linear(x, weight, bias))``; ``x`` ``(..., in)`` -> ``(..., out)``."""
    if _fused(x, "linear"):
        return torch.ops.mkldnn._linear_pointwise(x.contiguous(), weight, bias, "gelu", [], "none")
    return F.gelu(F.linear(x, weight, bias))


def conv_gelu(x: Tensor, weight: Tensor, bias: Tensor | None, stride: int, padding: int, groups: int) -> Tensor:
    """``gelu(F.conv2d(x, weight, bias, stride, padding, groups=groups))`` on ``(B, C, H, W)``
    (channels-last in, channels-last out)."""
    if _fused(x, "conv"):
        return torch.ops.mkldnn._convolution_pointwise(x, weight, bias, [padding] * 2, [stride] * 2, [1, 1],
                                                       groups, "gelu", [], "none")
    return F.gelu(F.conv2d(x, weight, bias, stride, padding, groups=groups))


def attention(q: Tensor, k: Tensor, v: Tensor, scale: float, bias: Tensor | None = None) -> Tensor:
    """Softmax attention, token-major: ``q`` ``(n, Lq, heads, d)``, ``k``/``v`` ``(n, L, heads, d)``
    (strided views of a qkv projection are fine) -> ``(n, Lq, heads, d)``; ``bias``: additive
    ``(1, heads, Lq, L)`` or ``None``.

    fp32 (and any non-CPU device): SDPA. bf16/fp16 on the CPU: per head and per chunk of
    ``QUERY_CHUNK`` queries, ``bmm`` -> softmax -> ``bmm`` (queries straight from the strided
    views, each head's keys/values packed once): on
    this CPU 25-35% faster than the flash kernel for TinyViT's/Hiera's 16-196-token windows and
    ~40% faster for Hiera's 4096-token global attention (the flash kernel runs far below the
    bf16 matmul rate)."""
    if q.dtype == torch.float32 or q.device.type != "cpu":  # GPUs: their fused kernels
        o = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                           attn_mask=bias, scale=scale)
        return o.transpose(1, 2)
    n, Lq, heads, _ = q.shape
    out = v.new_empty(n, Lq, heads, v.shape[-1])
    for h in range(heads):
        # each head's keys/values packed once: bmm would copy a strided operand on every chunk
        kt, vh = k[:, :, h].contiguous().transpose(1, 2), v[:, :, h].contiguous()
        qh = q[:, :, h] * scale if bias is None else q[:, :, h]  # scaling q: L/d times fewer products than the scores
        for c in range(0, Lq, QUERY_CHUNK):
            rows = slice(c, c + QUERY_CHUNK)
            if bias is None:
                scores = torch.bmm(qh[:, rows], kt)
            else:
                scores = torch.baddbmm(bias[0, h, rows].expand(n, -1, -1), qh[:, rows], kt, alpha=scale)
            out[:, rows, h] = torch.bmm(scores.softmax(-1), vh)
    return out


def window_partition(x: Tensor, ws: int, pad_value: Tensor) -> Tensor:
    """``(B, H, W, D)`` -> ``(B * nH * nW, ws, ws, D)`` windows in one pass over the data (the
    ``pad + transpose + reshape`` of the reference modules writes it twice); padding tokens,
    bottom and right, are ``pad_value`` ``(D,)``. Undone by ``window_unpartition``."""
    B, H, W, D = x.shape
    fh, fw = H // ws, W // ws  # whole windows
    rh, rw = H - fh * ws, W - fw * ws  # real rows/columns of the last, partial windows
    nH, nW = fh + (rh > 0), fw + (rw > 0)
    out = x.new_empty(B, nH, nW, ws, ws, D)
    grid = out.permute(0, 1, 3, 2, 4, 5)  # (B, nH, ws, nW, ws, D): image order
    grid[:, :fh, :, :fw] = x[:, : fh * ws, : fw * ws].view(B, fh, ws, fw, ws, D)
    if rh:
        grid[:, fh, :rh, :fw] = x[:, fh * ws :, : fw * ws].view(B, rh, fw, ws, D)
        grid[:, fh, rh:] = pad_value
    if rw:
        grid[:, :fh, :, fw, :rw] = x[:, : fh * ws, fw * ws :].view(B, fh, ws, rw, D)
        grid[:, :, :, fw, rw:] = pad_value
    if rh and rw:
        grid[:, fh, :rh, fw, :rw] = x[:, fh * ws :, fw * ws :]
    return out.view(B * nH * nW, ws, ws, D)


def window_unpartition(windows: Tensor, B: int, H: int, W: int) -> Tensor:
    """``(B * nH * nW, ws, ws, D)`` -> contiguous ``(B, H, W, D)``, dropping the padding."""
    ws, D = windows.shape[1], windows.shape[-1]
    nH, nW = math.ceil(H / ws), math.ceil(W / ws)
    x = windows.view(B, nH, nW, ws, ws, D).transpose(2, 3).reshape(B, nH * ws, nW * ws, D)
    # contiguous: a linear on the cropped view became a batched matmul with the weight copied
    # per row of windows under bf16 autocast (~0.3 s per vit_b image)
    return x[:, :H, :W].contiguous() if (nH * ws, nW * ws) != (H, W) else x


def bias_mask(rel_h: Tensor, rel_w: Tensor, out: Tensor) -> None:
    """``out[..., ky, kx] = rel_h[..., ky] + rel_w[..., kx]``: ``rel_h`` ``(..., h)``, ``rel_w``
    ``(..., w)``, ``out`` ``(..., h, w)``. In bf16/fp16 as a matmul with an inner dimension of 2,
    ``[rel_h, 1] @ [1; rel_w]`` (exact: the sum is formed in fp32 and rounded once, as the add
    does): bf16 broadcast adds ran ~3x slower on the CPU than this; in fp32 the add is faster."""
    if out.dtype == torch.float32:
        torch.add(rel_h[..., :, None], rel_w[..., None, :], out=out)
        return
    torch.matmul(torch.stack([rel_h, torch.ones_like(rel_h)], -1), torch.stack([torch.ones_like(rel_w), rel_w], -2),
                 out=out)


def rel_pos_attention(q: Tensor, k: Tensor, v: Tensor, rel_h: Tensor, rel_w: Tensor, scale: float,
                             chunk_bytes: int) -> Tensor:
    """bf16/fp16 attention with the decomposed rel-pos bias, as explicit GEMMs over a few query
    rows at a time: ``softmax(q k^T * scale + rel_h + rel_w) v``.

    ``q``, ``k``, ``v`` ``(B, heads, h * w, d)``; ``rel_h`` ``(B, heads, h, w, h)``, ``rel_w``
    ``(B, heads, h, w, w)``. Returns ``(B, h, w, heads * d)``. The CPU flash kernel runs bf16 at
    about a third of the bf16 matmul rate; here the two GEMMs run at that rate: the bias is
    written into the score buffer (``bias_mask``) and ``q k^T`` accumulated onto it, and the
    softmax runs in place, on one buffer of ``chunk_bytes`` that stays in cache.
    Scores are rounded to ``q``'s dtype before the softmax (the flash kernel keeps them fp32);
    docs/encoder.md has the mask IoU this costs.
    """
    B, heads, h, w, _ = rel_h.shape
    P, d = h * w, q.shape[-1]
    # keys and values packed once: bmm copied the strided views of the qkv projection on every
    # chunk (vit_b: ~0.1 s per image)
    kt = (k * scale).transpose(-1, -2).contiguous().view(B * heads, d, P)
    v = v.contiguous().view(B * heads, P, d)
    rows = max(1, min(h, chunk_bytes // (B * heads * w * P * q.element_size())))
    scores = q.new_empty(B * heads * rows * w * P)
    out = q.new_empty(B, P, heads, d)
    for y in range(0, h, rows):
        r = min(rows, h - y)
        tokens = slice(y * w, (y + r) * w)
        s = scores[: B * heads * r * w * P].view(B * heads, r * w, P)
        bias_mask(rel_h[:, :, y : y + r], rel_w[:, :, y : y + r], out=s.view(B, heads, r, w, h, w))
        s.baddbmm_(q[:, :, tokens].reshape(B * heads, r * w, d), kt)  # + q k^T, summed in fp32, rounded once
        torch.ops.aten._softmax.out(s, -1, False, out=s)  # row by row: safe in place
        out[:, tokens] = torch.bmm(s, v).view(B, heads, r * w, d).transpose(1, 2)
    return out.view(B, h, w, heads * d)


def _register_flop_formulas() -> None:
    """Count the fused ops as the plain ones they replace, so ``FlopCounterMode`` (the floors
    in ``bench/models.py``) sees the same FLOPs with or without fusion."""
    from math import prod

    from torch.utils.flop_counter import conv_flop_count, flop_registry, register_flop_formula

    mkldnn = torch.ops.mkldnn
    if not hasattr(mkldnn, "_linear_pointwise") or mkldnn._linear_pointwise in flop_registry:
        return

    @register_flop_formula(mkldnn._linear_pointwise)
    def _linear_flop(x_shape: list[int], w_shape: list[int], *args: Any, out_shape: list[int] | None = None,
                     **kwargs: Any) -> int:
        return 2 * prod(x_shape[:-1]) * x_shape[-1] * w_shape[0]

    @register_flop_formula(mkldnn._convolution_pointwise)
    def _conv_flop(x_shape: list[int], w_shape: list[int], *args: Any, out_shape: list[int] | None = None,
                   **kwargs: Any) -> int:
        assert out_shape is not None  # FlopCounterMode passes the output's shape
        return conv_flop_count(x_shape, w_shape, out_shape)


_register_flop_formulas()
