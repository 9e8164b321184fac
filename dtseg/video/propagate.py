"""``video.mode: propagate``: SAM 2.x or SAM 3 carries every object from frame to frame by its memory; the
prompt stages run only on keyframes, where detections join, re-anchor, and objects leave.

Per processed frame: the frame is encoded once and every live object is decoded through its own
memory (``dtseg.families.sam2.tracker.Propagator``; SAM 3's tracker with a ``sam3`` model). On a
keyframe (the run's first frame, then every ``detect_every`` frames; 0 = the first only) the
prompt stages run -- concept prompts (the ``text`` stage) on the embedding the tracker already
made, their masks prompting the tracker as Meta's SAM 3 video model adds detections -- and each
detection, most confident first, is decoded without memory (a preview) and matched to the live
objects by mask IoU:

* IoU >= ``match_iou`` with a live object not matched yet (its propagated mask, or where it was
  last seen while it is absent): the detection re-anchors it (the keyframe becomes one of its
  conditioning frames; ``reanchor: false`` only refreshes its class);
* otherwise it **joins** as a new object with a new ID (IDs only grow, never reused), unless
  ``max_objects`` are live (logged, once per keyframe);
* an object whose mask is empty or whose object score says "absent" for ``lost_s`` seconds
  **leaves**: its memory is dropped and its ID retired.

Every object keeps its provenance: the keyframe and detection row that created it, the class and
confidence of the detection that created or last re-anchored it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import supervision as sv

from dtseg.video.process import FrameResult

log = logging.getLogger(__name__)


class MaskPropagator(Protocol):
    """What the loop needs of a propagator: what a video-memory family's ``tracker`` returns
    (SAM 2's: ``dtseg.families.sam2.tracker.Propagator``; tests may stand in). Outputs have
    ``.mask`` ``(H, W)`` bool and ``.score`` (> 0: present)."""

    def encode(self, image: np.ndarray) -> Any: ...
    def preview(self, frame: Any, prompts: list[Any]) -> list[Any]: ...
    def condition(self, frame: Any, prompts: dict[int, Any],
                  previews: dict[int, Any] | None = None) -> dict[int, Any]: ...
    def track(self, frame: Any) -> dict[int, Any]: ...
    def remove(self, obj_id: int) -> None: ...


@dataclass
class TrackedObject:
    """A live object's bookkeeping and provenance."""

    obj_id: int
    keyframe: int  # frame index where it joined
    detection: int  # row of the detection that created it, in that keyframe's prompts
    class_id: int | None
    class_name: str | None
    confidence: float | None
    anchored_at: int  # the keyframe of its latest (re-)anchoring
    absent_since: float | None = None  # time_s it was first seen absent, while absent
    last_mask: np.ndarray | None = None  # (H, W) bool: where it was last seen (matched while absent)


class ObjectBook:
    """Joining, re-anchoring and leaving; independent of SAM (drives any ``MaskPropagator``).

    ``config``: the ``video`` section (``VideoConfig``); ``first_id``: the smallest new ID.
    """

    def __init__(self, propagator: MaskPropagator, config: Any, first_id: int = 0) -> None:
        self.propagator = propagator
        self.config = config
        self.next_id = int(first_id)
        self.objects: dict[int, TrackedObject] = {}
        self.processed = 0
        self.retired: list[int] = []

    def is_keyframe(self) -> bool:
        every = int(self.config.detect_every)
        return self.processed == 0 or (every > 0 and self.processed % every == 0)

    def step(self, index: int, time_s: float, rgb: np.ndarray, detect: Callable[[np.ndarray, Any], Any],
             seconds: dict[str, float]) -> tuple[sv.Detections, dict[int, Any]]:
        """One frame: propagate, on a keyframe run ``detect(rgb, frame)`` (``frame``: what the
        propagator encoded; -> ``Prompts``, or ``sv.Detections`` with masks) and match, then
        retire the long-absent. Returns the frame's detections (one row per present object,
        ``tracker_id`` = object ID) and the raw outputs by ID."""
        t0 = time.perf_counter()
        frame = self.propagator.encode(rgb)
        ta = time.perf_counter()
        outputs = self.propagator.track(frame)
        t1 = time.perf_counter()
        seconds["encode"] = seconds.get("encode", 0.0) + ta - t0
        seconds["propagate"] = seconds.get("propagate", 0.0) + t1 - ta
        if self.is_keyframe():
            prompts = detect(rgb, frame)
            t2 = time.perf_counter()
            seconds["detect"] = seconds.get("detect", 0.0) + t2 - t1
            outputs.update(self._match(index, frame, prompts, outputs))
            seconds["propagate"] += time.perf_counter() - t2
        self.processed += 1
        self._leave(time_s, outputs)
        return self._detections(outputs, rgb.shape[:2]), outputs

    # -- keyframes ------------------------------------------------------------------------
    def _match(self, index: int, frame: Any, prompts: Any, tracked: dict[int, Any]) -> dict[int, Any]:
        from dtseg.families.sam2.tracker import ObjectPrompt

        n = len(prompts)
        if n == 0:
            return {}
        object_prompts = [_object_prompt(prompts, i, ObjectPrompt) for i in range(n)]
        previews = self.propagator.preview(frame, object_prompts)
        confidence = prompts.confidence
        order = np.argsort(-np.asarray(confidence, float), kind="stable") if confidence is not None else range(n)
        live_masks = {obj_id: out.mask for obj_id, out in tracked.items()
                      if obj_id in self.objects and out.score > 0 and out.mask.any()}
        for obj_id, obj in self.objects.items():  # absent ones: where they were last seen
            if obj_id not in live_masks and obj.last_mask is not None:
                live_masks[obj_id] = obj.last_mask
        chosen: dict[int, Any] = {}
        chosen_previews: dict[int, Any] = {}
        skipped = 0
        for row in order:
            row = int(row)
            mask = previews[row].mask
            if not mask.any():
                continue
            best, best_iou = None, 0.0
            for obj_id, live in live_masks.items():
                iou = _iou(mask, live)
                if iou > best_iou:
                    best, best_iou = obj_id, iou
            if best is not None and best_iou >= self.config.match_iou:
                del live_masks[best]  # one detection per object
                self._provenance(self.objects[best], prompts, row, index)
                if self.config.reanchor:
                    chosen[best], chosen_previews[best] = object_prompts[row], previews[row]
                continue
            if any(_iou(mask, other.mask) >= self.config.match_iou for other in chosen_previews.values()):
                continue  # a duplicate of a detection taken on this keyframe
            if len(self.objects) >= self.config.max_objects:
                skipped += 1
                continue
            obj_id = self.next_id
            self.next_id += 1
            self.objects[obj_id] = TrackedObject(obj_id, index, row, None, None, None, index)
            self._provenance(self.objects[obj_id], prompts, row, index)
            chosen[obj_id], chosen_previews[obj_id] = object_prompts[row], previews[row]
        if skipped:
            log.warning("frame %d: video.max_objects=%d objects are live; %d new detection%s not tracked",
                        index, self.config.max_objects, skipped, "s" * (skipped != 1))
        return self.propagator.condition(frame, chosen, chosen_previews) if chosen else {}

    @staticmethod
    def _provenance(obj: TrackedObject, prompts: Any, row: int, index: int) -> None:
        obj.class_id = None if prompts.class_id is None else int(prompts.class_id[row])
        names = prompts.data.get("class_name")
        obj.class_name = None if names is None else str(names[row])
        obj.confidence = None if prompts.confidence is None else float(prompts.confidence[row])
        obj.anchored_at = index

    # -- leaving --------------------------------------------------------------------------
    def _leave(self, time_s: float, outputs: dict[int, Any]) -> None:
        for obj_id in list(self.objects):
            obj = self.objects[obj_id]
            out = outputs.get(obj_id)
            if out is not None and out.score > 0 and bool(out.mask.any()):
                obj.absent_since, obj.last_mask = None, out.mask
                continue
            if obj.absent_since is None:
                obj.absent_since = time_s
            if time_s - obj.absent_since >= self.config.lost_s:
                self.propagator.remove(obj_id)
                del self.objects[obj_id]
                self.retired.append(obj_id)
                log.debug("object %d retired (absent since %.2f s)", obj_id, obj.absent_since)

    # -- output ---------------------------------------------------------------------------
    def _detections(self, outputs: dict[int, Any], shape: tuple[int, ...]) -> sv.Detections:
        rows = [(obj_id, outputs[obj_id]) for obj_id in sorted(outputs)
                if obj_id in self.objects and outputs[obj_id].score > 0 and outputs[obj_id].mask.any()]
        h, w = int(shape[0]), int(shape[1])
        if not rows:
            return sv.Detections(xyxy=np.zeros((0, 4), np.float32), mask=np.zeros((0, h, w), bool),
                                 tracker_id=np.zeros(0, int))
        masks = np.stack([out.mask for _, out in rows])
        objs = [self.objects[obj_id] for obj_id, _ in rows]
        classes = [o.class_id for o in objs]
        confidences = [o.confidence for o in objs]
        return sv.Detections(
            xyxy=sv.mask_to_xyxy(masks).astype(np.float32), mask=masks,
            tracker_id=np.array([o.obj_id for o in objs], int),
            class_id=None if any(c is None for c in classes) else np.array(classes, int),
            confidence=None if any(c is None for c in confidences) else np.array(confidences, np.float32),
            data={"class_name": np.array([o.class_name or "" for o in objs]),
                  "sam_score": np.array([1 / (1 + np.exp(-out.score)) for _, out in rows], np.float32),
                  "keyframe": np.array([o.keyframe for o in objs], int),
                  "anchored_at": np.array([o.anchored_at for o in objs], int),
                  "conditioned": np.array([bool(getattr(out, "conditioned", False)) for _, out in rows])})


def iter_propagated(pipeline: Any, video: Any, book: ObjectBook, *, start: int = 0, stride: int = 1,
                    max_frames: int | None = None,
                    should_stop: Callable[[], bool] = lambda: False) -> Iterator[FrameResult]:
    """``iter_results`` for propagate mode: ``FrameResult`` per frame, seconds split into
    ``encode`` (SAM 2's image encoder), ``propagate`` (memory attention, decoder, memory encoder,
    previews and conditioning on keyframes) and ``detect`` (the prompt stages)."""
    detect = keyframe_detector(pipeline)
    for index, time_s, rgb in video.frames(start, stride, max_frames):
        seconds: dict[str, float] = {}
        detections, _ = book.step(index, time_s, rgb, detect, seconds)
        detections.metadata.update(frame_index=index, time_s=time_s,
                                   random_weights=getattr(pipeline, "random_label", None))
        yield FrameResult(index, time_s, rgb, detections, seconds)
        if should_stop():
            return


def keyframe_detector(pipeline: Any) -> Callable[[np.ndarray, Any], Any]:
    """``detect(rgb, frame)`` for ``ObjectBook.step``: the pipeline's prompt stages on the frame;
    concept prompts (the ``text`` stage, with an engine that takes them) become the engine's
    detections, decoded on ``frame.embedding`` when the propagator's encoder made one (the
    frame is then encoded once for tracking and detection)."""
    def detect(rgb: np.ndarray, frame: Any) -> Any:
        prompts = pipeline.prompts(rgb)
        if prompts.concepts is None:
            return prompts
        from dtseg.pipeline import concept_detections

        embedding = getattr(frame, "embedding", None)
        return concept_detections(pipeline.engine, rgb if embedding is None else embedding, prompts, cache=False)

    return detect


def propagator_for(pipeline: Any, config: Any) -> MaskPropagator:
    """The tracker the pipeline engine's model family gives for the ``video`` config: a family
    whose capabilities declare ``video_memory`` has ``tracker(engine, image_size, **options)``."""
    engine = pipeline.engine
    if not engine.capabilities.video_memory:
        raise ValueError(f"video.mode: propagate needs a model with video memory, e.g. SAM 2.1 (sam.model: "
                         f"sam2.1_t, ...) or SAM 3 (sam3), got {engine.model_name!r} ({engine.family})")
    return engine.model.tracker(engine, image_size=config.image_size, max_cond_frames=config.max_cond_frames)


def _object_prompt(prompts: Any, row: int, cls: type) -> Any:
    """Row ``row`` of ``Prompts`` as an ``ObjectPrompt``: its box (if any) and its points (if any);
    of ``sv.Detections``: its mask (else its box)."""
    if isinstance(prompts, sv.Detections):
        return cls(mask=prompts.mask[row]) if prompts.mask is not None else cls(box=prompts.xyxy[row])
    box = prompts.boxes[row] if bool(prompts.has_box[row]) else None
    labels = np.asarray(prompts.labels[row])
    keep = prompts.is_point[row]  # NaN padding out; SAM's -1 tokens stay
    points = np.asarray(prompts.points[row])[keep] if keep.any() else None
    return cls(points=points, labels=labels[keep] if keep.any() else None, box=box)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0
