"""Fixtures for the video tests: synthetic videos, the shape-following provider, a fast engine.

``BoxEngine`` (the shared ``tests.fakes.FakeEngine``) stands in for SAM where a test runs hundreds
of frames (the tiny random SAM takes about a second per frame on a shared CPU): its "mask" is the
non-background pixels inside each prompt box. Tests that need the real engine use ``tiny_sam_config`` on a few frames.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dtseg.pipeline import Pipeline
from dtseg.plugins import Registry, get_plugin_manager, register_plugin
from tests.fakes import FakeEngine
from tests.video import synthetic
from tests.video.plugins import shapes

BoxEngine = FakeEngine  # its mask: the bright pixels inside each prompt box


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
