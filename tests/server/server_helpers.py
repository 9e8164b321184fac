"""Helpers for the server tests."""

from __future__ import annotations

import base64

import cv2
import numpy as np


def synthetic_image(height: int = 48, width: int = 64, seed: int = 0) -> np.ndarray:
    """RGB uint8 with a gradient, a disc and a box (small: the tiny SAM still pads to 1024)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    image = np.stack([xx * 255 // max(width - 1, 1), yy * 255 // max(height - 1, 1), np.full_like(xx, 90)], -1)
    image = image.astype(np.float32)
    image[(yy - height * 0.4) ** 2 + (xx - width * 0.35) ** 2 < (min(height, width) * 0.2) ** 2] = (230, 40, 40)
    image[int(height * 0.6):int(height * 0.9), int(width * 0.55):int(width * 0.9)] = (30, 200, 60)
    image += rng.normal(0, 6, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def png_bytes(rgb: np.ndarray) -> bytes:
    ok, buffer = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    return buffer.tobytes()


def b64_image(rgb: np.ndarray) -> dict[str, str]:
    """Roboflow's ``{"type": "base64", "value": ...}`` for an RGB array."""
    return {"type": "base64", "value": base64.b64encode(png_bytes(rgb)).decode()}


