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
    x1, y1, x2, _y2 = detections.xyxy[1].astype(int)
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


def test_prompt_draws_the_points_sam_was_given(tmp_path, frame, detections) -> None:
    sink = AnnotatedSink(AnnotatedSink.Config(annotators=["prompt"]), tmp_path)
    drawn = sink.render(frame, detections)
    changed = (drawn != cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)).any(axis=-1)
    # object 1 (class 2): foreground (40, 35), background (31, 29); object 2 (class 2): foreground (52, 30)
    color = sv.ColorPalette.DEFAULT.by_idx(2).as_bgr()
    assert tuple(drawn[35, 40]) == color and tuple(drawn[30, 52]) == color  # dots in the object's colour
    near_cross = drawn[25:33, 27:34]  # y 25..32, x 27..33: the cross, clear of the dot at (40, 35)
    assert tuple(drawn[29, 31]) == color and (near_cross.max(axis=-1) < 40).any()  # a cross, ringed in black
    assert not (near_cross.min(axis=-1) > 250).any()  # no white ring: not a foreground dot
    ys, xs = np.nonzero(changed)
    points = np.array([[40, 35], [31, 29], [52, 30]])
    distance = np.hypot(xs[:, None] - points[:, 0], ys[:, None] - points[:, 1]).min(axis=1)
    assert distance.max() <= 11  # nothing drawn away from the points (object 0 has none: label -1)
    assert not changed[0:4, 0:4].any()  # object 0's padding points at (0, 0) are not drawn


def test_zones_are_drawn_when_the_zones_provider_recorded_them(tmp_path, frame, empty) -> None:
    empty.metadata["zones"] = {"lane": np.array([[10, 10], [50, 10], [50, 40], [10, 40]], np.float32)}
    plain = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
    drawn = AnnotatedSink(AnnotatedSink.Config(), tmp_path).render(frame, empty)
    changed = (drawn != plain).any(axis=-1)
    assert changed[10, 20:45].all() and changed[20:35, 50].all()  # the outline
    assert not changed[:6].any() and not changed[:, 56:].any()  # nothing outside it
    assert tuple(drawn[10, 30]) == (255, 255, 255)
    hidden = AnnotatedSink(AnnotatedSink.Config(zones=False), tmp_path).render(frame, empty)
    np.testing.assert_array_equal(hidden, plain)


@pytest.mark.parametrize("width", [160, 320, 640])
def test_banner_fits_narrow_pictures(tmp_path, width) -> None:
    """The random-weights label stays whole on a narrow picture: it shrinks, then wraps at spaces."""
    frame = np.full((240, width, 3), 128, np.uint8)
    sink = AnnotatedSink(AnnotatedSink.Config(), tmp_path)
    sink.banner = "RANDOM WEIGHTS (sam, yolo): boxes and masks are meaningless"
    drawn = sink.render(frame, sv.Detections.empty())
    bar = (drawn == (0, 0, 200)).all(axis=-1).any(axis=1)  # rows with red in them
    text = (drawn > 200).all(axis=-1) & bar[:, None]  # white text pixels on the bar
    assert text.any() and not text[:, -3:].any() and not text[:, :3].any()  # nothing runs off an edge
    rows = np.flatnonzero(text.any(axis=1))
    lines = 1 + int((np.diff(rows) > 1).sum())
    assert (lines > 1) == (width == 160)  # 320 px: one smaller line; 160 px: wrapped
