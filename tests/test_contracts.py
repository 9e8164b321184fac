"""The typed contracts match the real parts, and the shared test fake matches the real engine."""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pytest

from dtseg.contracts import Engine, PromptProvider, SegmentFilter, Sink
from dtseg.engine import SamEngine
from dtseg.plugins import Registry, get_plugin_manager
from dtseg.prompts import Prompts
from tests.fakes import FakeEngine

ENGINE_METHODS = [name for name, value in vars(Engine).items() if callable(value) and not name.startswith("_")]


def shape_of(function) -> list[tuple[str, object, object]]:
    """A signature without annotations: each parameter's name, kind and default."""
    return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]


def test_the_engine_protocol_lists_what_the_pipeline_calls():
    assert sorted(ENGINE_METHODS) == ["embed_images", "segment"]
    source = inspect.getsource(__import__("dtseg.pipeline", fromlist=["x"]))
    called = {name for name in ("embed_image", "embed_images", "segment", "segment_image", "store_embedding")
              if f"engine.{name}(" in source}
    assert called == set(ENGINE_METHODS)  # the pipeline uses no engine method outside the contract


@pytest.mark.parametrize("name", ENGINE_METHODS)
def test_protocol_fake_and_real_engine_share_each_signature(name):
    assert shape_of(getattr(Engine, name)) == shape_of(getattr(SamEngine, name))
    assert shape_of(getattr(FakeEngine, name)) == shape_of(getattr(SamEngine, name))


def test_real_and_fake_engines_satisfy_the_protocol_and_agree_on_the_output(tiny_sam_engine, small_frame):
    assert isinstance(tiny_sam_engine, Engine) and isinstance(FakeEngine(), Engine)
    prompts = Prompts.from_objects([{"box": [15, 15, 65, 65]}, {"points": [[110, 80]]}])
    prompts.data["tag"] = np.array(["a", "b"], dtype=object)
    prompts.data["tracker_id"] = np.array([4, 9])
    real, fake = tiny_sam_engine.segment(small_frame, prompts), FakeEngine().segment(small_frame, prompts)
    assert set(fake.data) == set(real.data)
    for key in fake.data:
        assert np.asarray(fake.data[key]).shape == np.asarray(real.data[key]).shape, key
    assert fake.mask.shape == real.mask.shape and fake.mask.dtype == real.mask.dtype
    np.testing.assert_array_equal(fake.tracker_id, real.tracker_id)
    fake_embedded = FakeEngine().embed_images([small_frame], batch_size=2, cache=False)
    assert len(fake_embedded) == len(tiny_sam_engine.embed_images([small_frame], batch_size=2, cache=False)) == 1


def _registry() -> Registry:
    return Registry.collect(get_plugin_manager())


def test_every_registered_sink_satisfies_the_sink_contract(tmp_path: Path):
    registry = _registry()
    for name in registry.sinks:
        info = registry.sink(name)
        sink = info.cls(info.config_model(), tmp_path / name)
        assert isinstance(sink, Sink), name
        assert shape_of(type(sink).write) == shape_of(Sink.write), name
        assert shape_of(type(sink).close) == shape_of(Sink.close), name


def test_every_installed_provider_has_the_provider_call_and_filter_signatures():
    registry = _registry()
    assert {"everything", "points", "yolo", "zones"} <= set(registry.providers)
    for name in registry.providers:
        cls = registry.provider(name).cls
        assert [p[0] for p in shape_of(cls.__call__)][1:] == ["frame", "prompts"], name
        if hasattr(cls, "after_segment"):
            assert [p[0] for p in shape_of(cls.after_segment)][1:] == ["frame", "detections"], name
    assert issubclass(registry.provider("zones").cls, SegmentFilter)
    assert issubclass(registry.provider("everything").cls, SegmentFilter)
    assert issubclass(registry.provider("points").cls, PromptProvider)
