"""``points``: manual objects from config, as a third party would use the provider."""

from __future__ import annotations

import numpy as np
import pytest

from dtseg.errors import ConfigError, PromptError
from dtseg.prompts import Prompts


def test_objects_become_padded_prompts_with_negative_points_and_boxes(make_provider, small_frame):
    provider = make_provider("points", objects=[
        {"points": [[40, 40], [45, 30]], "negative": [[110, 80]], "class_name": "square"},
        {"box": [85, 55, 135, 105], "class_id": 3},
        {"points": [[110, 80]], "box": [80, 50, 140, 110]},
    ])
    prompts = provider(small_frame, None)
    assert len(prompts) == 3
    np.testing.assert_array_equal(prompts.points[0], [[40, 40], [45, 30], [110, 80]])
    np.testing.assert_array_equal(prompts.labels, [[1, 1, 0], [-1, -1, -1], [1, -1, -1]])
    assert np.isnan(prompts.boxes[0]).all()
    np.testing.assert_array_equal(prompts.boxes[1:], [[85, 55, 135, 105], [80, 50, 140, 110]])
    np.testing.assert_array_equal(prompts.class_id, [0, 3, 3])  # "object" takes the id given to one of them
    assert list(prompts.data["class_name"]) == ["square", "object", "object"]


def test_each_class_name_gets_its_own_class_id(make_provider, small_frame):
    """Without ids, objects of one name share an id and other names differ (COCO categories right)."""
    provider = make_provider("points", objects=[
        {"points": [[1, 2]], "class_name": "bus"}, {"box": [0, 0, 5, 5], "class_name": "person"},
        {"points": [[3, 4]], "class_name": "person"}, {"points": [[5, 6]], "class_name": "car", "class_id": 0},
        {"points": [[7, 8]], "class_name": "bike"},
    ])
    prompts = provider(small_frame, None)
    np.testing.assert_array_equal(prompts.class_id, [1, 2, 2, 0, 3])  # id 0 is taken by car
    assert list(prompts.data["class_name"]) == ["bus", "person", "person", "car", "bike"]


def test_each_call_returns_a_fresh_copy(make_provider, small_frame):
    provider = make_provider("points", objects=[{"points": [[1, 2]]}])
    first = provider(small_frame, None)
    first.points[0, 0] = (99, 99)
    np.testing.assert_array_equal(provider(small_frame, None).points[0, 0], [1, 2])


@pytest.mark.parametrize("options, key", [
    ({"objects": []}, "prompts[0].points.objects"),
    ({"objects": [{"negative": [[1, 1]]}]}, "prompts[0].points.objects.0"),
    ({"objects": [{"points": [[1, 2, 3]]}]}, "prompts[0].points.objects.0.points.0"),
    ({"objects": [{"box": [1, 2, 3]}]}, "prompts[0].points.objects.0.box"),
    ({"objects": [{"points": [[1, 2]], "colour": "red"}]}, "prompts[0].points.objects.0.colour"),
])
def test_bad_options_name_the_key(make_provider, options, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.").replace("[", r"\[").replace("]", r"\]")):
        make_provider("points", **options)


def test_points_must_be_the_first_stage(make_provider, small_frame):
    with pytest.raises(PromptError, match="first"):
        make_provider("points", objects=[{"points": [[1, 2]]}])(small_frame, Prompts.empty())
