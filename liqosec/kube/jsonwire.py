"""JSON as it crosses the wire to and from the API server: orjson, both ways.

Every request body and every response or watch event is encoded or decoded here, one call
each. orjson is several times faster than the standard library at both (bench/README.md,
"Where a pod's time goes"), and a controller spends much of its CPU on exactly that.
"""

from __future__ import annotations

from typing import Any

import orjson


def decode(data: bytes | str) -> Any:
    """Parsed JSON; `ValueError` (orjson.JSONDecodeError is one) when it is not JSON."""
    return orjson.loads(data)


def encode(obj: Any) -> bytes:
    """UTF-8 JSON of dicts, lists, strings, numbers, booleans and None (what the API speaks)."""
    return orjson.dumps(obj)
