"""``yolo``: a random-init ultralytics detector (from ``yolov8n.yaml``) at a very low confidence,
so that it returns boxes offline. Its boxes are meaningless; what is tested is where they go."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

import dtseg_plugins.yolo as yolo_plugin
from dtseg.errors import ConfigError
from dtseg.io import load_image
from dtseg.pipeline import Pipeline

OPTIONS = {"model": "yolov8n.yaml", "conf": 1e-4, "imgsz": 160, "max_det": 4, "device": "cpu"}


@pytest.fixture(scope="module")
def detector():
    return yolo_plugin.load_model("yolov8n.yaml")


@pytest.fixture
def shared_detector(detector, monkeypatch):
    """Providers built in a test reuse one random detector (building one takes seconds)."""
    monkeypatch.setattr(yolo_plugin, "load_model", lambda model: detector)
    return detector


@pytest.fixture(scope="module")
def frame(bus_jpg):
    return load_image(bus_jpg)


def reference(detector, frame):
    """What ultralytics itself finds with OPTIONS: boxes (N, 4), class ids, confidences."""
    result = detector.predict(np.ascontiguousarray(frame[:, :, ::-1]), conf=OPTIONS["conf"], imgsz=OPTIONS["imgsz"],
                              max_det=OPTIONS["max_det"], device="cpu", verbose=False)[0]
    return result.boxes.xyxy.numpy(), result.boxes.cls.numpy().astype(int), result.boxes.conf.numpy()


def test_box_mode_prompts_with_the_detector_boxes(make_provider, shared_detector, frame):
    boxes, classes, conf = reference(shared_detector, frame)
    assert len(boxes) > 0
    prompts = make_provider("yolo", **OPTIONS, prompt="box")(frame, None)
    np.testing.assert_allclose(prompts.boxes, boxes, atol=1e-3)
    assert prompts.points.shape == (len(boxes), 0, 2)
    np.testing.assert_array_equal(prompts.class_id, classes)
    np.testing.assert_allclose(prompts.confidence, conf)
    assert list(prompts.data["class_name"]) == [shared_detector.names[c] for c in classes]
    np.testing.assert_allclose(prompts.data["detector_box"], boxes, atol=1e-3)


def test_center_mode_prompts_with_one_positive_point_and_no_box(make_provider, shared_detector, frame):
    boxes, _, _ = reference(shared_detector, frame)
    prompts = make_provider("yolo", **OPTIONS, prompt="center")(frame, None)
    assert np.isnan(prompts.boxes).all()
    np.testing.assert_allclose(prompts.points[:, 0], (boxes[:, :2] + boxes[:, 2:]) / 2, atol=1e-3)
    np.testing.assert_array_equal(prompts.labels, np.ones((len(boxes), 1)))
    np.testing.assert_allclose(prompts.data["detector_box"], boxes, atol=1e-3)


def test_box_center_mode_prompts_with_both(make_provider, shared_detector, frame):
    boxes, _, _ = reference(shared_detector, frame)
    prompts = make_provider("yolo", **OPTIONS, prompt="box+center")(frame, None)
    np.testing.assert_allclose(prompts.boxes, boxes, atol=1e-3)
    np.testing.assert_allclose(prompts.points[:, 0], (boxes[:, :2] + boxes[:, 2:]) / 2, atol=1e-3)
    assert (prompts.labels == 1).all()


def test_class_and_confidence_reach_the_output(shared_detector, frame, tiny_sam_engine):
    boxes, classes, conf = reference(shared_detector, frame)
    pipeline = Pipeline.from_config({"prompts": [{"yolo": OPTIONS}], "sinks": []}, engine=tiny_sam_engine)
    detections = pipeline(frame)
    assert len(detections) == len(boxes)
    np.testing.assert_array_equal(detections.class_id, classes)
    np.testing.assert_allclose(detections.confidence, conf)
    np.testing.assert_allclose(detections.data["prompt_box"], boxes, atol=1e-3)
    assert detections.mask.shape == (len(boxes), *frame.shape[:2])


def test_classes_by_name_or_id_filter_and_unknown_names_are_config_errors(make_provider, shared_detector, frame):
    names = shared_detector.names
    _, classes, _ = reference(shared_detector, frame)
    wanted = int(classes[0])
    by_name = make_provider("yolo", **OPTIONS, classes=[names[wanted]])
    by_id = make_provider("yolo", **OPTIONS, classes=[wanted])
    assert by_name.class_ids == by_id.class_ids == [wanted]
    assert set(by_name(frame, None).class_id) == {wanted}
    with pytest.raises(ConfigError, match=r"yolo\.classes: the model has no class 'persn'"):
        make_provider("yolo", **OPTIONS, classes=["persn"])
    with pytest.raises(ConfigError, match="no class 999"):
        make_provider("yolo", **OPTIONS, classes=[999])


def test_a_random_coco_sized_detector_has_cocos_class_names(detector, make_provider, shared_detector, frame):
    """``yolov8n.yaml`` stands in for ``yolov8n.pt`` (--allow-random): it names its 80 classes as
    the .pt does, so ``classes: [person]`` (configs/zones.yaml) works on it."""
    assert detector.names[0] == "person" and detector.names[5] == "bus" and len(detector.names) == 80
    provider = make_provider("yolo", **OPTIONS, classes=["person", "bus"])
    assert provider.class_ids == [0, 5]
    prompts = provider(frame, None)
    assert set(prompts.data["class_name"]) <= {"person", "bus"}


def test_missing_weights_offline_say_what_to_download_and_where(tmp_path, monkeypatch):
    from ultralytics.utils import SETTINGS

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DTSEG_OFFLINE", "1")
    target = Path(SETTINGS["weights_dir"]) / "yolov8n.pt"
    if target.exists():
        pytest.skip(f"{target} exists on this machine")
    with pytest.raises(yolo_plugin.YoloWeightsNotFoundError) as info:
        yolo_plugin.YoloPrompts(yolo_plugin.YoloPrompts.Config())
    message = str(info.value)
    assert "https://github.com/ultralytics/assets/releases/download/v" in message
    assert message.split("/download/")[1].split()[0].endswith("/yolov8n.pt")
    assert f"put it at {target}" in message
    assert "allow_random=True" in message  # str(): the Python spelling; each front end has its own
    assert "--allow-random" in info.value.spelled("cli") and "--allow-random" not in message
    assert "prompts.yolo.model: yolov8n.yaml" in info.value.spelled("config")


def test_allow_random_falls_back_to_the_yaml_detector_loudly(tmp_path, monkeypatch, tiny_sam_engine, caplog):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DTSEG_OFFLINE", "1")
    config = {"prompts": [{"yolo": {"imgsz": 160, "max_det": 2}}], "sinks": []}
    with pytest.raises(yolo_plugin.YoloWeightsNotFoundError):
        Pipeline.from_config(config, engine=tiny_sam_engine)
    with caplog.at_level(logging.WARNING):
        pipeline = Pipeline.from_config(config, engine=tiny_sam_engine, allow_random=True)
    fallback = pipeline.stages[0].provider.config
    assert (fallback.model, fallback.conf, fallback.max_det, fallback.imgsz) == ("yolov8n.yaml", 1e-4, 2, 160)
    assert pipeline.stages[0].provider.random_weights
    assert pipeline.random_parts == ["yolo"] and "RANDOM WEIGHTS (yolo)" in pipeline.random_label
    assert "yolov8n.yaml builds a detector with RANDOM weights" in caplog.text


def test_the_detector_leaves_torchs_thread_count_alone(make_provider, frame):
    """ultralytics sets torch's threads to cpu_count - 1 when it picks a device; SAM runs in the
    same process and must keep the thread count it was given."""
    import torch
    from ultralytics.utils import NUM_THREADS

    before = torch.get_num_threads()
    wanted = NUM_THREADS + 1
    torch.set_num_threads(wanted)
    try:
        make_provider("yolo", **OPTIONS)(frame, None)  # a fresh detector: ultralytics selects its device
        assert torch.get_num_threads() == wanted
    finally:
        torch.set_num_threads(before)
