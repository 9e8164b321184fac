"""Meta's SAM 3 image network (the ``sam3`` package), built for any device, and its checkpoints.

``sam3`` is SAM 3's reference implementation. Its builder (``build_sam3_image_model``) hard-codes
the architecture and assumes a CUDA device; this module builds the same network from a
``Sam3Spec`` (the official one reproduces Meta's builder exactly; ``TINY_SAM3_SPEC`` is a
test-size one) and runs it anywhere, without editing the package:

- ``on_device(device)``: while building and running, factory calls that name ``"cuda"``
  (``PositionEmbeddingSine(precompute_resolution=...)``, ``TransformerDecoder(resolution=...)``,
  ``forward_text``'s default device) allocate on ``device``, and on the CPU
  ``Tensor.pin_memory`` (called on every box prompt) returns its tensor; ``Tensor.cuda`` (the
  tracker's memory attention calls it on every memory) moves to ``device``.
- ``build_sam3_net``: the text encoder's ``positional_embedding`` and ``text_projection`` come
  from ``torch.empty`` in Meta's code; they are initialized here (open_clip's init), so random
  weights are the same for the same seed. The interactive predictor (``predict_inst``) enters a
  bf16 CUDA autocast at construction and never leaves it; the build leaves it again.
- Checkpoints: Meta's ``sam3.pt`` is the video model's state dict (``detector.*``,
  ``tracker.*``); ``load_sam3_weights`` maps it onto the image network as Meta's
  ``_load_checkpoint`` does (``tracker.`` -> ``inst_interactive_predictor.model.``), strictly.
- ``spec_builder(spec)``: Meta's builders, with the classes it names taking the spec's values.

Meta's ``PostProcessImage`` takes ``always_interpolate_masks_on_gpu=False`` on the CPU; the
interactive predictor's hole filling (``max_hole_area=256``) runs on the CPU through
scikit-image.
"""

from __future__ import annotations

import contextlib
import functools
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from dtseg.errors import CheckpointError, CheckpointNotFoundError
from dtseg.families.base import OfficialModel

#: sha256 of open_clip's ``bpe_simple_vocab_16e6.txt.gz``, byte-identical to the file Meta's
#: repository ships as ``assets/bpe_simple_vocab_16e6.txt.gz`` (the ``sam3`` wheel does not).
BPE_SHA256 = "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"
#: ``sam3.pt`` key prefix -> the image network's (Meta's ``_load_checkpoint``).
CHECKPOINT_PREFIXES = {"detector.": "", "tracker.": "inst_interactive_predictor.model."}
BACKBONE_STRIDE = 14  # ViT patch size: the feature grid is resolution / 14


@dataclass(frozen=True)
class Sam3Spec:
    """SAM 3's image network: what Meta's builder fixes, as fields (defaults: the official model).

    ``resolution`` is the square input side in pixels, a multiple of ``14 * vit_window`` (the
    feature grid, ``resolution / 14``, holds whole attention windows); ``vit_pretrain_size``
    fixes the learned position embedding (``(size / 14)^2`` positions, tiled over the grid).
    The model width (256) and the MLP sizes are Meta's.
    """

    resolution: int = 1008
    vit_window: int = 24
    vit_pretrain_size: int = 336
    vit_dim: int = 1024
    vit_depth: int = 32
    vit_heads: int = 16
    vit_global_blocks: tuple[int, ...] = (7, 15, 23, 31)
    text_width: int = 1024
    text_heads: int = 16
    text_layers: int = 24
    encoder_layers: int = 6      # image-text fusion encoder
    decoder_layers: int = 6      # DETR-like decoder (200 queries, presence token)
    geometry_layers: int = 3     # exemplar box / point encoder
    tracker_layers: int = 4      # the tracker's memory attention (video only, but in sam3.pt)

    def __post_init__(self) -> None:
        if self.resolution <= 0 or self.resolution % (BACKBONE_STRIDE * self.vit_window):
            raise ValueError(f"Sam3Spec: resolution {self.resolution} is not a positive multiple of "
                             f"{BACKBONE_STRIDE} x vit_window ({BACKBONE_STRIDE * self.vit_window})")
        if self.vit_pretrain_size <= 0 or self.vit_pretrain_size % BACKBONE_STRIDE:
            raise ValueError(f"Sam3Spec: vit_pretrain_size {self.vit_pretrain_size} is not a positive multiple of 14")
        if not all(0 <= block < self.vit_depth for block in self.vit_global_blocks):
            raise ValueError(f"Sam3Spec: vit_global_blocks {self.vit_global_blocks} outside 0..{self.vit_depth - 1}")

    def overrides(self) -> dict[str, dict[str, Any]]:
        """Constructor keyword arguments by the class's name in ``sam3.model_builder``; each
        replaces the value Meta's builder passes, unless that is ``None``."""
        return {
            "ViT": {"img_size": self.resolution, "window_size": self.vit_window,
                    "pretrain_img_size": self.vit_pretrain_size, "embed_dim": self.vit_dim, "depth": self.vit_depth,
                    "num_heads": self.vit_heads, "global_att_blocks": self.vit_global_blocks},
            "VETextEncoder": {"width": self.text_width, "heads": self.text_heads, "layers": self.text_layers},
            "TransformerEncoderFusion": {"num_layers": self.encoder_layers},
            "TransformerDecoder": {"num_layers": self.decoder_layers, "resolution": self.resolution},
            "SequenceGeometryEncoder": {"num_layers": self.geometry_layers},
            "TransformerEncoderCrossAttention": {"num_layers": self.tracker_layers},
            "Sam3TrackerPredictor": {"image_size": self.resolution},
            # the memory encoder resizes a mask to the tracker's mask input side (16 cells per patch)
            "SimpleMaskDownSampler": {"interpol_size": [16 * self.grid] * 2},
            # the cached position encodings (Meta precomputes them for 1008 pixels)
            "PositionEmbeddingSine": {"precompute_resolution": self.resolution},
        }

    @property
    def grid(self) -> int:
        """Side of the backbone's feature grid (72 for 1008 pixels)."""
        return self.resolution // BACKBONE_STRIDE


