"""A Label Studio label config -> the tags the backend reads and writes (parsed by label-studio-sdk).

The backend writes masks into one ``BrushLabels`` tag (or, without one, a ``PolygonLabels``
tag) of an ``Image``; annotators prompt through ``KeyPointLabels`` and ``RectangleLabels`` tags
on the same image. ``dtseg labelstudio-config`` prints a config with all three.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from xml.sax.saxutils import quoteattr

from dtseg.errors import InputError

OUTPUT_TAGS = ("BrushLabels", "PolygonLabels")  # in order of preference
PROMPT_TAGS = ("KeyPointLabels", "RectangleLabels")


@dataclass(frozen=True)
class LabelConfig:
    """The parts of a label config the backend needs.

    ``from_name``/``to_name``: the output control tag and its ``Image`` tag; ``value_key``: the
    task data key of the image (``$image`` -> ``image``); ``output_type``: ``brushlabels`` or
    ``polygonlabels``; ``labels``: the output tag's label values.
    """

    from_name: str
    to_name: str
    value_key: str
    output_type: str
    labels: tuple[str, ...]

    def label_named(self, name: str) -> str | None:
        """The label config's spelling of ``name`` (exact, else case-insensitive), or ``None``."""
        if name in self.labels:
            return name
        folded = {label.casefold(): label for label in self.labels}
        return folded.get(name.casefold())


def parse_label_config(xml: str | None) -> LabelConfig:
    """Parse ``xml`` with label-studio-sdk; a config the backend cannot serve raises ``InputError``."""
    if not xml or not xml.strip():
        raise InputError("label_config", "no label config: Label Studio sends the project's label config")
    from label_studio_sdk.label_interface import LabelInterface

    try:
        interface = LabelInterface(xml)
    except Exception as exc:  # noqa: BLE001 - the SDK raises its own XML and validation errors
        raise InputError("label_config", f"not a valid label config: {exc}") from None
    for tag in OUTPUT_TAGS:
        for control in interface.controls:
            if control.tag != tag:
                continue
            images = [o for o in control.objects if o.tag == "Image"]
            if not images:
                continue
            image = images[0]
            if not image.value or not image.value.startswith("$"):
                raise InputError("label_config", f"the Image tag {image.name!r} has no value='$key'")
            return LabelConfig(control.name, image.name, image.value[1:], tag.lower(), tuple(control.labels or ()))
    if not any(o.tag == "Image" for o in interface.objects):
        raise InputError("label_config", "the label config has no Image tag: dtseg segments images")
    raise InputError("label_config", "the label config has no BrushLabels or PolygonLabels tag on an Image: "
                                     "dtseg writes masks into one (see dtseg labelstudio-config)")


def label_config_xml(labels: Sequence[str], output: str = "BrushLabels", image_key: str = "image") -> str:
    """A label config for the backend: an ``Image``, the ``output`` tag (``BrushLabels`` or
    ``PolygonLabels``) with ``labels``, and smart ``KeyPointLabels`` / ``RectangleLabels`` with
    the same labels plus ``negative`` for background clicks."""
    if output not in OUTPUT_TAGS:
        raise ValueError(f"output: expected one of {OUTPUT_TAGS}, got {output!r}")
    if not labels:
        raise ValueError("labels: give at least one label")

    def label_lines(values: Sequence[str], indent: str, smart: bool) -> list[str]:
        extra = ' smart="true"' if smart else ""
        return [f"{indent}<Label value={quoteattr(v)}{extra}/>" for v in values]

    lines = ["<View>", f'  <Image name="image" value="${image_key}" zoom="true"/>',
             f'  <{output} name="mask" toName="image">', *label_lines(labels, "    ", False), f"  </{output}>",
             '  <KeyPointLabels name="click" toName="image" smart="true">',
             *label_lines([*labels, "negative"], "    ", True), "  </KeyPointLabels>",
             '  <RectangleLabels name="box" toName="image" smart="true">',
             *label_lines(labels, "    ", True), "  </RectangleLabels>", "</View>"]
    return "\n".join(lines) + "\n"
