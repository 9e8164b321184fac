"""``Prompts``: N objects to segment, as parallel arrays in SAM's own convention.

* ``points``  ``(N, K, 2)`` float32 pixel ``[x, y]`` in the original image; a NaN row pads
  (no point)
* ``labels``  ``(N, K)`` int32: 1 foreground, 0 background, -1 SAM's not-a-point token
* ``boxes``   ``(N, 4)`` float32 ``[x1, y1, x2, y2]`` pixels; a NaN row means "no box"
* ``class_id`` ``(N,)`` int, ``confidence`` ``(N,)`` float — or ``None`` (as in supervision)
* ``data``    dict of per-object arrays/lists of length N (carried to the output)
* ``concepts`` a ``dtseg.engine.concepts.ConceptQuery`` or ``None``: concept prompts (phrases,
  exemplar boxes ``(K, 4)`` xyxy pixels with ``(K,)`` bool labels) for the whole image, beside
  the N objects. Each finds every matching instance (a SAM 3 model, on the same embedding);
  the pipeline appends those rows after the N objects' (the text stage gives N = 0).

Labels follow SAM exactly: a -1 point is SAM's not-a-point token (its prompt encoder gives it
``not_a_point_embed`` and no positional encoding), which changes the mask as in ``SamPredictor``.
Ragged point counts are padded with NaN points (label -1): padding is no point at all. The
engine decodes each object with its real points only, so padding never changes a mask.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import supervision as sv

from dtseg.errors import PromptError

if TYPE_CHECKING:
    from dtseg.engine.concepts import ConceptQuery

PromptMode = Literal["box", "center", "box+center"]
VALID_LABELS = (-1, 0, 1)


@dataclass
class Prompts:
    points: np.ndarray
    labels: np.ndarray
    boxes: np.ndarray
    class_id: np.ndarray | None = None
    confidence: np.ndarray | None = None
    data: dict[str, Any] = field(default_factory=dict)
    concepts: ConceptQuery | None = None

    def __post_init__(self) -> None:
        self.points = _point_array(self.points, "points")
        self.labels = _label_array(self.labels, "labels")
        self.boxes = _float_array(self.boxes, "boxes", allow_nan=True)
        n = len(self.boxes)
        if self.points.ndim != 3 or self.points.shape[2] != 2:
            raise PromptError("points", f"expected shape (N, K, 2), got {self.points.shape}")
        if self.labels.shape != self.points.shape[:2]:
            raise PromptError("labels",
                              f"expected shape {self.points.shape[:2]} to match points, got {self.labels.shape}")
        _check_padding(self.points, self.labels, "labels")
        if self.boxes.ndim != 2 or self.boxes.shape[1] != 4:
            raise PromptError("boxes", f"expected shape (N, 4), got {self.boxes.shape}")
        if len(self.points) != n:
            raise PromptError("points", f"{len(self.points)} objects with points but {n} box rows")
        box_rows = self.has_box
        partial = np.isnan(self.boxes).any(axis=1) & ~np.isnan(self.boxes).all(axis=1)
        if partial.any():
            raise PromptError("boxes", f"box rows {np.flatnonzero(partial).tolist()} are partly NaN "
                                       "(NaN marks a whole row as 'no box')")
        inverted = box_rows & ((self.boxes[:, 2] < self.boxes[:, 0]) | (self.boxes[:, 3] < self.boxes[:, 1]))
        if inverted.any():
            raise PromptError("boxes", "boxes must be [x1, y1, x2, y2] with x2 >= x1 and y2 >= y1; "
                                       f"rows {np.flatnonzero(inverted).tolist()} are not")
        for name in ("class_id", "confidence"):
            value = getattr(self, name)
            if value is not None:
                value = np.asarray(value)
                if value.shape != (n,):
                    raise PromptError(name, f"expected shape ({n},), got {value.shape}")
                setattr(self, name, value)
        for key, value in self.data.items():
            if len(value) != n:
                raise PromptError(f"data[{key!r}]", f"expected length {n}, got {len(value)}")

    # -- construction -------------------------------------------------------------------
    @classmethod
    def empty(cls) -> Prompts:
        return cls(np.zeros((0, 0, 2), np.float32), np.zeros((0, 0), np.int32), np.zeros((0, 4), np.float32))

    @classmethod
    def from_arrays(
        cls,
        point_coords: Any = None,
        point_labels: Any = None,
        boxes: Any = None,
        num_objects: int | None = None,
    ) -> Prompts:
        """SAM-style arguments -> Prompts.

        ``point_coords`` ``(N, K, 2)`` or ``(K, 2)`` (one object), ``point_labels`` ``(N, K)``
        or ``(K,)``, ``boxes`` ``(N, 4)`` or ``(4,)``. Points and boxes may be mixed; their
        object counts must agree. A -1 label is SAM's not-a-point token; a NaN point (label -1)
        pads a ragged object. ``num_objects`` sizes a prompt with neither (mask input only, or
        no prompt at all).
        """
        if point_coords is None and point_labels is not None:
            raise PromptError("point_coords", "point_labels were given without point_coords")
        points: np.ndarray | None = None
        labels: np.ndarray | None = None
        if point_coords is not None:
            if point_labels is None:
                raise PromptError("point_labels", "required with point_coords (1 foreground, 0 background, "
                                                  "-1 not-a-point)")
            points = _point_array(point_coords, "point_coords")
            labels = _label_array(point_labels, "point_labels")
            if points.ndim == 2:
                points, labels = points[None], labels[None] if labels.ndim == 1 else labels
            if points.ndim != 3 or points.shape[-1] != 2:
                raise PromptError("point_coords", f"expected shape (N, K, 2) or (K, 2), got {np.shape(point_coords)}")
            if labels.shape != points.shape[:2]:
                raise PromptError("point_labels", f"expected shape {points.shape[:2]} to match point_coords, "
                                                  f"got {np.shape(point_labels)}")
        box_array = None
        if boxes is not None:
            box_array = _float_array(boxes, "boxes", allow_nan=True)
            if box_array.ndim == 1:
                box_array = box_array[None]
            if box_array.ndim != 2 or box_array.shape[1] != 4:
                raise PromptError("boxes", f"expected shape (N, 4) or (4,), got {np.shape(boxes)}")
        if points is None or labels is None:
            if box_array is not None:
                n = len(box_array)
            elif num_objects is not None:
                n = num_objects
            else:
                raise PromptError("point_coords", "give point_coords with point_labels, boxes, or both")
            points, labels = np.zeros((n, 0, 2), np.float32), np.zeros((n, 0), np.int32)
        if box_array is None:
            box_array = np.full((len(points), 4), np.nan, np.float32)
        if len(points) != len(box_array):
            raise PromptError("boxes",
                              f"{len(box_array)} boxes but {len(points)} point sets: give one of each per object")
        return cls(points, labels, box_array)

    @classmethod
    def from_objects(cls, objects: Sequence[dict[str, Any]]) -> Prompts:
        """One dict per object: ``{"points": [[x, y], ...], "labels": [1, 0, ...], "box": [x1, y1, x2, y2]}``
        (any of them optional; labels default to 1 for every point). Ragged points are padded
        with NaN points."""
        k = max((len(o.get("points") or ()) for o in objects), default=0)
        points = np.full((len(objects), k, 2), np.nan, np.float32)
        labels = np.full((len(objects), k), -1, np.int32)
        boxes = np.full((len(objects), 4), np.nan, np.float32)
        for i, obj in enumerate(objects):
            pts = obj.get("points") or []
            lbl = obj.get("labels")
            lbl = _label_array([1] * len(pts) if lbl is None else lbl, f"objects[{i}].labels")
            if lbl.shape != (len(pts),):
                raise PromptError(f"objects[{i}].labels",
                                  f"expected {len(pts)} labels, one per point, got shape {lbl.shape}")
            if pts:
                points[i, : len(pts)] = _float_array(pts, f"objects[{i}].points").reshape(-1, 2)
                labels[i, : len(pts)] = lbl
            if obj.get("box") is not None:
                boxes[i] = _float_array(obj["box"], f"objects[{i}].box").reshape(4)
        return cls(points, labels, boxes)

    @classmethod
    def from_detections(cls, detections: sv.Detections, mode: PromptMode = "box") -> Prompts:
        """Detector output -> prompts: its boxes, box centres as positive points, or both.
        ``class_id``, ``confidence``, ``tracker_id`` and ``data`` travel along."""
        if mode not in ("box", "center", "box+center"):
            raise PromptError("prompt", f"expected 'box', 'center' or 'box+center', got {mode!r}")
        xyxy = np.asarray(detections.xyxy, np.float32).reshape(-1, 4)
        n = len(xyxy)
        points: np.ndarray
        if mode == "box":
            points, labels = np.zeros((n, 0, 2), np.float32), np.zeros((n, 0), np.int32)
        else:
            centers = (xyxy[:, :2] + xyxy[:, 2:]) / 2
            points, labels = centers[:, None, :], np.ones((n, 1), np.int32)
        boxes = xyxy if mode != "center" else np.full((n, 4), np.nan, np.float32)
        data = dict(detections.data)
        if detections.tracker_id is not None:
            data["tracker_id"] = np.asarray(detections.tracker_id)
        return cls(points, labels, boxes, detections.class_id, detections.confidence, data)

    # -- views -------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.boxes)

    @property
    def has_box(self) -> np.ndarray:
        """``(N,)`` bool: the object has a box."""
        return ~np.isnan(self.boxes).any(axis=1)

    @property
    def is_point(self) -> np.ndarray:
        """``(N, K)`` bool: a real point (any label, -1 included), not padding."""
        return is_point(self.points)

    @property
    def num_points(self) -> np.ndarray:
        """``(N,)`` int: real points per object (SAM's -1 tokens included, padding not)."""
        return self.is_point.sum(axis=1)

    def __getitem__(self, index: int | slice | np.ndarray | Iterable[int]) -> Prompts:
        if isinstance(index, (int, np.integer)):
            index = [int(index)]
        elif not isinstance(index, slice):
            index = np.asarray(index)
            if index.size == 0:  # [] would become a float array
                index = index.astype(np.intp)
        return Prompts(
            self.points[index],
            self.labels[index],
            self.boxes[index],
            None if self.class_id is None else self.class_id[index],
            None if self.confidence is None else self.confidence[index],
            {k: _take(v, index) for k, v in self.data.items()},
            self.concepts,
        )

    @classmethod
    def merge(cls, items: Sequence[Prompts]) -> Prompts:
        """Concatenate object lists (points re-padded with NaN points to the largest K); the one
        item's ``concepts`` travel along (two items with concept prompts: ``PromptError``)."""
        queries = [p.concepts for p in items if p.concepts is not None]
        if len(queries) > 1:
            raise PromptError("concepts", "cannot merge prompts where more than one carries concept prompts")
        concepts = queries[0] if queries else None
        items = [p for p in items if len(p)]
        if not items:
            empty = cls.empty()
            empty.concepts = concepts
            return empty
        k = max(p.points.shape[1] for p in items)
        points = np.concatenate([np.pad(p.points, ((0, 0), (0, k - p.points.shape[1]), (0, 0)), constant_values=np.nan)
                                 for p in items])
        labels = np.concatenate([np.pad(p.labels, ((0, 0), (0, k - p.labels.shape[1])), constant_values=-1)
                                 for p in items])
        boxes = np.concatenate([p.boxes for p in items])
        class_id = _merge_optional([p.class_id for p in items], "class_id")
        confidence = _merge_optional([p.confidence for p in items], "confidence")
        keys = set(items[0].data)
        if any(set(p.data) != keys for p in items):
            raise PromptError("data", "cannot merge prompts whose data keys differ")
        data = {key: _concat([p.data[key] for p in items]) for key in keys}
        return cls(points, labels, boxes, class_id, confidence, data, concepts)


def _float_array(value: Any, name: str, allow_nan: bool = False) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise PromptError(name, f"expected numbers, got {type(value).__name__}: {exc}") from exc
    bad = np.isinf(array) if allow_nan else ~np.isfinite(array)
    if bad.any():
        raise PromptError(name, "coordinates must be finite numbers"
                                + (" (NaN only to mark a whole box row as absent)" if allow_nan else ""))
    return array


def is_point(points: np.ndarray) -> np.ndarray:
    """``(..., K, 2)`` points -> ``(..., K)`` bool: a real point, not a NaN padding row."""
    return np.logical_not(np.isnan(np.asarray(points, np.float32)).any(axis=-1))


def _point_array(value: Any, name: str) -> np.ndarray:
    """Point coordinates as float32: finite, or a whole NaN ``[x, y]`` row (padding)."""
    array = _float_array(value, name, allow_nan=True)
    if array.ndim and array.shape[-1] == 2:
        nan = np.isnan(array)
        if (nan.any(axis=-1) & ~nan.all(axis=-1)).any():
            raise PromptError(name, "a point is two finite numbers [x, y] (a NaN row marks padding, both NaN)")
    elif np.isnan(array).any():
        raise PromptError(name, "coordinates must be finite numbers")
    return array


def _check_padding(points: np.ndarray, labels: np.ndarray, name: str) -> None:
    """Padding (NaN) points must carry label -1, so labels alone never count a padding slot."""
    padded = ~is_point(points) & (labels != -1)
    if padded.any():
        raise PromptError(name, f"padding (NaN) points must have label -1; {int(padded.sum())} have another label")


def _label_array(value: Any, name: str) -> np.ndarray:
    """SAM point labels as int32: 1 foreground, 0 background, -1 not-a-point; errors name ``name``."""
    try:
        array = np.asarray(value)
    except ValueError as exc:  # ragged nested lists
        raise PromptError(name, f"expected a (N, K) or (K,) array of labels: {exc}") from exc
    if array.size and not np.issubdtype(array.dtype, np.number):
        raise PromptError(name, f"expected integers, got dtype {array.dtype}")
    bad = ~np.isin(array, VALID_LABELS)
    if bad.any():
        raise PromptError(name, f"labels must be 1 (foreground), 0 (background) or -1 (SAM's not-a-point), "
                                f"got {np.unique(array[bad]).tolist()}")
    return array.astype(np.int32)


def _take(value: Any, index: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value[index]
    if isinstance(index, slice):
        return value[index]
    index = np.asarray(index)
    if index.dtype == bool:
        index = np.flatnonzero(index)
    return [value[int(i)] for i in index]


def _concat(values: list[Any]) -> Any:
    if all(isinstance(v, np.ndarray) for v in values):
        return np.concatenate(values)
    return [x for v in values for x in v]


def _merge_optional(values: list[np.ndarray | None], name: str) -> np.ndarray | None:
    arrays = [v for v in values if v is not None]
    if not arrays:
        return None
    if len(arrays) < len(values):
        raise PromptError(name, "cannot merge prompts where only some carry this field")
    return np.concatenate(arrays)