SAM3_SPEC = Sam3Spec()
#: Test-size SAM 3 (random weights only): 168-pixel input (12 x 12 patches: 2 x 2 windows of 6,
#: the 6 x 6 position embedding tiled, as the official 72 x 72 grid holds 3 x 3 windows and
#: tiles 24 x 24), a 2-block ViT of width 32 (one windowed, one global block), a 1-layer text
#: encoder of width 32, one layer everywhere else.
TINY_SAM3_SPEC = Sam3Spec(resolution=168, vit_window=6, vit_pretrain_size=84, vit_dim=32, vit_depth=2, vit_heads=2,
                          vit_global_blocks=(1,), text_width=32, text_heads=2, text_layers=1, encoder_layers=1,
                          decoder_layers=1, geometry_layers=1, tracker_layers=1)

#: Meta's checkpoint, from the gated Hugging Face repository facebook/sam3 (accept the SAM
#: License there; dtseg's download sends the user's Hugging Face token). Meta publishes no sha256, and this project has
#: not seen the file: ``size_mb`` is the network's fp32 tensors (3,449,659,104 bytes; the file
#: adds pickle overhead), so no size check either. ``load_sam3_weights`` checks every key and
#: shape instead. ``encoder_gflop``: ``forward_image`` (ViT and both necks) at 1008 x 1008,
#: counted by FlopCounterMode (attention included) on reduced-depth copies and scaled: a
#: windowed block 156.3, a global block 254.1, patch embedding and necks 438.1 GFLOP;
#: 28 windowed + 4 global blocks.
SAM3 = OfficialModel("sam3", "sam3", SAM3_SPEC, "sam3.pt", "https://huggingface.co/facebook/sam3/resolve/main/sam3.pt",
                     None, 3450, licence="SAM License", size_bytes=None, params_m=860.1, encoder_gflop=5830,
                     gated=True, licence_url="https://huggingface.co/facebook/sam3")


def bpe_path() -> Path:
    """The CLIP BPE vocabulary SAM 3's tokenizer reads: open_clip's copy."""
    try:
        import open_clip
    except ImportError as exc:
        raise CheckpointError("SAM 3's tokenizer needs open-clip-torch (its BPE vocabulary): "
                              "pip install open-clip-torch") from exc
    return Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"


