"""Where each version came from, in the queries sharing needs (egress and ingress).

A version posted or pulled from a peer carries that peer's name as ``origin``.
Egress to a peer never looks at that peer's own versions: they are not sent
back to it, they do not stand for our objects when a reference is resolved,
and they do not decide what an object's current version is.  Ingress needs
who made the versions already held, so that only an object's creator versions
it (STIX 2.1 section 3.6).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy import Connection

from node import jsoncodec

from .engine import in_chunks, placeholder

_IN_CHUNK = 500
_NOT_FROM = "(o.origin IS NULL OR o.origin <> {m})"
_CURRENT = (
    "(SELECT MAX(s.version) FROM objects s WHERE s.collection_id = o.collection_id "
    "AND s.object_id = o.object_id AND (s.origin IS NULL OR s.origin <> {m}))"
)


class Version(NamedTuple):
    """One stored version, with the store's integer version and where it came from.

    (A tuple, not a dataclass: a partner's page builds thousands per request.)"""

    object_id: str
    type: str
    version: int
    version_text: str
    date_added: int
    body: str
    origin: str | None
    current: bool = False  # the newest version not from the peer in question


@dataclass(frozen=True)
class Scan:
    """A window of versions in date_added order, as a peer's egress sees them."""

    collection_id: str
    peer: str
    after: int | None = None
    ids: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    spec_versions: tuple[str, ...] = ()
    current_only: bool = False  # only each object's current version


def scan(connection: Connection, window: Scan, limit: int) -> list[Version]:
    """Up to ``limit`` versions after ``window.after``, none from ``window.peer``.

    Each is flagged when it is its object's current version: the newest one
    that did not come from the peer.
    """
    m = placeholder(connection)
    current = _CURRENT.format(m=m)
    clauses = ["o.collection_id = " + m, _NOT_FROM.format(m=m)]
    params: list[Any] = [window.collection_id, window.peer]
    if window.current_only:
        # The store's newest version, when not the peer's (excluded above), is current;
        # only older versions need the subquery.  Every row is then current.
        clauses.append(f"(o.is_latest OR o.version = {current})")
        params.append(window.peer)
    if window.after is not None:
        clauses.append(f"o.date_added > {m}")
        params.append(window.after)
    for column, values in (
        ("o.object_id", window.ids),
        ("o.type", window.types),
        ("o.spec_version", window.spec_versions),
    ):
        if values:
            clauses.append(f"{column} IN ({', '.join([m] * len(values))})")
            params.extend(values)
    flag = (
        "o.version"
        if window.current_only
        else f"CASE WHEN o.is_latest THEN o.version ELSE {current} END"
    )
    head = [] if window.current_only else [window.peer]
    statement = (
        "SELECT o.object_id, o.type, o.version, o.version_text, o.date_added, o.body, o.origin, "
        f"{flag} FROM objects o WHERE {' AND '.join(clauses)} "
        f"ORDER BY o.date_added LIMIT {int(limit)}"
    )
    rows = connection.exec_driver_sql(statement, (*head, *params)).fetchall()
    return [
        Version(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7] == row[2])
        for row in rows
    ]


def current_versions(
    connection: Connection, collection_id: str, object_ids: Iterable[str], peer: str
) -> dict[str, Version]:
    """The current version (newest not from ``peer``) of each id that has one."""
    m = placeholder(connection)
    found: dict[str, Version] = {}
    for chunk in in_chunks(object_ids, _IN_CHUNK):
        statement = (
            "SELECT o.object_id, o.type, o.version, o.version_text, o.date_added, o.body, "
            f"o.origin FROM objects o WHERE o.collection_id = {m} "
            f"AND o.object_id IN ({', '.join([m] * len(chunk))}) AND {_NOT_FROM.format(m=m)} "
            f"AND o.version = {_CURRENT.format(m=m)}"
        )
        params = (collection_id, *chunk, peer, peer)
        for row in connection.exec_driver_sql(statement, params):
            found[row[0]] = _version(row, current=True)
    return found


def held_only_by(
    connection: Connection, collection_id: str, object_ids: Iterable[str], peer: str
) -> set[str]:
    """Those of ``object_ids`` whose every stored version came from ``peer``."""
    m = placeholder(connection)
    held: set[str] = set()
    for chunk in in_chunks(object_ids, _IN_CHUNK):
        statement = (
            f"SELECT o.object_id FROM objects o WHERE o.collection_id = {m} "
            f"AND o.object_id IN ({', '.join([m] * len(chunk))}) GROUP BY o.object_id "
            f"HAVING SUM(CASE WHEN o.origin = {m} THEN 0 ELSE 1 END) = 0"
        )
        held.update(
            row[0] for row in connection.exec_driver_sql(statement, (collection_id, *chunk, peer))
        )
    return held


def versions_of(
    connection: Connection, collection_id: str, object_ids: Iterable[str], peer: str | None
) -> Iterator[Version]:
    """Every stored version of ``object_ids`` (none from ``peer`` when it is given)."""
    m = placeholder(connection)
    for chunk in in_chunks(object_ids, _IN_CHUNK):
        statement = (
            "SELECT o.object_id, o.type, o.version, o.version_text, o.date_added, o.body, "
            f"o.origin FROM objects o WHERE o.collection_id = {m} "
            f"AND o.object_id IN ({', '.join([m] * len(chunk))})"
        )
        params: tuple[Any, ...] = (collection_id, *chunk)
        if peer is not None:
            statement += " AND " + _NOT_FROM.format(m=m)
            params += (peer,)
        for row in connection.exec_driver_sql(statement, params):
            yield _version(row)


@dataclass(frozen=True)
class Makers:
    """Who made the versions of one object held here: origins (None = this node) and
    the ``created_by_ref`` values they carry (None = none)."""

    origins: frozenset[str | None]
    authors: frozenset[str | None]


def makers(
    connection: Connection, collection_id: str, object_ids: Iterable[str]
) -> dict[str, Makers]:
    """The makers of each of ``object_ids`` held in the collection (absent ids are left out)."""
    origins: dict[str, set[str | None]] = {}
    authors: dict[str, set[str | None]] = {}
    for version in versions_of(connection, collection_id, object_ids, None):
        origins.setdefault(version.object_id, set()).add(version.origin)
        author = jsoncodec.loads(version.body).get("created_by_ref")
        authors.setdefault(version.object_id, set()).add(
            author if isinstance(author, str) else None
        )
    return {
        object_id: Makers(frozenset(found), frozenset(authors[object_id]))
        for object_id, found in origins.items()
    }


def _version(row: Sequence[Any], current: bool = False) -> Version:
    object_id, kind, version, version_text, date_added, body, origin = row[:7]
    return Version(object_id, kind, version, version_text, date_added, body, origin, current)
