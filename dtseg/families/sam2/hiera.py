"""A faster forward pass for SAM 2's image encoder (Hiera trunk + FPN neck + the decoder's
``conv_s0``/``conv_s1`` projections), numerically equivalent in fp32.

``FastSam2Encoder`` wraps a ``sam2`` ``SAM2Base`` and shares its parameters; only the forward
pass differs from ``SAM2Base.forward_image`` + ``_prepare_backbone_features``:

* windowed blocks whose map splits into whole windows run a band of window rows at a time
  (norm, attention, MLP and both residuals): no intermediate is ever the whole 256x256 map,
  so malloc recycles the memory instead of a fresh ``mmap`` and page faults per op, and a
  band stays in cache between ops;
* ``qkv`` on the real tokens only (padded keys/values get ``qkv(0)``, as in the reference),
  ``proj`` after the window un-partition (real tokens only);
* 2x2 query/shortcut max pooling as elementwise maxima of strided views of the tokens;
* attention in bf16/fp16 as per-head, query-chunked ``softmax(q k^T) v`` matmuls
  (``fused.attention``: the CPU flash kernel runs far below the bf16 matmul rate; in fp32 it
  is the faster one and is kept);
* the windowed positional embedding (a bicubic interpolation) computed once per size/dtype;
* the neck skips the position encodings (images do not use them) and folds each 1x1 lateral
  convolution of a level that takes no top-down input into the decoder's ``conv_s0``/``conv_s1``
  after it (two linear maps = one).

With the module cast to bf16 (``fast_sam2_encoder(..., dtype=torch.bfloat16)``) the whole pass
runs in bf16 without autocast's per-call casts.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dtseg.nn import RefModule
from dtseg.nn.fused import attention, linear, linear_gelu, window_partition, window_unpartition

__all__ = ["FastSam2Encoder", "fast_sam2_encoder"]

#: Bytes of one band's largest intermediate (the MLP's hidden tokens).
BAND_BYTES = 4 << 20


class FastSam2Encoder(nn.Module):
    """``SAM2Base`` image features with a faster forward pass; shares ``net``'s parameters
    (``net`` needs ``image_encoder``, ``sam_mask_decoder.conv_s0/conv_s1``, ``no_mem_embed``).

    ``forward``: ``(B, 3, S, S)`` normalized input -> ``(high_res_0, high_res_1, image_embed)``
    ``(B, 32, S/4, S/4)``, ``(B, 64, S/8, S/8)``, ``(B, 256, S/16, S/16)`` (official models),
    in the weights' dtype; ``image_embed`` has ``no_mem_embed`` added as the predictor does.
    """

    def __init__(self, net: RefModule, band_bytes: int = BAND_BYTES) -> None:
        super().__init__()
        self.net: RefModule = net  # the reference SAM 2, read by its parts' names
        self.band_bytes = band_bytes
        self._pos: dict[tuple[int, int, torch.dtype], Tensor] = {}
        self._folded: dict[int, tuple[Tensor, Tensor]] = {}

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        trunk = self.net.image_encoder.trunk
        dtype = trunk.patch_embed.proj.weight.dtype
        with torch.autocast(x.device.type, enabled=False):  # the weights' dtype throughout
            return self._forward(x.to(dtype))

    def _forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        trunk = self.net.image_encoder.trunk
        x = trunk.patch_embed.proj(x.contiguous(memory_format=torch.channels_last)).permute(0, 2, 3, 1)
        x = x + self._pos_embed(trunk, x.shape[1], x.shape[2], x.dtype)  # (B, H, W, C) contiguous
        stages = []
        for i, block in enumerate(trunk.blocks):
            x = self._block(block, x)
            if i in trunk.stage_ends:
                stages.append(x)
        return self._neck(stages)

    def _pos_embed(self, trunk: RefModule, h: int, w: int, dtype: torch.dtype) -> Tensor:
        """``Hiera._get_pos_embed`` ``(1, h, w, C)``, computed once per size and dtype."""
        key = (h, w, dtype)
        if key not in self._pos:
            with torch.autocast("cpu", enabled=False):
                pos = trunk._get_pos_embed((h, w)).detach()
            self._pos[key] = pos.to(dtype).contiguous()
        return self._pos[key]

    # -- trunk ------------------------------------------------------------------------------
    def _block(self, block: RefModule, x: Tensor) -> Tensor:
        """One ``MultiScaleBlock`` on tokens ``(B, H, W, C)``; banded where windows allow."""
        B, H, W, _ = x.shape
        ws = block.window_size
        if ws <= 0 or H % ws or W % ws:
            return self._block_rows(block, x)
        s = block.q_stride[0] if block.q_stride else 1
        row_bytes = W * 4 * block.dim_out * x.element_size() // (s * s)
        band = ws * max(1, self.band_bytes // max(1, row_bytes * ws))
        if band >= H:
            return self._block_rows(block, x)
        out = x.new_empty(B, H // s, W // s, block.dim_out)
        for r in range(0, H, band):
            out[:, r // s : (r + band) // s] = self._block_rows(block, x[:, r : r + band])
        return out

    def _block_rows(self, block: RefModule, x: Tensor) -> Tensor:
        """``MultiScaleBlock.forward`` on ``x`` ``(B, h, W, C)`` (whole windows, or the whole map)."""
        attn, ws = block.attn, block.window_size
        B, _H, _W, C = x.shape
        xn = block.norm1(x)
        shortcut = x
        if block.dim != block.dim_out:
            shortcut = _max_pool(linear(xn, block.proj.weight, block.proj.bias), block.q_stride)
        qkv = linear(xn, attn.qkv.weight, attn.qkv.bias)  # (B, H, W, 3 D)
        if ws > 0:
            qkv = window_partition(qkv, ws, pad_value=attn.qkv(xn.new_zeros(1, C))[0])
        n, h, w, _ = qkv.shape
        heads = attn.num_heads
        q, k, v = qkv.reshape(n, h * w, 3, heads, -1).unbind(2)  # (n, L, heads, hd)
        if block.q_stride:
            q = _max_pool(q.reshape(n, h, w, -1), block.q_stride)
            h, w = q.shape[1:3]
            q = q.reshape(n, h * w, heads, -1)
        o = attention(q, k, v, q.shape[-1] ** -0.5).reshape(n, h, w, -1)  # (n, h, w, D)
        if ws > 0:
            Ho, Wo = shortcut.shape[1:3]
            o = window_unpartition(o, B, Ho, Wo)
        x = shortcut + linear(o, attn.proj.weight, attn.proj.bias)
        mlp = block.mlp
        exact_gelu = type(mlp.act) is nn.GELU and mlp.act.approximate == "none"
        if mlp.num_layers == 2 and exact_gelu and not mlp.sigmoid_output:
            hidden = linear_gelu(block.norm2(x), mlp.layers[0].weight, mlp.layers[0].bias)
            return x + linear(hidden, mlp.layers[1].weight, mlp.layers[1].bias)
        return x + mlp(block.norm2(x))

    # -- neck + SAM heads' projections -------------------------------------------------------
    def _neck(self, stages: list[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """``FpnNeck`` (without position encodings), the scalp, ``conv_s0``/``conv_s1`` and
        ``no_mem_embed``: stage tokens ``(B, h_i, w_i, C_i)`` -> the three feature maps."""
        net = self.net
        neck, scalp = net.image_encoder.neck, net.image_encoder.scalp
        decoder = net.sam_mask_decoder
        n = len(neck.convs) - 1
        kept = list(range(len(neck.convs) - scalp))  # levels that leave the neck
        heads = {0: decoder.conv_s0, 1: decoder.conv_s1} if net.use_high_res_features_in_sam else {}
        out: dict[int, Tensor] = {}
        prev: Tensor | None = None
        for i in range(n, -1, -1):
            conv = neck.convs[n - i].conv
            top_down = i in neck.fpn_top_down_levels and prev is not None
            if i in heads and not top_down and (i == 0 or i - 1 not in neck.fpn_top_down_levels):
                weight, bias = self._fold(conv, heads[i])  # nobody reads this level's neck output
                out[i] = linear(stages[i], weight, bias)
                prev = None
                continue
            lateral = linear(stages[i], conv.weight[:, :, 0, 0], conv.bias)
            if top_down:
                assert prev is not None  # top_down implies it
                up = _upsample2x(prev, neck.fpn_interp_model)
                prev = lateral + up
                if neck.fuse_type == "avg":
                    prev = prev / 2
            else:
                prev = lateral
            out[i] = linear(prev, heads[i].weight[:, :, 0, 0], heads[i].bias) if i in heads else prev
        maps = [out[i] for i in kept][-net.num_feature_levels:]
        maps[-1] = maps[-1] + net.no_mem_embed.view(-1) if net.directly_add_no_mem_embed else maps[-1]
        return tuple(m.permute(0, 3, 1, 2).contiguous() for m in maps)  # type: ignore[return-value]

    def _fold(self, lateral: nn.Conv2d, head: nn.Conv2d) -> tuple[Tensor, Tensor]:
        """``head(lateral(x))`` of two 1x1 convolutions as one ``(weight, bias)`` (folded in fp32)."""
        key = id(head)
        if key not in self._folded:
            assert lateral.bias is not None and head.bias is not None  # SAM 2's 1x1 convolutions have biases
            w1, b1 = lateral.weight[:, :, 0, 0].float(), lateral.bias.float()
            w2, b2 = head.weight[:, :, 0, 0].float(), head.bias.float()
            dtype = lateral.weight.dtype
            self._folded[key] = ((w2 @ w1).to(dtype), (w2 @ b1 + b2).to(dtype))
        return self._folded[key]


def _max_pool(x: Tensor, stride: tuple[int, int] | None) -> Tensor:
    """``MaxPool2d(stride, stride)`` (floor mode) on tokens ``(B, H, W, C)``."""
    if not stride:
        return x
    sh, sw = stride
    H, W = x.shape[1] // sh * sh, x.shape[2] // sw * sw
    cells = [x[:, i:H:sh, j:W:sw] for i in range(sh) for j in range(sw)]  # strided views, no copy
    out = torch.maximum(cells[0], cells[1]) if len(cells) > 1 else cells[0].clone()
    for cell in cells[2:]:  # elementwise maxima: ~5x faster than amax over the window dims
        out = torch.maximum(out, cell, out=out)
    return out


def _upsample2x(x: Tensor, mode: str) -> Tensor:
    """2x ``F.interpolate`` of tokens ``(B, H, W, C)`` (nearest: a broadcast copy)."""
    B, H, W, C = x.shape
    if mode == "nearest":
        return x[:, :, None, :, None].expand(B, H, 2, W, 2, C).reshape(B, 2 * H, 2 * W, C)
    up = F.interpolate(x.permute(0, 3, 1, 2), scale_factor=2.0, mode=mode, align_corners=False)
    return up.permute(0, 2, 3, 1)


def fast_sam2_encoder(net: RefModule, dtype: torch.dtype | None = None) -> FastSam2Encoder:
    """The fast forward pass over ``net``'s encoder. With ``dtype`` (low precision on the CPU):
    over a copy of the image encoder and the two projections cast to ``dtype`` (``net`` stays
    as it is for the decoder and for fp32 engines)."""
    if dtype is None:
        return FastSam2Encoder(net)
    shell = nn.Module()  # only what the encoder pass reads
    shell.image_encoder = copy.deepcopy(net.image_encoder).to(dtype)
    decoder = nn.Module()
    decoder.conv_s0 = copy.deepcopy(net.sam_mask_decoder.conv_s0).to(dtype)
    decoder.conv_s1 = copy.deepcopy(net.sam_mask_decoder.conv_s1).to(dtype)
    shell.sam_mask_decoder = decoder
    shell.no_mem_embed = nn.Parameter(net.no_mem_embed.detach().to(dtype), requires_grad=False)
    for name in ("use_high_res_features_in_sam", "num_feature_levels", "directly_add_no_mem_embed"):
        setattr(shell, name, getattr(net, name))
    return FastSam2Encoder(shell)

