"""Image ids: the one alphabet every cache key and ``X-Image-Id`` header obeys.

An ``image_id`` is a string of 1 to ``MAX_ID_LENGTH`` characters, any Unicode letter, digit,
punctuation, symbol or space (so ``"画像 1"`` is fine), but no control or format characters
(NUL, CR, LF, TAB, zero-width and bidi marks, ...), no unpaired surrogates, and not only
whitespace. In HTTP headers an id is always percent-encoded (UTF-8, RFC 3986): ids made of
letters, digits and ``-._~`` read unchanged, ``urllib.parse.unquote`` restores any other.
"""

from __future__ import annotations

import unicodedata
from typing import Any
from urllib.parse import quote

from dtseg.errors import InputError

MAX_ID_LENGTH = 512
#: Unicode categories refused: control, format, surrogate, private use, unassigned, line/paragraph separators.
_REFUSED = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}


def check_image_id(image_id: Any, field: str = "image_id") -> str:
    """Return ``image_id`` if it is in the id alphabet (module docstring), else ``InputError`` naming ``field``."""
    if not isinstance(image_id, str):
        raise InputError(field, f"expected a string, got {type(image_id).__name__}")
    if not 1 <= len(image_id) <= MAX_ID_LENGTH:
        raise InputError(field, f"expected 1 to {MAX_ID_LENGTH} characters, got {len(image_id)}")
    if not image_id.strip():
        raise InputError(field, "must not be blank")
    for i, char in enumerate(image_id):
        if unicodedata.category(char) in _REFUSED:
            raise InputError(field, f"character {i} is U+{ord(char):04X}, a control or format character: "
                                    "ids are printable text (letters, digits, punctuation, symbols, spaces)")
    return image_id


def header_value(image_id: str) -> str:
    """``image_id`` percent-encoded for an HTTP header (ASCII only; ``unquote`` restores it)."""
    return quote(image_id, safe="")
