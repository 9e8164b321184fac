"""The one per-object output record, and the names of the ``sv.Detections`` keys dtseg uses.

Every output that describes objects as JSON (the ``json`` sink, video JSONL lines, the
server's ``POST /segment``) builds its objects with ``object_records``, so a field means the
same thing, under the same name, everywhere::

    {
      "index": int,                  # row in the detections, from 0
      "class_id": int | null,
      "class_name": str | null,      # data["class_name"]
      "confidence": float | null,    # the detector's confidence
      "sam_score": float | null,     # SAM's predicted IoU, data["sam_score"]
      "tracker_id": int | null,      # -1: not tracked yet
      "zone": any,                   # only when data["zone"] exists (the zones provider)
      "box": [x1, y1, x2, y2],       # float pixels, the mask's tight box
      "prompt": {"box": [x1, y1, x2, y2] | null, "points": [[x, y], ...], "labels": [int, ...]},
      "area": int,                   # mask pixels
      "polygons": [[ring, ...], ...],   # per part: exterior ring, then its holes ([[x, y], ...])
      "rle": {"size": [H, W], "counts": str},   # COCO compressed RLE
      "data": {key: value}           # other per-object data, only when there is some
    }

``prompt``, ``polygons`` and ``rle`` are optional parts (each output says which it writes);
the other fields are always there.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import supervision as sv

from dtseg.errors import InputError
from dtseg.masks import mask_to_polygons, masks_to_rle
from dtseg.prompts import Prompts, is_point

# -- detections.data keys ------------------------------------------------------------------
CLASS_NAME = "class_name"  # (N,) str, the detector's class names
SAM_SCORE = "sam_score"  # (N,) float32, SAM's predicted IoU
ZONE = "zone"  # (N,) the zone an object lies in (zones provider)
PROMPT_BOX = "prompt_box"  # (N, 4) float32 pixels, NaN row: no box
PROMPT_POINTS = "prompt_points"  # (N, K, 2) float32 pixels
PROMPT_LABELS = "prompt_labels"  # (N, K) int32: 1 fg, 0 bg, -1 SAM's not-a-point (NaN points pad)
TRACKER_ID = "tracker_id"  # in Prompts.data only: becomes Detections.tracker_id

#: ``data`` keys with a field of their own in the record (all others go to ``"data"``).
OWN_DATA_KEYS = (CLASS_NAME, SAM_SCORE, ZONE, PROMPT_BOX, PROMPT_POINTS, PROMPT_LABELS)

# -- detections.metadata keys --------------------------------------------------------------
RANDOM_WEIGHTS = "random_weights"  # a label when a model has random weights, else None
NUM_PROMPTS = "num_prompts"  # objects before after_segment filters
FRAME_INDEX = "frame_index"  # video: the frame's index in the source
TIME_S = "time_s"  # video: the frame's timestamp, seconds
ZONES = "zones"  # the zones provider's polygons, {name: (V, 2) float32 pixels}: drawn on annotated images

#: every field ``object_records`` can write, in order.
RECORD_FIELDS = ("index", "class_id", CLASS_NAME, "confidence", SAM_SCORE, TRACKER_ID, ZONE, "box", "prompt",
                 "area", "polygons", "rle", "data")


def json_safe(value: Any) -> Any:
    """numpy scalars/arrays (and containers of them) -> plain Python; NaN/inf -> ``None``."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_safe(list(value) if value.dtype == np.float32 else value.tolist())
    if isinstance(value, np.float32):
        return json_safe(float(str(value)))  # shortest repr: 0.8, not 0.800000011920929
    if isinstance(value, np.generic):
        return json_safe(value.item())
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def column(detections: sv.Detections, key: str, i: int) -> Any:
    """Object ``i``'s value of a ``Detections`` field or ``data`` key, JSON-safe; ``None`` if absent."""
    values = getattr(detections, key, None) if key in ("class_id", "confidence", TRACKER_ID) else None
    if values is None:
        values = detections.data.get(key)
    if values is None:
        return None
    return json_safe(values[i])


def masks_of(detections: sv.Detections, shape: tuple[int, int], output: str) -> np.ndarray:
    """The detections' masks as ``(N, H, W)`` bool, checked against the frame's ``(H, W)``.

    Empty detections give ``(0, H, W)``; non-empty detections without masks are an error
    naming ``output`` (the sink or format that needs them).
    """
    if len(detections) == 0:
        return np.zeros((0, *shape), bool)
    if detections.mask is None:
        raise InputError("detections", f"the {output!r} output needs masks, and these detections have none")
    masks = np.asarray(detections.mask)
    if masks.shape[1:] != tuple(shape):
        raise InputError("detections", f"masks are {masks.shape[1:]}, the frame is {tuple(shape)}")
    return masks.astype(bool, copy=False)


