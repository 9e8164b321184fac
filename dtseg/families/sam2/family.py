"""The ``sam2.1`` family: SAM 2.1's Hiera encoder and its SAM decoder, from Meta's ``sam2`` package.

``sam2`` is SAM 2's reference implementation and what Roboflow Inference runs: its config files
build the network, Meta's official checkpoints load as they are, and ``SAM2ImagePredictor`` is
the reference for the parity tests. The rules here are the predictor's own: the image is
stretched to 1024x1024 (no aspect ratio kept) and normalized with ImageNet statistics; the
encoder keeps two high-resolution feature levels (projected once, ``conv_s0``/``conv_s1``)
beside the 64x64 embedding, which gets ``no_mem_embed`` added; a box is two corner points
labelled 2 and 3 in front of the clicks; the single-mask output falls back to the most stable
multimask candidate (``dynamic_multimask_via_stability``); masks are upsampled in one step;
returned low-res logits are clamped to [-32, 32].

The encoder runs dtseg's own forward pass (``dtseg.families.sam2.hiera``; ``encoder: reference`` runs
``forward_image`` instead), over its own copy of the encoder in low precision on the CPU.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from dtseg.families.base import IMAGE_EMBED, Capabilities, LoadedModel, OfficialModel, cast_shared, count_blocks
from dtseg.families.transforms import ImageTransform
from dtseg.nn import RefModule

if TYPE_CHECKING:
    from dtseg.engine.engine import SamEngine
    from dtseg.families.sam2.tracker import Propagator

HIGH_RES = ("high_res_0", "high_res_1")  # (32, 256, 256) and (64, 128, 128) for the official models
_MEAN, _STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
#: What ``sam2.build_sam.build_sam2`` adds for image prediction (``apply_postprocessing``).
_IMAGE_DECODER_ARGS = {"dynamic_multimask_via_stability": True, "dynamic_multimask_stability_delta": 0.05,
                       "dynamic_multimask_stability_thresh": 0.98}


@dataclass(frozen=True)
class Sam2Spec:
    """One of ``sam2``'s config files, with optional overrides (dotted keys below ``model``)."""

    config: str
    overrides: tuple[tuple[str, Any], ...] = field(default=())


_URL = "https://dl.fbaipublicfiles.com/segment_anything_2/092824/"
# Meta publishes no checksums; these sha256 and sizes are the ones independent projects observed
# for Meta's files (the Hugging Face mirrors facebook/sam2.1-hiera-* hold the same files).
MODELS = (
    OfficialModel("sam2.1_t", "sam2.1", Sam2Spec("sam2.1_hiera_t.yaml"), "sam2.1_hiera_tiny.pt",
                  _URL + "sam2.1_hiera_tiny.pt", "7402e0d864fa82708a20fbd15bc84245c2f26dff0eb43a4b5b93452deb34be69",
                  149, size_bytes=156008466, params_m=39.0, encoder_gflop=292.4),
    OfficialModel("sam2.1_s", "sam2.1", Sam2Spec("sam2.1_hiera_s.yaml"), "sam2.1_hiera_small.pt",
                  _URL + "sam2.1_hiera_small.pt", "6d1aa6f30de5c92224f8172114de081d104bbd23dd9dc5c58996f0cad5dc4d38",
                  176, size_bytes=184416285, params_m=46.1, encoder_gflop=360.1),
    OfficialModel("sam2.1_b+", "sam2.1", Sam2Spec("sam2.1_hiera_b+.yaml"), "sam2.1_hiera_base_plus.pt",
                  _URL + "sam2.1_hiera_base_plus.pt",
                  "a2345aede8715ab1d5d31b4a509fb160c5a4af1970f199d9054ccfb746c004c5",
                  309, size_bytes=323606802, params_m=80.9, encoder_gflop=646.8),
    OfficialModel("sam2.1_l", "sam2.1", Sam2Spec("sam2.1_hiera_l.yaml"), "sam2.1_hiera_large.pt",
                  _URL + "sam2.1_hiera_large.pt", "2647878d5dfa5098f2f8649825738a9345572bae2d4350a2468587ece47dd318",
                  856, size_bytes=898083611, params_m=224.4, encoder_gflop=1822.8),
)

#: Test-size SAM 2.1: a 5-block Hiera trunk and a 1-layer memory attention (random weights only).
TINY_SAM2_SPEC = Sam2Spec("sam2.1_hiera_t.yaml", (
    ("image_encoder.trunk.embed_dim", 16),
    ("image_encoder.trunk.stages", [1, 1, 2, 1]),
    ("image_encoder.trunk.global_att_blocks", [3]),
    ("image_encoder.neck.backbone_channel_list", [128, 64, 32, 16]),
    ("memory_attention.num_layers", 1),
))


