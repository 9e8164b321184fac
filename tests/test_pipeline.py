"""Pipeline: stages -> one embedding -> one batched decode -> Detections, 1:1 with the prompts."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from dtseg.config import SamConfig, StrictModel
from dtseg.errors import CheckpointNotFoundError
from dtseg.hookspecs import hookimpl
from dtseg.pipeline import Pipeline
from dtseg.plugins import Registry, get_plugin_manager, register_plugin
from dtseg.prompts import Prompts
from tests.fakes import FakeEngine

DOCS = Path(__file__).parents[1] / "docs" / "plugins.md"


def registry_with(**providers: type) -> Registry:
    """The normal registry plus providers defined in a test, registered in-process."""
    class Plugin:
        @hookimpl
        def dtseg_register_prompt_providers(self, register):
            for name, cls in providers.items():
                register(name, cls)

    pm = get_plugin_manager()
    register_plugin(pm, Plugin(), name="test-providers")
    return Registry.collect(pm)


class Fixed:
    """Returns the prompts given in its class attribute, tagged, whatever the frame."""

    prompts: Prompts = Prompts.empty()

    class Config(StrictModel):
        pass

    def __init__(self, config):
        pass

    def __call__(self, frame, prompts):
        out = self.prompts[np.arange(len(self.prompts))]
        out.data["tag"] = np.array([f"obj{i}" for i in range(len(out))], dtype=object)
        return out


@pytest.fixture
def fresh_engine(tiny_sam_config):
    """An engine of its own, for counting encoder calls."""
    return SamConfig(**tiny_sam_config).build_engine()


def test_the_documented_plugin_is_short_and_chains_before_zones(tmp_path: Path, tiny_sam_config, small_frame):
    code = re.search(r"## A provider in \d+ lines.*?```python\n(.*?)```", DOCS.read_text(), re.S).group(1)
    assert len([line for line in code.splitlines() if line.strip()]) < 20
    (tmp_path / "my_plugins").mkdir()
    (tmp_path / "my_plugins" / "grid.py").write_text(code)
    config = tmp_path / "pipeline.yaml"  # plugins_dir is relative to the config, as the guide says
    config.write_text(f"plugins_dir: my_plugins\nsam: {tiny_sam_config}\nsinks: []\nprompts:\n"
                      "  - grid: {n: 2}\n"
                      "  - zones: {zones: [{name: left, polygon: [[0, 0], [80, 0], [80, 120], [0, 120]]}],"
                      " anchor: center}\n")
    pipeline = Pipeline.from_config(config)
    assert "file " + str(tmp_path / "my_plugins" / "grid.py") == pipeline.stages[0].info.source
    detections = pipeline(small_frame)  # 160 x 120: grid points at x = 40, 120 and y = 30, 90
    assert detections.metadata["num_prompts"] == 2  # zones dropped the right column before SAM
    np.testing.assert_array_equal(detections.data["prompt_points"][:, 0], [[40, 30], [40, 90]])
    assert list(detections.data["zone"]) == ["left", "left"]
    assert detections.mask.shape == (2, 120, 160)


def test_row_i_is_the_mask_of_prompt_i_from_one_batched_decode(fresh_engine, small_frame, monkeypatch):
    Fixed.prompts = Prompts.from_objects([  # three prompt layouts, decoded in one engine call
        {"box": [85, 55, 135, 105]}, {"points": [[110, 80], [20, 100]], "labels": [1, 0]},
        {"points": [[30, 30]], "box": [20, 20, 60, 60]},
    ])
    pipeline = Pipeline.from_config({"prompts": ["fixed"], "sinks": []}, registry=registry_with(fixed=Fixed),
                                    engine=fresh_engine)
    calls = []
    segment = fresh_engine.segment
    monkeypatch.setattr(fresh_engine, "segment", lambda *a, **k: calls.append(len(a[1])) or segment(*a, **k))
    detections = pipeline(small_frame)
    assert calls == [3]  # every object in one call
    assert list(detections.data["tag"]) == ["obj0", "obj1", "obj2"]
    for i in range(3):
        alone = segment(small_frame, Fixed.prompts[i])
        np.testing.assert_array_equal(detections.mask[i], alone.mask[0])
        np.testing.assert_allclose(detections.data["sam_score"][i], alone.data["sam_score"][0], rtol=1e-5)
    np.testing.assert_array_equal(detections.data["prompt_box"], Fixed.prompts.boxes)


def test_each_frame_is_embedded_once(fresh_engine, small_frame):
    Fixed.prompts = Prompts.from_objects([{"points": [[40, 40]]}])
    pipeline = Pipeline.from_config({"prompts": ["fixed"], "sinks": []}, registry=registry_with(fixed=Fixed),
                                    engine=fresh_engine)
    pipeline(small_frame)
    pipeline(small_frame.copy())  # the same pixels in another array
    assert fresh_engine.encoder_calls == 1


class CountedPoints:
    """As many point prompts as the frame's top-left red value (0 = none), at seeded positions."""

    class Config(StrictModel):
        pass

    def __init__(self, config):
        pass

    def __call__(self, frame, prompts):
        n, (h, w) = int(frame[0, 0, 0]), frame.shape[:2]
        xy = np.random.default_rng(n).uniform((0, 0), (w, h), (n, 2))
        return Prompts.from_objects([{"points": [p.tolist()]} for p in xy])


