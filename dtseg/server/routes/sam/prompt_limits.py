"""Prompt counts of a ``segment_image`` request, checked against the server's limits before any
image is decoded or any model runs: decoder time and memory grow with objects x points."""

from __future__ import annotations

from typing import Any

from dtseg.errors import InputError
from dtseg.server.common.encode import nesting_depth
from dtseg.server.config import ServerConfig


def check_prompt_counts(point_coords: list[Any] | None, point_labels: list[Any] | None,
                        boxes: list[Any] | None, config: ServerConfig) -> None:
    """Refuse more than ``server.max_objects`` objects or ``server.max_points_per_object`` points.

    ``point_coords`` is ``[[x, y], ...]`` (one object) or ``[[[x, y], ...], ...]`` (N objects);
    ``point_labels`` ``[l, ...]`` or ``[[l, ...], ...]``; ``boxes`` ``[x1, y1, x2, y2]`` or a list
    of them. Shapes are not validated here (the engine does), only counted.
    """
    for field, value, leaf_depth in (("point_coords", point_coords, 2), ("point_labels", point_labels, 1)):
        objects, points = _counts(value, leaf_depth)
        if points > config.max_points_per_object:
            raise InputError(field, f"{points} points in one object: more than server.max_points_per_object "
                                    f"= {config.max_points_per_object}")
        _check_objects(field, objects, config)
    if boxes and isinstance(boxes[0], list):
        _check_objects("boxes", len(boxes), config)


def _counts(value: list[Any] | None, leaf_depth: int) -> tuple[int, int]:
    """``(objects, most points in one object)`` of a one-object or several-object prompt list."""
    if not value:
        return 0, 0
    if nesting_depth(value) > leaf_depth:  # several objects
        return len(value), max((len(v) for v in value if isinstance(v, list)), default=0)
    return 1, len(value)


def _check_objects(field: str, objects: int, config: ServerConfig) -> None:
    if objects > config.max_objects:
        raise InputError(field, f"{objects} objects: more than server.max_objects = {config.max_objects}")
