"""isolate._json gives what the json package gives, without importing it on the way."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from isolate import _json

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(), inner, max_size=4), max_leaves=20)


@given(values)
def test_dumps_and_loads_match_json(v: object) -> None:
    assert _json.dumps(v) == json.dumps(v)
    assert _json.dumps(v, sort_keys=True) == json.dumps(v, sort_keys=True)
    for indent in (2, "\t", 0):
        assert _json.dumps(v, indent=indent) == json.dumps(v, indent=indent)
    text = json.dumps(v, indent=1)
    assert _json.loads(text) == json.loads(text)
    assert _json.loads(text.encode()) == json.loads(text.encode())


def test_non_string_keys_and_constants_as_json_writes_them() -> None:
    d = {1: "a", 2.5: "b", True: "c", None: "d"}
    assert _json.dumps(d, indent=2) == json.dumps(d, indent=2)
    assert math.isinf(_json.loads("[Infinity]")[0])
    with pytest.raises(ValueError, match="Out of range"):
        _json.dumps(float("nan"), allow_nan=False)
    with pytest.raises(TypeError, match="not JSON serializable"):
        _json.dumps({"a": object()})

    def refuse(name: str) -> None:
        raise KeyError(name)

    with pytest.raises(KeyError, match="NaN"):
        _json.loads("NaN", parse_constant=refuse)


@pytest.mark.parametrize("text", ["", "  ", '{"a": 1} x', '{"a" 1}', "[1,]", '"abc'])
def test_bad_text_raises_json_decode_error_as_json_does(text: str) -> None:
    with pytest.raises(json.JSONDecodeError) as mine:
        _json.loads(text)
    with pytest.raises(json.JSONDecodeError) as theirs:
        json.loads(text)
    assert (mine.value.msg, mine.value.pos) == (theirs.value.msg, theirs.value.pos)


def test_the_json_package_is_not_imported() -> None:
    code = ("import sys, isolate._json as j\n"
            "j.loads(j.dumps({'a': [1, 2.5, None, 'x']}, indent=2))\n"
            "print('json' in sys.modules, 're' in sys.modules)")
    out = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
