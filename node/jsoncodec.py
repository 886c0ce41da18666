"""JSON on the hot paths (ingest, paging, sync): orjson, with the standard library as fallback.

orjson parses and serialises several times faster than ``json``, refuses
invalid UTF-8 and nesting deeper than 1024 levels, and needs no tuning.  It
cannot serialise integers beyond 64 bits, which ``dumps`` hands to ``json``,
nor nesting deeper than 254 levels, which ``dumps`` refuses with ``ValueError``
(``cut_deep_items`` takes such objects out of an envelope, so that they fail
on their own).  It parses an integer beyond 64 bits as a float, which would
silently change it: ``loads`` gives text that may hold one (19 digits in a
row) to the standard library, which keeps integers exact.

Like ``json``, orjson keeps the last of repeated member names in an object
(``{"a": 1, "a": 2}``) without saying so; ``repeats_names`` tells, cheaply, and
``mark_repeats`` finds where.
"""

from __future__ import annotations

import json
import math
import re
import secrets
import sys
from collections.abc import Callable
from typing import Any, cast

import orjson

MAX_DEPTH = 254  # the deepest nesting orjson serialises

# orjson keeps integers in [-2**63, 2**64 - 1] exact; those have at most 20
# digits, and every integer outside has at least 19.  Text without 19 digits
# in a row (digits are mapped to '0' first: one C pass) holds none.
_LONG_RUN = "0" * 19
_DIGITS_TO_ZERO = str.maketrans("123456789", "000000000")
_BYTE_DIGITS_TO_ZERO = bytes.maketrans(b"123456789", b"000000000")


def loads(data: bytes | str, *, overlong: list[OverlongInteger] | None = None) -> Any:
    """Parse JSON; raises ``ValueError`` (orjson.JSONDecodeError is one) when invalid.

    Integers beyond 64 bits come back exact (``int``), as the standard library
    parses them; both parsers refuse NaN, Infinity and numbers that overflow a
    double, and ``RecursionError`` or a depth error (``is_depth_error``) means
    nesting too deep to parse.  An integer longer than Python converts
    (``sys.get_int_max_str_digits()``, 4,300 digits: a bound against quadratic
    parsing) is a ``ValueError``; given an ``overlong`` list, an
    ``OverlongInteger`` stands in its place and is appended to the list, so
    that the caller (which walks the value only when the list is not empty)
    can refuse only the object holding it.
    """
    if not _may_hold_long_integer(data):
        return orjson.loads(data)
    text = data.decode("utf-8") if isinstance(data, bytes) else data  # strict, as orjson
    value = json.loads(
        text,
        parse_constant=_refuse_constant,
        parse_float=_finite_float,
        parse_int=None if overlong is None else _overlong_recorder(overlong),
    )
    if _SURROGATE_ESCAPE.search(text) and not _unicode(value):
        # orjson refuses "\ud800" without its pair; json would let it through.
        raise ValueError("a string holds a lone surrogate escape (\\ud800-\\udfff)")
    return value


def _may_hold_long_integer(data: bytes | str) -> bool:
    if isinstance(data, bytes):
        return _LONG_RUN.encode() in data.translate(_BYTE_DIGITS_TO_ZERO)
    return _LONG_RUN in data.translate(_DIGITS_TO_ZERO)


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _unicode(value: Any) -> bool:
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class OverlongInteger:
    """Stands for an integer too long to convert (``loads(..., overlong=[...])``).

    It is not JSON: ``dumps`` cannot serialise it, so it is never stored."""

    def __init__(self, digits: int) -> None:
        self.digits = digits

    def __repr__(self) -> str:
        return f"<integer of {self.digits} digits>"


def _int_or_overlong(text: str) -> int | OverlongInteger:
    limit = sys.get_int_max_str_digits()
    digits = len(text.lstrip("-"))
    return OverlongInteger(digits) if limit and digits > limit else int(text)


def _overlong_recorder(found: list[OverlongInteger]) -> Callable[[str], int | OverlongInteger]:
    def parse_int(text: str) -> int | OverlongInteger:
        value = _int_or_overlong(text)
        if isinstance(value, OverlongInteger):
            found.append(value)
        return value

    return parse_int


def overlong_integer_in(value: Any) -> OverlongInteger | None:
    """The first ``OverlongInteger`` within a parsed value, or None."""
    found = find_within(value, lambda item: isinstance(item, OverlongInteger))
    return cast(OverlongInteger | None, found)


