"""``parse_json``: the values and errors of ``json.loads``, in steps that give the event loop its turn."""

from __future__ import annotations

import asyncio
import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dtseg.server.common.json_steps import RUN, decode_body, parse_json

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
documents = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=5), inner, max_size=5),
    max_leaves=40)


def parse(text: str) -> object:
    return asyncio.run(parse_json(text))


@settings(max_examples=200, deadline=None, database=None)
@given(documents, st.sampled_from([None, 1]))
def test_same_values_as_json_loads(document: object, indent: int | None) -> None:
    text = json.dumps(document, indent=indent)
    assert repr(parse(text)) == repr(json.loads(text))


def test_long_number_runs_and_python_extensions() -> None:
    numbers = [random.Random(0).uniform(-1e6, 1e6) for _ in range(RUN * 2 + 5)] + [3, -0.0, 10 ** 30, 1e-300]
    text = json.dumps({"a": [numbers, [1, "x", 2]], "b": [float("nan"), float("-inf")]})
    assert repr(parse(text)) == repr(json.loads(text))
    assert parse(decode_body("[1]".encode("utf-8-sig"))) == [1]


@pytest.mark.parametrize("text", ['[1,2,]', '{"a":1,}', '[1 2]', '{"a" 1}', '[-]', '', '{"a": 1} x', '[1.5e]',
                                  '{1: 2}', '[1, 2', '{"a": [1, {"b": }]}', '[' * 600 + ']' * 600, '"\\x"'])
def test_same_errors_as_json_loads(text: str) -> None:
    with pytest.raises(json.JSONDecodeError):
        parse(text)
    if text.count("[") < 600:
        with pytest.raises(json.JSONDecodeError):
            json.loads(text)


def test_the_loop_runs_while_a_large_body_is_parsed() -> None:
    """An embedding-sized array (1M numbers): other tasks run during the parse (``json.loads``: none)."""
    text = json.dumps([[random.Random(1).random() for _ in range(64)] for _ in range(16384)])

    async def scenario() -> int:
        turns, parsing = 0, True

        async def other_task() -> None:
            nonlocal turns
            while parsing:
                turns += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(other_task())
        await asyncio.sleep(0)
        start = turns
        assert await parse_json(text) == json.loads(text)
        parsing = False
        await task
        return turns - start

    assert asyncio.run(scenario()) > 10
