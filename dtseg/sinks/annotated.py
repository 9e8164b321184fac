"""``annotated`` sink: the image with masks, boxes and labels drawn by supervision annotators.

Writes ``<out_dir>/<subdir>/<name>.png`` (or ``.jpg``) as each image finishes. Annotators are
chosen in YAML (``annotators: [mask, box, label]``, drawn in that order). A ``banner`` (e.g.
``"RANDOM WEIGHTS - masks are meaningless"``) is drawn across the bottom (where it hides no
label: supervision draws labels above their boxes) when set, from config or
by assigning ``sink.banner`` after construction (the pipeline does so for random weights).
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import supervision as sv
from pydantic import Field

from dtseg.config import StrictModel
from dtseg.sinks._common import check_frame, check_name, column, write_image

AnnotatorName = Literal["mask", "box", "box_corner", "polygon", "halo", "color", "dot", "label"]


class Config(StrictModel):
    annotators: list[AnnotatorName] = ["mask", "box", "label"]
    opacity: float = Field(0.5, ge=0.0, le=1.0)  # mask / halo / color fill
    thickness: int = Field(2, ge=1)  # box / polygon lines, pixels
    color_by: Literal["index", "class", "track"] = "class"  # falls back to index when absent
    #: Python format string; fields: index, class_id, class_name, confidence, sam_score,
    #: tracker_id, zone. A missing value prints as "-" (its format spec is then ignored).
    label: str = "{class_name} {confidence:.2f}"
    text_scale: float = Field(0.5, gt=0.0)
    format: Literal["png", "jpg"] = "png"
    jpg_quality: int = Field(95, ge=1, le=100)
    banner: str | None = None
    subdir: str = "annotated"


class _MissingAsDash(string.Formatter):
    """``format`` where ``None`` values print as ``-`` instead of failing on ``:.2f``."""

    def format_field(self, value: Any, format_spec: str) -> str:
        return "-" if value is None else super().format_field(value, format_spec)


class AnnotatedSink:
    """Draws detections on each frame and writes the picture. ``banner``: text or ``None``."""

    Config = Config

    def __init__(self, config: Config, out_dir: Path) -> None:
        self.config = config
        self.dir = Path(out_dir) / config.subdir
        self.banner: str | None = config.banner
        self._formatter = _MissingAsDash()
        self._annotators = [self._make(name) for name in config.annotators]

    def _make(self, name: str) -> Any:
        c = self.config
        return {
            "mask": lambda: sv.MaskAnnotator(opacity=c.opacity),
            "box": lambda: sv.BoxAnnotator(thickness=c.thickness),
            "box_corner": lambda: sv.BoxCornerAnnotator(thickness=c.thickness),
            "polygon": lambda: sv.PolygonAnnotator(thickness=c.thickness),
            "halo": lambda: sv.HaloAnnotator(opacity=c.opacity),
            "color": lambda: sv.ColorAnnotator(opacity=c.opacity),
            "dot": lambda: sv.DotAnnotator(),
            "label": lambda: sv.LabelAnnotator(text_scale=c.text_scale, text_padding=4, smart_position=True),
        }[name]()

    def labels(self, detections: sv.Detections) -> list[str]:
        """One label per object from the ``label`` template."""
        out = []
        for i in range(len(detections)):
            fields = {k: column(detections, k, i)
                      for k in ("class_id", "class_name", "confidence", "sam_score", "tracker_id", "zone")}
            if fields["class_name"] is None:
                fields["class_name"] = "object" if fields["class_id"] is None else str(fields["class_id"])
            out.append(self._formatter.format(self.config.label, index=i, **fields))
        return out

    def color_lookup(self, detections: sv.Detections) -> np.ndarray:
        """``(N,)`` int palette index per object, per ``color_by`` (index when the field is absent)."""
        by = {"class": detections.class_id, "track": detections.tracker_id}.get(self.config.color_by)
        return np.arange(len(detections)) if by is None else np.asarray(by).astype(np.int64)

    def render(self, frame: np.ndarray, detections: sv.Detections) -> np.ndarray:
        """RGB ``(H, W, 3)`` uint8 -> annotated BGR ``(H, W, 3)`` uint8 (the frame is not modified)."""
        check_frame(frame)
        scene = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)  # supervision draws in BGR for cv2
        if len(detections):
            lookup = self.color_lookup(detections)
            for name, annotator in zip(self.config.annotators, self._annotators):
                if name == "label":
                    scene = annotator.annotate(scene, detections, labels=self.labels(detections),
                                               custom_color_lookup=lookup)
                elif name in ("mask", "polygon", "halo") and detections.mask is None:
                    continue
                else:
                    scene = annotator.annotate(scene, detections, custom_color_lookup=lookup)
        if self.banner:
            scene = self._draw_banner(scene, self.banner)
        return scene

    def _draw_banner(self, scene: np.ndarray, text: str) -> np.ndarray:
        # OpenCV's Hershey fonts draw ASCII only: dashes become "-", anything else "?"
        text = text.replace("\u2014", "-").replace("\u2013", "-").encode("ascii", "replace").decode()
        scale = max(0.4, scene.shape[1] / 1400)
        thickness = max(1, round(scale * 2))
        (_, text_h), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
        pad = max(4, text_h // 2)
        top = max(0, scene.shape[0] - text_h - 2 * pad)  # a bar along the bottom edge
        cv2.rectangle(scene, (0, top), (scene.shape[1], scene.shape[0]), (0, 0, 200), -1)  # red, BGR
        cv2.putText(scene, text, (pad, top + text_h + pad), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255),
                    thickness, cv2.LINE_AA)
        return scene

    def path_for(self, name: str) -> Path:
        return self.dir / f"{check_name(name)}.{self.config.format}"

    def write(self, name: str, frame: np.ndarray, detections: sv.Detections) -> None:
        params = [cv2.IMWRITE_JPEG_QUALITY, self.config.jpg_quality] if self.config.format == "jpg" else None
        write_image(self.path_for(name), self.render(frame, detections), params)

    def close(self) -> None:
        """Nothing is held between images."""
