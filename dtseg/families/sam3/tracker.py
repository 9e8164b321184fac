"""SAM 3's tracker on a stream: SAM 2's ``Propagator`` over Meta's ``Sam3TrackerBase``.

SAM 3's tracker is SAM 2's design (memory attention over the past frames' memories, object
pointers, a SAM decoder) with its own weights (``sam3.pt``'s ``tracker.*``, the image network's
``inst_interactive_predictor.model``) reading the tracker neck of the same image pass the
detector reads: a frame is encoded once for both. What differs from SAM 2 is how the network
is called, not the bookkeeping:

- ``track_step`` and ``_encode_new_memory`` take the frame ``image`` (read only by a mask
  encoder that encodes pixels; SAM 3's ``SimpleMaskEncoder`` does not): ``None``;
- memory attention calls ``Tensor.cuda`` on every memory: it runs under ``on_device``;
- the positional encoding is the shared neck's (``backbone.vision_backbone.position_encoding``);
- a mask prompt enters at ``input_mask_size`` (4 x the low-res mask side: 1152 px official),
  as Meta's ``add_new_mask`` resizes it, and the mask itself is the object's output on that
  frame (``_mask_prompt_outputs``: a detection's mask does not change as it joins);
- the objects conditioned on one frame have their memories encoded from non-overlapping masks
  (each pixel kept by the highest logit), as Meta's predictor consolidates them.

Meta's video model adds, around this tracker, memory selection by predicted IoU
(``use_memory_selection``), hot-start and re-conditioning heuristics and a planner that matches
detections to tracks; dtseg's ``ObjectBook`` (``dtseg.video.propagate``) does the joining,
re-anchoring and leaving instead, as for SAM 2.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from dtseg.families.sam2.tracker import FrameEncoder, Propagator
from dtseg.families.sam3.net import on_device
from dtseg.nn import RefModule

FILL_HOLE_AREA = 16  # Meta's SAM 3 video model's ``fill_hole_area``
KEPT_MASK_SCORE = 1024.0  # a mask prompt's logit (Meta's ``NO_OBJ_SCORE``, negated)


class Sam3Propagator(Propagator):
    """``Propagator`` over SAM 3's tracker ``net`` (a ``Sam3TrackerBase``); ``neck``: the image
    network's ``backbone.vision_backbone`` (its positional encoding). Options as ``Propagator``'s."""

    def __init__(self, net: RefModule, neck: RefModule, *, encoder: FrameEncoder, max_cond_frames: int = 4,
                 fill_hole_area: int = FILL_HOLE_AREA) -> None:
        super().__init__(net, encoder=encoder, max_cond_frames=max_cond_frames, fill_hole_area=fill_hole_area)
        self.neck = neck
        self.mask_input_side = int(net.input_mask_size)

    def _track_step(self, **kwargs: Any) -> dict[str, Any]:
        with on_device(self.net.device):
            return self.net.track_step(image=None, **kwargs)

    def _encode_memory(self, **kwargs: Any) -> tuple[Tensor, list[Tensor]]:
        with on_device(self.net.device):
            return self.net._encode_new_memory(image=None, **kwargs)

    def _conditioning_masks(self, high_res: Tensor) -> Tensor:
        return self.net._apply_non_overlapping_constraints(high_res)

    def _mask_prompt_outputs(self, logits: Tensor, masks: list[Any]) -> tuple[Tensor, list[np.ndarray | None]]:
        """Each mask itself, and as low-res logits: +-1024 at the frame's size downsampled
        (antialiased) to the low-res side, as Meta's predictor consolidates a mask prompt."""
        side = int(self.net.low_res_mask_size)
        kept = np.stack([np.asarray(mask, bool) for mask in masks])
        video = torch.from_numpy(kept)[:, None].to(logits.device)
        scores = torch.where(video, KEPT_MASK_SCORE, -KEPT_MASK_SCORE)
        low_res = F.interpolate(scores, size=(side, side), mode="bilinear", align_corners=False, antialias=True)
        return low_res, list(kept)

    def _position_encoding(self, level: Tensor) -> Tensor:
        return self.neck.position_encoding(level)
