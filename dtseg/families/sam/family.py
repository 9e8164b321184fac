"""The ``sam`` family: Segment Anything's ViT-B/L/H (segment-anything's own modules).

dtseg's fast encoder (``dtseg.families.sam.encoder``) and fast batched decoder
(``dtseg.nn.decoder``) run on the very same parameters; ``encoder``/``decoder:
reference`` switch back to segment-anything's forward passes.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from types import MappingProxyType
from typing import Any, cast

import numpy as np
import torch
from segment_anything.build_sam import _build_sam
from segment_anything.modeling import Sam
from torch import Tensor, nn

from dtseg.families.base import IMAGE_EMBED, LoadedModel, OfficialModel, cast_shared, count_blocks
from dtseg.families.transforms import ImageTransform


@dataclass(frozen=True)
class SamSpec:
    """A SAM image-encoder architecture (the prompt encoder and decoder are fixed)."""

    encoder_embed_dim: int
    encoder_depth: int
    encoder_num_heads: int
    encoder_global_attn_indexes: tuple[int, ...]

    def __post_init__(self) -> None:
        if self.encoder_embed_dim % self.encoder_num_heads:
            raise ValueError("encoder_embed_dim must be divisible by encoder_num_heads")
        if any(not 0 <= i < self.encoder_depth for i in self.encoder_global_attn_indexes):
            raise ValueError("encoder_global_attn_indexes must lie in [0, encoder_depth)")


_BASE_URL = "https://dl.fbaipublicfiles.com/segment_anything/"
MODELS: tuple[OfficialModel, ...] = (
    OfficialModel("vit_h", "sam", SamSpec(1280, 32, 16, (7, 15, 23, 31)), "sam_vit_h_4b8939.pth",
                  _BASE_URL + "sam_vit_h_4b8939.pth",
                  "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e", 2445, params_m=641.1,
                  encoder_gflop=5961.1),
    OfficialModel("vit_l", "sam", SamSpec(1024, 24, 16, (5, 11, 17, 23)), "sam_vit_l_0b3195.pth",
                  _BASE_URL + "sam_vit_l_0b3195.pth",
                  "3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622", 1250, params_m=312.3,
                  encoder_gflop=2985.7),
    OfficialModel("vit_b", "sam", SamSpec(768, 12, 12, (2, 5, 8, 11)), "sam_vit_b_01ec64.pth",
                  _BASE_URL + "sam_vit_b_01ec64.pth",
                  "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912", 358, params_m=93.7,
                  encoder_gflop=972.1),
)

#: A very small architecture for tests and demos on random weights (same decoder as SAM).
TINY_SPEC = SamSpec(64, 2, 2, (1,))


class SamModel(LoadedModel):
    """A loaded Segment Anything model (ViT image encoder, prompt encoder, two-way mask decoder)."""

    family = "sam"
    models = MODELS
    test_models = MappingProxyType({"tiny": TINY_SPEC})
    encoders = ("fast", "reference")
    decoders = ("fast", "reference")
    net: Sam

    @classmethod
    def build_net(cls, arch: SamSpec) -> nn.Module:
        return _build_sam(
            encoder_embed_dim=arch.encoder_embed_dim,
            encoder_depth=arch.encoder_depth,
            encoder_num_heads=arch.encoder_num_heads,
            encoder_global_attn_indexes=list(arch.encoder_global_attn_indexes),
            checkpoint=None,
        )

    @classmethod
    def state_fits(cls, state: dict[str, Tensor], arch: Any) -> bool:
        patch = state.get("image_encoder.patch_embed.proj.weight")
        return (isinstance(arch, SamSpec) and patch is not None and patch.shape[0] == arch.encoder_embed_dim
                and count_blocks(state, "image_encoder.blocks.") == arch.encoder_depth)

    @classmethod
    def arch_from(cls, value: Any) -> SamSpec | None:
        if isinstance(value, SamSpec):
            return value
        if isinstance(value, dict) and set(value) == {f.name for f in fields(SamSpec)}:
            return SamSpec(**{**value, "encoder_global_attn_indexes": tuple(value["encoder_global_attn_indexes"])})
        return None

    def configure(self, device: torch.device, dtype: torch.dtype, *, encoder: str = "fast",
                  decoder: str = "fast", encoder_int8: bool = False, encoder_compile: bool = False) -> None:
        super().configure(device, dtype, encoder=encoder, decoder=decoder)
        self.image_encoder = self._image_encoder(encoder, encoder_int8, encoder_compile)
        self.mask_decoder = self._mask_decoder(decoder)
        with torch.inference_mode():
            self._dense_pe = self.net.prompt_encoder.get_dense_pe().to(self.decoder_dtype)

    def _image_encoder(self, kind: str, int8: bool, compile: bool) -> nn.Module:
        if kind == "reference":
            if int8:
                raise ValueError("encoder_int8: the int8 encoder is dtseg's fast one; encoder: reference has none")
            # torch.compile returns an OptimizedModule (an nn.Module); its stub says a callable
            return cast(nn.Module, torch.compile(self.net.image_encoder)) if compile else self.net.image_encoder
        from dtseg.families.sam.encoder import fast_encoder

        return fast_encoder(self.net.image_encoder, int8=int8, compile=compile)

    def _mask_decoder(self, kind: str) -> nn.Module:
        if kind == "reference":
            return self.net.mask_decoder
        from dtseg.nn.decoder import FastMaskDecoder

        return FastMaskDecoder(self.decoder_weights(self.net.mask_decoder))

    def preprocess(self, images: list[np.ndarray], transforms: list[ImageTransform]) -> Tensor:
        """Resize with PIL as ``SamPredictor`` does, normalize, zero-pad to ``(B, 3, S, S)``."""
        resized = [torch.from_numpy(t.resize_image(im).copy()).permute(2, 0, 1)
                   for t, im in zip(transforms, images, strict=True)]
        if len({t.input_size for t in transforms}) == 1:
            return self._normalize_pad(torch.stack(resized))
        return torch.cat([self._normalize_pad(x[None]) for x in resized])  # different sizes: pad each

    def _normalize_pad(self, rgb: Tensor) -> Tensor:
        return self.net.preprocess(rgb.to(self.device, torch.float32)).to(self.dtype)

    def encode(self, x: Tensor) -> dict[str, Tensor]:
        return {IMAGE_EMBED: self.image_encoder(x)}

    def decode(self, features: dict[str, Tensor], coords: Tensor | None, labels: Tensor | None,
               boxes: Tensor | None, masks: Tensor | None, multimask: bool) -> tuple[Tensor, Tensor]:
        points = None if coords is None else (coords, labels)
        sparse, dense = self.net.prompt_encoder(points=points, boxes=boxes, masks=masks)  # in fp32
        return self.mask_decoder(
            image_embeddings=features[IMAGE_EMBED],
            image_pe=self._dense_pe,
            sparse_prompt_embeddings=sparse.to(self.decoder_dtype),
            dense_prompt_embeddings=cast_shared(dense, self.decoder_dtype),
            multimask_output=multimask,
        )

    def feature_shapes(self) -> dict[str, tuple[int, ...]]:
        prompt_encoder = self.net.prompt_encoder
        return {IMAGE_EMBED: (prompt_encoder.embed_dim, *prompt_encoder.image_embedding_size)}
