"""``Prompts``: construction, conversions, indexing, merging, validation."""

from __future__ import annotations

import numpy as np
import pytest
import supervision as sv

from dtseg import PromptError, Prompts


def detections() -> sv.Detections:
    return sv.Detections(
        xyxy=np.array([[0, 0, 10, 20], [10, 10, 30, 50]], np.float32),
        class_id=np.array([3, 7]),
        confidence=np.array([0.5, 0.9], np.float32),
        tracker_id=np.array([11, 12]),
        data={"class_name": np.array(["cat", "dog"])},
    )


@pytest.mark.parametrize("mode, has_box, num_points", [
    ("box", [True, True], [0, 0]),
    ("center", [False, False], [1, 1]),
    ("box+center", [True, True], [1, 1]),
])
def test_from_detections_modes(mode, has_box, num_points):
    prompts = Prompts.from_detections(detections(), mode)
    assert prompts.has_box.tolist() == has_box and prompts.num_points.tolist() == num_points
    if num_points[0]:
        np.testing.assert_array_equal(prompts.points[:, 0], [[5, 10], [20, 30]])
        assert (prompts.labels == 1).all()
    np.testing.assert_array_equal(prompts.class_id, [3, 7])
    np.testing.assert_array_equal(prompts.data["tracker_id"], [11, 12])
    np.testing.assert_array_equal(prompts.data["class_name"], ["cat", "dog"])


def test_unknown_mode_is_an_error():
    with pytest.raises(PromptError, match="box\\+center"):
        Prompts.from_detections(detections(), "corners")


def test_from_objects_pads_ragged_points_with_nan_points():
    prompts = Prompts.from_objects([{"points": [[1, 2], [3, 4]], "labels": [1, 0]}, {"box": [0, 0, 5, 5]},
                                    {"points": [[5, 6]], "labels": [-1]}])
    assert prompts.points.shape == (3, 2, 2)
    assert np.isnan(prompts.points[1]).all() and np.isnan(prompts.points[2, 1]).all()
    np.testing.assert_array_equal(prompts.labels, [[1, 0], [-1, -1], [-1, -1]])
    assert prompts.has_box.tolist() == [False, True, False]
    assert prompts.num_points.tolist() == [2, 0, 1]  # a caller's -1 is a real point (SAM's not-a-point token)
    with pytest.raises(PromptError, match=r"objects\[0\]\.labels"):
        Prompts.from_objects([{"points": [[1, 2]], "labels": [1, 1]}])


def test_single_object_shorthand_shapes():
    prompts = Prompts.from_arrays([[1, 2], [3, 4]], [1, 0], [0, 0, 9, 9])
    assert len(prompts) == 1 and prompts.points.shape == (1, 2, 2) and prompts.boxes.shape == (1, 4)


def test_indexing_keeps_every_field_aligned():
    prompts = Prompts.from_detections(detections(), "box+center")
    for index in (1, [1], np.array([False, True]), slice(1, 2)):
        one = prompts[index]
        assert len(one) == 1 and one.class_id.tolist() == [7] and one.data["class_name"].tolist() == ["dog"]
    assert len(prompts[[]]) == 0 and len(prompts[np.array([], int)]) == 0


def test_merge_repads_points_and_concatenates_data():
    a = Prompts.from_objects([{"points": [[1, 1]]}])
    b = Prompts.from_objects([{"points": [[2, 2], [3, 3], [4, 4]], "labels": [1, 0, 1]}])
    merged = Prompts.merge([a, Prompts.empty(), b])
    assert merged.points.shape == (2, 3, 2) and merged.labels[0].tolist() == [1, -1, -1]
    assert np.isnan(merged.points[0, 1:]).all() and merged.num_points.tolist() == [1, 3]
    assert len(Prompts.merge([])) == 0
    with pytest.raises(PromptError, match="class_id"):
        Prompts.merge([Prompts.from_detections(detections()), a])


@pytest.mark.parametrize("kwargs, field", [
    (dict(points=np.zeros((1, 1, 3)), labels=np.ones((1, 1)), boxes=np.zeros((1, 4))), "points"),
    (dict(points=np.zeros((1, 1, 2)), labels=np.ones((1, 2)), boxes=np.zeros((1, 4))), "labels"),
    (dict(points=np.zeros((2, 1, 2)), labels=np.ones((2, 1)), boxes=np.zeros((1, 4))), "points"),
    (dict(points=np.zeros((1, 0, 2)), labels=np.ones((1, 0)), boxes=np.zeros((1, 4)), class_id=[1, 2]), "class_id"),
    (dict(points=np.zeros((1, 0, 2)), labels=np.ones((1, 0)), boxes=np.zeros((1, 4)), data={"x": [1, 2]}), "data['x']"),
])
def test_inconsistent_arrays_name_the_field(kwargs, field):
    with pytest.raises(PromptError) as info:
        Prompts(**kwargs)
    assert info.value.field == field


@pytest.mark.parametrize("labels", [[0.5], [2], ["1"], [[1]]])
def test_object_labels_are_checked_not_coerced(labels):
    with pytest.raises(PromptError) as info:
        Prompts.from_objects([{"points": [[1, 2]]}, {"points": [[3, 4]], "labels": labels}])
    assert info.value.field == "objects[1].labels"


@pytest.mark.parametrize("points, labels, message", [
    ([[[np.nan, 2]]], [[-1]], "both NaN"),  # half a point
    ([[[np.nan, np.nan]]], [[1]], "must have label -1"),  # padding that claims to be a point
    ([[[np.inf, 2]]], [[1]], "finite"),
])
def test_padding_is_a_whole_nan_point_labelled_minus_one(points, labels, message):
    with pytest.raises(PromptError, match=message):
        Prompts(np.array(points, np.float32), np.array(labels), np.full((1, 4), np.nan))
    with pytest.raises(PromptError, match=message):
        Prompts.from_arrays(points, labels)


def test_concept_prompts_travel_through_indexing_and_merge() -> None:
    from dtseg.engine.concepts import ConceptPrompt, ConceptQuery

    query = ConceptQuery((ConceptPrompt("person"),), threshold=0.3)
    text = Prompts.empty()
    text.concepts = query
    boxes = Prompts.from_arrays(boxes=[[0, 0, 5, 5], [1, 1, 4, 4]])
    assert boxes.concepts is None
    merged = Prompts.merge([text, boxes])
    assert merged.concepts is query and len(merged) == 2
    assert merged[1:].concepts is query
    assert Prompts.merge([text]).concepts is query
    with pytest.raises(PromptError, match="concepts"):
        Prompts.merge([text, merged])
