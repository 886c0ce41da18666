"""Query parameters of TAXII 2.1 section 3.4, parsed into an ``ObjectQuery``.

Every malformed value is a 400 that says which parameter and why (medallion
3.0.0 answers 500 to a bad ``added_after`` and to ``next`` without ``limit``).
Numbers and timestamps take ASCII digits only (``[0-9]``): ``\\d`` and
``str.isdigit`` also take fullwidth and Arabic-Indic digits.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from node.store.objects import ObjectQuery
from node.timestamps import to_micros

from .errors import bad_request
from .pagination import RequestFingerprint, TokenSigner

OBJECTS = frozenset(
    {"added_after", "limit", "next", "match[id]", "match[type]", "match[version]",
     "match[spec_version]"}
)  # fmt: skip
OBJECT = frozenset({"added_after", "limit", "next", "match[version]", "match[spec_version]"})
VERSIONS = frozenset({"added_after", "limit", "next", "match[spec_version]"})
# Parameters a next token is not bound to (parse_query).
_UNBOUND = frozenset({"limit", "next", "added_after"})
DELETE = frozenset({"match[version]", "match[spec_version]"})

_ID = re.compile(
    r"^[a-z0-9][a-z0-9-]*[a-z0-9]--[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
    r"[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)
_TYPE = re.compile(r"^[a-z0-9][a-z0-9-]*[a-z0-9]$")
# ASCII digits only: \d also matches fullwidth (U+FF10...) and Arabic-Indic digits.
_SPEC_VERSION = re.compile(r"[0-9]+\.[0-9]+")
_MAX_VALUES = 100


def _values(args: Mapping[str, str], name: str) -> tuple[str, ...]:
    raw = args.get(name)
    if raw is None:
        return ()
    values = tuple(v.strip() for v in raw.split(","))
    if not all(values):
        raise bad_request(f"{name}: empty value in {raw[:80]!r}")
    if len(values) > _MAX_VALUES:
        raise bad_request(f"{name}: at most {_MAX_VALUES} comma-separated values")
    return values


def _checked(args: Mapping[str, str], name: str, pattern: re.Pattern[str], what: str):
    values = _values(args, name)
    for value in values:
        if len(value) > 300 or not pattern.fullmatch(value):
            raise bad_request(f"{name}: {value[:80]!r} is not {what}")
    return values


def _versions(args: Mapping[str, str], default: str) -> tuple[str | int, ...]:
    versions: list[str | int] = []
    for value in _values(args, "match[version]") or (default,):
        if value in ("last", "first", "all"):
            versions.append(value)
            continue
        try:
            versions.append(to_micros(value))
        except ValueError:
            raise bad_request(
                f"match[version]: {value[:80]!r} is not 'last', 'first', 'all' "
                "or an RFC 3339 timestamp"
            ) from None
    return tuple(versions)


def _limit(args: Mapping[str, str], max_page_size: int) -> int:
    raw = args.get("limit")
    if raw is None:
        return max_page_size
    # isdigit() alone admits '²', which int() refuses (a 500): ASCII digits only.
    if not (raw.isascii() and raw.isdigit()) or int(raw) < 1:
        raise bad_request(f"limit: {raw[:40]!r} is not a positive integer")
    # 3.4.2: the server may return fewer objects than asked for.
    return min(int(raw), max_page_size)


def _added_after(args: Mapping[str, str]) -> int | None:
    raw = args.get("added_after")
    if raw is None:
        return None
    try:
        return to_micros(raw)
    except ValueError as exc:
        raise bad_request(f"added_after: {exc}") from None


def parse_query(
    args: Mapping[str, str],
    *,
    collection_id: str,
    scope: str,
    allowed: frozenset[str],
    max_page_size: int,
    signer: TokenSigner,
    object_id: str | None = None,
    default_version: str = "last",
) -> tuple[ObjectQuery, RequestFingerprint]:
    """(query, fingerprint) for one request; the fingerprint signs its ``next`` tokens.

    Parameters the endpoint does not define are ignored, as servers do with
    filters they do not support (3.4.1).  A token is bound to the match filters,
    not to ``added_after``: its own position is later than the request's
    ``added_after`` it was issued for, and the later of the two bounds the page,
    so a client that leaves ``added_after`` out of the follow-up requests (as
    OpenCTI's taxii2 connector does, though 3.4.3 asks for the same query) or
    writes it with other digits pages on where it was.
    """
    present = {name: args[name] for name in allowed if name in args}
    request_fingerprint = RequestFingerprint(
        f"{scope}:{collection_id}:{object_id or ''}",
        [(k, v) for k, v in present.items() if k not in _UNBOUND],
    )
    after = _added_after(present)
    if "next" in present:
        position = signer.position(present["next"], request_fingerprint)
        after = position if after is None else max(after, position)
    ids = _checked(present, "match[id]", _ID, "a STIX identifier")
    if object_id is not None:
        ids = (object_id,)
    query = ObjectQuery(
        collection_id=collection_id,
        limit=_limit(present, max_page_size),
        after=after,
        ids=ids,
        types=_checked(present, "match[type]", _TYPE, "a STIX type name"),
        versions=_versions(present, default_version),
        spec_versions=_checked(present, "match[spec_version]", _SPEC_VERSION, "a version"),
    )
    return query, request_fingerprint
