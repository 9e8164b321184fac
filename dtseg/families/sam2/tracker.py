"""Streaming video propagation with SAM 2.x: objects carried from frame to frame by their memory.

``Propagator`` is SAM 2's video tracking as a stream: frames arrive one at a time (nothing is
loaded whole), objects can be added on any frame (points, a box or a mask) and removed at any
time, and each object's memory is bounded. Per frame the image is encoded once; all live
objects are decoded against it through memory attention, batched (objects whose memory banks
have the same layout -- the same conditioning and past frames -- go through in one pass).

The math is SAM 2's own (``SAM2Base.track_step``, ``_encode_new_memory``; Meta's ``sam2``
package); what this module adds is the bookkeeping Meta's ``SAM2VideoPredictor`` does over a
whole loaded video, done per object on a stream, with the same semantics:

* a prompt frame is decoded without memory (``is_init_cond_frame``), its memory is encoded
  from the low-res logits upsampled and binarized (``is_mask_from_pts``), as the predictor's
  ``propagate_in_video_preflight`` does; every other frame is tracked and encoded at once;
* memory features are stored in bfloat16, masks get ``fill_hole_area`` hole filling, as there;
* memory per object: ``num_maskmem - 1`` past frames' memories (7 - 1 for SAM 2.1), object
  pointers of the last ``max_obj_ptrs_in_encoder - 1`` frames (16 - 1), and at most
  ``max_cond_frames`` conditioning frames (the first and the most recent).

Frames reach memory attention as ``SAM2Base.forward_image`` would give them; who encodes them is
the ``encoder`` given: ``reference_encoder`` (what ``SAM2VideoPredictor`` runs: PIL resize and
``forward_image``), or the ``sam2.1`` family's preprocessing and fast encoder in the engine's
precision (``Sam2Model.tracker``, what ``video.mode: propagate`` uses). SAM 3's tracker is the
same design over Meta's ``Sam3TrackerBase`` (``dtseg.families.sam3.tracker``, a subclass that
changes how the network is called, not the bookkeeping).

```python
prop = engine.model.tracker(engine)                      # a sam2.1 engine (capabilities.video_memory)
frame = prop.encode(rgb)                                 # (H, W, 3) uint8
prop.condition(frame, {1: ObjectPrompt(box=np.array([10, 20, 80, 90]))})
outputs = prop.track(frame)                              # every other live object
```
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from dtseg.nn import RefModule

#: What ``sam2.build_sam.build_sam2_video_predictor`` sets beyond the image settings.
VIDEO_PREDICTOR_ARGS = {"binarize_mask_from_pts_for_mem_enc": True}
FILL_HOLE_AREA = 8  # the video predictor's ``fill_hole_area``
#: Prompts decoded in one pass on a keyframe: bounds the memory a keyframe with many detections takes.
PROMPT_BATCH = 16
_MEAN, _STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
_NUM_FRAMES = 1 << 30  # a stream has no known length; SAM2Base only caps pointer lookback with it



@dataclass
class FrameFeatures:
    """What a frame encoder gives for one frame. ``maps``: SAM 2's backbone feature maps, highest
    resolution first, each ``(1, C_i, H_i, W_i)``: what ``SAM2Base.forward_image`` leaves in
    ``backbone_fpn`` (its last ``num_feature_levels``: the two high-resolution levels projected
    by ``conv_s0`` / ``conv_s1``, then the image embedding without ``no_mem_embed``), on any
    device and dtype. ``embedding``: the engine's ``Embedding`` of the frame when an engine
    encoded it (keyframe detection reads it: a frame is encoded once), else ``None``."""

    maps: list[Tensor]
    embedding: Any = None


#: One RGB uint8 frame ``(H, W, 3)`` -> its ``FrameFeatures``.
FrameEncoder = Callable[[np.ndarray], FrameFeatures]


@dataclass
class ObjectPrompt:
    """Prompts for one object on one frame, in the frame's pixels.

    ``points``: ``(K, 2)`` ``[x, y]`` with ``labels`` ``(K,)`` (1 foreground, 0 background);
    ``box``: ``(4,)`` ``xyxy``; ``mask``: ``(H, W)`` bool (alone: no points or box with it).
    """

    points: np.ndarray | None = None
    labels: np.ndarray | None = None
    box: np.ndarray | None = None
    mask: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.mask is not None and (self.points is not None or self.box is not None):
            raise ValueError("prompt: a mask prompt goes alone, without points or a box")
        if self.mask is None and self.points is None and self.box is None:
            raise ValueError("prompt: give points, a box or a mask")
        if (self.points is None) != (self.labels is None):
            raise ValueError("prompt: points and labels go together")


@dataclass
class ObjectOutput:
    """One object on one frame. ``logits``: low-res mask logits ``(1, 1, L, L)`` (``L`` =
    image_size / 4); ``score``: SAM 2's object-score logit (> 0: the object is there);
    ``conditioned``: the frame is one of its conditioning (prompt) frames."""

    obj_id: int
    logits: Tensor
    score: float
    conditioned: bool = False
    _mask: np.ndarray | None = field(default=None, repr=False)
    _size: tuple[int, int] = (0, 0)
    _ptr: Tensor | None = field(default=None, repr=False)  # a preview's object pointer (1, C)

    @property
    def present(self) -> bool:
        return self.score > 0

    @property
    def mask(self) -> np.ndarray:
        """``(H, W)`` bool at the frame's size (bilinear upsampling of ``logits``, > 0)."""
        if self._mask is None:
            up = F.interpolate(self.logits.float(), size=self._size, mode="bilinear", align_corners=False)
            self._mask = (up[0, 0] > 0).cpu().numpy()
        return self._mask


