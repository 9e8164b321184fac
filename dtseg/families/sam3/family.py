"""The ``sam3`` family: Meta's SAM 3 image network (``sam3`` package), one embedding for both prompt kinds.

One image pass (``backbone.forward_image``: the ViT and its two necks) feeds two heads:

- *visual* prompts (points, boxes, a mask input) through the interactive predictor's SAM
  decoder, exactly as ``Sam3Image.predict_inst`` does: the image stretched to the square input
  (``resolution``, 1008 official) and normalized with mean = std = 0.5; the tracker neck's
  three levels, the two high-resolution ones projected by ``conv_s0``/``conv_s1``, the coarsest
  with ``no_mem_embed`` added; a box as two corner points labelled 2 and 3; the single-mask
  output by stability; low-res logits ``4g x 4g`` (``g = resolution / 14``: 288 official)
  clamped to ±32; holes of up to 256 low-res cells filled before the masks are cut
  (``fill_holes``; the predictor's ``max_hole_area``).
- *concept* prompts (a phrase, exemplar boxes with labels, or both) through the detector
  (``forward_grounding``: geometry encoder, fusion encoder over all image tokens, DETR decoder
  with 200 queries and a presence token, pixel decoder): every query's score
  (sigmoid(logit) x sigmoid(presence)), box and low-res mask logits. Phrases are encoded once
  and kept in a bounded LRU (``phrase_cache_bytes``); all prompts of a call share the image
  features (``decode_concepts``).

The network is ``dtseg.families.sam3.net``'s (Meta's builder from a ``Sam3Spec``); the weights
load strictly from ``sam3.pt``'s layout (``load_sam3_weights``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import torch
from torch import Tensor, nn

from dtseg.cache.lru import ByteLRUCache
from dtseg.families.base import IMAGE_EMBED, Capabilities, ConceptOutput, LoadedModel, cast_shared
from dtseg.families.sam3.net import (
    SAM3,
    SAM3_SPEC,
    TINY_SAM3_SPEC,
    Sam3Spec,
    build_sam3_net,
    load_sam3_weights,
    on_device,
)
from dtseg.families.transforms import ImageTransform
from dtseg.nn import RefModule

if TYPE_CHECKING:
    from dtseg.engine.engine import SamEngine
    from dtseg.families.sam3.tracker import Sam3Propagator

MODELS = (SAM3,)
#: Test-size SAM 3 (random weights only), see ``TINY_SAM3_SPEC``.
TINY_MODELS = {"tiny_sam3": TINY_SAM3_SPEC}
HIGH_RES = ("high_res_0", "high_res_1")  # the interactive decoder's: (32, 4g, 4g), (64, 2g, 2g)
DETECTOR = ("detector_0", "detector_1", "detector_2")  # the detector neck's: (256, 4g, 4g), (256, 2g, 2g), (256, g, g)
#: The interactive predictor fills background holes of up to this many low-res cells (Meta's default).
MAX_HOLE_AREA = 256
#: Meta's placeholder phrase for a prompt of exemplar boxes only.
VISUAL_PHRASE = "visual"
#: Prompts per detector pass on a GPU (the pixel decoder holds ~0.5 GB per prompt at the
#: official size). On a CPU one: measured at full size, 2 cores, 5 phrases, 4 per pass took
#: 1.1x (fp32) and 2.6x (bf16) the time of one per pass.
CONCEPT_CHUNK = 4


@dataclass(frozen=True)
class _Phrase:
    """One phrase's text-encoder output: ``features`` ``(T, 256)``, ``mask`` ``(T,)`` (True = padding)."""

    features: Tensor
    mask: Tensor

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.features, self.mask))


