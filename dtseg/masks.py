"""Mask encodings: polygons (every part, holes kept) and COCO RLE.

Polygon convention
------------------
``mask_to_polygons`` returns ``parts``: one entry per outer contour (every connected part of
the mask, 8-connected, not only the largest). Each part is a list of rings; ring 0 is the
exterior, rings 1.. are its holes. A ring is an ``(P, 2)`` int32 array of ``[x, y]`` pixel
coordinates.

Ring vertices are the **centers of mask pixels** on the part's border, as traced by OpenCV's
``findContours`` (``RETR_CCOMP``, ``CHAIN_APPROX_SIMPLE``): pixel ``(x, y)`` covers the square
``[x - 0.5, x + 0.5] x [y - 0.5, y + 0.5]``. So an exterior ring runs through the outermost
*foreground* pixels, and a hole ring runs through the foreground pixels that border the hole
(not through the hole's own pixels). A 1-pixel mask gives a 1-point ring; a 1-pixel-wide line a
2-point ring. Consumers that draw the polygon as a continuous shape (e.g. SVG) see it half a
pixel inside the mask's outer edge and half a pixel outside each hole's edge.

``polygons_to_mask`` undoes exactly that: per part, fill the exterior ring (borders included),
clear each hole ring's interior, then redraw the hole ring itself (those are mask pixels).
Parts are rasterized separately and OR-ed, so a part lying inside another part's hole is kept.
The round trip is exact: ``polygons_to_mask(mask_to_polygons(m), m.shape) == m`` pixel for pixel
in the tests, for rectangles, discs, rings, nested blobs and random noise of any density (where
pixel-center polygons touch themselves). Polygons simplified or moved by a consumer are of
course only approximately restored.

RLE
---
COCO compressed RLE via pycocotools: ``{"size": [H, W], "counts": str}`` (column-major run
lengths, LEB128-like string encoding). ``counts`` is decoded to ``str`` so it is JSON-safe.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
from pycocotools import mask as mask_utils

Ring = np.ndarray  # (P, 2) int32 [x, y] pixel centers
Part = list[Ring]  # ring 0 exterior, rings 1.. holes
RLE = dict[str, Any]  # {"size": [H, W], "counts": str}


def _as_mask(mask: np.ndarray) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask: expected (H, W), got shape {mask.shape}")
    return mask.astype(bool, copy=False)


def mask_to_polygons(mask: np.ndarray) -> list[Part]:
    """``(H, W)`` bool mask -> parts, each ``[exterior, *holes]`` of ``(P, 2)`` int32 ``[x, y]``.

    Every connected part is returned (8-connectivity for the mask, 4 for holes), in OpenCV's
    contour order. An empty mask gives ``[]``.
    """
    m = _as_mask(mask).astype(np.uint8)
    if not m.any():
        return []
    contours, hierarchy = cv2.findContours(m, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    if hierarchy is None:
        return []
    links = hierarchy[0].tolist()  # C x [next, previous, first child, parent]
    parts: list[Part] = []
    for i, (_, _, child, parent) in enumerate(links):
        if parent != -1:
            continue  # a hole: collected under its exterior below
        rings = [contours[i].reshape(-1, 2).astype(np.int32)]
        while child != -1:
            rings.append(contours[child].reshape(-1, 2).astype(np.int32))
            child = links[child][0]
        parts.append(rings)
    return parts


def polygons_to_mask(parts: Sequence[Sequence[Any]], shape: tuple[int, int]) -> np.ndarray:
    """Rasterize ``parts`` (as from :func:`mask_to_polygons`) to an ``(H, W)`` bool mask.

    Rings may be arrays or nested lists of ``[x, y]`` (as read back from JSON). Coordinates
    outside the image are clipped by the rasterizer.
    """
    height, width = int(shape[0]), int(shape[1])
    out = np.zeros((height, width), np.uint8)
    for part in parts:
        rings = [np.asarray(r, dtype=np.int32).reshape(-1, 1, 2) for r in part]
        if not rings or len(rings[0]) == 0:
            continue
        x, y, w, h = cv2.boundingRect(rings[0])
        x0, y0 = max(x, 0), max(y, 0)
        x1, y1 = min(x + w, width), min(y + h, height)
        if x1 <= x0 or y1 <= y0:
            continue
        canvas = np.zeros((y1 - y0, x1 - x0), np.uint8)
        shifted = [r - np.array([x0, y0], np.int32) for r in rings]
        cv2.fillPoly(canvas, [shifted[0]], 1)
        cv2.polylines(canvas, [shifted[0]], True, 1)  # degenerate rings (1-2 points) too
        for hole in shifted[1:]:
            cv2.fillPoly(canvas, [hole], 0)
        if len(shifted) > 1:
            cv2.polylines(canvas, shifted[1:], True, 1)  # hole rings are mask pixels
        out[y0:y1, x0:x1] |= canvas
    return out.astype(bool)


def mask_to_rle(mask: np.ndarray) -> RLE:
    """``(H, W)`` bool mask -> COCO compressed RLE ``{"size": [H, W], "counts": str}``."""
    return masks_to_rle(_as_mask(mask)[None])[0]


def masks_to_rle(masks: np.ndarray) -> list[RLE]:
    """``(N, H, W)`` bool masks -> N COCO RLEs, encoded in one pycocotools call."""
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"masks: expected (N, H, W), got shape {masks.shape}")
    if len(masks) == 0:
        return []
    encoded = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
    return [{"size": [int(s) for s in r["size"]], "counts": r["counts"].decode("ascii")} for r in encoded]


def rle_to_mask(rle: RLE) -> np.ndarray:
    """COCO compressed RLE (``counts`` as ``str`` or ``bytes``) -> ``(H, W)`` bool mask."""
    counts = rle["counts"]
    if isinstance(counts, list):  # uncompressed RLE, as COCO ground truth may carry
        h, w = rle["size"]
        compressed = mask_utils.frPyObjects({"size": [int(h), int(w)], "counts": counts}, int(h), int(w))
    else:
        compressed = {"size": [int(s) for s in rle["size"]],
                      "counts": counts.encode("ascii") if isinstance(counts, str) else bytes(counts)}
    return mask_utils.decode(compressed).astype(bool)

