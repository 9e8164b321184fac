"""Fixtures for the video tests: synthetic videos, the shape-following provider, a fast engine.

``BoxEngine`` stands in for SAM where a test runs hundreds of frames (the tiny random SAM takes
about a second per frame on a shared CPU): its "mask" is the non-background pixels inside each
prompt box. Tests that need the real engine use ``tiny_sam_config`` on a few frames.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import supervision as sv

from dtseg.pipeline import Pipeline
from dtseg.plugins import Registry, get_plugin_manager, register_plugin
from dtseg.prompts import Prompts
from tests.video import synthetic
from tests.video.plugins import shapes


class BoxEngine:
    """``SamEngine.segment`` stand-in: mask = pixels brighter than the background inside the box."""

    random_weights = False

    def __init__(self) -> None:
        self.cache_flags: list[bool] = []

    def segment(self, image: np.ndarray, prompts: Prompts, multimask_output: bool = False, namespace: str = "",
                cache: bool = True) -> sv.Detections:
        self.cache_flags.append(cache)
        h, w = image.shape[:2]
        masks = np.zeros((len(prompts), h, w), bool)
        bright = image.max(axis=2) > 100
        for i, (x1, y1, x2, y2) in enumerate(prompts.boxes.astype(int)):
            masks[i, y1:y2, x1:x2] = bright[y1:y2, x1:x2]
        data = dict(prompts.data, sam_score=np.ones(len(prompts), np.float32), prompt_box=prompts.boxes)
        return sv.Detections(xyxy=sv.mask_to_xyxy(masks).astype(np.float32), mask=masks, class_id=prompts.class_id,
                             confidence=prompts.confidence, data=data)


def shapes_registry() -> Registry:
    pm = get_plugin_manager()
    register_plugin(pm, shapes, name="test-shapes")
    return Registry.collect(pm)


def shapes_pipeline(engine: Any = None, sam: dict[str, Any] | None = None, **options: Any) -> Pipeline:
    """A pipeline whose only stage is the ``shapes`` provider; ``engine`` or the ``sam`` config."""
    config = {"sam": sam or {"model": "tiny", "checkpoint": "random"}, "prompts": [{"shapes": options}],
              "sinks": [{"annotated": {}}]}
    return Pipeline.from_config(config, registry=shapes_registry(), engine=engine)


@pytest.fixture
def box_pipeline() -> Pipeline:
    return shapes_pipeline(BoxEngine())


@pytest.fixture(scope="session")
def video_30(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """30 frames, 128 x 96 pixels, 10 fps."""
    return synthetic.write_video(tmp_path_factory.mktemp("video") / "shapes.mp4", 30)


@pytest.fixture
def one_torch_thread() -> Any:
    """Real-SAM tests run torch on one thread: on a small shared CPU that is faster, not slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def present_sam2_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny SAM 2.1 random weights whose object-score head always says "present" (bias +10)."""
    import torch

    from dtseg.engine.families.sam2 import TINY_SAM2_SPEC, Sam2Family
    from dtseg.engine.models import save_checkpoint

    torch.manual_seed(0)
    net = Sam2Family.build_net(TINY_SAM2_SPEC)
    head = net.sam_mask_decoder.pred_obj_score_head
    with torch.no_grad():
        (head.layers[-1] if hasattr(head, "layers") else head).bias.fill_(10.0)
    return save_checkpoint(net, tmp_path_factory.mktemp("ckpt") / "tiny_sam2_present.pt")
