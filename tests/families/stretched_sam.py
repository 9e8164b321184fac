"""A model family as a third party ships one: a module with a ``LoadedModel`` subclass and a
``dtseg_register_model_families`` hook, found through its distribution's ``dtseg`` entry point
(``tests/families/test_plugin_family.py`` installs it so).

``stretched_sam``: SAM's ViT at a 512 x 512 input, the image stretched to the square (no
aspect kept, as SAM 2 does), masks upsampled in one step; it takes points and boxes, no mask
input. Its own architecture type, geometry, capabilities and model rows; SAM's modules and
dtseg's SAM passes do the work.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from types import MappingProxyType
from typing import Any

import torch
from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer
from torch import nn

from dtseg.families import Capabilities, OfficialModel
from dtseg.families.sam.family import SamModel
from dtseg.hookspecs import Register, hookimpl

SIDE = 512  # input pixels; the image embedding is SIDE / 16 cells a side


@dataclass(frozen=True)
class StretchedSpec:
    """The ViT: width, depth, heads and the blocks with global attention."""

    width: int
    depth: int
    heads: int
    global_blocks: tuple[int, ...]


class StretchedSamModel(SamModel):
    """A loaded ``stretched_sam`` model."""

    family = "stretched_sam"
    capabilities = Capabilities(prompts=frozenset({"points", "boxes"}), lineage="sam")
    input_length = SIDE
    mask_length = SIDE // 4
    stretch = True
    single_upsample = True
    models = (OfficialModel("stretched_sam_s", "stretched_sam", StretchedSpec(96, 2, 4, (1,)), "stretched_sam_s.pth",
                            "https://example.invalid/stretched_sam_s.pth", None, 1.0, licence="MIT",
                            size_bytes=1 << 20, params_m=4.4, encoder_gflop=20.0),)
    test_models = MappingProxyType({"tiny_stretched_sam": StretchedSpec(32, 2, 2, (1,))})

    @classmethod
    def build_net(cls, arch: StretchedSpec) -> nn.Module:
        grid = SIDE // 16
        encoder = ImageEncoderViT(depth=arch.depth, embed_dim=arch.width, img_size=SIDE, mlp_ratio=4,
                                  norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), num_heads=arch.heads,
                                  patch_size=16, qkv_bias=True, use_rel_pos=True,
                                  global_attn_indexes=arch.global_blocks, window_size=14, out_chans=256)
        decoder = MaskDecoder(num_multimask_outputs=3, transformer_dim=256, iou_head_depth=3, iou_head_hidden_dim=256,
                              transformer=TwoWayTransformer(depth=2, embedding_dim=256, mlp_dim=2048, num_heads=8))
        return Sam(encoder, PromptEncoder(embed_dim=256, image_embedding_size=(grid, grid),
                                          input_image_size=(SIDE, SIDE), mask_in_chans=16), decoder)

    @classmethod
    def state_fits(cls, state: dict[str, torch.Tensor], arch: Any) -> bool:
        pos = state.get("image_encoder.pos_embed")
        return isinstance(arch, StretchedSpec) and pos is not None and tuple(pos.shape) == (1, SIDE // 16,
                                                                                            SIDE // 16, arch.width)

    @classmethod
    def arch_from(cls, value: Any) -> StretchedSpec | None:
        return value if isinstance(value, StretchedSpec) else None


@hookimpl
def dtseg_register_model_families(register: Register) -> None:
    register("stretched_sam", StretchedSamModel)
