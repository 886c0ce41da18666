"""Recalls: what was sent to a peer, withdrawals waiting to reach it, and what was
recalled here (migration 7).

TAXII 2.1 has no tombstones: a DELETE stays local, and a version that egress
now withholds leaves the peer with the previous one.  So when something a
peer received is withdrawn here, the node queues a *recall* for that peer (a
new, revoked version of the last version it received, carrying the recall
extension: ``node/data/recall-extension.json``), and the worker sends it.
The receiving node records what it purged or revoked on a recall, so that it
never passes the object on again.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    or_,
    select,
    text,
)

from node import jsoncodec
from node.recall import RecallMode, recall_version
from node.timestamps import now_micros, to_micros

from .audit import Action
from .engine import fetch_all, placeholder, select_in
from .objects import allocate_date_added
from .schema import BigId, audit_table, metadata, objects_table

# The audit actions of versions a peer received.
DELIVERED_ACTIONS = (Action.SENT.value, Action.SERVED.value)
RECALL_RULE = "recall"  # the rule of a recall's own "sent" record: not content received
_CONTAINERS = frozenset({"report", "grouping", "note", "opinion", "observed-data"})

recall_outbox = Table(
    "recall_outbox",
    metadata,
    Column("pk", BigId, primary_key=True, autoincrement=True),
    Column("peer", String(128), nullable=False),
    Column("collection_id", String(64), nullable=False),
    Column("object_id", String(300), nullable=False),
    Column("version_text", String(40), nullable=False),  # the recall version's modified
    Column("body", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    # A place in the collection's date_added order, taken when the recall is queued,
    # so that egress serves it to the peer's pull and our push where its cursor is.
    Column("date_added", BigInteger, nullable=False),
    UniqueConstraint("peer", "collection_id", "object_id", "version_text", name="uq_recall"),
)

recalled = Table(
    "recalled",
    metadata,
    Column("collection_id", String(64), nullable=False),
    Column("object_id", String(300), nullable=False),
    Column("origin", String(128), nullable=False),
    Column("action", String(16), nullable=False),  # a RecallMode: purge or revoke
    Column("at", BigInteger, nullable=False),
    PrimaryKeyConstraint("collection_id", "object_id"),
)

AUDIT_OBJECT_INDEX_DDL = (
    "CREATE INDEX IF NOT EXISTS ix_audit_object ON audit (object_id, peer, action)"
)


@dataclass(frozen=True)
class Outgoing:
    pk: int
    peer: str
    collection_id: str
    object_id: str
    version_text: str
    body: str
    reason: str
    created_at: int
    date_added: int


def create_index(connection: Connection) -> None:
    connection.execute(text(AUDIT_OBJECT_INDEX_DDL))


def last_delivered(
    connection: Connection, peer: str, collection_id: str, object_ids: Iterable[str]
) -> dict[str, str]:
    """The newest version (text) of each object the audit shows the peer received
    (recalls it was sent are not content it received)."""
    a = audit_table
    statement = select(a.c.object_id, a.c.version).where(
        a.c.peer == peer,
        a.c.collection_id == collection_id,
        a.c.action.in_(DELIVERED_ACTIONS),
        or_(a.c.rule.is_(None), a.c.rule != RECALL_RULE),
    )
    found: dict[str, str] = {}
    for row in select_in(connection, statement, a.c.object_id, object_ids):
        if not row.version:
            continue
        known = found.get(row.object_id)
        if known is None or to_micros(row.version) > to_micros(known):
            found[row.object_id] = row.version
    return found


def versions_delivered(
    connection: Connection, collection_id: str, object_id: str
) -> dict[str, set[int]]:
    """The versions (as ``objects.version``) of the object the audit shows each peer
    received (recalls it was sent are not content it received)."""
    a = audit_table
    statement = select(a.c.peer, a.c.version).where(
        a.c.object_id == object_id,
        a.c.collection_id == collection_id,
        a.c.action.in_(DELIVERED_ACTIONS),
        a.c.peer.is_not(None),
        or_(a.c.rule.is_(None), a.c.rule != RECALL_RULE),
    )
    found: dict[str, set[int]] = {}
    for peer, version in connection.execute(statement).all():
        if version:
            found.setdefault(peer, set()).add(to_micros(version))
    return found


def peers_delivered(connection: Connection, collection_id: str, object_id: str) -> set[str]:
    """The peers the audit shows received some version of the object."""
    a = audit_table
    statement = (
        select(a.c.peer)
        .where(
            a.c.object_id == object_id,
            a.c.collection_id == collection_id,
            a.c.action.in_(DELIVERED_ACTIONS),
            a.c.peer.is_not(None),
        )
        .distinct()
    )
    return set(connection.execute(statement).scalars())


def queue(
    connection: Connection,
    peer: str,
    collection_id: str,
    object_id: str,
    version_text: str,
    body: str,
    reason: str,
) -> bool:
    """Queue a recall for the peer; False when the object was recalled from it already."""
    existing = connection.execute(
        select(recall_outbox.c.pk).where(
            recall_outbox.c.peer == peer,
            recall_outbox.c.collection_id == collection_id,
            recall_outbox.c.object_id == object_id,
        )
    ).first()
    if existing is not None:
        return False
    [date_added] = allocate_date_added(connection, collection_id, 1)
    connection.execute(
        recall_outbox.insert().values(
            peer=peer,
            collection_id=collection_id,
            object_id=object_id,
            version_text=version_text,
            body=body,
            reason=reason,
            created_at=now_micros(),
            date_added=date_added,
        )
    )
    return True


def outgoing(
    connection: Connection,
    peer: str,
    collection_id: str,
    after: int | None = None,
    up_to: int | None = None,
    object_ids: Iterable[str] = (),
    types: Iterable[str] = (),
    limit: int | None = None,
) -> list[Outgoing]:
    """The peer's recalls with ``after < date_added <= up_to`` (the first ``limit``), in
    date_added order; of ``object_ids`` and of objects of ``types`` when given."""
    o = recall_outbox
    statement = (
        select(o)
        .where(o.c.peer == peer, o.c.collection_id == collection_id)
        .order_by(o.c.date_added)
    )
    if after is not None:
        statement = statement.where(o.c.date_added > after)
    if up_to is not None:
        statement = statement.where(o.c.date_added <= up_to)
    ids = sorted(set(object_ids))
    if ids:
        statement = statement.where(o.c.object_id.in_(ids))
    prefixes = sorted({f"{name}--" for name in types})
    if prefixes:
        statement = statement.where(
            or_(*(o.c.object_id.startswith(prefix, autoescape=True) for prefix in prefixes))
        )
    if limit is not None:
        statement = statement.limit(limit)
    return [Outgoing(**row._mapping) for row in connection.execute(statement)]


def any_queued(connection: Connection, peer: str, collection_id: str) -> bool:
    """Whether a recall of anything in the collection was ever queued for the peer."""
    m = placeholder(connection)
    statement = (
        f"SELECT 1 FROM {recall_outbox.name} WHERE peer = {m} AND collection_id = {m} LIMIT 1"
    )
    return bool(fetch_all(connection, statement, (peer, collection_id)))


def queued_ids(
    connection: Connection, peer: str, collection_id: str, object_ids: Iterable[str]
) -> set[str]:
    """Those of ``object_ids`` with a recall queued for the peer (it is served in their
    place: one recall per object and peer)."""
    o = recall_outbox
    statement = select(o.c.object_id).where(o.c.peer == peer, o.c.collection_id == collection_id)
    return {row.object_id for row in select_in(connection, statement, o.c.object_id, object_ids)}


def listed(connection: Connection, peer: str | None = None) -> list[Outgoing]:
    """Every queued recall (of one peer), oldest first."""
    statement = select(recall_outbox).order_by(recall_outbox.c.pk)
    if peer is not None:
        statement = statement.where(recall_outbox.c.peer == peer)
    return [Outgoing(**row._mapping) for row in connection.execute(statement)]


def record_recalled(
    connection: Connection, collection_id: str, object_id: str, origin: str, action: RecallMode
) -> None:
    """Remember that ``origin`` recalled the object here (so it is never passed on)."""
    connection.execute(
        recalled.delete().where(
            recalled.c.collection_id == collection_id, recalled.c.object_id == object_id
        )
    )
    connection.execute(
        recalled.insert().values(
            collection_id=collection_id,
            object_id=object_id,
            origin=origin,
            action=action.value,
            at=now_micros(),
        )
    )


def any_recalled(connection: Connection, collection_id: str) -> bool:
    """Whether anything in the collection was ever recalled here by its origin (asked
    by every egress call: SQL text, without building a statement each time)."""
    where = f"collection_id = {placeholder(connection)}"
    statement = f"SELECT 1 FROM {recalled.name} WHERE {where} LIMIT 1"
    return bool(fetch_all(connection, statement, (collection_id,)))


def recalled_ids(connection: Connection, collection_id: str, object_ids: Iterable[str]) -> set[str]:
    """Those of ``object_ids`` recalled here by their origin."""
    statement = select(recalled.c.object_id).where(recalled.c.collection_id == collection_id)
    rows = select_in(connection, statement, recalled.c.object_id, object_ids)
    return {row.object_id for row in rows}


def recall_for(
    connection: Connection,
    peer: str,
    collection_id: str,
    object_id: str,
    reason: str,
    redact: frozenset[str],
    modified: str | None = None,
) -> dict[str, Any] | None:
    """A recall of the last version of ``object_id`` the peer received, or None when it
    received none (or it is no longer stored).

    The recall repeats only what the peer already holds: the egress ``redact``
    properties (and their translations) are removed as egress removed them
    (``node.policy.redacted``), and a container's ``object_refs`` keep only objects
    the peer received, as when it was sent (a reference in any letter case names
    the object of that id in lower case).
    """
    from node.policy import redacted  # (the policy imports nothing of the store)

    held = last_delivered(connection, peer, collection_id, [object_id]).get(object_id)
    if held is None:
        return None
    t = objects_table
    body = connection.execute(
        select(t.c.body).where(
            t.c.collection_id == collection_id,
            t.c.object_id == object_id,
            t.c.version == to_micros(held),
        )
    ).scalar()
    if body is None:
        return None
    last, _removed = redacted(jsoncodec.loads(body), redact)  # (a fresh parse: ours to change)
    refs = last.get("object_refs")
    if last.get("type") in _CONTAINERS and isinstance(refs, list):
        known = last_delivered(
            connection, peer, collection_id, [r.lower() for r in refs if isinstance(r, str)]
        )
        last["object_refs"] = [ref for ref in refs if isinstance(ref, str) and ref.lower() in known]
        if not last["object_refs"]:
            return None
    return recall_version(last, reason, modified)
