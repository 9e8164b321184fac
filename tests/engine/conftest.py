"""Fixtures for engine tests: a tiny random-weight SAM and synthetic images."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from dtseg import SamEngine
from dtseg.engine import fused
from dtseg.engine.models import RandomWeightsWarning


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


def make_engine(**options) -> SamEngine:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomWeightsWarning)
        return SamEngine.load("tiny", "random", device="cpu", **options)


@pytest.fixture(scope="session")
def engine() -> SamEngine:
    """One tiny engine for read-mostly tests (tests that count calls make their own)."""
    return make_engine()


@pytest.fixture(scope="session")
def image() -> np.ndarray:
    return synthetic_image(300, 500)


@pytest.fixture
def no_onednn_kernels(monkeypatch):
    """oneDNN's fused kernels raise as they do on a CPU without them in a precision (AVX2 in
    bf16: "could not create a primitive descriptor ..."), in every precision; the probes'
    cache (``fused.kernel_runs``) is cleared before and after. Yields the calls, in order, as
    ``(kernel, dtype)``: ``linear`` or ``conv``, and the input's dtype."""
    calls: list[tuple[str, torch.dtype]] = []

    def missing(name: str):
        def raise_(x, *args, **kwargs):
            calls.append((name, x.dtype))
            raise RuntimeError("could not create a primitive descriptor for the inner product forward propagation "
                               "primitive.")
        return raise_

    monkeypatch.setattr(torch.ops.mkldnn, "_linear_pointwise", missing("linear"))
    monkeypatch.setattr(torch.ops.mkldnn, "_convolution_pointwise", missing("conv"))
    fused.kernel_runs.cache_clear()
    yield calls
    fused.kernel_runs.cache_clear()
