"""JSON request bodies parsed in steps, so that the event loop serves other requests meanwhile.

``json.loads`` holds the GIL from its first byte to its last, so a worker thread does not help:
a 20 MB body of numbers (a JSON embedding) held every other request, ``/healthz`` included,
for one to two seconds on a loaded 2-CPU machine. ``parse_json`` walks the containers itself
and hands the C decoder one string or scalar, or a run of up to ``RUN`` numbers, at a time,
giving the loop its turn every ``STEP_S``. It returns what ``json.loads`` returns.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from json.decoder import JSONDecodeError, scanstring  # type: ignore[attr-defined]  # not in typeshed
from json.scanner import make_scanner
from typing import Any

STEP_S = 0.002  # longest stretch without giving the loop its turn (plus one step)
RUN = 4096  # numbers decoded by one C call
MAX_DEPTH = 500  # nested containers (json.loads stops near the recursion limit, 1000)

_scan = make_scanner(json.JSONDecoder())  # type: ignore[arg-type]  # typeshed: any object with a decoder's attributes
_WS = re.compile(r"[ \t\n\r]*")
_NUMBERS = re.compile(rf"-?\d[\d.eE+-]*(?:[ \t\n\r]*,[ \t\n\r]*-?\d[\d.eE+-]*){{0,{RUN - 1}}}")


async def parse_json(text: str) -> Any:
    """``json.loads(text)`` (the same values and ``JSONDecodeError``s), in steps."""
    stack: list[list[Any] | dict[str, Any]] = []  # open containers, innermost last
    keys: list[str] = []  # the key each open dict is filling
    idx, resume = _skip(text, 0), time.perf_counter() + STEP_S
    while True:
        if time.perf_counter() > resume:
            await asyncio.sleep(0)
            resume = time.perf_counter() + STEP_S
        char = text[idx:idx + 1]
        if char in ("{", "["):  # open a container
            if len(stack) >= MAX_DEPTH:
                raise JSONDecodeError(f"more than {MAX_DEPTH} nested arrays and objects", text, idx)
            container: list[Any] | dict[str, Any] = {} if char == "{" else []
            idx = _skip(text, idx + 1)
            if text[idx:idx + 1] == ("}" if char == "{" else "]"):
                value, idx = container, idx + 1
            else:
                stack.append(container)
                if char == "{":
                    idx = _key(text, idx, keys)
                continue
        elif char and char in "-0123456789" and stack and isinstance(stack[-1], list) and \
                (match := _NUMBERS.match(text, idx)):
            run = match.group()
            try:
                numbers = json.loads(f"[{run}]")
            except JSONDecodeError as exc:
                raise JSONDecodeError(exc.msg, text, idx + exc.pos - 1) from None
            stack[-1].extend(numbers[:-1])
            value, idx = numbers[-1], idx + len(run)
        else:
            try:
                value, idx = _scan(text, idx)
            except StopIteration as stop:
                raise JSONDecodeError("Expecting value", text, stop.value) from None
        while True:  # attach the value; close the containers that end after it
            idx = _skip(text, idx)
            if not stack:
                if idx != len(text):
                    raise JSONDecodeError("Extra data", text, idx)
                return value
            parent = stack[-1]
            if isinstance(parent, list):
                parent.append(value)
            else:
                parent[keys.pop()] = value
            char = text[idx:idx + 1]
            if char == ",":
                idx = _skip(text, idx + 1)
                if isinstance(parent, dict):
                    idx = _key(text, idx, keys)
                break
            closing = "]" if isinstance(parent, list) else "}"
            if char != closing:
                raise JSONDecodeError("Expecting ',' delimiter", text, idx)
            value, idx = stack.pop(), idx + 1


def decode_body(body: bytes) -> str:
    """The text of a JSON body, in the encoding ``json.loads`` would detect (UTF-8 unless a BOM says otherwise)."""
    return body.decode(json.detect_encoding(body), "surrogatepass")


def _skip(text: str, idx: int) -> int:
    return _WS.match(text, idx).end()  # type: ignore[union-attr]  # matches the empty string


def _key(text: str, idx: int, keys: list[str]) -> int:
    """Read ``"key" :`` at ``idx`` onto ``keys``; the index of the value after it."""
    if text[idx:idx + 1] != '"':
        raise JSONDecodeError("Expecting property name enclosed in double quotes", text, idx)
    key, idx = scanstring(text, idx + 1)
    idx = _skip(text, idx)
    if text[idx:idx + 1] != ":":
        raise JSONDecodeError("Expecting ':' delimiter", text, idx)
    keys.append(key)
    return _skip(text, idx + 1)
