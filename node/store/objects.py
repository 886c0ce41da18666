"""Object versions in collections: the hot paths of ingest and paging.

Bodies are stored as the JSON text they are served as, so a page of objects is
answered by joining stored strings, without decoding and re-encoding them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import Connection, func, or_, select, update

from node import jsoncodec
from node.timestamps import from_micros, is_timestamp, now_micros
from node.validation import object_problem, version_key

from .schema import collections, objects

_IN_CHUNK = 500
# version_text is a bounded column (PostgreSQL enforces it): a timestamp with
# more fractional digits than it holds is refused rather than failing the POST.
_MAX_VERSION_TEXT = objects.c.version_text.type.length


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


@dataclass(frozen=True)
class StoredObject:
    object_id: str
    type: str
    version_text: str
    date_added: int
    body: str
    origin: str | None


@dataclass
class AddOutcome:
    """What happened to each object of one POST, in status-resource form (4.3.1)."""

    successes: list[dict] = field(default_factory=list)
    failures: list[dict] = field(default_factory=list)
    stored: list[StoredObject] = field(default_factory=list)  # new versions only


def _version_text(obj: dict) -> str:
    for key in ("modified", "created"):
        if isinstance(obj.get(key), str):
            return obj[key]
    return ""


def _detail(obj: object, message: str) -> dict:
    detail: dict = {"id": "", "message": message}
    if isinstance(obj, dict):
        if isinstance(obj.get("id"), str):
            detail["id"] = obj["id"]
        version = _version_text(obj)
        if version and is_timestamp(version):
            detail["version"] = version
    return detail


def _valid_detail(obj: dict, message: str, date_added: int | None = None) -> dict:
    """``_detail`` for an object that passed validation (no re-checking on the hot path).

    Status details need a version (4.3.1): an SCO without created/modified is
    labelled by its date_added, as in manifests and version lists.
    """
    detail = {"id": obj["id"], "message": message}
    version = obj.get("modified") or obj.get("created")
    if version:
        detail["version"] = version
    elif date_added is not None:
        detail["version"] = from_micros(date_added)
    return detail


@dataclass(frozen=True, slots=True)
class _Candidate:
    obj: dict
    body: str  # the JSON text to store and serve
    version_text: str


@dataclass
class PreparedObjects:
    """The objects of one POST, validated and serialised before any lock is taken.

    Validation and serialisation are most of the CPU of an ingest; doing them
    outside the write transaction lets writers overlap that work, since the
    transaction (BEGIN IMMEDIATE on SQLite) admits one writer at a time.
    """

    candidates: dict[tuple[str, int], _Candidate] = field(default_factory=dict)
    outcome: AddOutcome = field(default_factory=AddOutcome)


def prepare(items: Sequence[object], texts: Sequence[str] | None = None) -> PreparedObjects:
    """Validate and serialise ``items``; invalid ones become failures.

    ``texts``, when given, are the items already serialised with
    ``jsoncodec.dumps`` (the API serialises them once to check the body), in
    the same order.
    """
    prepared = PreparedObjects()
    outcome = prepared.outcome
    for index, item in enumerate(items):
        problem = object_problem(item) or _storage_problem(item)
        if problem is not None:
            outcome.failures.append(_detail(item, problem))
            continue
        key = (item["id"], version_key(item))
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
        prepared.candidates[key] = _Candidate(item, body, _version_text(item))
    return prepared


def store_prepared(
    connection: Connection,
    collection_id: str,
    prepared: PreparedObjects,
    origin: str | None = None,
) -> AddOutcome:
    """Store prepared objects inside the caller's write transaction.

    Re-posting a version already stored is a success ("already present"); a
    different object under an existing (id, version) is a failure, because
    STIX forbids it and keeping either silently would hide a producer's error.
    """
    if prepared.candidates:
        _store_new_versions(connection, collection_id, prepared, origin)
    return prepared.outcome


def add_objects(
    connection: Connection, collection_id: str, items: Sequence[object], origin: str | None = None
) -> AddOutcome:
    """Validate and store ``items`` inside the caller's write transaction.

    Invalid objects become failures and are never stored.
    """
    return store_prepared(connection, collection_id, prepare(items), origin)


def _storage_problem(item: dict) -> str | None:
    """Why a valid object cannot be stored as it is, or None."""
    version_text = _version_text(item)
    if len(version_text) > _MAX_VERSION_TEXT:
        return (
            f"the version {version_text[:40]!r}... has more fractional digits than this "
            f"node stores (at most {_MAX_VERSION_TEXT - 21})"
        )
    return None


def _same(stored: dict, item: dict) -> bool:
    try:
        return stored == item
    except RecursionError:  # orjson parses 1024 levels; == recurses in C up to ~1000
        return False


def _report_repeat(
    outcome: AddOutcome, stored: dict, item: dict, date_added: int | None = None
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
    "date_added", "body", "origin",
)  # fmt: skip


def _store_new_versions(
    connection: Connection,
    collection_id: str,
    prepared: PreparedObjects,
    origin: str | None,
) -> None:
    outcome = prepared.outcome
    last_date_added = _lock_collection(connection, collection_id)
    existing = _existing_bodies(connection, collection_id, {oid for oid, _ in prepared.candidates})
    rows = []
    date_added = max(now_micros(), last_date_added + 1)
    for key, candidate in prepared.candidates.items():
        obj = candidate.obj
        if key in existing:
            body, stored_date_added = existing[key]
            _report_repeat(outcome, jsoncodec.loads(body), obj, stored_date_added)
            continue
        rows.append(
            (collection_id, key[0], obj["type"], obj.get("spec_version", "2.1"), key[1],
             candidate.version_text, date_added, candidate.body, origin)
        )  # fmt: skip
        outcome.stored.append(
            StoredObject(
                key[0], obj["type"], candidate.version_text, date_added, candidate.body, origin
            )
        )
        outcome.successes.append(_valid_detail(obj, "added", date_added))
        date_added += 1
    if rows:
        _insert_rows(connection, rows)
        connection.execute(
            update(collections)
            .where(collections.c.id == collection_id)
            .values(last_date_added=date_added - 1)
        )


def _insert_rows(connection: Connection, rows: list[tuple]) -> None:
    """executemany straight to the driver: SQLAlchemy's per-row parameter
    processing costs more than the insert itself on this path."""
    marker = "?" if connection.dialect.paramstyle == "qmark" else "%s"
    statement = (
        f"INSERT INTO objects ({', '.join(_INSERT_COLUMNS)}) "
        f"VALUES ({', '.join([marker] * len(_INSERT_COLUMNS))})"
    )
    connection.exec_driver_sql(statement, rows)


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
    date_added values are handed out in commit order.  SQLite has already
    serialised writers with BEGIN IMMEDIATE and ignores FOR UPDATE.
    """
    statement = select(collections.c.last_date_added).where(collections.c.id == collection_id)
    if connection.dialect.name != "sqlite":
        statement = statement.with_for_update()
    return connection.execute(statement).scalar_one()


