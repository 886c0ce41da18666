"""Object versions in collections: the hot paths of ingest and paging.

Bodies are stored as the JSON text they are served as, so a page of objects is
answered by joining stored strings, without decoding and re-encoding them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar, cast

from sqlalchemy import Column, Connection, func, or_, select

from node import jsoncodec
from node.timestamps import from_micros, is_timestamp, now_micros, to_micros
from node.tlp import tlp_of
from node.validation import object_problem, version_stamp

from .engine import (
    DriverConnection,
    fetch_all,
    in_values,
    insert_rows,
    placeholder,
    row_lock_clause,
)
from .schema import MARKER_EXPRESSIONS, objects_table

_IN_CHUNK = 500
_T = TypeVar("_T")


def _bounded_length(column: Column[Any]) -> int:
    """The declared length of a String column (an unbounded one is a schema mistake here)."""
    length = getattr(column.type, "length", None)
    if not isinstance(length, int):
        raise TypeError(f"column {column.name} has no declared length")
    return length


# Rows this connection inserted in its current transaction (``Store.write``
# reads it to keep PostgreSQL's statistics current).
INSERTED_ROWS = "taxii_node_inserted_rows"
# version_text is a bounded column (PostgreSQL enforces it): a timestamp with
# more fractional digits than it holds is refused rather than failing the POST.
_MAX_VERSION_TEXT = _bounded_length(objects_table.c.version_text)


@dataclass(frozen=True)
class ObjectQuery:
    """Filters of TAXII 2.1 section 3.4 in store terms (timestamps as microseconds).

    ``versions`` holds "last", "first", "all" and/or exact versions as integers;
    its items are ORed, as are the items of every other field; fields are ANDed.
    """

    collection_id: str
    limit: int
    after: int | None = None  # exclusive lower bound on date_added
    ids: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    versions: tuple[str | int, ...] = ("last",)
    spec_versions: tuple[str, ...] = ()
    exclude_origin: str | None = None  # sync: never echo a peer's objects back to it


class StoredObject(NamedTuple):
    """One stored version.  A named tuple, not a frozen dataclass: a POST of 100
    builds 100 of them, a page one per row, and a frozen dataclass's ``__init__``
    cost three times as much."""

    object_id: str
    type: str
    version_text: str
    date_added: int
    body: str
    origin: str | None
    version: int  # the store's key of version_text (microseconds; 0 without one)


@dataclass
class AddOutcome:
    """What happened to each object of one POST, in status-resource form (4.3.1)."""

    successes: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    stored: list[StoredObject] = field(default_factory=list)  # new versions only


def _version_text(obj: object) -> str:
    return version_stamp(obj) or ""


def _detail(obj: object, message: str) -> dict[str, Any]:
    detail: dict[str, Any] = {"id": "", "message": message}
    if isinstance(obj, dict):
        if isinstance(obj.get("id"), str):
            detail["id"] = obj["id"]
        version = _version_text(obj)
        if version and is_timestamp(version):
            detail["version"] = version
    return detail


def _valid_detail(
    obj: dict[str, Any], message: str, date_added: int | None = None
) -> dict[str, Any]:
    """``_detail`` for an object that passed validation (no re-checking on the hot path).

    Status details need a version (4.3.1): an SCO without created/modified is
    labelled by its date_added, as in manifests and version lists.
    """
    detail = {"id": obj["id"], "message": message}
    version = version_stamp(obj)
    if version:
        detail["version"] = version
    elif date_added is not None:
        detail["version"] = from_micros(date_added)
    return detail


class _Candidate(NamedTuple):  # one per posted object: see StoredObject
    obj: dict[str, Any]
    body: str  # the JSON text to store and serve
    version_text: str
    type: str
    spec_version: str


@dataclass
class PreparedObjects:
    """The objects of one POST, validated and serialised before any lock is taken.

    Validation and serialisation are most of the CPU of an ingest; doing them
    outside the write transaction lets writers overlap that work, since the
    transaction (BEGIN IMMEDIATE on SQLite) admits one writer at a time.
    """

    candidates: dict[tuple[str, int], _Candidate] = field(default_factory=dict)
    outcome: AddOutcome = field(default_factory=AddOutcome)
    # The newest and the oldest posted version of each id (version markers).
    newest: dict[str, int] = field(default_factory=dict)
    oldest: dict[str, int] = field(default_factory=dict)

    def add(self, key: tuple[str, int], candidate: _Candidate) -> None:
        self.candidates[key] = candidate
        object_id, version = key
        if version > self.newest.get(object_id, version - 1):
            self.newest[object_id] = version
        if version < self.oldest.get(object_id, version + 1):
            self.oldest[object_id] = version


def prepare(
    items: Sequence[object],
    texts: Sequence[str] | None = None,
    valid: AbstractSet[int] = frozenset(),
) -> PreparedObjects:
    """Validate and serialise ``items``; invalid ones become failures.

    ``texts``, when given, are the items already serialised with
    ``jsoncodec.dumps`` (the API serialises them once to check the body), in
    the same order.  ``valid``: the ``id()`` of items the caller validated
    (``object_problem``) and has not changed since (ingress checks a partner's
    objects before its policy reads them), which are not checked again.
    """
    prepared = PreparedObjects()
    outcome = prepared.outcome
    for index, raw in enumerate(items):
        problem = None if id(raw) in valid else object_problem(raw)
        if problem is not None:
            outcome.failures.append(_detail(raw, problem))
            continue
        item = cast(dict[str, Any], raw)  # object_problem found none: a STIX object
        version_text = _version_text(item)
        problem = _storage_problem(version_text)
        if problem is not None:
            outcome.failures.append(_detail(item, problem))
            continue
        key = (item["id"], to_micros(version_text) if version_text else 0)
        if key in prepared.candidates:
            _report_repeat(outcome, prepared.candidates[key].obj, item)
            continue
        try:
            body = texts[index] if texts is not None else jsoncodec.dumps(item)
        except ValueError as exc:
            outcome.failures.append(_detail(item, f"cannot be stored: {exc}"))
            continue
        if not _encodable(body):
            outcome.failures.append(
                _detail(item, "a string holds an unpaired surrogate (\\ud800-\\udfff): not Unicode")
            )
            continue
        prepared.add(
            key, _Candidate(item, body, version_text, item["type"], item.get("spec_version", "2.1"))
        )
    return prepared


def store_prepared(
    connection: Connection,
    collection_id: str,
    prepared: PreparedObjects,
    origin: str | None = None,
    publisher: str | None = None,
) -> AddOutcome:
    """Store prepared objects inside the caller's write transaction.

    Re-posting a version already stored is a success ("already present"); a
    different object under an existing (id, version) is a failure, because
    STIX forbids it and keeping either silently would hide a producer's error.
    ``origin``: the peer the objects came from; ``publisher``: the local
    account that publishes them (``publishers.publishers_of``), None for a peer's.
    """
    if prepared.candidates:
        _store_new_versions(connection, collection_id, prepared, origin, publisher)
    return prepared.outcome


def add_objects(
    connection: Connection,
    collection_id: str,
    items: Sequence[object],
    origin: str | None = None,
    publisher: str | None = None,
    valid: AbstractSet[int] = frozenset(),
) -> AddOutcome:
    """Validate and store ``items`` inside the caller's write transaction.

    Invalid objects become failures and are never stored.  ``valid``: see ``prepare``.
    """
    prepared = prepare(items, valid=valid)
    return store_prepared(connection, collection_id, prepared, origin, publisher)


def _storage_problem(version_text: str) -> str | None:
    """Why a valid object with this version cannot be stored as it is, or None."""
    if len(version_text) > _MAX_VERSION_TEXT:
        return (
            f"the version {version_text[:40]!r}... has more fractional digits than this "
            f"node stores (at most {_MAX_VERSION_TEXT - 21})"
        )
    return None


def _same(stored: dict[str, Any], item: dict[str, Any]) -> bool:
    try:
        return stored == item
    except RecursionError:  # orjson parses 1024 levels; == recurses in C up to ~1000
        return False


def _report_repeat(
    outcome: AddOutcome, stored: dict[str, Any], item: dict[str, Any], date_added: int | None = None
) -> None:
    if _same(stored, item):
        outcome.successes.append(_valid_detail(item, "already present", date_added))
    else:
        outcome.failures.append(
            _valid_detail(
                item, "a different object with this id and version is already stored", date_added
            )
        )


_INSERT_COLUMNS = (
    "collection_id", "object_id", "type", "spec_version", "version", "version_text",
    "date_added", "body", "origin", "is_latest", "is_first", "publisher",
)  # fmt: skip
_MILLISECOND = 1_000  # microseconds


@dataclass(frozen=True, slots=True)
class _StoredVersions:
    """What the store holds of the posted ids: enough to detect repeats and move markers."""

    date_added: dict[tuple[str, int], int]  # by (id, version)
    newest: dict[str, int]  # version, by id
    oldest: dict[str, int]


def _store_new_versions(
    connection: Connection,
    collection_id: str,
    prepared: PreparedObjects,
    origin: str | None,
    publisher: str | None,
) -> None:
    outcome = prepared.outcome
    last_date_added = _lock_collection(connection, collection_id)
    stored = _stored_versions(connection, collection_id, {oid for oid, _ in prepared.candidates})
    repeats = [key for key in prepared.candidates if key in stored.date_added]
    bodies = _stored_bodies(connection, collection_id, repeats) if repeats else {}
    new_keys = [key for key in prepared.candidates if key not in bodies]
    date_of = _dated(new_keys, prepared.candidates, last_date_added)
    latest = _taking_over(prepared.newest, stored.newest, max)
    first = _taking_over(prepared.oldest, stored.oldest, min)
    rows = []
    successes, stored_objects = outcome.successes, outcome.stored
    for key, candidate in prepared.candidates.items():
        obj = candidate.obj
        if key in bodies:
            _report_repeat(outcome, jsoncodec.loads(bodies[key]), obj, stored.date_added[key])
            continue
        object_id, version = key
        date_added = date_of[key]
        rows.append(
            (collection_id, object_id, candidate.type, candidate.spec_version, version,
             candidate.version_text, date_added, candidate.body, origin,
             latest.get(object_id) == version, first.get(object_id) == version, publisher)
        )  # fmt: skip
        stored_objects.append(
            StoredObject(object_id, candidate.type, candidate.version_text, date_added,
                         candidate.body, origin, version)
        )  # fmt: skip
        successes.append(
            {"id": object_id, "message": "added",
             "version": candidate.version_text or from_micros(date_added)}
        )  # _valid_detail, without finding the version again  # fmt: skip
    if rows:
        _demote(connection, collection_id, latest, first, stored)
        _insert_rows(connection, rows)
        marker = placeholder(connection)
        connection.exec_driver_sql(
            f"UPDATE collections SET last_date_added = {marker} WHERE id = {marker}",
            (max(date_of.values()), collection_id),
        )


def _dated(
    keys: list[tuple[str, int]], candidates: Mapping[tuple[str, int], Any], last_date_added: int
) -> dict[tuple[str, int], int]:
    """The date_added of each new version of one commit, in order of TLP level: unmarked,
    CLEAR, GREEN, AMBER, AMBER+STRICT, RED (in posted order within a level).

    Values within a commit are a microsecond apart, so the gap between two versions a
    partner receives would count the versions between them that it may not see
    (TLP:RED ones, say, posted in the same envelope).  In this order, what a TLP
    ceiling withholds comes after all it lets through, where no gap shows it.  A version
    ranks at least as its object's newest version in the commit: an older GREEN version
    of an object whose newest is RED is withheld with it (its current version decides),
    so it goes with the RED ones.
    """
    dates = _date_added_values(last_date_added, len(keys))
    if len(keys) > 1:
        ranks = {key: _level_rank(candidates[key].obj) for key in keys}
        newest: dict[str, tuple[int, int]] = {}  # id -> (version, its rank)
        for (object_id, version), rank in ranks.items():
            if version >= newest.get(object_id, (version, rank))[0]:
                newest[object_id] = (version, rank)
        keys = sorted(keys, key=lambda key: max(ranks[key], newest[key[0]][1]))
    return dict(zip(keys, dates, strict=True))


def _level_rank(obj: Mapping[str, Any]) -> int:
    level = tlp_of(obj)
    return -1 if level is None else int(level)


def _date_added_values(last_date_added: int, count: int) -> list[int]:
    """``count`` increasing date_added values after ``last_date_added``, the last on a whole ms.

    Values grow in commit order (the caller holds the collection's writer
    lock), so a poller resuming from X-TAXII-Date-Added-Last (3.4.2) at full
    precision sees each object once.  Putting each commit's last value on a
    whole millisecond lets a client that keeps that header only to the
    millisecond (OpenCTI does) resume from exactly the same point once it is
    caught up, instead of re-reading the last millisecond's objects forever.
    """
    start = max(now_micros(), last_date_added + 1)
    dates = list(range(start, start + count))
    if dates:
        dates[-1] = -(-dates[-1] // _MILLISECOND) * _MILLISECOND
    return dates


def _taking_over(
    posted: dict[str, int], stored: dict[str, int], pick: Callable[[int, int], int]
) -> dict[str, int]:
    """The posted versions that become an object's latest (``pick=max``) or first
    (``min``) one, by id: the envelope's newest (oldest) version of each id, where
    no stored version is newer (older).

    An older version that arrives later (a sync peer catching up) takes neither
    marker from the newer version already stored.  A posted version that is
    stored already (a repeat) is the stored one, so it never takes a marker:
    the stored extreme equals it.
    """
    if not stored:
        return posted
    return {
        object_id: version
        for object_id, version in posted.items()
        if object_id not in stored or pick(version, stored[object_id]) != stored[object_id]
    }


def _demote(
    connection: Connection,
    collection_id: str,
    latest: dict[str, int],
    first: dict[str, int],
    stored: _StoredVersions,
) -> None:
    """Clear the markers of stored versions that a new version takes over."""
    marker = placeholder(connection)
    for column, taken in (("is_latest", latest), ("is_first", first)):
        rows = [(False, collection_id, oid) for oid in taken if oid in stored.newest]
        if rows:
            connection.exec_driver_sql(
                f"UPDATE objects SET {column} = {marker} "
                f"WHERE collection_id = {marker} AND object_id = {marker} AND {column}",
                rows,
            )


def _insert_rows(connection: Connection, rows: list[tuple[Any, ...]]) -> None:
    insert_rows(connection, "objects", _INSERT_COLUMNS, rows)
    connection.info[INSERTED_ROWS] = connection.info.get(INSERTED_ROWS, 0) + len(rows)


def _encodable(body: str) -> bool:
    # JSON admits "\ud800" escapes that decode to lone surrogates; neither store
    # can encode them as UTF-8, and the whole envelope would fail with a 500.
    try:
        body.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _lock_collection(connection: Connection, collection_id: str) -> int:
    """Take the per-collection writer lock and return the date_added high-water mark.

    On PostgreSQL, FOR UPDATE queues concurrent writers of one collection, so
    date_added values are handed out in commit order and the version markers
    of one object are moved by one writer at a time.
    """
    # Driver SQL: building the statement with SQLAlchemy cost more than running it.
    statement = (
        f"SELECT last_date_added FROM collections WHERE id = {placeholder(connection)}"
        f"{row_lock_clause(connection)}"
    )
    last: int = connection.exec_driver_sql(statement, (collection_id,)).scalar_one()
    return last


def _chunks(items: Sequence[_T], size: int = _IN_CHUNK) -> Iterable[Sequence[_T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def stored_versions_statement(
    connection: Connection, collection_id: str, object_ids: Sequence[str]
) -> tuple[str, tuple[Any, ...]]:
    """The statement (SQL text, parameters) a POST runs to find the stored versions
    of the posted ids (also for the benchmark's plans)."""
    wanted, params = in_values(connection, "object_id", object_ids)
    statement = (
        "SELECT object_id, version, date_added FROM objects "
        f"WHERE collection_id = {placeholder(connection)} AND {wanted}"
    )
    return statement, (collection_id, *params)


def _stored_versions(
    connection: Connection, collection_id: str, object_ids: Iterable[str]
) -> _StoredVersions:
    """The stored versions of ``object_ids``, found through (collection_id, object_id) only."""
    stored = _StoredVersions({}, {}, {})
    for chunk in _chunks(sorted(object_ids)):
        rows = fetch_all(connection, *stored_versions_statement(connection, collection_id, chunk))
        for object_id, version, date_added in rows:
            stored.date_added[(object_id, version)] = date_added
            stored.newest[object_id] = max(stored.newest.get(object_id, version), version)
            stored.oldest[object_id] = min(stored.oldest.get(object_id, version), version)
    return stored


def _stored_bodies(
    connection: Connection, collection_id: str, keys: Sequence[tuple[str, int]]
) -> dict[tuple[str, int], str]:
    """The stored bodies of (id, version) ``keys`` (re-posts, which are rare)."""
    wanted = set(keys)
    bodies: dict[tuple[str, int], str] = {}
    for chunk in _chunks(sorted({object_id for object_id, _ in keys})):
        result = connection.execute(
            select(objects_table.c.object_id, objects_table.c.version, objects_table.c.body).where(
                objects_table.c.collection_id == collection_id, objects_table.c.object_id.in_(chunk)
            )
        )
        for object_id, version, body in result:
            if (object_id, version) in wanted:
                bodies[(object_id, version)] = body
    return bodies


class _Filter:
    """The SQL WHERE clause of an ``ObjectQuery``, written as text with driver placeholders.

    The read path runs one query per request; building it as SQLAlchemy
    expressions cost more than executing it (statement construction and cache
    keys per call), so the few shapes TAXII needs are written out here once.
    Values always travel as parameters, never in the SQL text.
    """

    def __init__(self, connection: DriverConnection, query: ObjectQuery) -> None:
        self._marker = placeholder(connection)
        self.params: list[Any] = []
        self.clauses: list[str] = []
        self._add("o.collection_id = {}", [query.collection_id])
        if query.after is not None:
            self._add("o.date_added > {}", [query.after])
        for column, values in (
            ("o.object_id", query.ids),
            ("o.type", query.types),
            ("o.spec_version", query.spec_versions),
        ):
            if values:
                self._add(f"{column} IN ({{}})", list(values))
        if query.exclude_origin is not None:
            self._add("(o.origin IS NULL OR o.origin <> {})", [query.exclude_origin])
        self._versions(query.versions)

    def _add(self, template: str, values: list[Any]) -> None:
        self.clauses.append(template.format(", ".join([self._marker] * len(values))))
        self.params.extend(values)

    def _versions(self, versions: Sequence[str | int]) -> None:
        """match[version] (3.4.2): the items are ORed; "all" matches everything."""
        if "all" in versions:
            return
        alternatives = []
        # The markers are kept at insert and delete (see _taking_over).  The
        # bare column is the predicate of ix_objects_latest, so both engines
        # serve a "last" page as a range of it.
        if "last" in versions:
            alternatives.append("o.is_latest")
        if "first" in versions:
            alternatives.append("o.is_first")
        exact = [v for v in versions if isinstance(v, int)]
        if exact:
            markers = ", ".join([self._marker] * len(exact))
            # An object without created/modified has one version, which the API
            # labels by its date_added: that label must select it too.
            alternatives.append(
                f"o.version IN ({markers}) OR (o.version_text = '' AND o.date_added IN ({markers}))"
            )
            self.params.extend(exact + exact)
        self.clauses.append("(" + " OR ".join(alternatives or ["1 = 0"]) + ")")

    @property
    def sql(self) -> str:
        return " AND ".join(self.clauses)


_STORED_OBJECT_COLUMNS = (
    "o.object_id, o.type, o.version_text, o.date_added, o.body, o.origin, o.version"
)
_BODY_COLUMNS = "o.date_added, o.body"


def _page_statement(
    connection: DriverConnection, query: ObjectQuery, columns: str = _STORED_OBJECT_COLUMNS
) -> tuple[str, tuple[Any, ...]]:
    where = _Filter(connection, query)
    # With match[id] the rows are the versions of a few objects, found through
    # (collection_id, object_id) and sorted; "+" keeps SQLite from walking a
    # date_added index of the whole collection to avoid that small sort.
    order = "+o.date_added" if query.ids else "o.date_added"
    statement = (
        f"SELECT {columns} "
        f"FROM objects o WHERE {where.sql} ORDER BY {order} LIMIT {int(query.limit) + 1}"
    )
    return statement, tuple(where.params)


def page(connection: DriverConnection, query: ObjectQuery) -> tuple[list[StoredObject], bool]:
    """One page in ascending date_added order, and whether more rows follow."""
    rows = fetch_all(connection, *_page_statement(connection, query))
    more = len(rows) > query.limit
    return [StoredObject(*row) for row in rows[: query.limit]], more


@dataclass(frozen=True, slots=True)
class BodyPage:
    """A page as the objects endpoints serve it (TAXII 2.1 5.4, 5.6): the stored JSON
    texts in date_added order, and the date_added of the first and the last one
    (X-TAXII-Date-Added-First/-Last, and the position a ``next`` token resumes from)."""

    bodies: list[str]
    first_added: int | None  # None for an empty page
    last_added: int | None
    more: bool


def page_bodies(connection: DriverConnection, query: ObjectQuery) -> BodyPage:
    """``page`` reduced to what an envelope needs: two columns, no object per row.

    A page of 1,000 spent more time building a ``StoredObject`` per row and
    fetching four columns it did not serve than in SQLite finding the rows.
    """
    rows = fetch_all(connection, *_page_statement(connection, query, _BODY_COLUMNS))
    more = len(rows) > query.limit
    if more:
        del rows[query.limit :]
    if not rows:
        return BodyPage([], None, None, more)
    return BodyPage([body for _, body in rows], rows[0][0], rows[-1][0], more)


def explain_page(connection: Connection, query: ObjectQuery, analyze: bool = False) -> str:
    """The engine's plan of ``page(query)`` as text (benchmarks, README, tests)."""
    statement, params = _page_statement(connection, query)
    return explain(connection, statement, params, analyze)


def explain(
    connection: Connection, statement: str, params: tuple[Any, ...], analyze: bool = False
) -> str:
    """The plan of one statement with driver placeholders, as text."""
    if connection.dialect.name == "sqlite":
        rows = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", params)
        return "\n".join(row[-1] for row in rows)
    prefix = "EXPLAIN (ANALYZE, BUFFERS) " if analyze else "EXPLAIN "
    return "\n".join(row[0] for row in connection.exec_driver_sql(prefix + statement, params))


def matching_versions(connection: Connection, query: ObjectQuery) -> set[int]:
    """The versions (as ``objects.version``) that :func:`delete` would remove for ``query``."""
    where = _Filter(connection, query)
    return {
        version
        for (version,) in connection.exec_driver_sql(
            f"SELECT o.version FROM objects o WHERE {where.sql}", tuple(where.params)
        )
    }


def delete(connection: Connection, query: ObjectQuery) -> int:
    """Delete the versions matching ``query`` (one object, 5.7); return how many.

    The remaining versions of the objects touched get their markers back (the
    newest left is the latest one), under the collection's writer lock.  The
    release queue's decisions on the deleted versions go with them
    (``releases.forget``): other content posted later under the same version
    waits for a decision of its own.
    """
    from . import releases  # (which imports this module)

    _lock_collection(connection, query.collection_id)
    where = _Filter(connection, query)
    doomed = [
        (object_id, version)
        for object_id, version in connection.exec_driver_sql(
            f"SELECT o.object_id, o.version FROM objects o WHERE {where.sql}", tuple(where.params)
        )
    ]
    releases.forget(connection, query.collection_id, doomed)
    touched = sorted({object_id for object_id, _ in doomed})
    statement = f"DELETE FROM objects WHERE pk IN (SELECT o.pk FROM objects o WHERE {where.sql})"
    deleted = connection.exec_driver_sql(statement, tuple(where.params)).rowcount
    _restore_markers(connection, query.collection_id, touched)
    return deleted


def _restore_markers(connection: Connection, collection_id: str, object_ids: Sequence[str]) -> None:
    marker = placeholder(connection)
    assignments = ", ".join(f"{name} = ({sql})" for name, sql in MARKER_EXPRESSIONS.items())
    for chunk in _chunks(object_ids):
        connection.exec_driver_sql(
            f"UPDATE objects SET {assignments} WHERE collection_id = {marker} "
            f"AND object_id IN ({', '.join([marker] * len(chunk))})",
            (collection_id, *chunk),
        )


def latest(
    connection: Connection,
    collection_id: str,
    object_id: str,
    exclude_origin: str | None = None,
) -> dict[str, Any] | None:
    """The newest stored version of one object, decoded; None when absent.

    ``exclude_origin`` ignores versions that came from that peer.
    """
    statement = (
        select(objects_table.c.body)
        .where(
            objects_table.c.collection_id == collection_id, objects_table.c.object_id == object_id
        )
        .order_by(objects_table.c.version.desc())
        .limit(1)
    )
    if exclude_origin is not None:
        statement = statement.where(
            or_(objects_table.c.origin.is_(None), objects_table.c.origin != exclude_origin)
        )
    body = connection.execute(statement).scalar()
    return None if body is None else jsoncodec.loads(body)


def count(connection: Connection, collection_id: str) -> int:
    """Number of stored versions in a collection."""
    return connection.execute(
        select(func.count())
        .select_from(objects_table)
        .where(objects_table.c.collection_id == collection_id)
    ).scalar_one()


def allocate_date_added(connection: Connection, collection_id: str, count: int) -> list[int]:
    """``count`` new date_added values of the collection, as an insert would take them,
    under its writer lock (held until the caller commits)."""
    if count <= 0:
        return []
    dates = _date_added_values(_lock_collection(connection, collection_id), count)
    marker = placeholder(connection)
    connection.exec_driver_sql(
        f"UPDATE collections SET last_date_added = {marker} WHERE id = {marker}",
        (dates[-1], collection_id),
    )
    return dates


def redate(connection: Connection, collection_id: str, keys: Sequence[tuple[str, int]]) -> int:
    """Give the stored versions ``keys`` (object id, version) new date_added values, as if
    added now; return how many were stored.

    A release approval does this, so that pollers whose cursor passed the version
    while it waited (our push, the partner's pull: TAXII 2.1 section 3.4.2) reach it.
    """
    wanted = sorted(set(keys))
    marker = placeholder(connection)
    statement = (
        f"UPDATE objects SET date_added = {marker} WHERE collection_id = {marker} "
        f"AND object_id = {marker} AND version = {marker}"
    )
    moved = 0
    for (object_id, version), date_added in zip(
        wanted, allocate_date_added(connection, collection_id, len(wanted)), strict=True
    ):
        moved += connection.exec_driver_sql(
            statement, (date_added, collection_id, object_id, version)
        ).rowcount
    return moved
