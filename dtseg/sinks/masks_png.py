"""``masks_png`` sink: masks as lossless PNGs, written as each image finishes.

* ``mode: per_object``: one 8-bit PNG per object, ``<subdir>/<name>_<i>.png`` (``i`` = the
  object's row in the detections, from 0), pixel 255 = mask, 0 = background. An image with no
  objects writes no file.
* ``mode: instance``: one 16-bit PNG per image, ``<subdir>/<name>.png``, pixel value = object
  row + 1, 0 = background (so up to 65535 objects). Where masks overlap, one object wins the
  pixel: ``overlap: score`` gives it to the higher ``data["sam_score"]`` (else ``confidence``;
  ties and missing scores: the lower row), ``overlap: order`` to the lower row. An image with
  no objects writes an all-zero PNG. Such a file looks black in an image viewer (its values are
  1, 2, 3 ... out of 65535), so beside it ``color: true`` (the default) writes
  ``<subdir>/color/<name>.png``: the same map in 8-bit colour for looking at, object ``i`` in
  supervision's palette colour ``i`` (the ``annotated`` sink's with ``color_by: index``),
  background black.

Read back with ``cv2.imread(path, cv2.IMREAD_UNCHANGED)``: ``png > 0`` (per object) or
``png == i + 1`` (instance) is object ``i``'s mask (minus pixels another object won).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import supervision as sv

from dtseg.config import StrictModel
from dtseg.contracts import Writer
from dtseg.errors import InputError
from dtseg.records import masks_of
from dtseg.sinks._common import check_frame, check_name, encode_image, relative, score_of
from dtseg.sinks.writer import as_writer


class MasksPngConfig(StrictModel):
    mode: Literal["per_object", "instance"] = "per_object"
    overlap: Literal["score", "order"] = "score"  # instance mode only
    color: bool = True  # instance mode: also a colour PNG to look at, <subdir>/color/<name>.png
    subdir: str = "masks"


def instance_map(masks: np.ndarray, scores: np.ndarray | None = None) -> np.ndarray:
    """``(N, H, W)`` bool masks -> ``(H, W)`` uint16 map, value = row + 1, 0 = background.

    Overlaps go to the higher score ``(N,)`` (ties: lower row); with no scores, to the lower row.
    """
    n = len(masks)
    if n > np.iinfo(np.uint16).max:
        raise InputError("detections", f"{n} objects do not fit a 16-bit instance PNG")
    order = np.arange(n) if scores is None else np.lexsort((np.arange(n), -np.nan_to_num(scores, nan=-np.inf)))
    out = np.zeros(masks.shape[1:], np.uint16)
    for i in order[::-1]:  # paint the winners last
        out[masks[i]] = i + 1
    return out


def color_map(instances: np.ndarray) -> np.ndarray:
    """``(H, W)`` uint16 instance map (``instance_map``) -> ``(H, W, 3)`` uint8 BGR picture:
    value ``i + 1`` in supervision's palette colour ``i``, 0 black."""
    n = int(instances.max(initial=0))
    palette = [(0, 0, 0)] + [sv.ColorPalette.DEFAULT.by_idx(i).as_bgr() for i in range(n)]
    return np.asarray(palette, np.uint8)[instances]


def mask_pngs(name: str, frame: np.ndarray, detections: sv.Detections, config: MasksPngConfig) -> dict[str, bytes]:
    """One image's PNG files as ``{path under the output folder: bytes}``, per ``config`` (the
    module docstring); ``frame`` RGB uint8 ``(H, W, 3)`` gives the size."""
    name = check_name(name)
    masks = masks_of(detections, check_frame(frame), "masks_png")
    if config.mode == "per_object":
        return {relative(config.subdir, f"{name}_{i}.png"): encode_image(".png", mask.astype(np.uint8) * 255)
                for i, mask in enumerate(masks)}
    scores = score_of(detections) if config.overlap == "score" and len(masks) else None
    instances = instance_map(masks, scores)
    files = {relative(config.subdir, f"{name}.png"): encode_image(".png", instances)}
    if config.color:
        files[relative(config.subdir, "color", f"{name}.png")] = encode_image(".png", color_map(instances))
    return files


class MasksPngSink:
    """Writes each frame's masks as PNGs; holds nothing between images. ``out``: the output
    folder, or a ``Writer``."""

    Config = MasksPngConfig
    needs_pixels = False  # the frame's size only
    takes_writer = True

    def __init__(self, config: MasksPngConfig, out: Path | Writer) -> None:
        self.config = config
        self.writer = as_writer(out)

    def write(self, name: str, frame: np.ndarray, detections: sv.Detections) -> None:
        for path, data in mask_pngs(name, frame, detections, self.config).items():
            self.writer.write(path, data)

    def close(self) -> None:
        """Nothing is held between images."""
