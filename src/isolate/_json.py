"""``loads`` and ``dumps`` on CPython's own JSON scanner and encoder, without ``import json``.

The ``json`` package imports ``re`` (and with it ``enum``, ``functools`` ...)
for two regular expressions: about 15 ms of every ``isolate-oci`` call.  The
work is done by the C module ``_json`` either way; this module calls it
directly and imports ``json`` only to raise its ``JSONDecodeError`` or for
what the C encoder does not do (``indent`` before Python 3.13 is done here).
Results are the same as ``json.loads``/``json.dumps`` with default options.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

try:
    import _json as _c
except ImportError:  # pragma: no cover - every CPython has it; other interpreters fall back
    _c = None  # type: ignore[assignment]

_WS = " \t\n\r"
_CONSTANTS = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}


def _error(msg: str, doc: str, pos: int) -> ValueError:
    from json import JSONDecodeError

    return JSONDecodeError(msg, doc, pos)


class _Context:
    """The attributes ``_json.make_scanner`` reads from a ``json.JSONDecoder``."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int

    def __init__(self, parse_constant: Callable[[str], Any]) -> None:
        self.parse_constant = parse_constant
        self.memo: dict[str, str] = {}


_scanners: dict[Any, Any] = {}


def loads(text: str | bytes | bytearray, *, parse_constant: Callable[[str], Any] | None = None) -> Any:
    """``json.loads(text, parse_constant=...)``; raises ``json.JSONDecodeError`` (a ``ValueError``)."""
    if isinstance(text, (bytes, bytearray)):
        text = text.decode("utf-8-sig" if text[:3] == b"\xef\xbb\xbf" else "utf-8")
    if _c is None:  # pragma: no cover
        import json

        return json.loads(text, parse_constant=parse_constant)
    scan = _scanners.get(parse_constant)
    if scan is None:
        ctx: Any = _Context(parse_constant or _CONSTANTS.__getitem__)
        scan = _scanners[parse_constant] = _c.make_scanner(ctx)
    start = len(text) - len(text.lstrip(_WS))
    try:
        value, end = scan(text, start)
    except StopIteration as e:
        raise _error("Expecting value", text, e.value) from None
    if text[end:].strip(_WS):
        raise _error("Extra data", text, end + len(text[end:]) - len(text[end:].lstrip(_WS)))
    return value


def _default(o: object) -> Any:
    raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")


def dumps(value: Any, *, indent: int | str | None = None, sort_keys: bool = False,
          allow_nan: bool = True) -> str:
    """``json.dumps(value, indent=..., sort_keys=..., allow_nan=...)`` with the default separators."""
    if _c is None:  # pragma: no cover
        import json

        return json.dumps(value, indent=indent, sort_keys=sort_keys, allow_nan=allow_nan)
    if indent is not None:
        return _pretty(value, " " * indent if isinstance(indent, int) else indent, "\n", sort_keys, allow_nan)
    enc = _c.make_encoder({}, _default, _c.encode_basestring_ascii, None, ": ", ", ",
                          sort_keys, False, allow_nan)
    return "".join(enc(value, 0))


def _pretty(value: Any, step: str, nl: str, sort_keys: bool, allow_nan: bool) -> str:
    """``json.dumps`` with ``indent``: containers over several lines, scalars by the C encoder."""
    if isinstance(value, dict) and value:
        items = sorted(value.items()) if sort_keys else value.items()
        inner = nl + step
        parts = []
        for k, v in items:
            if not isinstance(k, str):
                if not isinstance(k, (int, float)) and k is not None:
                    raise TypeError(f"keys must be str, int, float, bool or None, not {type(k).__name__}")
                k = _key(k)
            parts.append(_c.encode_basestring_ascii(k) + ": "
                         + _pretty(v, step, inner, sort_keys, allow_nan))
        return "{" + inner + ("," + inner).join(parts) + nl + "}"
    if isinstance(value, (list, tuple)) and value:
        inner = nl + step
        return "[" + inner + ("," + inner).join(
            _pretty(v, step, inner, sort_keys, allow_nan) for v in value) + nl + "]"
    return dumps(value, sort_keys=sort_keys, allow_nan=allow_nan)


def _key(k: Any) -> str:
    """A non-string dict key as ``json`` writes it."""
    if k is True:
        return "true"
    if k is False:
        return "false"
    if k is None:
        return "null"
    return float.__repr__(k) if isinstance(k, float) else int.__repr__(k)