def find_within(value: Any, matches: Callable[[Any], bool]) -> Any | None:
    """The first item within a parsed value (itself included) that ``matches``, or None
    (a walk without recursion: the value may nest as deep as the parser allowed)."""
    pending = [value]
    while pending:
        current = pending.pop()
        if matches(current):
            return current
        if isinstance(current, dict):
            pending.extend(current.values())
        elif isinstance(current, list):
            pending.extend(current)
    return None


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON (RFC 8259, 6)")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"the number {text[:40]} is too large for a double")
    return value


def is_depth_error(error: BaseException) -> bool:
    """Whether ``loads`` failed because the text nests too deeply."""
    return isinstance(error, RecursionError) or "depth limit exceeded" in str(error)


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


# A string (the unrolled form: no backtracking per character) or a bracket.
_STRING_OR_BRACKET = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')
_ENVELOPE_DEPTH = 2  # the envelope's object, then its "objects" array


def cut_deep_items(text: bytes, max_depth: int) -> tuple[bytes, dict[str, str]]:
    """``text`` with each item of the envelope's ``"objects"`` array that nests
    deeper than ``max_depth`` (the item itself is level 1) replaced by a marker
    string, and {marker: the item's "id", or ""}.

    One pass over strings and brackets, without recursion and without parsing,
    so it works on any depth; text that is not JSON comes out still not JSON.
    The markers hold a random part, so no item of the text can equal one.
    """
    nonce = secrets.token_hex(8)
    scan = _DepthScan(text, max_depth)
    for match in _STRING_OR_BRACKET.finditer(text):
        scan.token(match)
    pieces, markers, position = [], {}, 0
    for number, (start, end, object_id) in enumerate(scan.cuts):
        marker = f"taxii-node:too-deep:{nonce}:{number}"
        markers[marker] = object_id
        pieces += [text[position:start], json.dumps(marker).encode()]
        position = end
    pieces.append(text[position:])
    return b"".join(pieces), markers


class _DepthScan:
    """The state of ``cut_deep_items``' pass: depth, the item being read, the cuts."""

    def __init__(self, text: bytes, max_depth: int) -> None:
        self.text = text
        self.max_depth = max_depth
        self.depth = 0
        self.in_objects = False
        self.last_string: re.Match[bytes] | None = None  # the previous string at this level
        self.item_start: int | None = None
        self.item_depth = 0
        self.item_id = ""
        self.cuts: list[tuple[int, int, str]] = []

    def token(self, match: re.Match[bytes]) -> None:
        first = match.group()[:1]
        if first == b'"':
            self._string(match)
        elif first in (b"[", b"{"):
            self._open(match)
        else:
            self._close(match)

    def _follows_name(self, match: re.Match[bytes], name: bytes) -> bool:
        """Whether ``match`` is the value of the member ``name`` just read."""
        previous = self.last_string
        return (
            previous is not None
            and previous.group() == name
            and self.text[previous.end() : match.start()].strip() == b":"
        )

    def _string(self, match: re.Match[bytes]) -> None:
        at_item_level = self.item_start is not None and self.depth == _ENVELOPE_DEPTH + 1
        if at_item_level and self._follows_name(match, b'"id"'):
            self.item_id = _decoded_string(match.group())
        self.last_string = match

    def _open(self, match: re.Match[bytes]) -> None:
        self.depth += 1
        if self.depth == 1:
            self.last_string = None
        elif self.depth == _ENVELOPE_DEPTH and not self.in_objects:
            self.in_objects = match.group() == b"[" and self._follows_name(match, b'"objects"')
        elif self.in_objects and self.depth == _ENVELOPE_DEPTH + 1:
            self.item_start, self.item_depth, self.item_id = match.start(), 0, ""
        if self.item_start is not None:
            self.item_depth = max(self.item_depth, self.depth - _ENVELOPE_DEPTH)
        self.last_string = None

    def _close(self, match: re.Match[bytes]) -> None:
        if self.item_start is not None and self.depth == _ENVELOPE_DEPTH + 1:
            if self.item_depth > self.max_depth:
                self.cuts.append((self.item_start, match.end(), self.item_id))
            self.item_start = None
        elif self.in_objects and self.depth == _ENVELOPE_DEPTH:
            self.in_objects = False
        self.depth -= 1
        self.last_string = None


def _decoded_string(token: bytes) -> str:
    try:
        value = json.loads(token)
    except ValueError:
        return ""
    return value if isinstance(value, str) else ""


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
    return json.loads(text, object_pairs_hook=_marked, parse_int=_int_or_overlong)


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
