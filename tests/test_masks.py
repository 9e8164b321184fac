"""Mask encodings: RLE and polygons round-trip; polygons keep holes and every part."""

from __future__ import annotations

import itertools
import json

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from dtseg.masks import mask_to_polygons, mask_to_rle, masks_to_rle, polygons_to_mask, rle_to_mask


def ring(shape: tuple[int, int], center: tuple[int, int], outer: int, inner: int) -> np.ndarray:
    """A filled disc of radius ``outer`` with a hole of radius ``inner``: ``(H, W)`` bool."""
    m = np.zeros(shape, np.uint8)
    cv2.circle(m, center, outer, 1, -1)
    cv2.circle(m, center, inner, 0, -1)
    return m.astype(bool)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


# -- RLE ---------------------------------------------------------------------------------

RLE_CASES = {
    "empty": np.zeros((7, 9), bool),
    "full": np.ones((7, 9), bool),
    "one_pixel": np.pad(np.ones((1, 1), bool), ((3, 2), (0, 5))),
    "corner_pixel": np.pad(np.ones((1, 1), bool), ((0, 4), (6, 0))),
    "non_square_random": np.random.default_rng(0).random((13, 41)) < 0.4,
    "tall_random": np.random.default_rng(1).random((50, 3)) < 0.6,
    "ring": ring((40, 60), (30, 20), 15, 6),
}


@pytest.mark.parametrize("name", list(RLE_CASES))
def test_rle_round_trip_is_exact(name: str) -> None:
    mask = RLE_CASES[name]
    rle = mask_to_rle(mask)
    assert rle["size"] == list(mask.shape)
    assert isinstance(rle["counts"], str)
    back = rle_to_mask(json.loads(json.dumps(rle)))  # survives JSON
    assert back.dtype == bool and back.shape == mask.shape
    np.testing.assert_array_equal(back, mask)


def test_rle_matches_pycocotools_and_accepts_bytes() -> None:
    mask = RLE_CASES["non_square_random"]
    reference = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle = mask_to_rle(mask)
    assert rle["counts"].encode() == reference["counts"]
    assert int(mask_utils.area(reference)) == int(mask.sum())
    np.testing.assert_array_equal(rle_to_mask({"size": rle["size"], "counts": reference["counts"]}), mask)


def test_rle_accepts_uncompressed_counts() -> None:
    mask = RLE_CASES["tall_random"]
    flat = mask.flatten(order="F").tolist()  # COCO runs are column-major, starting with zeros
    counts = [0] if flat[0] else []
    counts += [len(list(run)) for _, run in itertools.groupby(flat)]
    np.testing.assert_array_equal(rle_to_mask({"size": list(mask.shape), "counts": counts}), mask)


def test_masks_to_rle_batched_matches_single() -> None:
    rng = np.random.default_rng(2)
    masks = rng.random((5, 17, 23)) < 0.5
    masks[1] = False
    masks[2] = True
    batched = masks_to_rle(masks)
    assert len(batched) == 5
    for m, rle in zip(masks, batched, strict=True):
        assert rle == mask_to_rle(m)
        np.testing.assert_array_equal(rle_to_mask(rle), m)
    assert masks_to_rle(np.zeros((0, 4, 4), bool)) == []


def test_rle_rejects_wrong_rank() -> None:
    with pytest.raises(ValueError):
        mask_to_rle(np.zeros((2, 3, 4), bool))
    with pytest.raises(ValueError):
        masks_to_rle(np.zeros((3, 4), bool))


# -- polygons ----------------------------------------------------------------------------

def test_ring_gives_one_part_with_a_hole() -> None:
    mask = ring((50, 50), (25, 25), 18, 7)
    parts = mask_to_polygons(mask)
    assert len(parts) == 1
    assert len(parts[0]) == 2  # exterior + one hole
    for r in parts[0]:
        assert r.dtype == np.int32 and r.ndim == 2 and r.shape[1] == 2
    back = polygons_to_mask(parts, mask.shape)
    assert not back[25, 25]  # the hole stays a hole
    np.testing.assert_array_equal(back, mask)


def test_exterior_alone_would_fill_the_hole() -> None:
    mask = ring((50, 50), (25, 25), 18, 7)
    exterior_only = polygons_to_mask([mask_to_polygons(mask)[0][:1]], mask.shape)
    assert exterior_only[25, 25] and exterior_only.sum() > mask.sum()


def test_two_blobs_give_two_parts() -> None:
    mask = np.zeros((30, 60), bool)
    mask[5:15, 5:20] = True
    mask[10:25, 35:55] = True
    parts = mask_to_polygons(mask)
    assert len(parts) == 2 and all(len(p) == 1 for p in parts)
    np.testing.assert_array_equal(polygons_to_mask(parts, mask.shape), mask)


def test_blob_inside_a_hole_is_its_own_part() -> None:
    mask = ring((60, 60), (30, 30), 25, 12)
    mask[26:35, 26:35] = True  # an island in the hole, not touching the ring
    parts = mask_to_polygons(mask)
    assert sorted(len(p) for p in parts) == [1, 2]
    np.testing.assert_array_equal(polygons_to_mask(parts, mask.shape), mask)


def test_hole_with_several_holes_and_parts() -> None:
    mask = np.zeros((40, 80), bool)
    mask[2:38, 2:50] = True
    mask[5:12, 5:12] = False
    mask[20:30, 20:40] = False
    mask[10:20, 60:75] = True
    parts = mask_to_polygons(mask)
    assert sorted(len(p) for p in parts) == [1, 3]
    np.testing.assert_array_equal(polygons_to_mask(parts, mask.shape), mask)


@pytest.mark.parametrize("density", [0.1, 0.5, 0.9])
def test_polygons_round_trip_exact_on_random_noise(density: float) -> None:
    rng = np.random.default_rng(int(density * 10))
    for _ in range(5):
        mask = rng.random((31, 47)) < density
        np.testing.assert_array_equal(polygons_to_mask(mask_to_polygons(mask), mask.shape), mask)


@pytest.mark.parametrize("mask", [np.ones((6, 9), bool), np.pad(np.ones((1, 1), bool), ((2, 3), (4, 4))),
                                  np.pad(np.ones((1, 5), bool), ((2, 3), (1, 1))), np.zeros((6, 9), bool)],
                         ids=["full", "one_pixel", "line", "empty"])
def test_polygons_round_trip_exact_on_degenerate_shapes(mask: np.ndarray) -> None:
    parts = mask_to_polygons(mask)
    assert len(parts) == (1 if mask.any() else 0)
    np.testing.assert_array_equal(polygons_to_mask(parts, mask.shape), mask)


def test_polygons_from_json_lists_rasterize_and_clip() -> None:
    mask = ring((50, 70), (35, 25), 20, 9)
    parts = json.loads(json.dumps([[r.tolist() for r in p] for p in mask_to_polygons(mask)]))
    back = polygons_to_mask(parts, mask.shape)
    np.testing.assert_array_equal(back, mask)
    assert iou(polygons_to_mask(parts, (30, 40)), mask[:30, :40]) == 1.0  # smaller canvas: clipped


def test_ring_coordinates_are_pixel_centers_of_the_border() -> None:
    mask = np.zeros((10, 10), bool)
    mask[2:6, 3:8] = True  # rows 2..5, cols 3..7
    (exterior,) = mask_to_polygons(mask)[0]
    assert exterior[:, 0].min() == 3 and exterior[:, 0].max() == 7
    assert exterior[:, 1].min() == 2 and exterior[:, 1].max() == 5
