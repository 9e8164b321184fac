"""``annotated`` sink: the image with masks, boxes and labels drawn by supervision annotators.

Writes ``<out_dir>/<subdir>/<name>.png`` (or ``.jpg``) as each image finishes. Annotators are
chosen in YAML (``annotators: [mask, box, label]``, drawn in that order); ``prompt`` draws the
points SAM was given (``data["prompt_points"]``). The zones provider's polygons
(``metadata["zones"]``) are drawn under the objects. A ``banner`` (e.g.
``"RANDOM WEIGHTS - masks are meaningless"``) is drawn across the bottom (where it hides no
label: supervision draws labels above their boxes), wrapped to the picture's width, when set,
from config or by assigning ``sink.banner`` after construction (the pipeline does so for random
weights). ``Annotator`` is the drawing alone (frame, detections -> picture), which the annotated
video (``dtseg video``) uses too.
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
from dtseg.contracts import Writer
from dtseg.records import CLASS_NAME, PROMPT_LABELS, PROMPT_POINTS, SAM_SCORE, TRACKER_ID, ZONE, ZONES, column
from dtseg.sinks._common import check_frame, check_name, encode_image, relative
from dtseg.sinks.writer import as_writer

AnnotatorName = Literal["mask", "box", "box_corner", "polygon", "halo", "color", "dot", "prompt", "label"]

FONT = cv2.FONT_HERSHEY_SIMPLEX
MIN_BANNER_SCALE = 0.35  # below this the banner wraps instead of shrinking
WHITE, BLACK, RED = (255, 255, 255), (0, 0, 0), (0, 0, 200)  # BGR


class AnnotatedConfig(StrictModel):
    annotators: list[AnnotatorName] = ["mask", "box", "label"]  # noqa: RUF012 - pydantic copies it
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
    zones: bool = True  # draw the zones provider's polygons
    subdir: str = "annotated"


class _MissingAsDash(string.Formatter):
    """``format`` where ``None`` values print as ``-`` instead of failing on ``:.2f``."""

    def format_field(self, value: Any, format_spec: str) -> str:
        return "-" if value is None else super().format_field(value, format_spec)


#: The fields a ``label`` template can use, besides ``index``.
LABEL_FIELDS = ("class_id", CLASS_NAME, "confidence", SAM_SCORE, TRACKER_ID, ZONE)


class Annotator:
    """Draws detections on a frame (``render``), per the drawing options of ``config`` (its file
    options are not used). ``banner``: text or ``None``."""

    def __init__(self, config: AnnotatedConfig, banner: str | None = None) -> None:
        self.config = config
        self.banner: str | None = config.banner if config.banner is not None else banner
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
            "prompt": lambda: None,  # drawn by draw_prompt_points
            "label": lambda: sv.LabelAnnotator(text_scale=c.text_scale, text_padding=4, smart_position=True),
        }[name]()

    def labels(self, detections: sv.Detections) -> list[str]:
        """One label per object from the ``label`` template."""
        out = []
        for i in range(len(detections)):
            fields = {k: column(detections, k, i) for k in LABEL_FIELDS}
            if fields[CLASS_NAME] is None:
                fields[CLASS_NAME] = "object" if fields["class_id"] is None else str(fields["class_id"])
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
        if self.config.zones and detections.metadata.get(ZONES):
            draw_zones(scene, detections.metadata[ZONES], self.config.thickness, self.config.text_scale)
        if len(detections):
            lookup = self.color_lookup(detections)
            for name, annotator in zip(self.config.annotators, self._annotators, strict=True):
                if name == "label":
                    scene = annotator.annotate(scene, detections, labels=self.labels(detections),
                                               custom_color_lookup=lookup)
                elif name == "prompt":
                    scene = draw_prompt_points(scene, detections, lookup)
                elif name in ("mask", "polygon", "halo") and detections.mask is None:
                    continue
                else:
                    scene = annotator.annotate(scene, detections, custom_color_lookup=lookup)
        if self.banner:
            scene = self._draw_banner(scene, self.banner)
        return scene

    def _draw_banner(self, scene: np.ndarray, text: str) -> np.ndarray:
        """White text on a red bar along the bottom edge, shrunk to fit the width, and wrapped at
        spaces where it would get smaller than ``MIN_BANNER_SCALE`` (on a picture too small for
        the wrapped lines to take at most a third of it: one line, as small as it takes)."""
        # OpenCV's Hershey fonts draw ASCII only: dashes become "-", anything else "?"
        text = text.replace("\u2014", "-").replace("\u2013", "-").encode("ascii", "replace").decode()
        height, width = scene.shape[:2]
        scale = max(0.4, width / 1400)
        pad = max(3, round(scale * 10))
        fit = scale * (width - 2 * pad) / cv2.getTextSize(text, FONT, scale, max(1, round(scale * 2)))[0][0]
        scale = max(MIN_BANNER_SCALE, min(scale, fit))
        lines = wrap_text(text, width - 2 * pad, scale, max(1, round(scale * 2)))
        step = cv2.getTextSize(text, FONT, scale, 1)[0][1] + pad
        if len(lines) > 1 and len(lines) * step + pad > height / 3:
            scale, lines = max(0.1, fit), [text]
            step = cv2.getTextSize(text, FONT, scale, 1)[0][1] + pad
        thickness = max(1, round(scale * 2))
        top = max(0, height - len(lines) * step - pad)
        cv2.rectangle(scene, (0, top), (width, height), RED, -1)
        for i, line in enumerate(lines):
            cv2.putText(scene, line, (pad, top + (i + 1) * step), FONT, scale, WHITE, thickness, cv2.LINE_AA)
        return scene



class AnnotatedSink(Annotator):
    """Draws detections on each frame and writes the picture, ``<subdir>/<name>.<format>``.
    ``out``: the output folder, or a ``Writer``."""

    Config = AnnotatedConfig
    takes_writer = True

    def __init__(self, config: AnnotatedConfig, out: Path | Writer) -> None:
        super().__init__(config)
        self.writer = as_writer(out)
        self.dir = None if self.writer.root is None else self.writer.root / config.subdir

    def path_for(self, name: str) -> str:
        """Where ``name``'s picture goes, relative to the output folder."""
        return relative(self.config.subdir, f"{check_name(name)}.{self.config.format}")

    def encode(self, frame: np.ndarray, detections: sv.Detections) -> bytes:
        """RGB ``frame`` ``(H, W, 3)`` uint8 and its detections -> the picture file's bytes."""
        params = [cv2.IMWRITE_JPEG_QUALITY, self.config.jpg_quality] if self.config.format == "jpg" else None
        return encode_image(f".{self.config.format}", self.render(frame, detections), params)

    def write(self, name: str, frame: np.ndarray, detections: sv.Detections) -> None:
        self.writer.write(self.path_for(name), self.encode(frame, detections))

    def close(self) -> None:
        """Nothing is held between images."""


