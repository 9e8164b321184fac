"""Label configs -> the tags the backend reads and writes; the config dtseg prints."""

from __future__ import annotations

import pytest

from dtseg.errors import InputError
from dtseg.labelstudio.label_config import label_config_xml, parse_label_config

BRUSH_AND_POLYGON = """<View>
  <Image name="img" value="$picture"/>
  <PolygonLabels name="poly" toName="img"><Label value="Car"/></PolygonLabels>
  <BrushLabels name="brush" toName="img"><Label value="Person"/><Label value="Car"/></BrushLabels>
</View>"""


def test_brush_is_preferred_and_names_come_from_the_config() -> None:
    config = parse_label_config(BRUSH_AND_POLYGON)
    assert (config.from_name, config.to_name, config.value_key) == ("brush", "img", "picture")
    assert config.output_type == "brushlabels" and config.labels == ("Person", "Car")
    assert config.label_named("car") == "Car" and config.label_named("Person") == "Person"
    assert config.label_named("truck") is None


def test_polygon_config() -> None:
    config = parse_label_config(label_config_xml(["a", "b"], "PolygonLabels", image_key="photo"))
    assert config.output_type == "polygonlabels" and config.labels == ("a", "b") and config.value_key == "photo"


def test_printed_config_round_trips_through_the_sdk() -> None:
    from label_studio_sdk.label_interface import LabelInterface

    xml = label_config_xml(["person", 'bus "double"', "a<b"])
    interface = LabelInterface(xml)
    tags = {c.name: (c.tag, c.labels) for c in interface.controls}
    assert tags["mask"] == ("BrushLabels", ["person", 'bus "double"', "a<b"])
    assert tags["click"] == ("KeyPointLabels", ["person", 'bus "double"', "a<b", "negative"])
    assert tags["box"] == ("RectangleLabels", ["person", 'bus "double"', "a<b"])
    assert parse_label_config(xml).labels == ("person", 'bus "double"', "a<b")


@pytest.mark.parametrize("xml, message", [
    (None, "no label config"),
    ("<View><Image", "not a valid label config"),
    ('<View><Text name="t" value="$text"/><Labels name="l" toName="t"><Label value="x"/></Labels></View>',
     "no Image tag"),
    ('<View><Image name="i" value="$image"/><Choices name="c" toName="i"><Choice value="x"/></Choices></View>',
     "no BrushLabels or PolygonLabels"),
])
def test_configs_the_backend_cannot_serve(xml: str | None, message: str) -> None:
    with pytest.raises(InputError, match=message) as info:
        parse_label_config(xml)
    assert info.value.field == "label_config"


def test_bad_arguments_to_the_printer() -> None:
    with pytest.raises(ValueError, match="output"):
        label_config_xml(["a"], "KeyPointLabels")
    with pytest.raises(ValueError, match="at least one label"):
        label_config_xml([])
