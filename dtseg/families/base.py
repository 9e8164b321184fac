"""The seam between the engine and a model family.

The engine owns what every family shares: the byte-bounded cache, batching and grouping of
prompts by layout, the one coordinate transform, mask post-processing, ``sv.Detections`` and
the locks. A family supplies only what differs: the network and how it is built, the input
size and preprocessing, ``encode`` (a batch of images -> named feature tensors) and the batched
``decode`` of prompts given in the family's input coordinates.

A family is a ``LoadedModel`` subclass: an instance is one loaded model of the family, and the
class attributes describe the family (its name, ``Capabilities``, official checkpoints, test-size
models, input geometry). It reaches the registry through the plugin hook
``dtseg_register_model_families`` (``dtseg.hookspecs``), as dtseg's own families do: a new family
(SAM-HQ, EfficientSAM) is one folder, here or in another package, and no edit to the core.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor, nn

from dtseg.families.transforms import ImageTransform
from dtseg.runtime.precision import Plan, plan

#: Name of the feature every family has: the ``(C, 64, 64)`` image embedding the decoder attends to.
IMAGE_EMBED = "image_embed"


@dataclass(frozen=True)
class OfficialModel:
    """A published checkpoint: where it comes from and which architecture it fits.

    ``family`` is the name of the family it belongs to; ``arch`` that family's own architecture
    description. ``sha256`` is ``None`` where no public source states one; ``size_bytes`` then
    identifies the file. ``encoder_gflop``: the encoder's GFLOP per image at the model's input
    size (torch's FlopCounterMode on its forward pass, attention included, as ``bench/models.py``
    counts its floors); ``dtseg.eta`` turns it into a time; ``None``: no estimate. ``gated``:
    the file is in a repository that serves it only to a logged-in user who accepted its licence
    on ``licence_url`` (Hugging Face's gated repositories).
    """

    name: str
    family: str
    arch: Any
    filename: str
    url: str
    sha256: str | None
    size_mb: float = field(compare=False)
    licence: str = field(compare=False, default="Apache-2.0")
    size_bytes: int | None = field(compare=False, default=None)
    params_m: float | None = field(compare=False, default=None)  # parameters, millions
    encoder_gflop: float | None = field(compare=False, default=None)
    gated: bool = field(compare=False, default=False)
    licence_url: str | None = field(compare=False, default=None)


@dataclass(frozen=True)
class ConceptOutput:
    """Every query of the detector for P prompts on one image (float32, on the CPU).

    ``scores`` ``(P, Q)`` = sigmoid(logit) x sigmoid(presence); ``boxes`` ``(P, Q, 4)``
    normalized ``xyxy`` in [0, 1] of the image; ``mask_logits`` ``(P, Q, L, L)`` over the
    stretched image (``L = 4g``); ``Q = 200``.
    """

    scores: Tensor
    boxes: Tensor
    mask_logits: Tensor


@runtime_checkable
class ConceptDecoder(Protocol):
    """A loaded model whose ``capabilities.prompts`` include ``"concepts"``: it decodes P concept
    prompts (phrases and exemplar boxes ``(K_p, 4)`` with labels ``(K_p,)``, input pixels)
    against one image's ``features`` (batch dim 1, on device)."""

    def decode_concepts(self, features: dict[str, Tensor], phrases: list[str | None],
                        boxes: list[Tensor], labels: list[Tensor]) -> ConceptOutput: ...


@dataclass(frozen=True)
class Capabilities:
    """What a family can do, declared once; code asks these instead of comparing family names.

    ``prompts``: the prompt kinds its decoder takes (``points``, ``boxes``, ``masks``;
    ``concepts``: phrases and exemplar boxes -> every matching instance). ``lineage``: the SAM
    generation whose conventions and HTTP API it follows (``sam``, ``sam2``, ``sam3``): a route
    family serves the engines of its lineage. ``video_memory``: it tracks objects through a video
    with a memory of past frames (SAM 2's memory attention), not only frame by frame.
    """

    prompts: frozenset[str] = frozenset({"points", "boxes", "masks"})
    lineage: str = "sam"
    video_memory: bool = False


def cast_shared(x: Tensor, dtype: torch.dtype) -> Tensor:
    """``x.to(dtype)``, keeping expanded (stride-0) dims expanded: without mask inputs the prompt
    encoder's dense embedding is one vector expanded over objects and grid, and stays one
    (``Tensor.to`` would write out all ``N x C x 64 x 64`` values)."""
    if x.dtype == dtype:
        return x
    compact = x
    for dim, (size, stride) in enumerate(zip(x.shape, x.stride(), strict=True)):
        if stride == 0 and size > 1:
            compact = compact.narrow(dim, 0, 1)
    return compact.to(dtype).expand(x.shape)


def count_blocks(state: dict[str, Tensor], prefix: str) -> int:
    """How many ``{prefix}{i}.`` blocks ``state`` has."""
    return len({key[len(prefix):].split(".", 1)[0] for key in state if key.startswith(prefix)})


class LoadedModel(ABC):
    """One loaded model of a family: its network plus the family's rules. A subclass is a family:
    its class attributes declare what the registry and the engine need to know about it.

    Tensors crossing the seam: ``preprocess`` returns ``(B, 3, S, S)`` on the model's device and
    dtype (``S = input_length``); ``encode`` returns a dict of batched features ``(B, ...)``;
    ``decode`` takes the features of ONE image (batch dim 1), prompts in input-frame pixels and
    returns low-res logits ``(N, M, L, L)`` and predicted IoUs ``(N, M)`` (``L = mask_length``).
    """

    #: The family's name (``sam``, ``mobile_sam``, ``sam2.1``): what it is registered as.
    family: ClassVar[str]
    #: What it can do (prompt kinds, lineage, video memory).
    capabilities: ClassVar[Capabilities] = Capabilities()
    #: Its published checkpoints (each row's ``family`` is this family's name).
    models: ClassVar[tuple[OfficialModel, ...]] = ()
    #: Test-size models, name -> architecture: random weights only (``checkpoint="random"``).
    test_models: ClassVar[Mapping[str, Any]] = MappingProxyType({})
    #: Side of the square model input, pixels (the family's; a loaded model may set its own).
    input_length: int = 1024
    #: Side of the low-res mask logits (likewise).
    mask_length: int = 256
    #: ``True``: the image is stretched to the square input (SAM 2); ``False``: longest side
    #: resized, aspect kept, bottom/right padded (SAM).
    stretch: ClassVar[bool] = False
    #: ``True``: masks are upsampled in one bilinear step 256 -> original (SAM 2); ``False``:
    #: SAM's two steps over the valid region (see ``postprocess``).
    single_upsample: ClassVar[bool] = False
    #: The reference predictor returns low-res logits clamped to this magnitude (SAM 2: 32).
    logit_clamp: ClassVar[float | None] = None
    #: Which encoder/decoder implementations this family has (``fast`` is always accepted).
    encoders: ClassVar[tuple[str, ...]] = ("fast",)
    decoders: ClassVar[tuple[str, ...]] = ("fast",)

    def __init__(self, net: nn.Module, model_name: str) -> None:
        self.net = net.eval()
        self.model_name = model_name
        #: ``dtype``: the weights' (and so the prompt encoder's); ``precision``: the precision
        #: asked for, which the features are kept in; ``compute``: what the encoder computes in
        #: (``precision``, or fp32 where the CPU has no kernels in it: ``plan``); they differ from
        #: ``dtype`` only on the CPU; ``decoder_dtype``: what the mask decoder computes in.
        self.device, self.dtype, self.precision = torch.device("cpu"), torch.float32, torch.float32
        self.compute = self.decoder_dtype = torch.float32
        self.plan = Plan(torch.float32, torch.float32, "native")
        self.encoder_copy = False  # the encoder holds its own low-precision weights (encoder_copy_dtype)

    # -- building -------------------------------------------------------------------------
    @classmethod
    @abstractmethod
    def build_net(cls, arch: Any) -> nn.Module:
        """The family's network for ``arch`` with freshly initialized weights (caller seeds)."""

    @classmethod
    def state_fits(cls, state: dict[str, Tensor], arch: Any) -> bool:
        """Whether the weights ``state`` look like ``arch``'s (telltale keys and shapes, cheap:
        used to name the model a mismatched checkpoint belongs to)."""
        return False

    @classmethod
    def load_checkpoint(cls, net: nn.Module, path: Path, model: str) -> None:
        """Load the weights file ``path`` into ``net`` strictly (a plain state dict; a family
        whose official files have another layout overrides this)."""
        from dtseg.engine.checkpoints import load_weights

        load_weights(net, path, model)

    @classmethod
    def arch_from(cls, value: Any) -> Any | None:
        """``value`` as this family's architecture (an instance, or a dict of its fields), else ``None``."""
        return None

    def configure(self, device: torch.device, dtype: torch.dtype, *, encoder: str = "fast",
                  decoder: str = "fast", encoder_int8: bool = False, encoder_compile: bool = False) -> None:
        """Move to ``device``/``dtype`` and choose implementations; families extend this.

        Low precision on the CPU keeps the weights fp32 and runs the encoder under
        ``torch.autocast`` (matmuls and convolutions in ``dtype``; layer norms, softmax
        statistics and the residual stream in fp32). In bf16 the fast mask decoder runs on a bf16
        copy of its weights (``decoder_weights``); the prompt encoder (coordinates -> Fourier
        features) and the mask post-processing stay fp32. Where the CPU has no kernels in
        ``dtype`` (``precision.plan``: fallback) the encoder and decoder compute in fp32 and only
        the features are rounded to ``dtype``. On CUDA/MPS the weights are cast."""
        for kind, value, known in (("encoder", encoder, self.encoders), ("decoder", decoder, self.decoders)):
            if value not in known:
                raise ValueError(f"{kind}: the {self.family} family has {list(known)}, got {value!r}")
        if encoder_int8 or encoder_compile:
            option = "encoder_int8" if encoder_int8 else "encoder_compile"
            raise ValueError(f"{option}: only the sam family (vit_b/l/h) has it, not {self.family}")
        weights = torch.float32 if device.type == "cpu" else dtype
        self.net.to(device=device, dtype=weights)
        self.plan = plan(device, dtype)
        self.device, self.dtype, self.precision, self.compute = device, weights, dtype, self.plan.compute
        self.encoder_copy = False
        low_cpu_decoder = device.type == "cpu" and self.compute == torch.bfloat16 and decoder == "fast"
        self.decoder_dtype = torch.bfloat16 if low_cpu_decoder else weights

    def decoder_weights(self, module: nn.Module) -> nn.Module:
        """``module`` (a mask decoder) in ``decoder_dtype``: itself, or a cast copy (a few MB)
        when the decoder computes in another precision than the network's weights."""
        if next(module.parameters()).dtype == self.decoder_dtype:
            return module
        import copy

        return copy.deepcopy(module).to(self.decoder_dtype)

    def encoder_copy_dtype(self) -> torch.dtype | None:
        """For a family whose fast encoder runs on its own copy of the weights in low precision
        (TinyViT, Hiera: faster than autocast's casts on every call): that copy's dtype, or
        ``None`` at full precision. Calling it records the choice: such an encoder runs without
        autocast (``autocast`` is then ``False``)."""
        self.encoder_copy = self.compute != self.dtype
        return self.compute if self.encoder_copy else None

    @property
    def autocast(self) -> bool:
        """Whether the encoder runs under ``torch.autocast`` (low precision over fp32 weights)."""
        return self.compute != self.dtype and not self.encoder_copy

    def embed(self, images: list[np.ndarray], transforms: list[ImageTransform]) -> dict[str, Tensor]:
        """``preprocess`` then ``encode`` in ``compute`` -> features ``(B, ...)`` in ``precision``
        (what an ``Embedding`` keeps)."""
        x = self.preprocess(images, transforms)
        with torch.autocast(self.device.type, self.compute, enabled=self.autocast):
            features = self.encode(x)
        return {name: t.to(self.precision) for name, t in features.items()}

    # -- the seam -------------------------------------------------------------------------
    def transform(self, height: int, width: int) -> ImageTransform:
        """The coordinate transform for an ``(height, width)`` image."""
        return ImageTransform.for_image(height, width, self.input_length, stretch=self.stretch)

    @abstractmethod
    def preprocess(self, images: list[np.ndarray], transforms: list[ImageTransform]) -> Tensor:
        """RGB uint8 ``(H, W, 3)`` images -> model input ``(B, 3, S, S)`` on device, in dtype."""

    @abstractmethod
    def encode(self, x: Tensor) -> dict[str, Tensor]:
        """``(B, 3, S, S)`` -> named batched features; always holds ``IMAGE_EMBED``."""

    @abstractmethod
    def decode(
        self,
        features: dict[str, Tensor],
        coords: Tensor | None,
        labels: Tensor | None,
        boxes: Tensor | None,
        masks: Tensor | None,
        multimask: bool,
    ) -> tuple[Tensor, Tensor]:
        """N objects of one layout against one image.

        Args:
            features: this image's features, batch dim 1, on device.
            coords: ``(N, K, 2)`` input-frame pixels ``[x, y]`` (no padding), or ``None``.
            labels: ``(N, K)`` int, 1 foreground / 0 background / -1 SAM's not-a-point token, or ``None``.
            boxes: ``(N, 4)`` input-frame ``xyxy``, or ``None``.
            masks: ``(N, 1, L, L)`` mask-input logits, or ``None``.

        Returns:
            Low-res logits ``(N, M, L, L)`` and IoU predictions ``(N, M)``; M = 3 or 1.
        """

    def fill_holes(self, logits: Tensor) -> Tensor:
        """Low-res logits ``(N, M, L, L)`` as the masks are cut from them (SAM 3's predictor
        fills small background holes first); by default the logits themselves."""
        return logits

    @abstractmethod
    def feature_shapes(self) -> dict[str, tuple[int, ...]]:
        """The per-image shape of each feature ``encode`` returns (without the batch dim)."""

    def parameters_m(self) -> float:
        """Parameters, millions."""
        return sum(p.numel() for p in self.net.parameters()) / 1e6
