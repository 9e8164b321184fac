"""``masks_png`` sink: PNGs read back with OpenCV give the masks exactly."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from pydantic import ValidationError

from dtseg.sinks import MasksPngSink


def read(path: Path) -> np.ndarray:
    assert path.is_file(), path
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


def run(tmp_path: Path, frame, detections, **options) -> Path:
    sink = MasksPngSink(MasksPngSink.Config(**options), tmp_path)
    sink.write("img", frame, detections)
    sink.close()
    return tmp_path / "masks"


def test_per_object_pngs_round_trip(tmp_path, frame, detections) -> None:
    folder = run(tmp_path, frame, detections, mode="per_object")
    assert sorted(p.name for p in folder.iterdir()) == ["img_0.png", "img_1.png", "img_2.png"]
    for i, mask in enumerate(detections.mask):
        png = read(folder / f"img_{i}.png")
        assert png.dtype == np.uint8 and png.shape == mask.shape
        assert set(np.unique(png)) <= {0, 255}
        np.testing.assert_array_equal(png == 255, mask)


def test_instance_png_is_16_bit_with_ids_and_score_wins_overlaps(tmp_path, frame, detections) -> None:
    png = read(run(tmp_path, frame, detections, mode="instance") / "img.png")
    assert png.dtype == np.uint16 and png.shape == frame.shape[:2]
    masks = detections.mask
    overlap = masks[1] & masks[2]
    assert overlap.any()  # the fixture has an overlap to resolve
    assert (png[overlap] == 3).all()  # object 2 has the higher sam_score (0.8 > 0.5)
    np.testing.assert_array_equal(png == 2, masks[1] & ~overlap)
    np.testing.assert_array_equal(png == 1, masks[0])
    np.testing.assert_array_equal(png == 3, masks[2])
    np.testing.assert_array_equal(png == 0, ~masks.any(axis=0))


def test_instance_png_order_gives_overlaps_to_the_lower_row(tmp_path, frame, detections) -> None:
    png = read(run(tmp_path, frame, detections, mode="instance", overlap="order") / "img.png")
    np.testing.assert_array_equal(png == 2, detections.mask[1])
    np.testing.assert_array_equal(png == 3, detections.mask[2] & ~detections.mask[1])


def test_empty_detections(tmp_path, frame, empty) -> None:
    png = read(run(tmp_path, frame, empty, mode="instance") / "img.png")
    assert png.dtype == np.uint16 and png.shape == frame.shape[:2] and not png.any()
    folder = run(tmp_path / "per", frame, empty, mode="per_object")
    assert not folder.exists() or not any(folder.iterdir())


def test_rejects_bad_config_and_names(tmp_path, frame, detections) -> None:
    with pytest.raises(ValidationError):
        MasksPngSink.Config(mode="rgb")
    with pytest.raises(ValidationError):
        MasksPngSink.Config(colour=1)
    sink = MasksPngSink(MasksPngSink.Config(), tmp_path)
    with pytest.raises(ValueError):
        sink.write("../escape", frame, detections)
    with pytest.raises(ValueError):  # masks of another size than the frame
        sink.write("img", frame[:10], detections)


def test_instance_mode_writes_a_colour_png_to_look_at(tmp_path, frame, detections) -> None:
    import supervision as sv

    folder = run(tmp_path, frame, detections, mode="instance")
    ids, picture = read(folder / "img.png"), read(folder / "color" / "img.png")
    assert picture.dtype == np.uint8 and picture.shape == (*frame.shape[:2], 3)
    for i in range(len(detections)):  # object i in palette colour i, as the annotated sink colours by index
        assert (picture[ids == i + 1] == sv.ColorPalette.DEFAULT.by_idx(i).as_bgr()).all()
    assert not picture[ids == 0].any()  # background black
    assert not (run(tmp_path / "plain", frame, detections, mode="instance", color=False) / "color").exists()
