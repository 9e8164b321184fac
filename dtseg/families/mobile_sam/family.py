"""The ``mobile_sam`` family: MobileSAM = a TinyViT image encoder distilled from SAM's ViT-H,
with SAM's own prompt encoder and mask decoder.

The TinyViT module comes from ultralytics (already a dependency; a copy of MobileSAM's own),
the rest from segment-anything, so the official ``mobile_sam.pt`` loads as it is and
segment-anything's ``SamPredictor`` runs it as the reference. The encoder runs dtseg's own
forward pass (``dtseg.families.mobile_sam.tinyvit``) over a batch-norm-folded copy (``encoder: reference``:
the TinyViT module itself); everything after it is the ``sam`` family's, fast decoder included.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from types import MappingProxyType
from typing import Any

from segment_anything.modeling import MaskDecoder, PromptEncoder, Sam, TwoWayTransformer
from torch import Tensor, nn

from dtseg.families.base import OfficialModel, count_blocks
from dtseg.families.sam.family import SamModel


@dataclass(frozen=True)
class MobileSamSpec:
    """A TinyViT encoder: per stage width, depth, heads and attention window."""

    embed_dims: tuple[int, int, int, int]
    depths: tuple[int, int, int, int]
    num_heads: tuple[int, int, int, int]
    window_sizes: tuple[int, int, int, int] = (7, 7, 14, 7)

    def __post_init__(self) -> None:
        if not len(self.embed_dims) == len(self.depths) == len(self.num_heads) == len(self.window_sizes) == 4:
            raise ValueError("embed_dims, depths, num_heads and window_sizes need 4 stages each")
        if any(d % h for d, h in zip(self.embed_dims[1:], self.num_heads[1:], strict=True)):
            raise ValueError("each attention stage's width must be divisible by its heads")
        if self.embed_dims[3] not in (320, 448, 576):  # TinyViT's last merge keeps 64x64 only for these
            raise ValueError("embed_dims[3] must be 320, 448 or 576 (TinyViT keeps the 64x64 grid only for those)")


MODELS = (
    OfficialModel("mobile_sam", "mobile_sam", MobileSamSpec((64, 128, 160, 320), (2, 2, 6, 2), (2, 4, 5, 10)),
                  "mobile_sam.pt", "https://github.com/ChaoningZhang/MobileSAM/raw/master/weights/mobile_sam.pt",
                  "6dbb90523a35330fedd7f1d3dfc66f995213d81b29a5ca8108dbcdd4e37d6c2f", 38.8,
                  size_bytes=40728226, params_m=10.1, encoder_gflop=77.5),
)

#: Test-size TinyViT (random weights only).
TINY_MOBILE_SPEC = MobileSamSpec((16, 32, 64, 320), (1, 1, 1, 1), (1, 1, 2, 4))


class MobileSamModel(SamModel):
    """A loaded MobileSAM: SAM with ultralytics' TinyViT as its image encoder."""

    family = "mobile_sam"
    models = MODELS
    test_models = MappingProxyType({"tiny_mobile_sam": TINY_MOBILE_SPEC})

    @classmethod
    def build_net(cls, arch: MobileSamSpec) -> nn.Module:  # type: ignore[override]  # its own spec type
        from ultralytics.models.sam.modules.tiny_encoder import TinyViT

        encoder = TinyViT(img_size=1024, in_chans=3, num_classes=1000, embed_dims=arch.embed_dims,
                          depths=arch.depths, num_heads=arch.num_heads, window_sizes=arch.window_sizes,
                          mlp_ratio=4.0, drop_rate=0.0, drop_path_rate=0.0, use_checkpoint=False,
                          mbconv_expand_ratio=4.0, local_conv_size=3, layer_lr_decay=0.8)
        return Sam(
            image_encoder=encoder,
            prompt_encoder=PromptEncoder(embed_dim=256, image_embedding_size=(64, 64), input_image_size=(1024, 1024),
                                         mask_in_chans=16),
            mask_decoder=MaskDecoder(num_multimask_outputs=3,
                                     transformer=TwoWayTransformer(depth=2, embedding_dim=256, mlp_dim=2048,
                                                                   num_heads=8),
                                     transformer_dim=256, iou_head_depth=3, iou_head_hidden_dim=256),
            pixel_mean=[123.675, 116.28, 103.53],
            pixel_std=[58.395, 57.12, 57.375],
        )

    @classmethod
    def state_fits(cls, state: dict[str, Tensor], arch: Any) -> bool:
        stem, neck = state.get("image_encoder.patch_embed.seq.0.c.weight"), state.get("image_encoder.neck.0.weight")
        return (isinstance(arch, MobileSamSpec) and stem is not None and neck is not None
                and stem.shape[0] == arch.embed_dims[0] // 2 and neck.shape[1] == arch.embed_dims[-1]
                and all(count_blocks(state, f"image_encoder.layers.{i}.blocks.") == d
                        for i, d in enumerate(arch.depths[1:], 1)))

    @classmethod
    def arch_from(cls, value: Any) -> MobileSamSpec | None:  # type: ignore[override]  # its own spec type
        if isinstance(value, MobileSamSpec):
            return value
        names = {f.name for f in fields(MobileSamSpec)}
        if isinstance(value, dict) and {"embed_dims", "depths", "num_heads"} <= set(value) <= names:
            return MobileSamSpec(**{k: tuple(v) for k, v in value.items()})
        return None

    def _image_encoder(self, kind: str, int8: bool, compile: bool) -> nn.Module:
        """``fast``: dtseg's TinyViT forward pass over a folded copy of the encoder; in low
        precision on the CPU that copy holds the weights in ``compute`` (no autocast casts per
        call). ``reference``: the TinyViT module itself, as ``SamPredictor`` runs it."""
        if kind == "reference":
            return self.net.image_encoder
        from dtseg.families.mobile_sam.tinyvit import fast_tinyvit

        return fast_tinyvit(fold_batch_norms(self.net.image_encoder), dtype=self.encoder_copy_dtype())


def fold_batch_norms(encoder: nn.Module) -> nn.Module:
    """A copy of TinyViT ``encoder`` for inference with every ``Conv2d_BN`` (a convolution
    followed by an eval-mode ``BatchNorm2d``) folded into one convolution: the 27 batch norms
    were ~8% of the encoder's CPU time, and a separate pass over each feature map. The network's
    own modules (and so its state dict) are left as they are; results differ by rounding only."""
    import copy

    from torch.nn.utils.fusion import fuse_conv_bn_eval

    dtype = next(encoder.parameters()).dtype
    folded = copy.deepcopy(encoder).float().eval()  # fold in fp32, then back to the weights' dtype
    for name, module in list(folded.named_modules()):
        conv, bn = getattr(module, "c", None), getattr(module, "bn", None)
        if isinstance(module, nn.Sequential) and isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
            parent_name, _, child = name.rpartition(".")
            setattr(folded.get_submodule(parent_name) if parent_name else folded, child, fuse_conv_bn_eval(conv, bn))
    return folded.to(dtype)