class Sam3Model(LoadedModel):
    """SAM 3 for images: points, boxes and mask inputs (``predict_inst``) and concepts."""

    family = "sam3"
    models = MODELS
    test_models = MappingProxyType(TINY_MODELS)
    capabilities = Capabilities(prompts=frozenset({"points", "boxes", "masks", "concepts"}), lineage="sam3",
                                video_memory=True)
    net: RefModule  # the sam3 package's network, read by its parts' names
    #: The official model's input side and low-res mask side; a ``Sam3Spec`` of another
    #: resolution (``tiny_sam3``: 168 and 48) sets its own on the instance.
    input_length = SAM3_SPEC.resolution
    mask_length = 4 * SAM3_SPEC.grid
    stretch = True
    single_upsample = True
    logit_clamp = 32.0
    #: One image pass (Meta's); ``fast`` and ``reference`` both name it. The visual prompts'
    #: decoder: dtseg's batched ``FastMaskDecoder`` or Meta's module.
    encoders = ("fast", "reference")
    decoders = ("fast", "reference")
    #: Bytes of phrase encodings kept (an official phrase is 33 KB).
    phrase_cache_bytes = 16 << 20

    def __init__(self, net: RefModule, model_name: str) -> None:
        super().__init__(net, model_name)
        tracker = net.inst_interactive_predictor.model
        self.input_length = tracker.image_size
        self.grid = tracker.image_size // tracker.backbone_stride
        self.mask_length = 4 * self.grid
        self.phrases: ByteLRUCache[_Phrase] = ByteLRUCache(self.phrase_cache_bytes)
        self.fast_decoder: nn.Module | None = None
        self.concept_chunk = CONCEPT_CHUNK  # set by ``configure`` for the device

    @property
    def tracker_net(self) -> RefModule:
        """SAM 3's tracker (Meta's ``Sam3TrackerBase``, the interactive predictor's model): a
        SAM 2-style prompt encoder and mask decoder, memory attention and memory encoder."""
        return self.net.inst_interactive_predictor.model

    # -- building -------------------------------------------------------------------------
    @classmethod
    def build_net(cls, arch: Sam3Spec) -> nn.Module:
        return build_sam3_net(arch)

    @classmethod
    def state_fits(cls, state: dict[str, Tensor], arch: Any) -> bool:
        patch = state.get("detector.backbone.vision_backbone.trunk.patch_embed.proj.weight")
        if patch is None:
            patch = state.get("backbone.vision_backbone.trunk.patch_embed.proj.weight")
        return isinstance(arch, Sam3Spec) and patch is not None and patch.shape[0] == arch.vit_dim

    @classmethod
    def load_checkpoint(cls, net: nn.Module, path: Path, model: str) -> None:
        """``sam3.pt``'s layout (``detector.*``, ``tracker.*``), every key and shape checked."""
        load_sam3_weights(net, path, model)

    @classmethod
    def arch_from(cls, value: Any) -> Sam3Spec | None:
        return value if isinstance(value, Sam3Spec) else None

    def configure(self, device: torch.device, dtype: torch.dtype, **options: Any) -> None:
        # the ViT's rotary tables (complex buffers) would lose their imaginary part to ``Module.to(dtype)``
        rotary = {name: buffer for name, buffer in self.net.named_buffers() if buffer.is_complex()}
        super().configure(device, dtype, **options)
        from dtseg.nn.decoder import FastMaskDecoder

        if self.dtype != torch.float32:  # CUDA/MPS: Meta's modules take fp32 inputs (boxes, coordinates)
            # and run under autocast over fp32 weights, as Meta runs them; the features are kept in ``precision``
            self.net.to(torch.float32)
            self.dtype = self.decoder_dtype = torch.float32
        for name, buffer in rotary.items():
            module, _, attr = name.rpartition(".")
            setattr(self.net.get_submodule(module), attr, buffer.to(device))
        _move_cached_tensors(self.net, device)
        tracker = self.tracker_net
        reference = options.get("decoder", "fast") == "reference"
        self.fast_decoder = None if reference else FastMaskDecoder(self.decoder_weights(tracker.sam_mask_decoder))
        neck = self.net.backbone.vision_backbone
        with torch.inference_mode():
            self._dense_pe = tracker.sam_prompt_encoder.get_dense_pe().to(self.decoder_dtype)
            # the detector's sine position encodings depend on the grid sizes only
            self._detector_pe = [neck.position_encoding(torch.zeros(1, 1, side, side, device=device)).to(self.dtype)
                                 for side in (4 * self.grid, 2 * self.grid, self.grid)]
        self.phrases.clear()
        self.concept_chunk = 1 if device.type == "cpu" else CONCEPT_CHUNK

    # -- the image ------------------------------------------------------------------------
    def preprocess(self, images: list[np.ndarray], transforms: list[ImageTransform]) -> Tensor:
        """``Sam3Processor``'s: the uint8 image resized (antialiased) to S x S, to [0, 1], normalized (0.5, 0.5)."""
        from torchvision.transforms.v2.functional import resize

        side = self.input_length
        batch = []
        for image in images:
            x = torch.from_numpy(np.ascontiguousarray(image)).to(self.device).permute(2, 0, 1)
            x = resize(x, [side, side], antialias=True).float() / 255.0
            batch.append((x - 0.5) / 0.5)
        return torch.stack(batch).to(self.dtype)

    def encode(self, x: Tensor) -> dict[str, Tensor]:
        """The interactive decoder's ``image_embed`` ``(B, 256, g, g)`` (``no_mem_embed`` added)
        and ``high_res_0/1`` ``(B, 32, 4g, 4g)``, ``(B, 64, 2g, 2g)``; the detector's three
        levels ``detector_0/1/2`` ``(B, 256, 4g|2g|g, ...)``."""
        out = self.net.backbone.forward_image(x)
        tracker = self.tracker_net
        sam2 = out["sam2_backbone_out"]["backbone_fpn"]
        embed = sam2[2] + tracker.no_mem_embed.reshape(1, -1, 1, 1)
        features = {HIGH_RES[0]: tracker.sam_mask_decoder.conv_s0(sam2[0]),
                    HIGH_RES[1]: tracker.sam_mask_decoder.conv_s1(sam2[1]), IMAGE_EMBED: embed}
        features.update(zip(DETECTOR, out["backbone_fpn"], strict=True))
        return features

    def feature_shapes(self) -> dict[str, tuple[int, ...]]:
        decoder, g = self.tracker_net.sam_mask_decoder, self.grid
        d = self.net.hidden_dim
        return {HIGH_RES[0]: (decoder.conv_s0.out_channels, 4 * g, 4 * g),
                HIGH_RES[1]: (decoder.conv_s1.out_channels, 2 * g, 2 * g),
                IMAGE_EMBED: (decoder.transformer_dim, g, g),
                DETECTOR[0]: (d, 4 * g, 4 * g), DETECTOR[1]: (d, 2 * g, 2 * g), DETECTOR[2]: (d, g, g)}

    # -- visual prompts -------------------------------------------------------------------
    def decode(self, features: dict[str, Tensor], coords: Tensor | None, labels: Tensor | None,
               boxes: Tensor | None, masks: Tensor | None, multimask: bool) -> tuple[Tensor, Tensor]:
        if boxes is not None:  # a box is two corner points labelled 2, 3, in front of the clicks
            corners = boxes.reshape(-1, 2, 2)
            corner_labels = torch.tensor([[2, 3]], dtype=torch.int, device=boxes.device).expand(len(boxes), -1)
            coords = corners if coords is None else torch.cat([corners, coords], dim=1)
            labels = corner_labels if labels is None else torch.cat([corner_labels, labels.int()], dim=1)
        tracker = self.tracker_net
        points = None if coords is None else (coords, labels)
        sparse, dense = tracker.sam_prompt_encoder(points=points, boxes=None, masks=masks)  # in fp32
        sparse, dense = sparse.to(self.decoder_dtype), cast_shared(dense, self.decoder_dtype)
        high_res = [features[HIGH_RES[0]], features[HIGH_RES[1]]]
        if self.fast_decoder is not None:
            return self.fast_decoder(features[IMAGE_EMBED], self._dense_pe, sparse, dense, multimask, high_res)
        low_res, iou, _, _ = tracker.sam_mask_decoder(
            image_embeddings=features[IMAGE_EMBED], image_pe=self._dense_pe, sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense, multimask_output=multimask, repeat_image=len(sparse) > 1,
            high_res_features=high_res)
        return low_res, iou

    def fill_holes(self, logits: Tensor) -> Tensor:
        """Low-res logits ``(N, M, L, L)`` with every background hole (8-connected cells
        ``<= 0``) of at most ``MAX_HOLE_AREA`` cells set to 10, as the predictor does before
        upsampling (``SAM2Transforms.postprocess_masks``); float32 on the CPU."""
        out = logits.float().cpu().clone()
        flat = out.view(-1, *out.shape[-2:]).numpy()
        for cell in flat:
            _count, components, stats, _ = cv2.connectedComponentsWithStats((cell <= 0).astype(np.uint8),
                                                                            connectivity=8)
            small = np.flatnonzero(stats[1:, cv2.CC_STAT_AREA] <= MAX_HOLE_AREA) + 1
            if len(small):
                cell[np.isin(components, small)] = 10.0
        return out

    # -- video ----------------------------------------------------------------------------
    def tracker(self, engine: SamEngine, image_size: int | None = None, **options: Any) -> Sam3Propagator:
        """SAM 3's tracker over this model (``engine``'s, shared; ``dtseg.families.sam3.tracker``).
        A frame is embedded by ``engine.embed_image(cache=False)`` (pixels the cache holds are not
        encoded again, frames are not stored); the same embedding serves the tracker and, on a
        keyframe, concept prompts. ``image_size``: only the model's own (SAM 3's position
        embeddings are fixed to it). ``options``: ``Propagator``'s."""
        from dtseg.families.sam2.tracker import FrameFeatures
        from dtseg.families.sam3.tracker import Sam3Propagator

        if image_size is not None and int(image_size) != self.input_length:
            raise ValueError(f"video.image_size: {self.model_name} tracks at its own input size only "
                             f"({self.input_length}); leave it unset")
        tracker = self.tracker_net
        no_mem = tracker.no_mem_embed.float().view(1, -1, 1, 1)

        def encode(image: np.ndarray) -> FrameFeatures:
            embedding = engine.embed_image(image, cache=False)
            features = {name: t[None] for name, t in embedding.features.items()}
            maps = [features[HIGH_RES[0]], features[HIGH_RES[1]], features[IMAGE_EMBED].float() - no_mem]
            return FrameFeatures(maps, embedding)

        return Sam3Propagator(tracker, self.net.backbone.vision_backbone, encoder=encode, **options)

    # -- concept prompts ------------------------------------------------------------------
    def encode_phrases(self, phrases: list[str]) -> tuple[Tensor, Tensor]:
        """Text-encoder outputs of ``phrases``: features ``(T, P, 256)``, mask ``(P, T)``
        (True = padding); each phrase is encoded once while it stays in ``phrases``' LRU."""
        missing = list(dict.fromkeys(p for p in phrases if self.phrases.get(p) is None))
        found = {}
        if missing:
            with torch.inference_mode(), torch.autocast(self.device.type, self.compute, enabled=self.autocast):
                out = self.net.backbone.forward_text(missing, device=self.device)
            for i, phrase in enumerate(missing):
                found[phrase] = _Phrase(out["language_features"][:, i].float().clone(),
                                        out["language_mask"][i].clone())
                self.phrases.put(phrase, found[phrase])
        encoded = [found.get(p) or self.phrases.get(p) for p in phrases]
        return (torch.stack([e.features for e in encoded], dim=1).to(self.dtype),  # type: ignore[union-attr]
                torch.stack([e.mask for e in encoded]))  # type: ignore[union-attr]

    def decode_concepts(self, features: dict[str, Tensor], phrases: list[str | None],
                        boxes: list[Tensor], labels: list[Tensor]) -> ConceptOutput:
        """P concept prompts against one image, ``concept_chunk`` per detector pass.

        Args:
            features: this image's features, batch dim 1, on device.
            phrases: one per prompt, ``None`` for exemplar boxes only (Meta's ``"visual"``).
            boxes: one ``(K_i, 4)`` per prompt: exemplar boxes, input-frame ``xyxy`` pixels (K_i may be 0).
            labels: one ``(K_i,)`` bool per prompt: True for a positive exemplar.
        """
        step = self.concept_chunk
        parts = [self._concepts(features, phrases[i:i + step], boxes[i:i + step], labels[i:i + step])
                 for i in range(0, len(phrases), step)]
        return ConceptOutput(*(torch.cat(tensors) for tensors in zip(*((p.scores, p.boxes, p.mask_logits)
                                                                         for p in parts), strict=True)))

    def _concepts(self, features: dict[str, Tensor], phrases: list[str | None], boxes: list[Tensor],
                  labels: list[Tensor]) -> ConceptOutput:
        from sam3.model.data_misc import FindStage
        from sam3.model.geometry_encoders import Prompt

        count = len(phrases)
        texts = [VISUAL_PHRASE if p is None else p for p in phrases]
        unique = list(dict.fromkeys(texts))
        language, language_mask = self.encode_phrases(unique)
        device = self.device
        index = torch.tensor([unique.index(t) for t in texts], device=device)
        find = FindStage(img_ids=torch.zeros(count, dtype=torch.long, device=device), text_ids=index,
                         input_boxes=None, input_boxes_mask=None, input_boxes_label=None, input_points=None,
                         input_points_mask=None)
        most = max(len(b) for b in boxes)
        if most:  # (K, P, 4) normalized cxcywh; padding masked (True)
            padded = torch.zeros(most, count, 4, device=device)
            kinds = torch.zeros(most, count, dtype=torch.long, device=device)
            mask = torch.ones(count, most, dtype=torch.bool, device=device)
            for i, (b, lab) in enumerate(zip(boxes, labels, strict=True)):
                xyxy = b.float() / self.input_length
                padded[: len(b), i] = torch.cat([(xyxy[:, :2] + xyxy[:, 2:]) / 2, xyxy[:, 2:] - xyxy[:, :2]], dim=1)
                kinds[: len(b), i] = lab.long()
                mask[i, : len(b)] = False
            geometry = Prompt(box_embeddings=padded, box_mask=mask, box_labels=kinds)
        else:
            geometry = Prompt(box_embeddings=torch.zeros(0, count, 4, device=device),
                              box_mask=torch.zeros(count, 0, device=device, dtype=torch.bool))
        backbone_out = {"backbone_fpn": [features[name].to(self.dtype) for name in DETECTOR],
                        "vision_pos_enc": self._detector_pe, "language_features": language,
                        "language_mask": language_mask}
        with torch.inference_mode(), on_device(device), \
                torch.autocast(device.type, self.compute, enabled=self.autocast):
            out = self.net.forward_grounding(backbone_out=backbone_out, find_input=find, find_target=None,
                                             geometric_prompt=geometry)
        presence = out["presence_logit_dec"].float().sigmoid()  # (P, 1)
        scores = out["pred_logits"].float().sigmoid()[..., 0] * presence
        return ConceptOutput(scores.cpu(), out["pred_boxes_xyxy"].float().cpu(), out["pred_masks"].float().cpu())


def _move_cached_tensors(net: nn.Module, device: torch.device) -> None:
    """Meta's modules keep precomputed tensors outside their state (position encodings by
    size, the decoder's coordinate grid): move them with the network."""
    module: RefModule  # Meta's modules, their caches set by name
    for module in net.modules():
        cache = getattr(module, "cache", None)
        if isinstance(cache, dict):
            for key, value in cache.items():
                if isinstance(value, Tensor):
                    cache[key] = value.to(device)
        grid = getattr(module, "compilable_cord_cache", None)
        if isinstance(grid, tuple):
            module.compilable_cord_cache = tuple(t.to(device) for t in grid)
        coords = getattr(module, "coord_cache", None)
        if isinstance(coords, dict):
            module.coord_cache = {}