class _DeviceMode(TorchFunctionMode):
    """Factory calls that name CUDA allocate on ``device``; ``pin_memory`` is a no-op on the CPU;
    ``Tensor.cuda`` moves to ``device``."""

    def __init__(self, device: torch.device) -> None:
        super().__init__()
        self.device = device

    def __torch_function__(self, func: Callable, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if func is Tensor.pin_memory and self.device.type == "cpu":
            return args[0]
        if func is Tensor.cuda and self.device.type != "cuda":  # the tracker moves memories "back to the GPU"
            return args[0].to(self.device)
        asked = kwargs.get("device")
        if asked is not None and torch.device(asked).type == "cuda" and self.device.type != "cuda":
            kwargs = {**kwargs, "device": self.device}
        return func(*args, **kwargs)


@contextlib.contextmanager
def on_device(device: str | torch.device = "cpu") -> Iterator[None]:
    """Run Meta's SAM 3 code on ``device`` (build and inference; see the module docstring)."""
    with _DeviceMode(torch.device(device)):
        yield


def _with_kwargs(cls: type, overrides: dict[str, Any]) -> Callable[..., Any]:
    @functools.wraps(cls)
    def build(*args: Any, **kwargs: Any) -> Any:
        return cls(*args, **{**kwargs, **{k: v for k, v in overrides.items() if kwargs.get(k) is not None}})
    return build


@contextlib.contextmanager
def spec_builder(spec: Sam3Spec, device: str | torch.device = "cpu") -> Iterator[Any]:
    """``sam3.model_builder`` building ``spec`` on ``device`` while the context lasts (its
    ``build_sam3_image_model`` and ``build_sam3_video_model`` alike)."""
    import sam3.model_builder as builder

    patches: dict[str, Any] = {name: _with_kwargs(getattr(builder, name), kwargs)
                               for name, kwargs in spec.overrides().items()}
    with on_device(device), mock.patch.multiple(builder, **patches), warnings.catch_warnings():
        # the interactive predictor's CUDA autocast, without CUDA
        warnings.filterwarnings("ignore", "CUDA is not available", UserWarning)
        yield builder


def build_sam3_net(spec: Sam3Spec = SAM3_SPEC, device: str | torch.device = "cpu") -> nn.Module:
    """Meta's ``Sam3Image`` for ``spec``, with the interactive predictor (``predict_inst``), in
    eval mode on ``device``, freshly initialized (the caller seeds). Leaves torch's autocast
    state as it found it."""
    device = torch.device(device)
    with spec_builder(spec, device) as builder:
        net = builder.build_sam3_image_model(bpe_path=str(bpe_path()), device="cpu", eval_mode=True,
                                             checkpoint_path=None, load_from_HF=False,
                                             enable_segmentation=True, enable_inst_interactivity=True)
    predictor = net.inst_interactive_predictor
    predictor.model.bf16_context.__exit__(None, None, None)
    predictor._bb_feat_sizes = [(spec.grid * 4,) * 2, (spec.grid * 2,) * 2, (spec.grid,) * 2]
    text = net.backbone.language_backbone.encoder
    nn.init.normal_(text.positional_embedding, std=0.01)
    nn.init.normal_(text.text_projection, std=text.width ** -0.5)
    return net.to(device)


# -- checkpoints ---------------------------------------------------------------------------
def sam3_state(checkpoint: dict[str, Any]) -> dict[str, Tensor]:
    """A ``sam3.pt`` state dict (``detector.*``, ``tracker.*``; plain or under ``"model"``) ->
    the image network's. A key with another prefix raises ``CheckpointError``."""
    if isinstance(checkpoint.get("model"), dict):
        checkpoint = checkpoint["model"]
    state = {}
    for key, value in checkpoint.items():
        prefix = next((p for p in CHECKPOINT_PREFIXES if key.startswith(p)), None)
        if prefix is None:
            raise CheckpointError(f"key {key!r} is neither detector.* nor tracker.*: not a SAM 3 (sam3.pt) checkpoint")
        state[CHECKPOINT_PREFIXES[prefix] + key[len(prefix):]] = value
    return state


def load_sam3_weights(net: nn.Module, path: str | os.PathLike, model: str = "sam3") -> None:
    """Load ``sam3.pt`` (or a checkpoint saved by ``save_sam3_checkpoint``) into ``net``; every
    key and shape must match."""
    path = Path(path)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from exc
    if not isinstance(checkpoint, dict) or not all(isinstance(v, Tensor) for v in
                                                   checkpoint.get("model", checkpoint).values()):
        raise CheckpointError(f"checkpoint {path} is not a state dict of tensors")
    state = sam3_state(checkpoint)
    expected = net.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if state[k].shape != expected[k].shape)
    if missing or unexpected or wrong:
        raise CheckpointError(
            f"checkpoint {path} does not match the {model} architecture: {len(missing)} missing keys "
            f"{missing[:3]}, {len(unexpected)} unexpected {unexpected[:3]}, {len(wrong)} with other shapes {wrong[:3]}"
        )
    net.load_state_dict(state)


def save_sam3_checkpoint(net: nn.Module, path: str | os.PathLike) -> Path:
    """Write ``net``'s weights in ``sam3.pt``'s layout (``detector.*``, ``tracker.*``)."""
    tracker = CHECKPOINT_PREFIXES["tracker."]
    state = {("tracker." + k[len(tracker):] if k.startswith(tracker) else "detector." + k): v
             for k, v in net.state_dict().items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path


def sam3_checkpoint(checkpoint: str | os.PathLike | None = None) -> Path:
    """The ``sam3.pt`` to load: ``checkpoint``, else ``$DTSEG_HOME/checkpoints/sam3.pt``.
    Missing, it raises ``CheckpointNotFoundError`` saying where to get it and where to put it."""
    from dtseg.engine.checkpoints import checkpoint_dir

    if checkpoint is not None:
        path = Path(checkpoint).expanduser()
        if not path.is_file():
            raise CheckpointNotFoundError(f"checkpoint file not found: {path}")
        return path
    path = checkpoint_dir() / SAM3.filename
    if not path.is_file():
        raise CheckpointNotFoundError(
            f"the sam3 checkpoint is not on this machine. It is gated: accept the SAM License at "
            f"https://huggingface.co/facebook/sam3, download {SAM3.url} (about {SAM3.size_mb / 1000:.1f} GB; "
            f"Meta publishes no sha256)\n  and put it at {path}\n  (or pass checkpoint=PATH, or set DTSEG_HOME)."
        )
    return path


__all__ = ["BPE_SHA256", "SAM3", "SAM3_SPEC", "TINY_SAM3_SPEC", "Sam3Spec", "bpe_path", "build_sam3_net",
           "load_sam3_weights", "on_device", "sam3_checkpoint", "sam3_state",
           "save_sam3_checkpoint", "spec_builder"]
