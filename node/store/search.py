"""Read queries for people: searching objects, counting them, following references.

The TAXII read path (``objects.page``) pages one collection in ``date_added``
order for machines; the console needs other questions answered: which objects
mention this IP, how many indicators are TLP:AMBER, which reports contain this
object, what the audit says about it.  They live here so that the HTTP layer
never writes SQL.

Text search matches the stored JSON text of an object's latest version, so it
finds words in names and descriptions and values inside patterns
(``[ipv4-addr:value = '203.0.113.7']``) alike; the other filters (TLP, label,
author) are checked on the decoded object, exactly, after the SQL narrowing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, Connection, Row, and_, func, select

from node import jsoncodec
from node.tlp import tlp_of

from .audit import Action
from .engine import select_in
from .schema import audit_table, collections, dead_letters, objects_table

_SCAN_CHUNK = 200  # rows read per step while filling a page after exact filters
_MAX_SCANNED = 20_000  # rows examined at most for one page of a search


@dataclass(frozen=True)
class ObjectSearch:
    """What a person asks for; empty fields do not filter."""

    collection_ids: tuple[str, ...]
    text: str = ""
    types: tuple[str, ...] = ()
    tlp: str = ""  # a TLP label (``AMBER+STRICT``), or ``none`` for unmarked objects
    label: str = ""
    author: str = ""  # an identity id (created_by_ref)
    added_from: int | None = None  # date_added bounds, microseconds, inclusive
    added_to: int | None = None
    before: int | None = None  # keyset position: date_added of the last row shown
    limit: int = 50


@dataclass(frozen=True)
class Found:
    """One object (its latest version in a collection) as a search lists it."""

    collection_id: str
    object_id: str
    type: str
    date_added: int
    origin: str | None
    obj: dict[str, Any]

    @property
    def tlp(self) -> str:
        level = tlp_of(self.obj)
        return level.label if level is not None else ""

    @property
    def title(self) -> str:
        return str(self.obj.get("name") or self.obj.get("value") or self.object_id)


@dataclass
class SearchPage:
    results: list[Found] = field(default_factory=list)
    next_before: int | None = None  # position of the next page, None at the end
    scanned_out: bool = False  # stopped after _MAX_SCANNED rows without filling the page


def _like_pattern(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _latest_only() -> ColumnElement[bool]:
    """Only the newest version of each object in its collection (migration 5's marker)."""
    return objects_table.c.is_latest.is_(True)


def _narrowing(search: ObjectSearch) -> list[ColumnElement[bool]]:
    clauses = [objects_table.c.collection_id.in_(search.collection_ids), _latest_only()]
    if search.types:
        clauses.append(objects_table.c.type.in_(search.types))
    if search.text:
        clauses.append(objects_table.c.body.ilike(_like_pattern(search.text), escape="\\"))
    for value in (search.label, search.author):
        if value:
            clauses.append(objects_table.c.body.like(_like_pattern(value), escape="\\"))
    if search.added_from is not None:
        clauses.append(objects_table.c.date_added >= search.added_from)
    if search.added_to is not None:
        clauses.append(objects_table.c.date_added <= search.added_to)
    if search.before is not None:
        clauses.append(objects_table.c.date_added < search.before)
    return clauses


def _matches_exactly(search: ObjectSearch, obj: dict[str, Any]) -> bool:
    if search.label and search.label not in (obj.get("labels") or ()):
        return False
    if search.author and obj.get("created_by_ref") != search.author:
        return False
    if search.tlp:
        level = tlp_of(obj)
        wanted_none = search.tlp.lower() == "none"
        if wanted_none != (level is None):
            return False
        if level is not None and level.label != search.tlp.upper():
            return False
    return True


def search_objects(connection: Connection, search: ObjectSearch) -> SearchPage:
    """One page of the latest versions matching ``search``, newest first."""
    page = SearchPage()
    if not search.collection_ids:
        return page
    before = search.before
    scanned = 0
    while len(page.results) < search.limit:
        chunk = _chunk(connection, search, before)
        if not chunk:
            return page
        for found in chunk:
            scanned += 1
            before = found.date_added
            if _matches_exactly(search, found.obj):
                page.results.append(found)
                if len(page.results) == search.limit:
                    break
        if scanned >= _MAX_SCANNED:
            page.scanned_out = True
            break
        if len(chunk) < _SCAN_CHUNK and len(page.results) < search.limit:
            return page
    page.next_before = before
    return page


_FOUND_COLUMNS = (
    objects_table.c.collection_id,
    objects_table.c.object_id,
    objects_table.c.type,
    objects_table.c.date_added,
    objects_table.c.origin,
    objects_table.c.body,
)


def _found(row: Row[Any, Any, Any, Any, Any, Any]) -> Found:
    return Found(row.collection_id, row.object_id, row.type, row.date_added, row.origin,
                 jsoncodec.loads(row.body))  # fmt: skip


def _chunk(connection: Connection, search: ObjectSearch, before: int | None) -> list[Found]:
    bounded = ObjectSearch(**{**search.__dict__, "before": before})
    statement = (
        select(*_FOUND_COLUMNS)
        .where(and_(*_narrowing(bounded)))
        .order_by(objects_table.c.date_added.desc())
        .limit(_SCAN_CHUNK)
    )
    return [_found(row) for row in connection.execute(statement)]


@dataclass(frozen=True)
class StoredVersion:
    collection_id: str
    version_text: str
    date_added: int
    origin: str | None
    obj: dict[str, Any]


def versions(connection: Connection, collection_id: str, object_id: str) -> list[StoredVersion]:
    """Every stored version of one object in one collection, newest first."""
    statement = (
        select(
            objects_table.c.version_text,
            objects_table.c.date_added,
            objects_table.c.origin,
            objects_table.c.body,
        )
        .where(
            objects_table.c.collection_id == collection_id, objects_table.c.object_id == object_id
        )
        .order_by(objects_table.c.version.desc())
    )
    return [
        StoredVersion(collection_id, row.version_text, row.date_added, row.origin,
                      jsoncodec.loads(row.body))
        for row in connection.execute(statement)
    ]  # fmt: skip


def referencing(
    connection: Connection, collection_ids: Sequence[str], object_id: str, limit: int = 200
) -> list[Found]:
    """Latest versions that mention ``object_id`` anywhere in their JSON (relationships,
    sightings, reports...), for the caller to sort by the property that refers."""
    statement = (
        select(*_FOUND_COLUMNS)
        .where(
            objects_table.c.collection_id.in_(collection_ids),
            objects_table.c.object_id != object_id,
            objects_table.c.body.like(_like_pattern(object_id), escape="\\"),
            _latest_only(),
        )
        .order_by(objects_table.c.date_added.desc())
        .limit(limit)
    )
    return [_found(row) for row in connection.execute(statement)]


def latest_of(
    connection: Connection, collection_ids: Sequence[str], object_ids: Iterable[str]
) -> dict[str, Found]:
    """The latest version of each of ``object_ids`` found in ``collection_ids``, by id."""
    statement = select(*_FOUND_COLUMNS).where(
        objects_table.c.collection_id.in_(collection_ids), _latest_only()
    )
    found: dict[str, Found] = {}
    for row in select_in(connection, statement, objects_table.c.object_id, object_ids, 500):
        found.setdefault(row.object_id, _found(row))
    return found


@dataclass
class CollectionCounts:
    versions: int = 0
    by_type: Counter[str] = field(default_factory=Counter)
    by_tlp: Counter[str] = field(default_factory=Counter)


def collection_counts(connection: Connection, collection_id: str) -> CollectionCounts:
    """Latest versions by type and by TLP level (``none`` for unmarked), and all versions.

    TLP needs the bodies decoded, so this reads the collection's latest versions
    once, in chunks; it is meant for a person's page, not for every request.
    """
    counts = CollectionCounts()
    counts.versions = connection.execute(
        select(func.count())
        .select_from(objects_table)
        .where(objects_table.c.collection_id == collection_id)
    ).scalar_one()
    for obj_type, body in _latest_bodies(connection, collection_id):
        counts.by_type[obj_type] += 1
        level = tlp_of(jsoncodec.loads(body))
        counts.by_tlp[level.label if level is not None else "none"] += 1
    return counts


def _latest_bodies(connection: Connection, collection_id: str) -> Iterator[tuple[str, str]]:
    after = -1
    while True:
        rows = connection.execute(
            select(objects_table.c.pk, objects_table.c.type, objects_table.c.body)
            .where(
                objects_table.c.collection_id == collection_id,
                objects_table.c.pk > after,
                _latest_only(),
            )
            .order_by(objects_table.c.pk)
            .limit(1000)
        ).all()
        if not rows:
            return
        for row in rows:
            yield row.type, row.body
        after = rows[-1].pk


def versions_per_collection(connection: Connection) -> dict[str, int]:
    """Stored versions by collection, named by alias (else id); empty ones count 0."""
    statement = (
        select(collections.c.id, collections.c.alias, func.count(objects_table.c.pk))
        .select_from(
            collections.outerjoin(objects_table, objects_table.c.collection_id == collections.c.id)
        )
        .group_by(collections.c.id, collections.c.alias)
    )
    return {alias or cid: n for cid, alias, n in connection.execute(statement)}


def dead_letter_counts(connection: Connection) -> dict[tuple[str, str], int]:
    """Dead letters waiting, by (peer, mapping)."""
    statement = select(dead_letters.c.peer, dead_letters.c.mapping, func.count()).group_by(
        dead_letters.c.peer, dead_letters.c.mapping
    )
    return {(peer, mapping): n for peer, mapping, n in connection.execute(statement)}


# -- the audit trail, for people ----------------------------------------------


# The audit actions that are sharing decisions about an object.
_DECISIONS = (Action.SENT, Action.SERVED, Action.RECEIVED, Action.WITHHELD, Action.DEAD_LETTER)


def latest_decisions(
    connection: Connection, object_id: str, limit: int = 500
) -> list[dict[str, Any]]:
    """The sharing decisions recorded about one object (sent, served, received,
    withheld, dead-letter), newest first, at most ``limit``."""
    statement = (
        select(audit_table)
        .where(
            audit_table.c.object_id == object_id,
            audit_table.c.action.in_([action.value for action in _DECISIONS]),
        )
        .order_by(audit_table.c.pk.desc())
        .limit(limit)
    )
    return [dict(row._mapping) for row in connection.execute(statement)]


def withheld_by_rule(connection: Connection) -> dict[tuple[str, str, str, str], int]:
    """Withheld decisions by (peer, collection id, direction, rule)."""
    statement = (
        select(
            audit_table.c.peer,
            audit_table.c.collection_id,
            audit_table.c.direction,
            audit_table.c.rule,
            func.count(),
        )
        .where(audit_table.c.action == Action.WITHHELD.value)
        .group_by(
            audit_table.c.peer,
            audit_table.c.collection_id,
            audit_table.c.direction,
            audit_table.c.rule,
        )
    )
    return {
        (peer or "", collection_id or "", direction, rule or ""): n
        for peer, collection_id, direction, rule, n in connection.execute(statement)
    }


@dataclass
class AuditTally:
    """Running counts over the audit trail (for metrics), brought up to date by
    ``tally_audit`` from the last record it saw."""

    last_pk: int = 0
    records: int = 0
    failed_logins: int = 0
    withheld: Counter[tuple[str, str, str, str]] = field(default_factory=Counter)


def tally_audit(connection: Connection, tally: AuditTally) -> None:
    """Add the records after ``tally.last_pk`` to ``tally``.

    Reading only the new records keeps a scrape cheap however long the trail.
    The trail only grows (removing a record breaks the hash chain), and records
    are appended one writer at a time under the head's lock, so they commit in
    ``pk`` order and none appears later behind ``last_pk``.
    """
    a = audit_table.c
    statement = (
        select(a.peer, a.collection_id, a.direction, a.rule, a.action, func.count(), func.max(a.pk))
        .where(a.pk > tally.last_pk)
        .group_by(a.peer, a.collection_id, a.direction, a.rule, a.action)
    )
    for peer, collection_id, direction, rule, action, count, last in connection.execute(statement):
        tally.records += count
        tally.last_pk = max(tally.last_pk, last)
        if action == Action.LOGIN_FAILED:
            tally.failed_logins += count
        elif action == Action.WITHHELD:
            tally.withheld[(peer or "", collection_id or "", direction, rule or "")] += count


def audit_totals(connection: Connection) -> tuple[int, int]:
    """(audit records, failed logins) in the whole trail."""
    total = connection.execute(select(func.count()).select_from(audit_table)).scalar_one()
    failed = connection.execute(
        select(func.count())
        .select_from(audit_table)
        .where(audit_table.c.action == Action.LOGIN_FAILED.value)
    ).scalar_one()
    return total, failed