def _existing_bodies(
    connection: Connection, collection_id: str, object_ids: Iterable[str]
) -> dict[tuple[str, int], tuple[str, int]]:
    """(body, date_added) of the stored versions of ``object_ids``, by (id, version)."""
    found: dict[tuple[str, int], tuple[str, int]] = {}
    ids = list(object_ids)
    for start in range(0, len(ids), _IN_CHUNK):
        chunk = ids[start : start + _IN_CHUNK]
        result = connection.execute(
            select(
                objects.c.object_id, objects.c.version, objects.c.body, objects.c.date_added
            ).where(objects.c.collection_id == collection_id, objects.c.object_id.in_(chunk))
        )
        for object_id, version, body, date_added in result:
            found[(object_id, version)] = (body, date_added)
    return found


class _Filter:
    """The SQL WHERE clause of an ``ObjectQuery``, written as text with driver placeholders.

    The read path runs one query per request; building it as SQLAlchemy
    expressions cost more than executing it (statement construction and cache
    keys per call), so the few shapes TAXII needs are written out here once.
    Values always travel as parameters, never in the SQL text.
    """

    def __init__(self, connection: Connection, query: ObjectQuery) -> None:
        self._marker = "?" if connection.dialect.paramstyle == "qmark" else "%s"
        self.params: list = []
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

    def _add(self, template: str, values: list) -> None:
        self.clauses.append(template.format(", ".join([self._marker] * len(values))))
        self.params.extend(values)

    def _versions(self, versions: Sequence[str | int]) -> None:
        """match[version] (3.4.2): the items are ORed; "all" matches everything."""
        if "all" in versions:
            return
        alternatives = []
        same_object = "s.collection_id = o.collection_id AND s.object_id = o.object_id"
        if "last" in versions:
            alternatives.append(f"o.version = (SELECT MAX(s.version) FROM objects s "
                                f"WHERE {same_object})")  # fmt: skip
        if "first" in versions:
            alternatives.append(f"o.version = (SELECT MIN(s.version) FROM objects s "
                                f"WHERE {same_object})")  # fmt: skip
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


def page(connection: Connection, query: ObjectQuery) -> tuple[list[StoredObject], bool]:
    """One page in ascending date_added order, and whether more rows follow."""
    where = _Filter(connection, query)
    statement = (
        "SELECT o.object_id, o.type, o.version_text, o.date_added, o.body, o.origin "
        f"FROM objects o WHERE {where.sql} ORDER BY o.date_added LIMIT {int(query.limit) + 1}"
    )
    result = connection.exec_driver_sql(statement, tuple(where.params))
    rows = [StoredObject(*row) for row in result]
    return rows[: query.limit], len(rows) > query.limit


def delete(connection: Connection, query: ObjectQuery) -> int:
    """Delete the versions matching ``query`` (one object, 5.7); return how many."""
    where = _Filter(connection, query)
    statement = f"DELETE FROM objects WHERE pk IN (SELECT o.pk FROM objects o WHERE {where.sql})"
    return connection.exec_driver_sql(statement, tuple(where.params)).rowcount


def latest(
    connection: Connection,
    collection_id: str,
    object_id: str,
    exclude_origin: str | None = None,
) -> dict | None:
    """The newest stored version of one object, decoded; None when absent.

    ``exclude_origin`` ignores versions that came from that peer.
    """
    statement = (
        select(objects.c.body)
        .where(objects.c.collection_id == collection_id, objects.c.object_id == object_id)
        .order_by(objects.c.version.desc())
        .limit(1)
    )
    if exclude_origin is not None:
        statement = statement.where(
            or_(objects.c.origin.is_(None), objects.c.origin != exclude_origin)
        )
    body = connection.execute(statement).scalar()
    return None if body is None else jsoncodec.loads(body)


def count(connection: Connection, collection_id: str) -> int:
    """Number of stored versions in a collection."""
    return connection.execute(
        select(func.count()).select_from(objects).where(objects.c.collection_id == collection_id)
    ).scalar_one()