def prompt_of(detections: sv.Detections, i: int) -> dict[str, Any]:
    """Object ``i``'s prompt: box (``None`` for a NaN row) and its real points and labels (NaN
    padding left out; SAM's -1 not-a-point tokens kept)."""
    data = detections.data
    box = data.get(PROMPT_BOX)
    box_i = None if box is None or np.isnan(np.asarray(box[i], float)).any() else json_safe(box[i])
    points, labels = data.get(PROMPT_POINTS), data.get(PROMPT_LABELS)
    if points is None or labels is None:
        return {"box": box_i, "points": [], "labels": []}
    real = is_point(points[i])
    return {"box": box_i, "points": json_safe(np.asarray(points[i])[real]),
            "labels": json_safe(np.asarray(labels[i])[real])}


def object_records(detections: sv.Detections, shape: tuple[int, int], *, output: str, prompt: bool = True,
                   polygons: bool = True, rle: bool = True) -> list[dict[str, Any]]:
    """One record per row of ``detections`` (module docstring), plain JSON values.

    ``shape``: the frame's ``(H, W)``, which the masks ``(N, H, W)`` must match; ``output``
    names the caller in errors; ``prompt`` / ``polygons`` / ``rle`` choose the optional parts.
    """
    masks = masks_of(detections, shape, output)
    rles = masks_to_rle(masks) if rle else []
    extra = [k for k in detections.data if k not in OWN_DATA_KEYS]
    records = []
    for i in range(len(detections)):
        obj: dict[str, Any] = {"index": i}
        for key in ("class_id", CLASS_NAME, "confidence", SAM_SCORE, TRACKER_ID):
            obj[key] = column(detections, key, i)
        if ZONE in detections.data:
            obj[ZONE] = column(detections, ZONE, i)
        obj["box"] = json_safe(np.asarray(detections.xyxy[i], np.float32))
        if prompt:
            obj["prompt"] = prompt_of(detections, i)
        obj["area"] = int(masks[i].sum())
        if polygons:
            obj["polygons"] = [[ring.tolist() for ring in part] for part in mask_to_polygons(masks[i])]
        if rle:
            obj["rle"] = rles[i]
        if extra:
            obj["data"] = {k: column(detections, k, i) for k in extra}
        records.append(obj)
    return records


def prompt_detections(prompts: Prompts, masks: np.ndarray | None = None,
                      scores: np.ndarray | None = None) -> sv.Detections:
    """Row i is prompt i's object: ``masks`` ``(N, H, W)`` bool, ``scores`` ``(N,)`` SAM's
    predicted IoU (``SAM_SCORE``); ``xyxy`` the mask's tight box (the prompt box where the mask is
    empty, else zeros); the prompt's ``class_id``, ``confidence``, ``tracker_id`` and data, and the
    prompt itself (``PROMPT_BOX``, ``PROMPT_POINTS``, ``PROMPT_LABELS``). No prompts (``masks``
    may then be ``None``): zero rows with the same data keys."""
    data = {k: v for k, v in prompts.data.items() if k != TRACKER_ID}
    if len(prompts) == 0:
        data = {k: v[:0] if isinstance(v, np.ndarray) else np.zeros(0, dtype=object) for k, v in data.items()}
        scores = np.zeros(0, np.float32)
    elif masks is None or scores is None:
        raise ValueError(f"{len(prompts)} prompts need their masks and scores")
    data.update({SAM_SCORE: scores.astype(np.float32), PROMPT_BOX: prompts.boxes, PROMPT_POINTS: prompts.points,
                 PROMPT_LABELS: prompts.labels})
    if masks is None or len(prompts) == 0:
        detections = sv.Detections.empty()
        detections.data.update(data)
        return detections
    xyxy = sv.mask_to_xyxy(masks).astype(np.float32)
    empty = ~masks.any(axis=(1, 2))
    xyxy[empty] = np.where(prompts.has_box[:, None], prompts.boxes, 0.0)[empty]
    tracker_id = prompts.data.get(TRACKER_ID)
    return sv.Detections(xyxy=xyxy, mask=masks, class_id=prompts.class_id, confidence=prompts.confidence,
                         tracker_id=None if tracker_id is None else np.asarray(tracker_id), data=data)
