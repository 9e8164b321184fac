"""A faster forward pass for SAM's ViT image encoder, numerically equivalent to the reference.

``FastImageEncoder`` wraps a ``segment_anything.modeling.ImageEncoderViT`` and shares its
parameters; only the forward pass differs from ``ImageEncoderViT.forward``:

* attention runs through ``F.scaled_dot_product_attention`` (flash kernel on CPU) with the
  decomposed relative-position bias as its float ``attn_mask``; the 4096 x 4096 attention
  matrices of the global blocks are never materialized. In bf16/fp16 on the CPU every block
  (global and windowed) runs ``fused.rel_pos_attention`` instead: explicit GEMMs over a few
  query rows at a time, where the flash kernel runs far below the matmul rate;
* the mask is built chunk by chunk over query rows into one reused buffer, so its size stays
  bounded (``mask_chunk_bytes``) and no fresh pages are faulted in per chunk;
* windowed blocks compute the ``qkv`` and ``proj`` linears on the real tokens only (the
  reference runs them on the zero padding too: 4900 instead of 4096 tokens at 1024 px); padded
  keys/values get exactly ``qkv(0)``, as in the reference.

Every layer is called as a module (``attn.qkv(x)``, ``blk.mlp(...)``), so a dynamically
quantized copy (``fast_encoder(..., int8=True)``) runs through the same code.
"""

from __future__ import annotations

import copy
from typing import cast

import torch
import torch.nn.functional as F
from segment_anything.modeling import ImageEncoderViT
from segment_anything.modeling.image_encoder import Attention, Block, get_rel_pos
from torch import Tensor, nn

from dtseg.nn.fused import bias_mask, rel_pos_attention, window_partition, window_unpartition

__all__ = ["FastImageEncoder", "fast_encoder"]


