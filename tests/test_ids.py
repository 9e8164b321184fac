"""``dtseg.ids``: the image id alphabet and its header encoding."""

from __future__ import annotations

import re
from urllib.parse import unquote

import pytest

from dtseg.errors import InputError
from dtseg.ids import MAX_ID_LENGTH, check_image_id, header_value


@pytest.mark.parametrize("image_id", ["example_image_id", "画像", "photo 1.jpg", "a/b?c=d&e%20", "x" * MAX_ID_LENGTH])
def test_printable_ids_pass_and_survive_the_header(image_id: str) -> None:
    assert check_image_id(image_id) == image_id
    encoded = header_value(image_id)
    assert encoded.isascii() and encoded.isprintable() and unquote(encoded) == image_id


def test_plain_ids_read_unchanged_in_the_header() -> None:
    assert header_value("example_image_id-1.0~") == "example_image_id-1.0~"


@pytest.mark.parametrize("image_id, fragment", [
    ("a\x00b", "U+0000"), ("a\r\nX-Evil: 1", "U+000D"), ("tab\there", "U+0009"), ("zero\u200bwidth", "U+200B"),
    ("   ", "blank"), ("", "1 to"), ("x" * (MAX_ID_LENGTH + 1), "1 to"), (42, "string"),
])
def test_other_ids_are_refused_naming_the_field(image_id: object, fragment: str) -> None:
    with pytest.raises(InputError, match=re.escape(fragment)) as info:
        check_image_id(image_id)
    assert info.value.field == "image_id"
