"""Tiny random-weight engines and synthetic images for tests."""

from __future__ import annotations

import warnings

import numpy as np

from dtseg import SamEngine
from dtseg.errors import RandomWeightsWarning


def synthetic_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """An RGB uint8 ``(H, W, 3)`` image with a gradient, a disc, a box and mild noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    image = np.stack([xx * 255 // max(width - 1, 1), yy * 255 // max(height - 1, 1),
                      np.full_like(xx, 90)], axis=-1).astype(np.float32)
    disc = (yy - height * 0.4) ** 2 + (xx - width * 0.35) ** 2 < (min(height, width) * 0.2) ** 2
    image[disc] = (230, 40, 40)
    image[int(height * 0.6):int(height * 0.9), int(width * 0.55):int(width * 0.9)] = (30, 200, 60)
    image += rng.normal(0, 6, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def make_engine(model: str = "tiny", **options) -> SamEngine:
    """``model`` (a test-size model) with random weights on the CPU, its random-weights warning silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomWeightsWarning)
        return SamEngine.load(model, "random", device="cpu", **options)