class FastImageEncoder(nn.Module):
    """SAM image encoder forward pass with fused attention; shares ``encoder``'s parameters.

    ``forward``: ``(B, 3, S, S)`` float, normalized and padded as ``Sam.preprocess`` does
    (``S = encoder.img_size``, 1024 for the official models) -> ``(B, 256, S/16, S/16)``.
    ``mask_chunk_bytes`` bounds the attention-mask buffer (bytes, fp32); ``score_chunk_bytes`` the
    score buffer of bf16/fp16 attention (``fused.rel_pos_attention``); they change speed, not results.
    """

    def __init__(self, encoder: ImageEncoderViT, mask_chunk_bytes: int = 192 << 20,
                 score_chunk_bytes: int = 48 << 20) -> None:
        super().__init__()
        self.encoder = encoder
        self.img_size = encoder.img_size
        self.mask_chunk_bytes = mask_chunk_bytes
        self.score_chunk_bytes = score_chunk_bytes

    def forward(self, x: Tensor) -> Tensor:
        enc = self.encoder
        # patch_embed returns a channels-first tensor permuted to (B, H, W, C); made contiguous
        # once here, every residual add, layer norm and linear after it reads memory in order
        x = enc.patch_embed(x).contiguous()  # (B, H, W, C), H = W = S / 16
        if enc.pos_embed is not None:
            x = x + enc.pos_embed
        for block in enc.blocks:
            x = x + self._attention_block(block, block.norm1(x))
            x = x + block.mlp(block.norm2(x))
        return enc.neck(x.permute(0, 3, 1, 2))

    def _attention_block(self, block: Block, x: Tensor) -> Tensor:
        """Windowed or global attention of ``block`` on ``x`` ``(B, H, W, C)`` (already normed)."""
        attn, ws = block.attn, block.window_size
        B, H, W, C = x.shape
        qkv = attn.qkv(x)  # (B, H, W, 3C)
        if ws > 0:
            qkv = window_partition(qkv, ws, pad_value=attn.qkv(x.new_zeros(1, C))[0])
        out = self._attention(attn, qkv)  # (B * windows, h, w, C)
        if ws > 0:
            out = window_unpartition(out, B, H, W)
        return attn.proj(out)

    def _attention(self, attn: Attention, qkv: Tensor) -> Tensor:
        """Multi-head attention with decomposed rel-pos bias: ``qkv`` ``(B, h, w, 3C)`` ->
        ``(B, h, w, C)``. The bias goes to SDPA as its mask, built for a few query rows at a time;
        bf16/fp16 on the CPU: ``fused.rel_pos_attention``."""
        B, h, w, C3 = qkv.shape
        heads, C = attn.num_heads, C3 // 3
        q, k, v = qkv.view(B, h * w, 3, heads, C // heads).permute(2, 0, 3, 1, 4).unbind(0)
        if not attn.use_rel_pos:
            out = F.scaled_dot_product_attention(q, k, v, scale=attn.scale)
            return out.transpose(1, 2).reshape(B, h, w, C)
        q_grid = q.unflatten(2, (h, w))  # (B, heads, h, w, head_dim)
        # contiguous: einsum returns them permuted, and the mask adds broadcast them ~5x faster in order
        rel_h = torch.einsum("bnyxc,ykc->bnyxk", q_grid, get_rel_pos(h, h, attn.rel_pos_h)).contiguous()
        rel_w = torch.einsum("bnyxc,xkc->bnyxk", q_grid, get_rel_pos(w, w, attn.rel_pos_w)).contiguous()
        if torch.compiler.is_compiling():  # inductor plans its own buffers: one chunk, no out=
            mask = (rel_h[..., :, None] + rel_w[..., None, :]).reshape(B, heads, h * w, h * w)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=attn.scale)
            return out.transpose(1, 2).reshape(B, h, w, C)
        if q.dtype != torch.float32 and q.device.type == "cpu":  # the flash kernel is slower in bf16,
            # for the global blocks (291 vs 464 ms) and for the windows (25 vs 34 ms per block)
            return rel_pos_attention(q, k, v, rel_h, rel_w, attn.scale, self.score_chunk_bytes)
        k, v = k.contiguous(), v.contiguous()  # read once per query chunk: in order is ~6% faster
        row_bytes = B * heads * w * h * w * qkv.element_size()
        rows = max(1, min(h, self.mask_chunk_bytes // row_bytes))
        buffer = qkv.new_empty(B * heads * rows * w * h * w)  # reused by every chunk
        out = qkv.new_empty(B, h * w, heads, C // heads)
        for y in range(0, h, rows):
            r = min(rows, h - y)
            mask = buffer[: B * heads * r * w * h * w].view(B, heads, r, w, h, w)
            bias_mask(rel_h[:, :, y : y + r], rel_w[:, :, y : y + r], out=mask)
            tokens = slice(y * w, (y + r) * w)
            chunk = F.scaled_dot_product_attention(
                q[:, :, tokens], k, v, attn_mask=mask.view(B, heads, r * w, h * w), scale=attn.scale
            )
            out[:, tokens] = chunk.transpose(1, 2)
        return out.view(B, h, w, C)


def fast_encoder(image_encoder: ImageEncoderViT, *, compile: bool = False, int8: bool = False) -> nn.Module:
    """The fast forward pass for ``image_encoder`` (``(B, 3, 1024, 1024)`` -> ``(B, 256, 64, 64)``).

    ``int8``: CPU dynamic int8 quantization of the ``nn.Linear`` layers, applied to a deep copy
    (the fp32 ``image_encoder`` stays intact and shared with the rest of SAM). ``compile``:
    wrap in ``torch.compile`` (first call compiles; see docs/encoder.md for what it buys).
    """
    if int8:
        quantized = torch.ao.quantization.quantize_dynamic(
            copy.deepcopy(image_encoder).cpu().float().eval(), {nn.Linear}, dtype=torch.qint8
        )
        module: nn.Module = FastImageEncoder(quantized)
    else:
        module = FastImageEncoder(image_encoder)
    # torch.compile returns an OptimizedModule (an nn.Module); its stub says a callable
    return cast(nn.Module, torch.compile(module)) if compile else module