def model_config(spec: Sam2Spec) -> Any:
    """The OmegaConf ``model`` node of ``spec``, as ``build_sam2`` composes it for images."""
    import sam2
    from omegaconf import OmegaConf

    path = Path(sam2.__file__).parent / "configs" / "sam2.1" / spec.config
    if not path.is_file():
        raise ValueError(f"model: no sam2 config {spec.config!r} in {path.parent}")
    cfg = OmegaConf.load(path)
    OmegaConf.update(cfg, "model.sam_mask_decoder_extra_args", _IMAGE_DECODER_ARGS, force_add=True)
    for key, value in spec.overrides:
        OmegaConf.update(cfg, f"model.{key}", value, force_add=False)
    OmegaConf.resolve(cfg)
    return cfg.model


class Sam2Model(LoadedModel):
    """A loaded SAM 2.1 for images (``SAM2Base``'s encoder and SAM heads; the memory parts serve video)."""

    family = "sam2.1"
    models = MODELS
    test_models = MappingProxyType({"tiny_sam2.1": TINY_SAM2_SPEC})
    capabilities = Capabilities(lineage="sam2", video_memory=True)
    net: RefModule  # sam2's SAM2Base, read by its parts' names
    stretch = True
    single_upsample = True
    logit_clamp = 32.0
    encoders = ("fast", "reference")
    decoders = ("fast", "reference")

    @classmethod
    def build_net(cls, arch: Sam2Spec) -> nn.Module:
        from hydra.utils import instantiate

        return instantiate(model_config(arch), _recursive_=True)

    @classmethod
    def state_fits(cls, state: dict[str, Tensor], arch: Any) -> bool:
        patch = state.get("image_encoder.trunk.patch_embed.proj.weight")
        if not isinstance(arch, Sam2Spec) or patch is None:
            return False
        trunk = model_config(arch).image_encoder.trunk
        return (patch.shape[0] == trunk.embed_dim
                and count_blocks(state, "image_encoder.trunk.blocks.") == sum(trunk.stages))

    @classmethod
    def arch_from(cls, value: Any) -> Sam2Spec | None:
        return value if isinstance(value, Sam2Spec) else None

    def configure(self, device: torch.device, dtype: torch.dtype, **options: Any) -> None:
        super().configure(device, dtype, **options)
        from dtseg.families.sam2.hiera import fast_sam2_encoder
        from dtseg.nn.decoder import FastMaskDecoder

        reference = options.get("decoder", "fast") == "reference"
        self.fast_decoder = None if reference else FastMaskDecoder(self.decoder_weights(self.net.sam_mask_decoder))
        # the fast encoder pass; in low precision on the CPU over its own copy in ``compute``
        reference_encoder = options.get("encoder", "fast") == "reference"
        self.fast_encoder = None if reference_encoder else fast_sam2_encoder(self.net, self.encoder_copy_dtype())
        with torch.inference_mode():
            self._dense_pe = self.net.sam_prompt_encoder.get_dense_pe().to(self.decoder_dtype)

    def preprocess(self, images: list[np.ndarray], transforms: list[ImageTransform]) -> Tensor:
        """``SAM2Transforms``: to [0, 1], bilinear (antialiased) resize to each transform's
        ``input_size`` (the S x S square; ``transform`` gives ``input_length``), ImageNet normalize."""
        from torchvision.transforms.functional import normalize, resize

        batch = []
        for image, transform in zip(images, transforms, strict=True):
            x = torch.from_numpy(np.ascontiguousarray(image)).to(self.device).permute(2, 0, 1).float() / 255.0
            batch.append(normalize(resize(x, list(transform.input_size), antialias=True), _MEAN, _STD))
        return torch.stack(batch).to(self.dtype)

    def encode(self, x: Tensor) -> dict[str, Tensor]:
        """The image embedding ``(B, 256, 64, 64)`` (``no_mem_embed`` added, as the predictor does)
        and the two projected high-resolution levels ``(B, 32, 256, 256)``, ``(B, 64, 128, 128)``."""
        if self.fast_encoder is not None:
            high_res_0, high_res_1, embed = self.fast_encoder(x)
            return {HIGH_RES[0]: high_res_0, HIGH_RES[1]: high_res_1, IMAGE_EMBED: embed}
        net = self.net
        backbone_out = net.forward_image(x)
        _, vision_feats, _, sizes = net._prepare_backbone_features(backbone_out)
        if net.directly_add_no_mem_embed:
            vision_feats[-1] = vision_feats[-1] + net.no_mem_embed
        b = x.shape[0]
        maps = [feat.permute(1, 2, 0).reshape(b, -1, *size) for feat, size in zip(vision_feats, sizes, strict=True)]
        return {HIGH_RES[0]: maps[0], HIGH_RES[1]: maps[1], IMAGE_EMBED: maps[-1]}

    def decode(self, features: dict[str, Tensor], coords: Tensor | None, labels: Tensor | None,
               boxes: Tensor | None, masks: Tensor | None, multimask: bool) -> tuple[Tensor, Tensor]:
        if boxes is not None:  # SAM 2 takes a box as two corner points labelled 2, 3, in front
            corners = boxes.reshape(-1, 2, 2)
            corner_labels = torch.tensor([[2, 3]], dtype=torch.int, device=boxes.device).expand(len(boxes), -1)
            coords = corners if coords is None else torch.cat([corners, coords], dim=1)
            labels = corner_labels if labels is None else torch.cat([corner_labels, labels.int()], dim=1)
        points = None if coords is None else (coords, labels)
        sparse, dense = self.net.sam_prompt_encoder(points=points, boxes=None, masks=masks)  # in fp32
        sparse, dense = sparse.to(self.decoder_dtype), cast_shared(dense, self.decoder_dtype)
        high_res = [features[HIGH_RES[0]], features[HIGH_RES[1]]]
        if self.fast_decoder is not None:  # batched: the image features are not repeated per object
            return self.fast_decoder(features[IMAGE_EMBED], self._dense_pe, sparse, dense, multimask, high_res)
        low_res, iou, _, _ = self.net.sam_mask_decoder(
            image_embeddings=features[IMAGE_EMBED],
            image_pe=self._dense_pe,
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask,
            repeat_image=len(sparse) > 1,
            high_res_features=high_res,
        )
        return low_res, iou

    def feature_shapes(self) -> dict[str, tuple[int, ...]]:
        decoder = self.net.sam_mask_decoder
        d, grid = self.net.hidden_dim, self.input_length // 16
        return {HIGH_RES[0]: (decoder.conv_s0.out_channels, grid * 4, grid * 4),
                HIGH_RES[1]: (decoder.conv_s1.out_channels, grid * 2, grid * 2),
                IMAGE_EMBED: (d, grid, grid)}

    # -- video ----------------------------------------------------------------------------
    def tracker(self, engine: SamEngine, image_size: int | None = None, **options: Any) -> Propagator:
        """SAM 2's memory tracking over this model (``engine``'s, shared): a ``Propagator``
        whose frames go through this family's preprocessing and encoder (the fast one unless
        ``encoder: reference``) in the engine's precision, under the engine's encoder lock.

        At the model's input size a frame is embedded by ``engine.embed_image(cache=False)``:
        pixels the engine's cache already holds are not encoded again, and video frames are
        not stored (they would evict images). ``image_size``: another square input side (a
        multiple of 64; smaller is faster and coarser); memory attention and the SAM heads then
        run in a second network built for it (``resized_net``). ``options``: ``Propagator``'s."""
        from dtseg.families.sam2.tracker import FrameFeatures, Propagator

        side = self.input_length if image_size is None else int(image_size)
        if side == self.input_length:
            def encode(image: np.ndarray) -> FrameFeatures:
                embedding = engine.embed_image(image, cache=False)
                return FrameFeatures(self.backbone_maps({name: t[None] for name, t in embedding.features.items()}),
                                     embedding)

            return Propagator(self.net, encoder=encode, **options)

        def encode_at(image: np.ndarray) -> FrameFeatures:
            transform = ImageTransform.for_image(image.shape[0], image.shape[1], side, stretch=True)
            with torch.inference_mode(), engine._encoder_lock:
                features = self.embed([image], [transform])
                engine.encoder_calls += 1
            return FrameFeatures(self.backbone_maps(features))

        return Propagator(self.resized_net(side), encoder=encode_at, **options)

    def backbone_maps(self, features: dict[str, Tensor]) -> list[Tensor]:
        """``encode``'s features ``(B, C, h, w)`` -> what ``SAM2Base.forward_image`` leaves in
        ``backbone_fpn`` (its last ``num_feature_levels``), what memory attention and the memory
        encoder read: the two projected high-resolution levels and the image embedding without
        ``no_mem_embed`` (subtracted in fp32), in the weights' dtype."""
        embed = features[IMAGE_EMBED].float()
        if self.net.directly_add_no_mem_embed:
            embed = embed - self.net.no_mem_embed.float().view(1, -1, 1, 1)
        maps = [features[HIGH_RES[0]], features[HIGH_RES[1]], embed]
        return [m.to(self.dtype) for m in maps[-self.net.num_feature_levels:]]

    def resized_net(self, image_size: int) -> nn.Module:
        """This network rebuilt for an ``image_size`` square input, the same weights; its image
        encoder is this one's (shared: it does not depend on the input size)."""
        from dataclasses import replace

        from dtseg.families import resolve_model

        if image_size % 64:
            raise ValueError(f"video.image_size: a multiple of 64, got {image_size}")
        _, arch, _, _ = resolve_model(self.model_name)
        net = self.build_net(replace(arch, overrides=(*arch.overrides, ("image_size", image_size))))
        net.load_state_dict(self.net.state_dict())
        net.image_encoder = self.net.image_encoder
        return net.to(device=self.device, dtype=self.dtype).eval()
