"""A faster forward pass for MobileSAM's TinyViT image encoder, numerically equivalent in fp32.

``FastTinyViT`` wraps a TinyViT (ultralytics' ``tiny_encoder.TinyViT``) whose ``Conv2d_BN``
layers were folded into plain convolutions (``fold_batch_norms``) and shares its parameters;
only the forward pass differs from ``TinyViT.forward``:

* one layout throughout: tokens ``(B, H, W, C)`` contiguous, which is also channels-last for
  the convolutions (1x1 convolutions run as ``F.linear``, depthwise ones on the channels-last
  view, where oneDNN has a vectorized kernel; the reference's NCHW depthwise kernel is 2-4x
  slower);
* the convolution stage (MBConv at 256x256 with 4x expansion) and the first patch merging run
  a band of rows at a time (a one-row halo for the 3x3 depthwise convolution): the expanded
  hidden map is never whole, so each band is small enough for malloc to recycle its memory
  (a whole 256x256x256 map is a fresh ``mmap`` per op, and its page faults cost as much as
  the op) and stays in cache between the ops;
* window attention with the attention-bias table as an additive mask (gathered once per
  dtype; ``fused.attention``: SDPA in fp32, per-head matmuls in bf16), ``qkv`` on the real
  tokens only, windows cut and padded in one copy; padded tokens get exactly what the
  reference computes for its zero padding, ``qkv(norm(0))``;
* linear/convolution + GELU as one oneDNN call where available (``fused``).

The wrapped encoder may hold bf16 weights (``fast_tinyvit(..., dtype=torch.bfloat16)``): the
whole pass then runs in bf16 without autocast's per-call casts; layer norms, softmax and
GELU accumulate in fp32 inside their kernels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dtseg.nn import RefModule
from dtseg.nn.fused import attention, conv_gelu, linear, linear_gelu, window_partition, window_unpartition

__all__ = ["FastTinyViT", "fast_tinyvit"]

#: Bytes of one band of the expanded hidden map in the convolution stage.
BAND_BYTES = 4 << 20


class FastTinyViT(nn.Module):
    """TinyViT forward pass in token layout; shares ``encoder``'s parameters.

    ``encoder``: a TinyViT with its batch norms folded (every ``Conv2d_BN`` an ``nn.Conv2d``).
    ``forward``: ``(B, 3, S, S)`` normalized input (any float dtype; cast to the weights')
    -> ``(B, 256, S/16, S/16)`` in the weights' dtype.
    """

    def __init__(self, encoder: nn.Module, band_bytes: int = BAND_BYTES) -> None:
        super().__init__()
        self.encoder: RefModule = encoder  # the reference TinyViT, read by its parts' names
        self.band_bytes = band_bytes
        self._biases: dict[tuple[int, torch.dtype], Tensor] = {}

    def forward(self, x: Tensor) -> Tensor:
        dtype = self.encoder.patch_embed.seq[0].weight.dtype
        with torch.autocast(x.device.type, enabled=False):  # the weights' dtype throughout
            return self._forward(x.to(dtype))

    def _forward(self, x: Tensor) -> Tensor:
        enc = self.encoder
        stem1, _, stem2 = enc.patch_embed.seq
        x = x.contiguous(memory_format=torch.channels_last)
        x = conv_gelu(x, stem1.weight, stem1.bias, stem1.stride[0], stem1.padding[0], stem1.groups)
        x = stem2(x).permute(0, 2, 3, 1).contiguous()  # (B, S/4, S/4, C0) tokens
        conv_layer = enc.layers[0]
        for block in conv_layer.blocks:
            x = self._mbconv(block, x)
        x = self._patch_merging(conv_layer.downsample, x)
        for layer in enc.layers[1:]:
            for block in layer.blocks:
                x = self._vit_block(block, x)
            if layer.downsample is not None:
                x = self._patch_merging(layer.downsample, x)
        return self._neck(enc.neck, x)

    # -- convolution stage ------------------------------------------------------------------
    def _bands(self, rows: int, width: int, channels: int, element_size: int) -> list[tuple[int, int]]:
        """Output-row bands ``[r0, r1)`` covering ``rows`` so that ``band x width x channels``
        elements take about ``band_bytes``."""
        per_row = max(1, width * channels * element_size)
        step = max(1, min(rows, self.band_bytes // per_row))
        return [(r, min(r + step, rows)) for r in range(0, rows, step)]

    @staticmethod
    def _expand_depthwise(x: Tensor, expand: nn.Conv2d, depthwise: nn.Conv2d, r0: int, r1: int) -> Tensor:
        """``gelu(depthwise(gelu(expand(x))))`` for output rows ``[r0, r1)``: ``x`` ``(B, H, W, C)``
        -> ``(B, r1 - r0, W', D)``. ``expand`` is 1x1, ``depthwise`` 3x3 with padding 1 and
        stride 1 or 2; only the input rows those outputs read are expanded."""
        s, H = depthwise.stride[0], x.shape[1]
        lo, hi = max(r0 * s - s, 0), min((r1 - 1) * s + 2, H)  # lo is a multiple of s: centres align
        h = linear_gelu(x[:, lo:hi], expand.weight[:, :, 0, 0], expand.bias)
        h = conv_gelu(h.permute(0, 3, 1, 2), depthwise.weight, depthwise.bias, s, 1, depthwise.groups)
        first = (r0 * s - lo) // s
        return h[:, :, first : first + r1 - r0].permute(0, 2, 3, 1)

    def _mbconv(self, block: RefModule, x: Tensor) -> Tensor:
        """``act3(x + conv3(act2(conv2(act1(conv1(x))))))`` on tokens ``(B, H, W, C)``."""
        _B, H, W, _C = x.shape
        out = torch.empty_like(x)
        for r0, r1 in self._bands(H, W, block.hidden_chans, x.element_size()):
            h = self._expand_depthwise(x, block.conv1, block.conv2, r0, r1)
            y = linear(h, block.conv3.weight[:, :, 0, 0], block.conv3.bias)
            out[:, r0:r1] = F.gelu(y.add_(x[:, r0:r1]))
        return out

    def _patch_merging(self, merge: RefModule, x: Tensor) -> Tensor:
        """``conv3(act(conv2(act(conv1(x)))))``: ``(B, H, W, C)`` -> ``(B, H', W', C')``
        (H' = H / 2, or H where the stride is 1)."""
        B, H, W, _C = x.shape
        s, D = merge.conv2.stride[0], merge.conv1.out_channels
        Ho, Wo = (H - 1) // s + 1, (W - 1) // s + 1
        out = x.new_empty(B, Ho, Wo, merge.conv3.out_channels)
        for r0, r1 in self._bands(Ho, W * s, D, x.element_size()):
            h = self._expand_depthwise(x, merge.conv1, merge.conv2, r0, r1)
            out[:, r0:r1] = linear(h, merge.conv3.weight[:, :, 0, 0], merge.conv3.bias)
        return out

    # -- attention stages -------------------------------------------------------------------
    def _bias(self, attn: RefModule, dtype: torch.dtype) -> Tensor:
        """The attention-bias table gathered to ``(1, heads, N, N)`` in ``dtype`` (cached; 4-D, as
        SDPA's CPU flash kernel takes it: a 3-D mask falls back to the ~2x slower math path)."""
        key = (id(attn), dtype)
        if key not in self._biases:
            self._biases[key] = attn.attention_biases[:, attn.attention_bias_idxs][None].detach().to(dtype)
        return self._biases[key]

    def _vit_block(self, block: RefModule, x: Tensor) -> Tensor:
        """Window attention, residual, 3x3 depthwise ``local_conv``, MLP with residual, on
        tokens ``(B, H, W, C)``."""
        attn, ws = block.attn, block.window_size
        B, H, W, C = x.shape
        qkv = linear(attn.norm(x), attn.qkv.weight, attn.qkv.bias)  # (B, H, W, heads * (2 key_dim + d))
        if (ws, ws) != (H, W):  # one window of the whole map otherwise, as in the reference
            pad = attn.qkv(attn.norm(x.new_zeros(1, C)))[0]
            qkv = window_partition(qkv, ws, pad_value=pad)
        n, heads = qkv.shape[0], attn.num_heads
        q, k, v = qkv.view(n, ws * ws, heads, -1).split([attn.key_dim, attn.key_dim, attn.d], dim=3)
        o = attention(q, k, v, attn.scale, self._bias(attn, q.dtype)).reshape(n, ws, ws, attn.dh)
        if (ws, ws) != (H, W):
            o = window_unpartition(o, B, H, W)
        x = x + linear(o, attn.proj.weight, attn.proj.bias)
        conv = block.local_conv
        x = F.conv2d(x.permute(0, 3, 1, 2), conv.weight, conv.bias, 1, conv.padding, groups=conv.groups)
        x = x.permute(0, 2, 3, 1)
        mlp = block.mlp
        return x + linear(linear_gelu(mlp.norm(x), mlp.fc1.weight, mlp.fc1.bias), mlp.fc2.weight, mlp.fc2.bias)

    # -- neck -------------------------------------------------------------------------------
    @staticmethod
    def _neck(neck: RefModule, x: Tensor) -> Tensor:
        """1x1 conv, LayerNorm2d, 3x3 conv, LayerNorm2d: ``(B, h, w, C)`` -> ``(B, 256, h, w)``."""
        conv1, norm1, conv2, norm2 = neck
        x = F.layer_norm(linear(x, conv1.weight[:, :, 0, 0], conv1.bias), norm1.weight.shape,
                         norm1.weight, norm1.bias, norm1.eps)
        x = conv2(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        x = F.layer_norm(x, norm2.weight.shape, norm2.weight, norm2.bias, norm2.eps)
        return x.permute(0, 3, 1, 2).contiguous()


def fast_tinyvit(folded: nn.Module, dtype: torch.dtype | None = None) -> FastTinyViT:
    """The fast forward pass over ``folded`` (a batch-norm-folded TinyViT copy), its weights
    cast in place to ``dtype`` first when given (the copy is the engine's own)."""
    if dtype is not None:
        folded.to(dtype)
    return FastTinyViT(folded)
