"""Object versions in collections: the hot paths of ingest and paging.

Bodies are stored as the JSON text they are served as, so a page of objects is
answered by joining stored strings, without decoding and re-encoding them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import Connection, and_, false, func, or_, select, update
from sqlalchemy.sql.elements import ColumnElement

from node import jsoncodec
from node.timestamps import from_micros, is_timestamp, now_micros
from node.validation import object_problem, version_key

from .schema import collections, objects

_IN_CHUNK = 500
# Built once: a new alias per query would defeat SQLAlchemy's statement cache.
_SIBLING = objects.alias("sibling")
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


def prepare(items: Sequence[object]) -> PreparedObjects:
    """Validate and serialise ``items``; invalid ones become failures."""
    prepared = PreparedObjects()
    outcome = prepared.outcome
    for item in items:
        problem = object_problem(item) or _storage_problem(item)
        if problem is not None:
            outcome.failures.append(_detail(item, problem))
            continue
        key = (item["id"], version_key(item))
        if key in prepared.candidates:
            _report_repeat(outcome, prepared.candidates[key].obj, item)
            continue
        try:
            body = jsoncodec.dumps(item)
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


def _version_predicate(versions: Sequence[str | int]) -> ColumnElement[bool] | None:
    """match[version] (3.4.2): None when every version matches."""
    if "all" in versions:
        return None
    clauses: list[ColumnElement[bool]] = []
    sibling = _SIBLING
    same_object = and_(
        sibling.c.collection_id == objects.c.collection_id,
        sibling.c.object_id == objects.c.object_id,
    )
    if "last" in versions:
        latest = select(func.max(sibling.c.version)).where(same_object).scalar_subquery()
        clauses.append(objects.c.version == latest)
    if "first" in versions:
        earliest = select(func.min(sibling.c.version)).where(same_object).scalar_subquery()
        clauses.append(objects.c.version == earliest)
    exact = [v for v in versions if isinstance(v, int)]
    if exact:
        clauses.append(objects.c.version.in_(exact))
        # An object without created/modified has one version, which the API
        # labels by its date_added: that label must select it too.
        clauses.append(and_(objects.c.version_text == "", objects.c.date_added.in_(exact)))
    return or_(*clauses) if clauses else false()


def _where(query: ObjectQuery) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = [objects.c.collection_id == query.collection_id]
    if query.after is not None:
        where.append(objects.c.date_added > query.after)
    if query.ids:
        where.append(objects.c.object_id.in_(query.ids))
    if query.types:
        where.append(objects.c.type.in_(query.types))
    if query.spec_versions:
        where.append(objects.c.spec_version.in_(query.spec_versions))
    if query.exclude_origin is not None:
        where.append(or_(objects.c.origin.is_(None), objects.c.origin != query.exclude_origin))
    predicate = _version_predicate(query.versions)
    if predicate is not None:
        where.append(predicate)
    return where


def page(connection: Connection, query: ObjectQuery) -> tuple[list[StoredObject], bool]:
    """One page in ascending date_added order, and whether more rows follow."""
    statement = (
        select(
            objects.c.object_id,
            objects.c.type,
            objects.c.version_text,
            objects.c.date_added,
            objects.c.body,
            objects.c.origin,
        )
        .where(*_where(query))
        .order_by(objects.c.date_added)
        .limit(query.limit + 1)
    )
    rows = [StoredObject(*row) for row in connection.execute(statement)]
    return rows[: query.limit], len(rows) > query.limit


def delete(connection: Connection, query: ObjectQuery) -> int:
    """Delete the versions matching ``query`` (one object, 5.7); return how many."""
    matching = select(objects.c.pk).where(*_where(query)).scalar_subquery()
    result = connection.execute(objects.delete().where(objects.c.pk.in_(matching)))
    return result.rowcount


def latest(connection: Connection, collection_id: str, object_id: str) -> dict | None:
    """The newest stored version of one object, decoded; None when absent."""
    body = connection.execute(
        select(objects.c.body)
        .where(objects.c.collection_id == collection_id, objects.c.object_id == object_id)
        .order_by(objects.c.version.desc())
        .limit(1)
    ).scalar()
    return None if body is None else jsoncodec.loads(body)


def count(connection: Connection, collection_id: str) -> int:
    """Number of stored versions in a collection."""
    return connection.execute(
        select(func.count()).select_from(objects).where(objects.c.collection_id == collection_id)
    ).scalar_one()
