"""JSON on the hot paths (ingest, paging, sync): orjson, with the standard library as fallback.

orjson parses and serialises several times faster than ``json``, refuses
invalid UTF-8 and nesting deeper than 1024 levels, and needs no tuning.  It
cannot serialise integers beyond 64 bits, which ``dumps`` hands to ``json``,
nor nesting deeper than 254 levels, which ``dumps`` refuses with ``ValueError``.

Like ``json``, orjson keeps the last of repeated member names in an object
(``{"a": 1, "a": 2}``) without saying so; ``repeats_names`` tells, cheaply, and
``mark_repeats`` finds where.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

MAX_DEPTH = 254  # the deepest nesting orjson serialises


def loads(data: bytes | str) -> Any:
    """Parse JSON; raises ``ValueError`` (orjson.JSONDecodeError is one) when invalid."""
    return orjson.loads(data)


def dumps(value: Any) -> str:
    """Compact JSON text, UTF-8 characters kept as they are."""
    try:
        return orjson.dumps(value).decode()
    except TypeError as exc:
        # orjson parses 1024 levels but serialises 254: what is deeper is refused
        # (ValueError), so that whatever is stored can be served again.
        if "ecursion" in str(exc):
            raise ValueError(f"nested deeper than {MAX_DEPTH} levels") from None
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    except RecursionError:
        raise ValueError(f"nested deeper than {MAX_DEPTH} levels") from None


def dumps_each(items: list) -> list[str] | None:
    """``dumps`` of every item, or None when one cannot be serialised."""
    try:
        return [dumps(item) for item in items]
    except ValueError:
        return None


def repeats_names(text: bytes, document: Any, object_texts: list[str] | None = None) -> bool:
    """Whether the JSON ``text``, which ``loads`` parsed into ``document``, repeats a name.

    ``object_texts``, the ``dumps`` of each item of an envelope's ``objects``
    (see ``dumps_each``), saves serialising those items a second time.

    Exact, and about as cheap as one ``dumps``: outside strings every ':' of
    JSON text separates a member's name from its value, and inside strings a
    ':' is written as itself or as the escape \\u003a (or \\u003A).  A text
    without that escape therefore holds more ':' than the re-serialisation of
    what was parsed exactly when a member was dropped, that is when a name
    was repeated.  With the escape (or beyond what ``dumps`` can do), the
    standard library decides.
    """
    if b"\\u003" not in text:
        try:
            return text.count(b":") != _colons(document, object_texts)
        except ValueError:
            pass
    try:
        marked = mark_repeats(text)
    except RecursionError:
        return True  # cannot tell: the caller refuses what it cannot check
    return isinstance(marked, Repeats)


def _colons(document: Any, object_texts: list[str] | None) -> int:
    """The ':' in ``dumps(document)``, reusing the items' texts when given."""
    if object_texts is None or not isinstance(document, dict):
        return dumps(document).count(":")
    rest = {name: value for name, value in document.items() if name != "objects"}
    # The "objects": member itself contributes one ':'.
    return dumps(rest).count(":") + 1 + sum(item.count(":") for item in object_texts)


class Repeats(dict):
    """An object from ``mark_repeats`` that repeats a member name, or holds one that does."""

    repeated: str  # the first repeated name, in this object or within it
    own: bool  # whether this object itself repeats it


def mark_repeats(text: bytes) -> Any:
    """``text`` parsed by the standard library, with every object that repeats a
    member name, or contains one that does, a ``Repeats``.

    Slow (pure Python per object): for the rare text ``repeats_names`` flags.
    Raises ``ValueError`` for invalid JSON, ``RecursionError`` for deep nesting.
    """
    return json.loads(text, object_pairs_hook=_marked)


def _marked(pairs: list[tuple[str, Any]]) -> dict:
    obj = dict(pairs)
    own = len(obj) != len(pairs)
    repeated = _first_repeat(pairs) if own else _repeat_within(list(obj.values()))
    if repeated is None:
        return obj
    marked = Repeats(obj)
    marked.repeated, marked.own = repeated, own
    return marked


def _first_repeat(pairs: list[tuple[str, Any]]) -> str | None:
    seen: set[str] = set()
    for name, _ in pairs:
        if name in seen:
            return name
        seen.add(name)
    return None


def _repeat_within(values: list) -> str | None:
    # Objects are marked as they are parsed, innermost first: only lists need a walk.
    for value in values:
        if isinstance(value, Repeats):
            return value.repeated
        if isinstance(value, list):
            repeated = _repeat_within(value)
            if repeated is not None:
                return repeated
    return None