def test_segment_batch_embeds_every_prompted_image_in_one_encoder_pass(fresh_engine, tiny_sam_config, small_frame):
    frames = [small_frame.copy() for _ in range(3)] + [np.full((90, 200, 3), 140, np.uint8)]
    for frame, n in zip(frames, (2, 0, 5, 1), strict=True):  # ragged: 2, none, 5 and 1 prompts; two image sizes
        frame[0, 0, 0] = n
    frames[2] = frames[2][::-1].copy()
    frames[2][0, 0, 0] = 5
    config = {"prompts": ["counted"], "sinks": [], "batch_size": 4}
    batched = Pipeline.from_config(config, registry=registry_with(counted=CountedPoints), engine=fresh_engine)
    passes: list[int] = []
    fresh_engine.model.image_encoder.register_forward_hook(lambda module, args, out: passes.append(len(args[0])))

    results = batched.segment_batch(frames)

    assert passes == [3]  # the frame without prompts is never encoded
    alone = Pipeline.from_config(config, registry=registry_with(counted=CountedPoints),
                                 engine=SamConfig(**tiny_sam_config).build_engine())
    for frame, result, n in zip(frames, results, (2, 0, 5, 1), strict=True):
        expected = alone(frame)
        assert len(result) == n and result.metadata["num_prompts"] == n
        np.testing.assert_allclose(result.data["sam_score"], expected.data["sam_score"], atol=1e-4)
        if n:
            assert result.mask.shape == (n, *frame.shape[:2])
            assert (result.mask == expected.mask).mean() > 0.999
        np.testing.assert_array_equal(result.data["prompt_points"], expected.data["prompt_points"])
    batched(frames[0])  # embedded by the batch: a cache hit
    assert passes == [3]
    in_twos = Pipeline.from_config({**config, "batch_size": 2}, registry=registry_with(counted=CountedPoints),
                                   engine=SamConfig(**tiny_sam_config).build_engine())
    in_twos.engine.model.image_encoder.register_forward_hook(lambda module, args, out: passes.append(len(args[0])))
    in_twos.segment_batch(frames)
    assert passes == [3, 2, 1]  # batch_size bounds each encoder pass


def test_empty_prompts_give_empty_detections_without_running_sam(fresh_engine, small_frame):
    seen: list[int] = []

    class Counter(Fixed):
        def after_segment(self, frame, detections):
            seen.append(len(detections))
            return detections

    Fixed.prompts = Prompts.from_objects([{"points": [[40, 40]]}])[np.zeros(0, int)]
    pipeline = Pipeline.from_config({"prompts": ["counter"], "sinks": []}, registry=registry_with(counter=Counter),
                                    engine=fresh_engine)
    detections = pipeline(small_frame)
    assert len(detections) == 0 and seen == [0] and fresh_engine.encoder_calls == 0
    assert len(detections.data["tag"]) == 0 and len(detections.data["sam_score"]) == 0
    assert detections.metadata == {"random_weights": None, "num_prompts": 0}