@dataclass
class VideoFrame:
    """One encoded frame: its stream ``index``, original ``size`` ``(H, W)`` and SAM 2's backbone
    features for batch 1 (``feats``: one ``(HW, 1, C)`` per level, highest resolution first;
    ``sizes``: their grids; ``pos``: the positional encoding of the last level, ``[(HW, 1, C)]``,
    the only one memory attention reads; ``embedding``: ``FrameFeatures.embedding``)."""

    index: int
    size: tuple[int, int]
    feats: list[Tensor]
    pos: list[Tensor]
    sizes: list[tuple[int, int]]
    embedding: Any = None

    def expanded(self, batch: int) -> tuple[list[Tensor], list[Tensor]]:
        return [f.expand(-1, batch, -1) for f in self.feats], [p.expand(-1, batch, -1) for p in self.pos]


@dataclass
class _Memory:
    """One frame's memory of one object (batch dim 1): what SAM2Base reads from ``output_dict``."""

    maskmem_features: Tensor | None  # (1, mem_dim, h, w) bfloat16; dropped once out of the window
    obj_ptr: Tensor  # (1, hidden_dim)


@dataclass
class _Track:
    """An object's memory bank: conditioning frames and recent tracked frames, by frame index."""

    cond: OrderedDict[int, _Memory] = field(default_factory=OrderedDict)
    recent: OrderedDict[int, _Memory] = field(default_factory=OrderedDict)


