"""``annotated`` sink: a picture of the right size that changes where the masks are."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import supervision as sv

from dtseg.sinks import AnnotatedSink


def read_rgb(path) -> np.ndarray:
    assert path.is_file(), path
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def test_mask_annotator_changes_exactly_the_mask_pixels(tmp_path, frame, detections) -> None:
    sink = AnnotatedSink(AnnotatedSink.Config(annotators=["mask"], opacity=0.6), tmp_path)
    before = frame.copy()
    sink.write("img", frame, detections)
    sink.close()
    np.testing.assert_array_equal(frame, before)  # the caller's frame is untouched
    out = read_rgb(tmp_path / "annotated" / "img.png")
    assert out.shape == frame.shape
    changed = (out != frame).any(axis=-1)
    union = detections.mask.any(axis=0)
    assert changed[union].mean() > 0.95
    assert not changed[~union].any()


def test_colors_are_written_in_rgb_order(tmp_path, detections) -> None:
    frame = np.zeros((*detections.mask.shape[1:], 3), np.uint8)
    config = AnnotatedSink.Config(annotators=["mask"], opacity=1.0, color_by="index")
    AnnotatedSink(config, tmp_path).write("img", frame, detections)
    out = read_rgb(tmp_path / "annotated" / "img.png")
    expected = sv.ColorPalette.DEFAULT.by_idx(0)
    assert expected.r != expected.b  # a palette colour that shows a channel swap
    assert tuple(out[detections.mask[0]][0]) == (expected.r, expected.g, expected.b)


def test_labels_and_boxes(tmp_path, frame, detections) -> None:
    config = AnnotatedSink.Config(label="{class_name}#{tracker_id} {sam_score:.1f} {zone}")
    sink = AnnotatedSink(config, tmp_path)
    assert sink.labels(detections) == ["donut#7 0.9 left", "car#8 0.5 right", "car#9 0.8 right"]
    detections.confidence = None
    del detections.data["class_name"]
    assert AnnotatedSink(AnnotatedSink.Config(), tmp_path).labels(detections) == ["0 -", "2 -", "2 -"]
    boxes = AnnotatedSink(AnnotatedSink.Config(annotators=["box"]), tmp_path).render(frame, detections)
    x1, y1, x2, y2 = detections.xyxy[1].astype(int)
    assert (boxes[y1, x1:x2] != cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)[y1, x1:x2]).any()


def test_banner_is_drawn_when_set_after_construction(tmp_path, frame, empty) -> None:
    sink = AnnotatedSink(AnnotatedSink.Config(), tmp_path)
    plain = sink.render(frame, empty)
    np.testing.assert_array_equal(plain, cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))  # nothing to draw
    sink.banner = "RANDOM WEIGHTS - masks are meaningless"
    bannered = sink.render(frame, empty)
    changed = (bannered != plain).any(axis=-1)
    assert changed[-5:].mean() > 0.9 and not changed[:5].any()  # a bar along the bottom
    sink.banner = "RANDOM WEIGHTS \u2014 masks are meaningless"  # an em dash draws as "-"
    np.testing.assert_array_equal(sink.render(frame, empty), bannered)


def test_banner_hides_no_label_at_the_top(tmp_path, frame, detections) -> None:
    """An object at the top edge keeps its whole label visible under a random-weights banner."""
    detections.xyxy[0] = [5, 0, 60, 30]  # the label is drawn at (or pushed inside) the top edge
    sink = AnnotatedSink(AnnotatedSink.Config(annotators=["label"]), tmp_path)
    plain = sink.render(frame, detections[[0]])
    sink.banner = "RANDOM WEIGHTS - masks are meaningless"
    bannered = sink.render(frame, detections[[0]])
    label = (plain != cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)).any(axis=-1)
    assert label[:30].any()  # the label is near the top
    np.testing.assert_array_equal(bannered[label], plain[label])  # and the banner covers none of it


@pytest.mark.parametrize("fmt", ["png", "jpg"])
def test_formats_and_empty_detections(tmp_path, frame, empty, fmt) -> None:
    sink = AnnotatedSink(AnnotatedSink.Config(format=fmt), tmp_path)
    sink.write("nothing", frame, empty)
    out = read_rgb(tmp_path / "annotated" / f"nothing.{fmt}")
    assert out.shape == frame.shape
    tolerance = 0 if fmt == "png" else 8
    assert np.abs(out.astype(int) - frame).max() <= tolerance


def test_color_by_falls_back_to_index(tmp_path, detections) -> None:
    sink = AnnotatedSink(AnnotatedSink.Config(color_by="track"), tmp_path)
    assert sink.color_lookup(detections).tolist() == [7, 8, 9]
    detections.tracker_id = None
    assert sink.color_lookup(detections).tolist() == [0, 1, 2]
