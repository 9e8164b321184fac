"""``yolo_seg``: label files that ultralytics' own dataset code reads back into our masks."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import supervision as sv
import yaml
from ultralytics.data.utils import img2label_paths, polygon2mask, verify_image_label

from dtseg.errors import InputError
from dtseg.sinks.yolo_seg import YoloSegSink
from tests.sinks.conftest import HEIGHT, WIDTH


def _verify(image: Path, label: Path, num_classes: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """ultralytics' own check of an image/label pair -> (N, 5) [class, box xywh] and N segments."""
    _, labels, shape, segments, _, missing, _found, _empty, corrupt, message = verify_image_label(
        (str(image), str(label), "", False, num_classes, 0, 0, False))
    assert (missing, corrupt, message) == (0, 0, ""), message
    assert tuple(shape) == (HEIGHT, WIDTH)
    return labels, segments


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def test_labels_load_back_with_ultralytics_as_our_masks(tmp_path: Path, frame, detections) -> None:
    sink = YoloSegSink(YoloSegSink.Config(), tmp_path)
    sink.write("a", frame, detections)
    sink.close()
    root = tmp_path / "yolo"
    image, label = root / "images" / "a.jpg", root / "labels" / "a.txt"
    assert img2label_paths([str(image)]) == [str(label)]  # the layout ultralytics looks for
    data = yaml.safe_load((root / "data.yaml").read_text())
    assert data == {"train": "images", "val": "images", "nc": 3, "names": {0: "donut", 1: "1", 2: "car"}}
    labels, segments = _verify(image, label, data["nc"])
    assert labels[:, 0].tolist() == [0, 2, 2]
    for i, segment in enumerate(segments):  # normalized (K, 2) -> pixels -> mask
        mask = polygon2mask((HEIGHT, WIDTH), [segment * (WIDTH, HEIGHT)], color=1).astype(bool)
        expected = detections.mask[i].copy()
        if i == 0:  # YOLO has no holes: the ring comes back filled
            expected = cv2.drawContours(expected.astype(np.uint8), list(cv2.findContours(
                expected.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)[0]), -1, 1, -1).astype(bool)
        assert _iou(mask, expected) > 0.9, i
        x, y, w, h = labels[i, 1:]
        x1, y1, x2, y2 = detections.xyxy[i] / (WIDTH, HEIGHT, WIDTH, HEIGHT)  # the tight box, normalized
        assert (x, y) == (pytest.approx((x1 + x2) / 2, abs=0.02), pytest.approx((y1 + y2) / 2, abs=0.02))
        assert (w, h) == (pytest.approx(x2 - x1, abs=0.04), pytest.approx(y2 - y1, abs=0.04))
    rectangle = polygon2mask((HEIGHT, WIDTH), [segments[1] * (WIDTH, HEIGHT)], color=1).astype(bool)
    np.testing.assert_array_equal(rectangle, detections.mask[1])  # axis-aligned: exact


def test_parts_are_bridged_into_one_polygon_and_the_image_is_the_frame(tmp_path: Path, frame) -> None:
    masks = np.zeros((1, HEIGHT, WIDTH), bool)
    masks[0, 5:15, 5:15] = masks[0, 30:40, 40:55] = True  # one object in two parts
    detections = sv.Detections(xyxy=sv.mask_to_xyxy(masks).astype(np.float32), mask=masks)
    sink = YoloSegSink(YoloSegSink.Config(images="png", unlabeled_id=4), tmp_path)
    sink.write("two", frame, detections)
    sink.close()
    root = tmp_path / "yolo"
    np.testing.assert_array_equal(cv2.imread(str(root / "images" / "two.png"))[..., ::-1], frame)
    lines = (root / "labels" / "two.txt").read_text().splitlines()
    assert len(lines) == 1 and lines[0].split()[0] == "4"
    _, (segment,) = _verify(root / "images" / "two.png", root / "labels" / "two.txt", 5)
    back = polygon2mask((HEIGHT, WIDTH), [segment * (WIDTH, HEIGHT)], color=1).astype(bool)
    assert back[masks[0]].mean() > 0.95 and (back & ~masks[0]).sum() < 40  # both parts, a thin bridge
    assert yaml.safe_load((root / "data.yaml").read_text())["names"][4] == "object"


def test_empty_images_and_objects_without_an_outline(tmp_path: Path, frame, empty) -> None:
    masks = np.zeros((2, HEIGHT, WIDTH), bool)
    masks[1, 10, 10] = True  # a single pixel: no polygon
    dots = sv.Detections(xyxy=np.zeros((2, 4), np.float32), mask=masks, class_id=np.array([0, 1]))
    sink = YoloSegSink(YoloSegSink.Config(images="none", root=""), tmp_path)
    sink.write("none", frame, empty)
    sink.write("dots", frame, dots)
    sink.close()
    assert (tmp_path / "labels" / "none.txt").read_text() == ""
    assert (tmp_path / "labels" / "dots.txt").read_text() == ""
    assert not (tmp_path / "images").exists()
    assert yaml.safe_load((tmp_path / "data.yaml").read_text())["names"] == {0: "0", 1: "1"}


def test_bad_class_ids_and_writes_after_close(tmp_path: Path, frame, detections) -> None:
    sink = YoloSegSink(YoloSegSink.Config(), tmp_path)
    detections.class_id = np.array([0, -1, 2])
    with pytest.raises(InputError, match="class_id -1"):
        sink.write("bad", frame, detections)
    sink.close()
    with pytest.raises(RuntimeError, match="after close"):
        sink.write("late", frame, detections)
