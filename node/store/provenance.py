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
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

from sqlalchemy import Connection, select

from node import jsoncodec

from .engine import fetch_all, in_chunks, placeholder

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
    # The oldest version stored (of any origin; the store's ``is_first`` marker), so no
    # older one is: False where a query does not say (the cautious answer).
    oldest: bool = False


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


def _window_clauses(m: str, window: Scan) -> tuple[list[str], list[Any]]:
    """The WHERE clauses (and their parameters) of the versions ``window`` selects."""
    clauses = ["o.collection_id = " + m, _NOT_FROM.format(m=m)]
    params: list[Any] = [window.collection_id, window.peer]
    if window.current_only:
        # The store's newest version, when not the peer's (excluded above), is current;
        # only older versions need the subquery.  Every row is then current.
        clauses.append(f"(o.is_latest OR o.version = {_CURRENT.format(m=m)})")
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
    return clauses, params


def _current_flag(m: str, window: Scan) -> tuple[str, list[Any]]:
    """SQL that is 1 for a row that is its object's current version, else 0."""
    if window.current_only:
        return "1", []
    # CASE evaluates in order: the subquery runs for older versions only.
    current = _CURRENT.format(m=m)
    return f"CASE WHEN o.is_latest THEN 1 WHEN o.version = {current} THEN 1 ELSE 0 END", [
        window.peer
    ]


# The columns of a Version, in its order (then the current flag and the is_first marker).
_VERSION_COLUMNS = "o.object_id, o.type, o.version, o.version_text, o.date_added, o.body, o.origin"
_FIRST_FLAG = "CASE WHEN o.is_first THEN 1 ELSE 0 END"


def scan(connection: Connection, window: Scan, limit: int) -> list[Version]:
    """Up to ``limit`` versions after ``window.after``, none from ``window.peer``.

    Each is flagged when it is its object's current version: the newest one
    that did not come from the peer, and when it is the oldest version stored.
    """
    return _versions(_scanned(connection, window, limit, _VERSION_COLUMNS))


def scan_heads(connection: Connection, window: Scan, limit: int) -> list[tuple[int, int, int]]:
    """The rows ``scan`` would return, reduced to (date_added, current, oldest), the flags
    1 or 0: for a reader that knows most rows by their date_added already (egress's
    remembered decisions), the other columns cost more to fetch than finding the rows."""
    return _scanned(connection, window, limit, "o.date_added")


def _scanned(connection: Connection, window: Scan, limit: int, columns: str) -> list[Any]:
    """``columns``, then the current and oldest flags, of the rows ``window`` selects."""
    m = placeholder(connection)
    flag, head = _current_flag(m, window)
    clauses, params = _window_clauses(m, window)
    statement = (
        f"SELECT {columns}, {flag}, {_FIRST_FLAG} FROM objects o "
        f"WHERE {' AND '.join(clauses)} ORDER BY o.date_added LIMIT {int(limit)}"
    )
    return fetch_all(connection, statement, (*head, *params))


def at(connection: Connection, window: Scan, added: Sequence[int]) -> dict[int, Version]:
    """The versions of ``window``'s collection, none from its peer, stored at the
    date_added values ``added`` (rows ``scan_heads`` found), flagged as ``scan`` flags
    them, the current flag read again (a row may have stopped being current since, even
    in a window of current versions); a row deleted since is absent."""
    m = placeholder(connection)
    flag, head = _current_flag(m, replace(window, current_only=False))
    found: dict[int, Version] = {}
    for chunk in in_chunks(added, _IN_CHUNK):
        statement = (
            f"SELECT {_VERSION_COLUMNS}, {flag}, {_FIRST_FLAG} FROM objects o "
            f"WHERE o.collection_id = {m} AND {_NOT_FROM.format(m=m)} "
            f"AND o.date_added IN ({', '.join([m] * len(chunk))})"
        )
        params = (*head, window.collection_id, window.peer, *chunk)
        found.update((v.date_added, v) for v in _versions(fetch_all(connection, statement, params)))
    return found


def _versions(rows: Sequence[Sequence[Any]]) -> list[Version]:
    return [
        Version(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7] == 1, row[8] == 1)
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
            f"SELECT {_VERSION_COLUMNS} FROM objects o WHERE o.collection_id = {m} "
            f"AND o.object_id IN ({', '.join([m] * len(chunk))}) AND {_NOT_FROM.format(m=m)} "
            f"AND o.version = {_CURRENT.format(m=m)}"
        )
        params = (collection_id, *chunk, peer, peer)
        for row in fetch_all(connection, statement, params):
            found[row[0]] = _version(row, current=True)
    return found


def newest_elsewhere(
    connection: Connection, collection_id: str, object_ids: Iterable[str]
) -> dict[str, str]:
    """The body of the newest version of each id that other collections than
    ``collection_id`` hold (by the ``is_latest`` marker of each collection)."""
    m = placeholder(connection)
    found: dict[str, tuple[int, str]] = {}
    for chunk in in_chunks(object_ids, _IN_CHUNK):
        statement = (
            f"SELECT o.object_id, o.version, o.body FROM objects o "
            f"WHERE o.object_id IN ({', '.join([m] * len(chunk))}) "
            f"AND o.collection_id <> {m} AND o.is_latest"
        )
        for object_id, version, body in fetch_all(connection, statement, (*chunk, collection_id)):
            if object_id not in found or version > found[object_id][0]:
                found[object_id] = (version, body)
    return {object_id: body for object_id, (_, body) in found.items()}


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
            f"SELECT {_VERSION_COLUMNS} FROM objects o WHERE o.collection_id = {m} "
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


def makers(versions: Iterable[Version]) -> dict[str, Makers]:
    """The makers of each object of ``versions`` (``versions_of`` with no peer left out:
    every stored version of the objects), by id."""
    origins: dict[str, set[str | None]] = {}
    authors: dict[str, set[str | None]] = {}
    for version in versions:
        origins.setdefault(version.object_id, set()).add(version.origin)
        author = jsoncodec.loads(version.body).get("created_by_ref")
        authors.setdefault(version.object_id, set()).add(
            author.lower() if isinstance(author, str) else None  # (the id, in any case)
        )
    return {
        object_id: Makers(frozenset(found), frozenset(authors[object_id]))
        for object_id, found in origins.items()
    }


def _version(row: Sequence[Any], current: bool = False) -> Version:
    object_id, kind, version, version_text, date_added, body, origin = row[:7]
    return Version(object_id, kind, version, version_text, date_added, body, origin, current)


# Collections where a peer's version was ever stored under ``accept_foreign_versions``
# (settings ``foreign-versions:<collection id>``): one object there may hold versions
# of several origins, whatever the config says now (egress's "last", see there).
_FOREIGN_VERSIONS = "foreign-versions:"


def note_foreign_versions(connection: Connection, collection_id: str) -> None:
    """Record that ``collection_id`` may hold versions of several origins per object."""
    from .schema import settings

    key = _FOREIGN_VERSIONS + collection_id
    found = connection.execute(select(settings.c.key).where(settings.c.key == key)).first()
    if found is None:
        connection.execute(settings.insert().values(key=key, value="1"))


def collections_with_foreign_versions(connection: Connection) -> set[str]:
    from .schema import settings

    keys = connection.execute(
        select(settings.c.key).where(settings.c.key.startswith(_FOREIGN_VERSIONS))
    ).scalars()
    return {key.removeprefix(_FOREIGN_VERSIONS) for key in keys}
