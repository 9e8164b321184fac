"""Fixtures shared by every test folder: a tiny SAM checkpoint file, its engine, sample images.

Nothing here downloads: the SAM checkpoint is the tiny architecture with seeded random weights,
saved and loaded through the same code as real weights.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from dtseg import SamEngine
from dtseg.engine.checkpoints import TINY_SPEC, RandomWeightsWarning, build_sam, save_checkpoint
from dtseg.nn import fused
from tests.tiny import make_engine, synthetic_image


@pytest.fixture(scope="session")
def tiny_sam_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ``.pth`` file of the tiny SAM architecture (random weights, seed 0)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomWeightsWarning)
        sam = build_sam(TINY_SPEC, "random")
    return save_checkpoint(sam, tmp_path_factory.mktemp("sam") / "sam_tiny.pth")


@pytest.fixture(scope="session")
def tiny_sam_config(tiny_sam_checkpoint: Path) -> dict[str, Any]:
    """The ``sam:`` section of a pipeline config that loads ``tiny_sam_checkpoint`` on the CPU."""
    return {"model": "tiny", "checkpoint": str(tiny_sam_checkpoint), "device": "cpu"}


@pytest.fixture(scope="session")
def tiny_sam_engine(tiny_sam_config: dict[str, Any]) -> Any:
    """One engine on the tiny checkpoint, for read-mostly tests (tests that count calls make their own)."""
    from dtseg.config import SamConfig

    return SamConfig(**tiny_sam_config).build_engine()


@pytest.fixture(scope="session")
def bus_jpg() -> Path:
    """ultralytics' sample photo (1080 x 810 pixels), shipped inside the package."""
    from ultralytics.utils import ASSETS

    return Path(ASSETS) / "bus.jpg"


@pytest.fixture
def small_frame() -> np.ndarray:
    """An RGB uint8 ``(120, 160, 3)`` frame: grey background, a red square and a green disc."""
    import cv2

    frame = np.full((120, 160, 3), 90, np.uint8)
    frame[20:60, 20:60] = (220, 30, 30)
    cv2.circle(frame, (110, 80), 25, (30, 200, 60), -1)
    return frame


@pytest.fixture
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A real redis-server on a free port (``.url``, ``.stop()``, ``.start()``), stopped at the end."""
    from tests.redis_server import RedisServer

    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


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


@pytest.fixture(scope="session")
def present_sam2_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny SAM 2.1 random weights whose object-score head always says "present" (bias +10)."""
    from dtseg.families.sam2.family import TINY_SAM2_SPEC, Sam2Model

    torch.manual_seed(0)
    net = Sam2Model.build_net(TINY_SAM2_SPEC)
    head = net.sam_mask_decoder.pred_obj_score_head
    with torch.no_grad():
        (head.layers[-1] if hasattr(head, "layers") else head).bias.fill_(10.0)
    return save_checkpoint(net, tmp_path_factory.mktemp("ckpt") / "tiny_sam2_present.pt")
