"""JSON as it crosses the wire to and from the API server: orjson, both ways.

Every request body and every response or watch event is encoded or decoded here, one call
each. orjson is several times faster than the standard library at both (bench/README.md,
"Issue 17"), and a controller spends much of its CPU on exactly that. A LIST page is the
exception (`decode_list`): decoded item by item, so it is never held whole as dicts.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import orjson

ItemTransform = Callable[[dict[str, Any]], dict[str, Any]]


def decode(data: bytes | str) -> Any:
    """Parsed JSON; `ValueError` (orjson.JSONDecodeError is one) when it is not JSON."""
    return orjson.loads(data)


def encode(obj: Any) -> bytes:
    """UTF-8 JSON of dicts, lists, strings, numbers, booleans and None (what the API speaks)."""
    return orjson.dumps(obj)


_WHITESPACE = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()


def decode_list(data: bytes, transform: ItemTransform) -> dict[str, Any]:
    """A LIST response body, its ``items`` passed through ``transform`` one at a time as decoded.

    Equal to ``{**json.loads(data), "items": [transform(i) for i in items]}``, without ever holding
    more than one item decoded. Raises ``ValueError`` on anything that is not a JSON object.
    """
    text = data.decode("utf-8")

    def skip(i: int) -> int:
        found = _WHITESPACE.match(text, i)
        return found.end() if found else i

    def expect(char: str, i: int) -> int:
        if text[i : i + 1] != char:
            raise ValueError(f"expected {char!r} at {i}")
        return skip(i + 1)

    out: dict[str, Any] = {}
    i = expect("{", skip(0))
    if text[i : i + 1] == "}":
        i += 1
    else:
        while True:
            key, i = _DECODER.raw_decode(text, i)
            if not isinstance(key, str):
                raise ValueError(f"object key expected before {i}")
            i = expect(":", skip(i))
            value: Any
            if key == "items" and text[i : i + 1] == "[":
                value = []
                i = skip(i + 1)
                if text[i : i + 1] == "]":
                    i += 1
                else:
                    while True:
                        item, i = _DECODER.raw_decode(text, i)
                        value.append(transform(item))
                        i = skip(i)
                        if text[i : i + 1] == "]":
                            i += 1
                            break
                        i = expect(",", i)
            else:
                value, i = _DECODER.raw_decode(text, i)
            out[key] = value
            i = skip(i)
            if text[i : i + 1] == "}":
                i += 1
                break
            i = expect(",", i)
    if skip(i) != len(text):
        raise ValueError(f"extra data at {i}")
    return out