def wrap_text(text: str, width: int, scale: float, thickness: int) -> list[str]:
    """``text`` in lines of at most ``width`` pixels in ``FONT`` at ``scale``, broken at spaces
    (a single word wider than ``width`` keeps a line of its own)."""
    lines: list[str] = []
    for word in text.split():
        joined = f"{lines[-1]} {word}" if lines else word
        if lines and cv2.getTextSize(joined, FONT, scale, thickness)[0][0] <= width:
            lines[-1] = joined
        else:
            lines.append(word)
    return lines or [""]


def draw_prompt_points(scene: np.ndarray, detections: sv.Detections, custom_color_lookup: np.ndarray) -> np.ndarray:
    """The points SAM was given, in each object's colour: foreground points as dots ringed in
    white, background points as crosses ringed in black (``scene`` BGR ``(H, W, 3)``, drawn in
    place). Padding points (label -1) and objects without points draw nothing."""
    points, labels = detections.data.get(PROMPT_POINTS), detections.data.get(PROMPT_LABELS)
    if points is None or labels is None:
        return scene
    radius = max(4, round(min(scene.shape[:2]) / 150))
    cross = dict(markerType=cv2.MARKER_TILTED_CROSS, markerSize=2 * radius + 2, line_type=cv2.LINE_AA)
    for foreground in (False, True):  # dots on top of crosses
        for i in range(len(detections)):
            color = sv.ColorPalette.DEFAULT.by_idx(int(custom_color_lookup[i])).as_bgr()
            for (x, y), label in zip(np.asarray(points[i], np.float64), np.asarray(labels[i]), strict=True):
                if label != int(foreground) or not (np.isfinite(x) and np.isfinite(y)):
                    continue
                center = (round(x), round(y))
                if foreground:
                    cv2.circle(scene, center, radius + 2, WHITE, -1, cv2.LINE_AA)
                    cv2.circle(scene, center, radius, color, -1, cv2.LINE_AA)
                else:
                    cv2.drawMarker(scene, center, BLACK, thickness=radius // 2 + 2, **cross)
                    cv2.drawMarker(scene, center, color, thickness=max(1, radius // 2), **cross)
    return scene


def draw_zones(scene: np.ndarray, zones: dict[str, np.ndarray], thickness: int, text_scale: float) -> None:
    """Each zone's polygon ``(V, 2)`` pixels as a white outline on black, its name at its top-left
    vertex (``scene`` BGR ``(H, W, 3)``, drawn in place)."""
    for name, polygon in zones.items():
        vertices = np.round(np.asarray(polygon, np.float64)).astype(np.int32).reshape(-1, 1, 2)
        cv2.polylines(scene, [vertices], True, BLACK, thickness + 2, cv2.LINE_AA)
        cv2.polylines(scene, [vertices], True, WHITE, thickness, cv2.LINE_AA)
        x, y = vertices[np.argmin(vertices[:, 0, 0] + vertices[:, 0, 1]), 0]
        at = (int(x) + thickness + 4, int(y) + thickness + 4 + cv2.getTextSize(name, FONT, text_scale, 1)[0][1])
        cv2.putText(scene, name, at, FONT, text_scale, BLACK, 3, cv2.LINE_AA)
        cv2.putText(scene, name, at, FONT, text_scale, WHITE, 1, cv2.LINE_AA)