class Propagator:
    """SAM 2 video tracking on a stream; see the module docstring. ``net``: a ``SAM2Base``
    (called through ``_track_step``, ``_encode_memory`` and ``_position_encoding``).

    ``max_cond_frames``: conditioning frames kept per object (the first and the latest ones);
    ``max_objects``: live objects at most (``condition`` refuses more).
    """

    def __init__(self, net: RefModule, *, encoder: FrameEncoder | None = None, max_cond_frames: int = 4,
                 fill_hole_area: int = FILL_HOLE_AREA) -> None:
        if max_cond_frames < 1:
            raise ValueError("max_cond_frames: need at least 1")
        for key, value in VIDEO_PREDICTOR_ARGS.items():
            if hasattr(net, key):
                setattr(net, key, value)
        self.net: RefModule = net.eval()  # sam2's SAM2Base, read by its parts' names
        self.max_cond_frames = int(max_cond_frames)
        self.fill_hole_area = int(fill_hole_area)
        self.image_size = int(self.net.image_size)
        self.mask_input_side = self.image_size  # a mask prompt's side on the way in
        self.encoder = encoder if encoder is not None else reference_encoder(net)
        self.tracks: dict[int, _Track] = {}
        self._next_index = 0
        self._pos_enc: list[Tensor] | None = None  # maskmem_pos_enc, the same for every memory
        self._vision_pos: dict[tuple[Any, ...], Tensor] = {}  # the last level's, per grid

    # -- state ----------------------------------------------------------------------------
    @property
    def live_ids(self) -> list[int]:
        return list(self.tracks)

    def remove(self, obj_id: int) -> None:
        """Forget an object and its memory (unknown IDs are ignored)."""
        self.tracks.pop(int(obj_id), None)

    def memory_bytes(self) -> int:
        """Bytes held by all objects' memories."""
        total = 0
        for track in self.tracks.values():
            for memory in (*track.cond.values(), *track.recent.values()):
                features = memory.maskmem_features
                total += memory.obj_ptr.nbytes + (0 if features is None else features.nbytes)
        return total

    # -- per frame ------------------------------------------------------------------------
    @torch.inference_mode()
    def encode(self, image: np.ndarray) -> VideoFrame:
        """Encode the next frame of the stream: RGB uint8 ``(H, W, 3)``, through ``encoder``;
        the features as ``SAM2Base._prepare_backbone_features`` flattens them, in the net's dtype."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"frame: expected RGB uint8 (H, W, 3), got {image.dtype} {image.shape}")
        encoded = self.encoder(image)
        maps = [m.to(self.net.device, self._dtype) for m in encoded.maps]
        sizes = [(int(m.shape[-2]), int(m.shape[-1])) for m in maps]
        feats = [m.flatten(2).permute(2, 0, 1) for m in maps]
        frame = VideoFrame(self._next_index, (image.shape[0], image.shape[1]), feats, [self._pos_of(maps[-1])], sizes,
                           encoded.embedding)
        self._next_index += 1
        return frame

    @torch.inference_mode()
    def preview(self, frame: VideoFrame, prompts: list[ObjectPrompt]) -> list[ObjectOutput]:
        """What each prompt gives on ``frame`` without any memory (SAM 2 as an image model, as a
        new object would get): the masks to match detections against live objects. Objects
        are not changed; ``obj_id`` is the prompt's position."""
        return [out for out, _ in self._prompt_outputs(frame, prompts)]

    @torch.inference_mode()
    def condition(self, frame: VideoFrame, prompts: dict[int, ObjectPrompt],
                  previews: dict[int, ObjectOutput] | None = None) -> dict[int, ObjectOutput]:
        """Make ``frame`` a conditioning frame of each object in ``prompts`` (``{obj_id: prompt}``):
        a new object starts here; a live one is re-anchored (its memory kept, this frame added
        as a conditioning frame, the oldest but the first dropped beyond ``max_cond_frames``).
        ``previews``: outputs ``preview`` already gave for these prompts (not decoded again)."""
        ids = list(prompts)
        previews = previews or {}
        todo = [i for i in ids if i not in previews]
        decoded = dict(zip(todo, self._prompt_outputs(frame, [prompts[i] for i in todo]), strict=True))
        results: dict[int, ObjectOutput] = {}
        outs = [previews[i] if i in previews else decoded[i][0] for i in ids]
        ptrs = [self._ptr_of(previews[i]) if i in previews else decoded[i][1] for i in ids]
        if not ids:
            return results
        logits = torch.cat([o.logits for o in outs]).to(self._dtype)
        high_res = self._conditioning_masks(F.interpolate(logits, size=(self.image_size, self.image_size),
                                                          mode="bilinear", align_corners=False))
        scores = torch.tensor([[o.score] for o in outs], dtype=self._dtype, device=high_res.device)
        feats, _ = frame.expanded(len(ids))
        features, pos_enc = self._encode_memory(
            current_vision_feats=feats, feat_sizes=frame.sizes, pred_masks_high_res=high_res,
            object_score_logits=scores, is_mask_from_pts=True)
        self._keep_pos_enc(pos_enc)
        for k, (obj_id, out) in enumerate(zip(ids, outs, strict=True)):
            track = self.tracks.setdefault(int(obj_id), _Track())
            track.recent.pop(frame.index, None)
            track.cond[frame.index] = _Memory(features[k:k + 1].to(torch.bfloat16), ptrs[k])
            while len(track.cond) > self.max_cond_frames:
                del track.cond[list(track.cond)[1 if self.max_cond_frames > 1 else 0]]
            out.obj_id, out.conditioned = int(obj_id), True
            results[int(obj_id)] = out
        return results

    @torch.inference_mode()
    def track(self, frame: VideoFrame, skip: set[int] | frozenset[int] = frozenset()) -> dict[int, ObjectOutput]:
        """Carry every live object (but those conditioned on this frame, and ``skip``) onto
        ``frame`` through its memory, batched by memory layout; their memories are updated."""
        groups: dict[tuple[Any, ...], list[int]] = {}
        for obj_id, track in self.tracks.items():
            if obj_id in skip or frame.index in track.cond:
                continue
            groups.setdefault(self._layout(track, frame.index), []).append(obj_id)
        results: dict[int, ObjectOutput] = {}
        for ids in groups.values():
            results.update(self._track_group(frame, ids))
        for obj_id in results:
            self._trim(self.tracks[obj_id], frame.index)
        return results

    # -- the network ----------------------------------------------------------------------
    def _track_step(self, **kwargs: Any) -> dict[str, Any]:
        """``SAM2Base.track_step``: one frame's decode (through memory attention unless it is an
        initial conditioning frame) and, with ``run_mem_encoder``, its memory."""
        return self.net.track_step(**kwargs)

    def _encode_memory(self, **kwargs: Any) -> tuple[Tensor, list[Tensor]]:
        """``SAM2Base._encode_new_memory``: memory features ``(B, C_mem, h, w)`` and their
        positional encodings."""
        return self.net._encode_new_memory(**kwargs)

    def _conditioning_masks(self, high_res: Tensor) -> Tensor:
        """The masks ``(B, 1, S, S)`` (logits) of the objects conditioned on one frame, as their
        memories are encoded from them (SAM 2: as they are)."""
        return high_res

    def _position_encoding(self, level: Tensor) -> Tensor:
        """The image encoder neck's positional encoding of ``level`` ``(1, C, h, w)``, same shape."""
        return self.net.image_encoder.neck.position_encoding(level)

    # -- internals ------------------------------------------------------------------------
    @property
    def _dtype(self) -> torch.dtype:
        return next(self.net.parameters()).dtype

    def _pos_of(self, level: Tensor) -> Tensor:
        """The image encoder neck's positional encoding of ``level`` ``(1, C, h, w)``, flattened
        to ``(hw, 1, C)`` as ``_prepare_backbone_features`` does; computed once per grid."""
        key = (tuple(level.shape), level.dtype, level.device)
        if key not in self._vision_pos:
            pos = self._position_encoding(level).to(level.dtype)
            self._vision_pos[key] = pos.flatten(2).permute(2, 0, 1)
        return self._vision_pos[key]

    def _layout(self, track: _Track, index: int) -> tuple[Any, ...]:
        """Which frames an object's memory attention reads at ``index``: objects with the same
        layout have memories of the same shape and positions, so they batch."""
        window = self.net.max_obj_ptrs_in_encoder - 1
        return tuple(track.cond), tuple(t for t in track.recent if index - window <= t < index)

    def _track_group(self, frame: VideoFrame, ids: list[int]) -> dict[int, ObjectOutput]:
        b = len(ids)
        tracks = [self.tracks[i] for i in ids]
        output_dict = {"cond_frame_outputs": {t: self._stack([tr.cond[t] for tr in tracks], b)
                                              for t in tracks[0].cond},
                       "non_cond_frame_outputs": {t: self._stack([tr.recent[t] for tr in tracks], b)
                                                  for t in tracks[0].recent}}
        feats, pos = frame.expanded(b)
        out = self._track_step(frame_idx=frame.index, is_init_cond_frame=False, current_vision_feats=feats,
                               current_vision_pos_embeds=pos, feat_sizes=frame.sizes, point_inputs=None,
                               mask_inputs=None, output_dict=output_dict, num_frames=_NUM_FRAMES,
                               track_in_reverse=False, run_mem_encoder=True)
        self._keep_pos_enc(out["maskmem_pos_enc"])
        logits = self._fill_holes(out["pred_masks"])
        scores = out["object_score_logits"].float()
        results = {}
        for k, (obj_id, track) in enumerate(zip(ids, tracks, strict=True)):
            track.recent[frame.index] = _Memory(out["maskmem_features"][k:k + 1].to(torch.bfloat16),
                                                out["obj_ptr"][k:k + 1])
            results[obj_id] = ObjectOutput(obj_id, logits[k:k + 1], float(scores[k, 0]), _size=frame.size)
        return results

    def _stack(self, memories: list[_Memory], batch: int) -> dict[str, Any]:
        """The batched ``output_dict`` entry of one frame for a group of objects."""
        kept = [m.maskmem_features for m in memories if m.maskmem_features is not None]
        features = torch.cat(kept).to(self._dtype) if len(kept) == len(memories) else None
        assert self._pos_enc is not None
        return {"maskmem_features": features, "obj_ptr": torch.cat([m.obj_ptr for m in memories]),
                "maskmem_pos_enc": [p.expand(batch, -1, -1, -1) for p in self._pos_enc]}

    def _prompt_outputs(self, frame: VideoFrame, prompts: list[ObjectPrompt]) -> list[tuple[ObjectOutput, Tensor]]:
        """Decode prompts on ``frame`` without memory, batched by prompt layout (point count, or
        mask), ``PROMPT_BATCH`` at a time: ``(output, obj_ptr (1, C))`` per prompt."""
        groups: dict[Any, list[int]] = {}
        points_of: dict[int, dict[str, Tensor]] = {}
        masks_of: dict[int, Tensor] = {}
        for i, prompt in enumerate(prompts):
            points, mask = self._prompt_input(prompt, frame.size)
            if mask is not None:
                masks_of[i] = mask
                groups.setdefault("mask", []).append(i)
            elif points is not None:
                points_of[i] = points
                groups.setdefault(points["point_labels"].shape[1], []).append(i)
        results: list[Any] = [None] * len(prompts)
        chunks = [(key, rows[i:i + PROMPT_BATCH]) for key, rows in groups.items()
                  for i in range(0, len(rows), PROMPT_BATCH)]
        for key, rows in chunks:
            b = len(rows)
            if key == "mask":
                point_inputs, mask_inputs = None, torch.cat([masks_of[i] for i in rows])
            else:
                point_inputs = {"point_coords": torch.cat([points_of[i]["point_coords"] for i in rows]),
                                "point_labels": torch.cat([points_of[i]["point_labels"] for i in rows])}
                mask_inputs = None
            feats, pos = frame.expanded(b)
            out = self._track_step(frame_idx=frame.index, is_init_cond_frame=True, current_vision_feats=feats,
                                   current_vision_pos_embeds=pos, feat_sizes=frame.sizes,
                                   point_inputs=point_inputs, mask_inputs=mask_inputs, output_dict={},
                                   num_frames=_NUM_FRAMES, run_mem_encoder=False)
            logits = self._fill_holes(out["pred_masks"])
            masks: list[np.ndarray | None] = [None] * b
            if key == "mask":
                logits, masks = self._mask_prompt_outputs(logits, [prompts[i].mask for i in rows])
            scores = out["object_score_logits"].float()
            for k, i in enumerate(rows):
                ptr = out["obj_ptr"][k:k + 1]
                results[i] = (ObjectOutput(i, logits[k:k + 1], float(scores[k, 0]), conditioned=True,
                                           _mask=masks[k], _size=frame.size, _ptr=ptr), ptr)
        return results

    def _mask_prompt_outputs(self, logits: Tensor, masks: list[Any]) -> tuple[Tensor, list[np.ndarray | None]]:
        """What mask prompts ``(H, W)`` bool give on their frame, from the decoded low-res
        ``logits`` ``(B, 1, L, L)``: the logits and, per prompt, the output mask at the frame's
        size (``None``: upsampled from the logits). SAM 2: ``_use_mask_as_output``'s logits."""
        return logits, [None] * len(masks)

    @staticmethod
    def _ptr_of(output: ObjectOutput) -> Tensor:
        ptr = output._ptr
        if ptr is None:
            raise ValueError("previews: pass outputs of this propagator's preview()")
        return ptr

    def _prompt_input(
        self, prompt: ObjectPrompt, size: tuple[int, int]
    ) -> tuple[dict[str, Tensor] | None, Tensor | None]:
        """``ObjectPrompt`` (frame pixels) -> SAM2Base's ``point_inputs`` (input-frame pixels, a
        box as two points labelled 2, 3 in front) or ``mask_inputs`` ``(1, 1, S, S)``."""
        h, w = size
        device = self.net.device
        if prompt.mask is not None:
            mask = np.asarray(prompt.mask)
            if mask.shape != (h, w):
                raise ValueError(f"prompt: mask of shape {mask.shape}, the frame is {(h, w)}")
            m = torch.from_numpy(mask.astype(np.float32))[None, None].to(device)
            m = F.interpolate(m, size=(self.mask_input_side, self.mask_input_side), mode="bilinear",
                              align_corners=False, antialias=True)
            return None, (m >= 0.5).to(self._dtype)
        coords, labels = [], []
        if prompt.box is not None:
            box = np.asarray(prompt.box, np.float32).reshape(-1)
            if box.shape != (4,):
                raise ValueError(f"prompt: a box is 4 numbers xyxy, got {box.shape}")
            coords.append(box.reshape(2, 2))
            labels.append(np.array([2, 3]))
        if prompt.points is not None:
            points = np.asarray(prompt.points, np.float32).reshape(-1, 2)
            point_labels = np.asarray(prompt.labels).reshape(-1)
            if len(point_labels) != len(points):
                raise ValueError(f"prompt: {len(points)} points but {len(point_labels)} labels")
            coords.append(points)
            labels.append(point_labels)
        xy = torch.from_numpy(np.concatenate(coords)) / torch.tensor([w, h], dtype=torch.float32) * self.image_size
        return ({"point_coords": xy[None].to(device, self._dtype),
                 "point_labels": torch.from_numpy(np.concatenate(labels).astype(np.int32))[None].to(device)}, None)

    def _fill_holes(self, logits: Tensor) -> Tensor:
        """``fill_holes_in_mask_scores`` as the video predictor applies it (it needs sam2's CUDA
        extension; where that is missing it leaves the logits as they are, as there)."""
        if self.fill_hole_area <= 0:
            return logits
        from sam2.utils.misc import fill_holes_in_mask_scores

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return fill_holes_in_mask_scores(logits, self.fill_hole_area)

    def _keep_pos_enc(self, pos_enc: list[Tensor] | None) -> None:
        if self._pos_enc is None and pos_enc is not None:
            self._pos_enc = [p[:1].clone() for p in pos_enc]

    def _trim(self, track: _Track, index: int) -> None:
        """Bound an object's memory after frame ``index``: pointers of the frames the next one
        reads, memory features only of the last ``num_maskmem - 1`` frames."""
        ptr_window = self.net.max_obj_ptrs_in_encoder - 1
        mem_window = self.net.num_maskmem - 1
        for t in list(track.recent):
            if t <= index - ptr_window:
                del track.recent[t]
            elif t <= index - mem_window:
                track.recent[t].maskmem_features = None


def reference_encoder(net: RefModule) -> FrameEncoder:
    """What ``SAM2VideoPredictor`` feeds its encoder and runs: PIL's resize to ``image_size``
    squared, /255, ImageNet-normalized, then ``net.forward_image`` in the net's dtype."""
    from PIL import Image

    side = int(net.image_size)
    mean, std = torch.tensor(_MEAN)[:, None, None], torch.tensor(_STD)[:, None, None]

    def encode(image: np.ndarray) -> FrameFeatures:
        resized = np.asarray(Image.fromarray(image).resize((side, side)), dtype=np.float32) / 255.0
        x = (torch.from_numpy(resized).permute(2, 0, 1) - mean) / std
        dtype = next(net.parameters()).dtype
        maps = net.forward_image(x[None].to(net.device, dtype))["backbone_fpn"]
        return FrameFeatures(list(maps[-net.num_feature_levels:]))

    return encode