def test_after_segment_hooks_run_in_stage_order(small_frame):
    class Keep(Fixed):
        def after_segment(self, frame, detections):
            return detections[np.array([t != "obj1" for t in detections.data["tag"]])]

    class Label:
        def __init__(self, config):
            pass

        def __call__(self, frame, prompts):
            return prompts

        def after_segment(self, frame, detections):
            detections.data["seen"] = np.array(list(detections.data["tag"]), dtype=object)
            return detections

    Fixed.prompts = Prompts.from_objects([{"points": [[40, 40]]}, {"points": [[110, 80]]}, {"points": [[10, 10]]}])
    registry = registry_with(keep=Keep, label=Label)
    engine = FakeEngine()
    detections = Pipeline.from_config({"prompts": ["keep", "label"], "sinks": []}, registry=registry,
                                      engine=engine)(small_frame)
    assert engine.calls == [3]
    assert list(detections.data["seen"]) == ["obj0", "obj2"]


def test_a_provider_returning_something_else_is_named(small_frame):
    class Wrong(Fixed):
        def __call__(self, frame, prompts):
            return [[1, 2]]

    pipeline = Pipeline.from_config({"prompts": ["wrong"], "sinks": []}, registry=registry_with(wrong=Wrong),
                                    engine=FakeEngine())
    with pytest.raises(TypeError, match=r"prompt provider 'wrong' .*in-process.* returned list, not Prompts"):
        pipeline(small_frame)


def test_device_reaches_sam_and_stages_that_take_one(tiny_sam_config, small_frame):
    seen: dict[str, Any] = {}

    class WithDevice(Fixed):
        class Config(StrictModel):
            device: str | None = None

        def __init__(self, config):
            seen["device"] = config.device

    Fixed.prompts = Prompts.from_objects([{"points": [[40, 40]]}])
    # the config asks for CUDA: only the device argument can put SAM on the CPU (on a machine
    # without CUDA, building the engine on the config's device is an error)
    config = {"sam": {**tiny_sam_config, "device": "cuda"}, "prompts": ["dev"], "sinks": []}
    pipeline = Pipeline.from_config(config, registry=registry_with(dev=WithDevice), device="cpu")
    assert seen["device"] == "cpu" and pipeline.loaded.config.sam.device == "cpu"
    assert pipeline.engine.device == torch.device("cpu")
    assert {p.device for p in pipeline.engine.model.net.parameters()} == {torch.device("cpu")}
    assert pipeline(small_frame).mask.shape == (1, 120, 160)


def test_allow_random_replaces_missing_sam_weights_loudly(caplog):
    config = {"sam": {"model": "tiny", "device": "cpu"}, "prompts": [{"points": {"objects": [{"points": [[1, 1]]}]}}],
              "sinks": [{"annotated": {}}]}
    with pytest.raises(CheckpointNotFoundError):
        Pipeline.from_config(config)
    with pytest.warns(Warning, match="random weights"):
        pipeline = Pipeline.from_config(config, allow_random=True)
    assert pipeline.engine.random_weights and pipeline.random_parts == ["sam"]
    assert "--allow-random: sam runs with RANDOM weights" in caplog.text


def test_random_weights_label_the_detections_and_the_annotated_sink(tmp_path: Path, small_frame):
    config = {"prompts": [{"points": {"objects": [{"points": [[1, 1]]}]}}],
              "sinks": [{"annotated": {"subdir": "pics"}}, {"json": {}}]}
    pipeline = Pipeline.from_config(config, engine=FakeEngine(random_weights=True))
    assert pipeline(small_frame).metadata["random_weights"] == "RANDOM WEIGHTS (sam): boxes and masks are meaningless"
    sinks = pipeline.open_sinks(tmp_path / "out")
    assert [type(s).__name__ for s in sinks] == ["AnnotatedSink", "JsonSink"]
    assert sinks[0].banner == pipeline.random_label and sinks[0].dir == tmp_path / "out" / "pics"
    quiet = Pipeline.from_config(config, engine=FakeEngine())
    assert quiet(small_frame).metadata["random_weights"] is None
    assert quiet.open_sinks(tmp_path / "out2")[0].banner is None
