"""JSON on the hot paths (ingest, paging, sync): orjson, with the standard library as fallback.

orjson parses and serialises several times faster than ``json``, refuses
invalid UTF-8 and nesting deeper than 1024 levels, and needs no tuning.  It
cannot serialise integers beyond 64 bits, which ``dumps`` hands to ``json``.
"""

from __future__ import annotations

import json
from typing import Any

import orjson


def loads(data: bytes | str) -> Any:
    """Parse JSON; raises ``ValueError`` (orjson.JSONDecodeError is one) when invalid."""
    return orjson.loads(data)


def dumps(value: Any) -> str:
    """Compact JSON text, UTF-8 characters kept as they are."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
