"""One object owns every coordinate change between an original image and a model's input frame.

SAM resizes the longest side to ``target_length`` (1024), keeps the aspect ratio, then pads
bottom/right to a square; SAM 2 stretches the image to the square (``stretch=True``). Points
and boxes are scaled with the same factors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image


def preprocess_shape(height: int, width: int, target_length: int) -> tuple[int, int]:
    """Size ``(h, w)`` of an image whose longest side is resized to ``target_length``."""
    scale = target_length / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


@dataclass(frozen=True)
class ImageTransform:
    """Maps between the original image ``(H, W)`` and the resized input ``(h, w)``.

    ``original_size`` and ``input_size`` are ``(height, width)`` in pixels.
    """

    original_size: tuple[int, int]
    input_size: tuple[int, int]

    @classmethod
    def for_image(cls, height: int, width: int, target_length: int = 1024, stretch: bool = False) -> ImageTransform:
        """``stretch``: the input is the whole ``target_length`` square (SAM 2), else the longest
        side is ``target_length`` and the aspect ratio is kept (SAM)."""
        size = (target_length, target_length) if stretch else preprocess_shape(height, width, target_length)
        return cls((height, width), size)

    def resize_image(self, image: np.ndarray) -> np.ndarray:
        """RGB uint8 ``(H, W, 3)`` -> ``(h, w, 3)``, resampled exactly as ``SamPredictor`` does
        (PIL bilinear, antialiased when shrinking)."""
        height, width = self.input_size
        return np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.BILINEAR))

    def coords(self, xy: np.ndarray) -> np.ndarray:
        """Pixel coordinates ``(..., 2)`` as ``[x, y]`` in the original image -> input frame."""
        out = np.array(xy, dtype=np.float32, copy=True)
        out[..., 0] *= self.input_size[1] / self.original_size[1]
        out[..., 1] *= self.input_size[0] / self.original_size[0]
        return out

    def boxes(self, xyxy: np.ndarray) -> np.ndarray:
        """Boxes ``(..., 4)`` as ``[x1, y1, x2, y2]`` in the original image -> input frame."""
        xyxy = np.asarray(xyxy, dtype=np.float32)
        return self.coords(xyxy.reshape(*xyxy.shape[:-1], 2, 2)).reshape(xyxy.shape)
