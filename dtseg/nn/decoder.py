"""A batched SAM mask decoder for N objects against one image embedding.

``FastMaskDecoder`` wraps a ``segment_anything.modeling.MaskDecoder`` (sharing its parameters)
and returns the same outputs, restructured for the case the engine runs: N prompts decoded
against ONE cached image embedding. Shapes below use N objects, T tokens per object
(5 output tokens + the sparse prompt tokens), P = h * w image pixels (64 * 64 for SAM),
C channels (256), H heads (8) of width d (16 after SAM's 2x attention downsampling).

What it changes, all exact in real arithmetic (float results differ by rounding only):

* The image embedding and its positional encoding are never copied N times.
* Without mask inputs every object gets the same dense embedding, so the image side of the
  first block is shared until the image->token attention updates it: its k/v (and q)
  projections are computed once per image (kept for the next call on it, so a click after a
  click skips them) and all objects' tokens attend to it as one batch.
* Where the image side is per object, attention is reassociated to run at token width
  (H * T columns) instead of projecting all P pixels (see ``_tokens_to_image`` and
  ``_image_to_tokens``).
* Only the tokens that are read afterwards (the IoU token and the returned mask tokens) go
  through the final token->image attention and the hypernetwork MLPs.
* The transposed convolutions of the output upscaling are per-pixel GEMMs on a pixel-major
  layout (LayerNorm2d becomes a LayerNorm over the contiguous last dim), followed by one
  pixel shuffle of the final masks.
* Objects run in chunks of ``chunk_size`` (the upscaling one at a time) to keep temporaries
  small.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from segment_anything.modeling.transformer import Attention, TwoWayAttentionBlock
from torch import Tensor, nn

from dtseg.nn import RefModule

__all__ = ["FastMaskDecoder"]

#: What ``FastMaskDecoder`` keeps derived from per-image tensors: the positional encoding's and
#: the image's pixel-major layouts, the image's shared first block, SAM 2's high-res rows.
MEMO = 4


class FastMaskDecoder(nn.Module):
    """Drop-in, batched replacement for ``MaskDecoder.forward`` (one image, N objects).

    Works for segment-anything's ``MaskDecoder`` (SAM, MobileSAM) and for ``sam2``'s (SAM 2),
    whose differences it follows from the module itself: an object-score token in front of the
    IoU and mask tokens (``pred_obj_scores``), high-resolution features added inside the output
    upscaling (``use_high_res_features``), and, for single-mask output, the fallback to the most
    stable multimask candidate (``dynamic_multimask_via_stability``, the decoder's own method).
    Inference only: some residuals are updated in place, so there is no backward pass.

    Args:
        decoder: the mask decoder whose parameters (and submodules) are used as is.
        chunk_size: objects decoded per internal pass.
    """

    def __init__(self, decoder: nn.Module, chunk_size: int = 8) -> None:
        super().__init__()
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        self.decoder: RefModule = decoder  # the reference MaskDecoder, read by its parts' names
        self.chunk_size = chunk_size
        self.first = 1 if getattr(decoder, "pred_obj_scores", False) else 0  # index of the IoU token
        self.dynamic = bool(getattr(decoder, "dynamic_multimask_via_stability", False))
        self._memo: list[tuple[Tensor, str, object]] = []  # (source tensor, kind, what was derived), see _once

    def forward(
        self,
        image_embeddings: Tensor,
        image_pe: Tensor,
        sparse_prompt_embeddings: Tensor,
        dense_prompt_embeddings: Tensor,
        multimask_output: bool,
        high_res_features: list[Tensor] | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Predict masks for N objects on one image.

        Args:
            image_embeddings: ``(1, C, h, w)`` image encoder output.
            image_pe: ``(1, C, h, w)`` dense positional encoding.
            sparse_prompt_embeddings: ``(N, T - 5, C)`` point and box embeddings.
            dense_prompt_embeddings: ``(1, C, h, w)`` or ``(N, C, h, w)``; batch 1 (or a
                stride-0 batch dim, as the prompt encoder returns without masks) is shared.
            multimask_output: return the 3 multimask outputs instead of the single one.
            high_res_features: SAM 2 only: ``[(1, C/8, 4h, 4w), (1, C/4, 2h, 2w)]``, the
                projected ``feat_s0`` and ``feat_s1`` of the image.

        Returns:
            Low-res mask logits ``(N, M, 4h, 4w)`` and predicted IoUs ``(N, M)``, with
            M = 3 if ``multimask_output`` else 1.
        """
        dec = self.decoder
        n, (b, _, h, w) = sparse_prompt_embeddings.shape[0], image_embeddings.shape
        if b != 1:
            raise ValueError(f"expected one image embedding (1, C, h, w), got {tuple(image_embeddings.shape)}")
        dynamic = self.dynamic and not multimask_output  # all candidates, then the decoder's choice
        selected = range(dec.num_mask_tokens)[slice(1, None) if multimask_output else slice(0, None if dynamic else 1)]
        if n == 0:
            m = 1 if dynamic else len(selected)
            return image_embeddings.new_empty((0, m, 4 * h, 4 * w)), image_embeddings.new_empty((0, m))

        extra = [dec.obj_score_token.weight] if self.first else []
        output_tokens = torch.cat([*extra, dec.iou_token.weight, dec.mask_tokens.weight]).expand(n, -1, -1)
        tokens = torch.cat([output_tokens, sparse_prompt_embeddings], dim=1)  # (N, T, C)
        pe = self._once(image_pe, "pixels", _pixels)[0]  # (P, C)
        pixels = self._once(image_embeddings, "pixels", _pixels)  # (1, P, C)
        # A shared image side pays its q/k/v projections once (1.5 P C^2 multiply-adds), the
        # reassociated per-object attention ~3 P C H T per object: shared pays from ~2 objects,
        # or from the second call on an image without mask inputs, which reuses it.
        dense = dense_prompt_embeddings
        no_mask = dense.stride(2) == 0 and dense.stride(3) == 0  # the no-mask embedding, one vector
        shared = (n > 1 or no_mask) and (dense.shape[0] == 1 or dense.stride(0) == 0)
        first: _SharedImage | None = None
        src = pixels
        if shared:
            first = self._first_block(image_embeddings, pixels, _dense_rows(dense[:1]), pe, keep=no_mask)
        else:
            src = pixels + _dense_rows(dense)  # (1 or N, P, C)
        high_res = None
        if high_res_features is not None:
            feat_s0, feat_s1 = high_res_features
            high_res = self._once(feat_s0, "high-res rows", lambda s0: _high_res_rows(s0, feat_s1))

        # Only the IoU token and the returned mask tokens are read after the final attention.
        used = [self.first, *(self.first + 1 + j for j in selected)]
        masks, ious = [], []
        for i in range(0, n, self.chunk_size):
            chunk = slice(i, i + self.chunk_size)
            image = first if first is not None else src[chunk]
            queries, keys = self._transformer(tokens[chunk], image, pe, used)
            mlps = dec.output_hypernetworks_mlps
            hyper = torch.stack([mlps[j](queries[:, k]) for k, j in enumerate(selected, 1)], dim=1)
            masks.append(self._masks(keys, hyper, h, w, high_res))
            ious.append(dec.iou_prediction_head(queries[:, 0])[:, selected.start : selected.stop])
        masks_out, ious_out = torch.cat(masks), torch.cat(ious)
        if dynamic:
            return dec._dynamic_multimask_via_stability(masks_out, ious_out)
        return masks_out, ious_out

    def _first_block(self, image: Tensor, pixels: Tensor, rows: Tensor, pe: Tensor, keep: bool) -> _SharedImage:
        """The first block's shared image side for ``pixels`` ``(1, P, C)`` + dense ``rows``
        ``(1, 1 or P, C)``; with ``keep`` (the no-mask vector, the same on every call) kept for
        ``image`` and reused while the rows match."""
        project = lambda: _SharedImage.project(self.decoder.transformer.layers[0], (pixels + rows)[0], pe)  # noqa: E731
        if not keep:
            return project()
        kept_rows, first = self._once(image, "first block", lambda _: (rows, project()))
        return first if _same(kept_rows, rows) else project()

    def _once(self, source: Tensor, kind: str, derive: Callable[[Tensor], Any]) -> Any:
        """``derive(source)``, remembered as ``kind`` for the last ``MEMO`` derivations (sources by
        identity): from the positional encoding and the image being decoded (its pixel-major
        copy, its shared first block, SAM 2's high-res rows). A click after a click on the same
        image pays for these once (SAM 2's high-res permute alone took 6 of a click's 40 ms, the
        first block's projections 0.8 GFLOP); the engine hands the decoder the same tensors for
        the same image."""
        for seen, seen_kind, derived in self._memo:
            if seen is source and seen_kind == kind:
                return derived
        derived = derive(source)
        self._memo = [(source, kind, derived), *self._memo[: MEMO - 1]]
        return derived

    def _transformer(
        self, tokens: Tensor, image: Tensor | _SharedImage, pe: Tensor, used: list[int]
    ) -> tuple[Tensor, Tensor]:
        """``TwoWayTransformer``: tokens ``(N, T, C)``, image ``(N, P, C)`` or shared, pe ``(P, C)``.

        Returns the processed tokens ``(N, len(used), C)``, only those at the indices ``used``
        (the final attention treats tokens independently), and image ``(N, P, C)``.
        """
        transformer = self.decoder.transformer
        queries, keys = tokens, image
        for layer in transformer.layers:
            queries, keys = _block(layer, queries, tokens, keys, pe)
        assert isinstance(keys, Tensor)  # a block returns the image side per object
        queries, tokens = queries[:, used], tokens[:, used]
        out = _tokens_to_image(transformer.final_attn_token_to_image, queries + tokens, keys, keys + pe)
        return transformer.norm_final_attn(queries + out), keys

    def _masks(self, keys: Tensor, hyper: Tensor, h: int, w: int,
               high_res: tuple[Tensor, Tensor] | None = None) -> Tensor:
        """Upscale image ``(N, P, C)`` x4 and dot with ``hyper`` ``(N, M, C / 8)`` -> ``(N, M, 4h, 4w)``.
        ``high_res`` (SAM 2): ``feat_s1``, ``feat_s0`` as rows in the same order (``_high_res_rows``),
        added after each transposed convolution.

        ``ConvTranspose2d(k=2, s=2)`` maps each input pixel to a 2x2 output patch independently,
        i.e. a GEMM ``(C_in) -> (2, 2, C_out)`` per pixel; we keep the patch offsets as extra
        rows (pixel-major, channels last) and undo the nesting with one final pixel shuffle.
        """
        conv1, norm, act1, conv2, act2 = self.decoder.output_upscaling
        n = keys.shape[0]
        w1, b1 = _pixel_linear(conv1)
        w2, b2 = _pixel_linear(conv2)
        per_object = []
        for i in range(n):  # one object at a time keeps the x4 / x16 temporaries small
            x = torch.addmm(b1, keys[i], w1).view(-1, w1.shape[1] // 4)  # (P*4, C/4)
            if high_res is not None:
                x += high_res[0]
            x = act1(F.layer_norm(x, x.shape[-1:], norm.weight, norm.bias, norm.eps))
            x = torch.addmm(b2, x, w2).view(-1, w2.shape[1] // 4)  # (P*16, C/8)
            if high_res is not None:
                x += high_res[1]
            x = act2(x)
            per_object.append(x @ hyper[i].T)  # (P*16, M), rows (y, x, dy1, dx1, dy2, dx2)
        # Output row 4y + 2dy1 + dy2, column 4x + 2dx1 + dx2, in two permutes: one 8-d gather
        # took 6x as long (1.6 ms for 3 masks): first whole (dy2, dx2, M) runs, then the rest.
        masks = torch.stack(per_object).view(n, h, w, 2, 2, -1).transpose(2, 3).contiguous()  # (N, y, dy1, x, dx1, 4M)
        masks = masks.view(n, h, 2, w, 2, 2, 2, -1).permute(0, 7, 1, 2, 5, 3, 4, 6)  # (N, M, y, dy1, dy2, x, dx1, dx2)
        return masks.reshape(n, -1, 4 * h, 4 * w)


@dataclass
class _SharedImage:
    """The image side of a block, shared by all objects, with its projections done once.

    ``src`` ``(P, C)``; ``k``, ``v`` ``(H, P, d)`` for token->image attention; ``q`` ``(H, P, d)``
    for image->token attention (already scaled by 1/sqrt(d)).
    """

    src: Tensor
    k: Tensor
    v: Tensor
    q: Tensor

    @classmethod
    def project(cls, layer: TwoWayAttentionBlock, src: Tensor, pe: Tensor) -> _SharedImage:
        t2i, i2t = layer.cross_attn_token_to_image, layer.cross_attn_image_to_token
        src_pe = src + pe
        q = _heads(i2t.q_proj(src_pe), i2t.num_heads)
        return cls(
            src=src,
            k=_heads(t2i.k_proj(src_pe), t2i.num_heads),
            v=_heads(t2i.v_proj(src), t2i.num_heads),
            q=(q / math.sqrt(q.shape[-1])).contiguous(),
        )


def _block(
    layer: TwoWayAttentionBlock, queries: Tensor, query_pe: Tensor, keys: Tensor | _SharedImage, pe: Tensor
) -> tuple[Tensor, Tensor]:
    """``TwoWayAttentionBlock.forward``: tokens ``(N, T, C)``, image ``(N, P, C)`` or shared."""
    if layer.skip_first_layer_pe:
        queries = layer.norm1(layer.self_attn(q=queries, k=queries, v=queries))
    else:
        q = queries + query_pe
        queries = layer.norm1(queries + layer.self_attn(q=q, k=q, v=queries))

    q = queries + query_pe
    keys_pe = None
    if isinstance(keys, _SharedImage):
        out = _tokens_to_shared_image(layer.cross_attn_token_to_image, q, keys.k, keys.v)
    else:
        keys_pe = keys + pe
        out = _tokens_to_image(layer.cross_attn_token_to_image, q, keys, keys_pe)
    queries = layer.norm2(queries + out)
    queries = layer.norm3(queries + layer.mlp(queries))

    k = queries + query_pe
    keys = _image_to_tokens(layer.cross_attn_image_to_token, keys, keys_pe, k, queries)
    return queries, layer.norm4(keys)


def _tokens_to_shared_image(attn: Attention, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Attention of tokens ``q`` ``(N, T, C)`` to one image, ``k``, ``v`` ``(H, P, d)`` -> ``(N, T, C)``.

    The tokens of all objects are independent queries of the same keys: one attention call
    with N * T queries.
    """
    n, t, _ = q.shape
    qh = attn.q_proj(q).view(n * t, attn.num_heads, -1).transpose(0, 1)  # (H, N*T, d)
    out = F.scaled_dot_product_attention(qh, k, v)  # (H, N*T, d)
    return attn.out_proj(out.transpose(0, 1).reshape(n, t, -1))


def _tokens_to_image(attn: Attention, q: Tensor, keys: Tensor, keys_pe: Tensor) -> Tensor:
    """Attention of tokens ``q`` ``(N, T, C)`` to per-object image ``keys`` ``(N, P, C)``.

    ``keys_pe`` = keys + pe. Reassociated to avoid projecting the P pixels. Per head h, with
    Q_h = q_proj(q)_h ``(T, d)`` and k_proj weight rows Wk_h ``(d, C)``:
        logits_h = Q_h (keys_pe Wk_h^T + bk_h)^T = (Q_h Wk_h) keys_pe^T + (Q_h bk_h) 1^T
    and the last term is constant along the softmax axis (pixels), so it drops out. Each
    attention row sums to 1, so A_h (keys Wv_h^T + bv_h) = (A_h keys) Wv_h^T + bv_h.
    Cost ~ 2 P C H T instead of 2 P C (C / 2) multiply-adds: less while H T < C / 2.

    Returns ``(N, T, C)``.
    """
    n, t, c = q.shape
    heads = attn.num_heads
    qh = _heads(attn.q_proj(q), heads)  # (N, H, T, d)
    wk = attn.k_proj.weight.view(heads, -1, c)  # (H, d, C)
    g = (qh @ wk).view(n, heads * t, c) / math.sqrt(qh.shape[-1])  # (N, H*T, C)
    attn_weights = torch.bmm(g, keys_pe.transpose(1, 2)).softmax(dim=-1)  # (N, H*T, P)
    s = torch.bmm(attn_weights, keys).view(n, heads, t, c)  # (N, H, T, C)
    wv = attn.v_proj.weight.view(heads, -1, c)  # (H, d, C)
    out = s @ wv.transpose(1, 2) + attn.v_proj.bias.view(heads, 1, -1)  # (N, H, T, d)
    return attn.out_proj(out.transpose(1, 2).reshape(n, t, -1))


def _image_to_tokens(
    attn: Attention, image: Tensor | _SharedImage, image_pe: Tensor | None, k: Tensor, v: Tensor
) -> Tensor:
    """``image + attn(q=image_pe, k=k, v=v)``: image pixels attend to the tokens.

    ``image`` ``(N, P, C)`` (updated in place and returned) with ``image_pe`` = image + pe, or
    shared (queries projected once; a new tensor is returned); tokens ``k``, ``v`` ``(N, T, C)``.

    Reassociated so no per-object ``(N, P, C/2)`` projection is formed. Per head h, with token
    keys K_h, values V_h ``(T, d)`` and q_proj rows Wq_h ``(d, C)``:
        logits_h = (image_pe Wq_h^T + bq_h) K_h^T = image_pe (K_h Wq_h)^T + 1 (K_h bq_h)^T
    and out_proj(concat_h A_h V_h) = sum_h A_h (V_h Wo_h^T) + bo, with Wo_h ``(C, d)`` the
    head's columns of out_proj: one GEMM (P, H*T) @ (H*T, C). Rows of A_h sum to 1, so the
    bias enters as bo / H added to every row of each V_h Wo_h^T.

    Returns ``(N, P, C)``.
    """
    n, t, c = k.shape
    heads = attn.num_heads
    kh = _heads(attn.k_proj(k), heads)  # (N, H, T, d)
    vh = _heads(attn.v_proj(v), heads)
    shared = isinstance(image, _SharedImage)
    if isinstance(image, _SharedImage):  # one GEMM per head for all objects' tokens
        logits = kh.transpose(0, 1).reshape(heads, n * t, -1) @ image.q.transpose(1, 2)  # (H, N*T, P)
        logits = logits.view(heads, n, t, -1).transpose(0, 1)  # (N, H, T, P)
        image = image.src
    else:
        assert image_pe is not None  # given with a per-object image
        scale = 1 / math.sqrt(kh.shape[-1])
        wq = attn.q_proj.weight.view(heads, -1, c)  # (H, d, C)
        g = (kh @ wq).view(n, heads * t, c) * scale  # (N, H*T, C)
        bias = (kh @ attn.q_proj.bias.view(heads, -1, 1)).view(n, heads * t, 1) * scale
        logits = torch.baddbmm(bias, g, image_pe.transpose(1, 2)).view(n, heads, t, -1)  # (N, H, T, P)
    # Softmax over the T tokens of each head, with pixels contiguous (a last dim of T is slow).
    attn_weights = logits.softmax(dim=2).reshape(n, heads * t, -1).transpose(1, 2)  # (N, P, H*T)
    wo = attn.out_proj.weight.view(c, heads, -1).permute(1, 2, 0)  # (H, d, C)
    vw = (vh @ wo + attn.out_proj.bias / heads).view(n, heads * t, c)  # (N, H*T, C)
    if shared:
        return torch.baddbmm(image, attn_weights, vw)
    return image.baddbmm_(attn_weights, vw)  # the residual, in place: saves a pass over (N, P, C)


def _pixel_linear(conv: nn.ConvTranspose2d) -> tuple[Tensor, Tensor]:
    """``ConvTranspose2d(k=2, s=2)`` as a per-pixel linear map ``(C_in) -> (2, 2, C_out)``.

    Returns weight ``(C_in, 4 * C_out)`` and bias ``(4 * C_out,)``, columns ordered (dy, dx, C_out).
    """
    assert conv.bias is not None  # SAM's upscaling convolutions have biases
    c_in, c_out = conv.weight.shape[:2]
    return conv.weight.permute(0, 2, 3, 1).reshape(c_in, 4 * c_out), conv.bias.repeat(4)


def _high_res_rows(feat_s0: Tensor, feat_s1: Tensor) -> tuple[Tensor, Tensor]:
    """SAM 2's high-res features in the row order of ``FastMaskDecoder._masks``.

    ``feat_s1`` ``(1, C1, 2h, 2w)`` -> ``(h*w*4, C1)``, rows ``(y, x, dy, dx)``; ``feat_s0``
    ``(1, C0, 4h, 4w)`` -> ``(h*w*16, C0)``, rows ``(y, x, dy1, dx1, dy2, dx2)`` (pixel
    ``(4y + 2dy1 + dy2, 4x + 2dx1 + dx2)``). Done once per image, shared by all objects.
    """
    c1, c0 = feat_s1.shape[1], feat_s0.shape[1]
    h, w = feat_s1.shape[2] // 2, feat_s1.shape[3] // 2
    s1 = feat_s1[0].reshape(c1, h, 2, w, 2).permute(1, 3, 2, 4, 0).reshape(-1, c1)
    s0 = feat_s0[0].reshape(c0, h, 2, 2, w, 2, 2).permute(1, 4, 2, 5, 3, 6, 0).reshape(-1, c0)
    return s1, s0


def _pixels(x: Tensor) -> Tensor:
    """``(B, C, h, w)`` -> contiguous ``(B, h * w, C)``, with the standard batch stride: for
    B = 1 ``.contiguous()`` may leave a batch stride of C, and ``bmm`` then copies every
    transposed view of the result (~1.5 ms per attention for one object)."""
    b, c = x.shape[:2]
    return x.new_empty((b, x[0, 0].numel(), c)).copy_(x.flatten(2).transpose(1, 2))


def _dense_rows(dense: Tensor) -> Tensor:
    """Dense prompt embeddings ``(B, C, h, w)`` as rows broadcastable to ``(B, h * w, C)``: a view.
    Without a mask input the map is one vector expanded over the grid (strides 0): then just
    that vector ``(B, 1, C)``, which adds ~4x faster than a stride-0 view of the whole grid."""
    if dense.stride(2) == 0 and dense.stride(3) == 0:
        return dense[:, :, :1, 0].transpose(1, 2)
    return dense.flatten(2).transpose(1, 2)


def _same(a: Tensor, b: Tensor) -> bool:
    """Whether small tensors ``a`` and ``b`` hold the same values; meta tensors (FLOP counting)
    have none and count as the same."""
    return a is b or a.is_meta or torch.equal(a, b)


def _heads(x: Tensor, heads: int) -> Tensor:
    """``(..., L, H * d)`` -> ``(..., H, L, d)`` (a view)."""
    return x.unflatten(-1, (heads, -1)).transpose(-3, -2)
