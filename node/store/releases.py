"""The release queue: versions waiting for a releaser before they leave for a peer
(mapping egress ``release = "approval"``, migration 7).

A version that passes a peer's egress policy on such a mapping is queued here
as ``pending``; a releaser approves or rejects it (four eyes: not the account
that published it).  Egress lets a version through only once it is
``approved``.  Approval re-dates the version (a new ``date_added`` from the
collection's clock, under its writer lock): a version approved after our
push cursor or the partner's pull cursor passed it is then "added" at its
release, so both reach it (TAXII 2.1 section 3.4.2: pollers resume from
``date_added``).  Approval is per version: a new version of the object waits
again.

Each mapping's queue upkeep resumes from a cursor (``release_cursors``,
migration 10): the ``date_added`` up to which egress already decided the
collection for that peer under the mapping's current egress rules (see
``node.operations.releases.refresh``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    select,
    tuple_,
    update,
)

from node.timestamps import now_micros

from .objects import redate
from .schema import BigId, metadata, objects_table

_IN_CHUNK = 300


class ReleaseState(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"


release_queue = Table(
    "release_queue",
    metadata,
    Column("pk", BigId, primary_key=True, autoincrement=True),
    Column("peer", String(128), nullable=False),
    Column("collection_id", String(64), nullable=False),
    Column("object_id", String(300), nullable=False),
    Column("type", String(250), nullable=False),
    Column("version", BigInteger, nullable=False),  # as objects.version
    Column("version_text", String(40), nullable=False),
    Column("state", String(16), nullable=False),
    Column("queued_at", BigInteger, nullable=False),
    Column("decided_at", BigInteger),
    Column("decided_by", String(128)),
    Column("reason", Text),
    UniqueConstraint("peer", "collection_id", "object_id", "version", name="uq_release_version"),
)


release_cursors = Table(
    "release_cursors",
    metadata,
    Column("peer", String(128), nullable=False),
    Column("collection_id", String(64), nullable=False),
    # The mapping's egress rules the scan decided under (a digest): other rules
    # decide every version again, so the cursor does not hold for them.
    Column("rules", String(64), nullable=False),
    Column("after", BigInteger, nullable=False),  # date_added decided up to
    PrimaryKeyConstraint("peer", "collection_id"),
)


@dataclass(frozen=True, slots=True)
class Queued:
    """A version that egress let through for a peer, waiting for (or past) its release."""

    object_id: str
    type: str
    version: int
    version_text: str

    @property
    def key(self) -> tuple[str, int]:
        return (self.object_id, self.version)


@dataclass(frozen=True)
class Entry:
    """One row of the queue, with the stored body of its version (None once deleted)."""

    pk: int
    peer: str
    collection_id: str
    object_id: str
    type: str
    version: int
    version_text: str
    state: ReleaseState
    queued_at: int
    decided_at: int | None
    decided_by: str | None
    reason: str | None
    body: str | None

    @property
    def key(self) -> tuple[str, int]:
        return (self.object_id, self.version)


def states(
    connection: Connection, peer: str, collection_id: str, keys: Iterable[tuple[str, int]]
) -> dict[tuple[str, int], ReleaseState]:
    """The release state of each (object id, version) queued for the peer."""
    wanted = sorted(set(keys))
    found: dict[tuple[str, int], ReleaseState] = {}
    for start in range(0, len(wanted), _IN_CHUNK):
        chunk = wanted[start : start + _IN_CHUNK]
        statement = select(
            release_queue.c.object_id, release_queue.c.version, release_queue.c.state
        ).where(
            release_queue.c.peer == peer,
            release_queue.c.collection_id == collection_id,
            tuple_(release_queue.c.object_id, release_queue.c.version).in_(chunk),
        )
        for object_id, version, state in connection.execute(statement):
            found[(object_id, version)] = ReleaseState(state)
    return found


def enqueue(
    connection: Connection, peer: str, collection_id: str, versions: Sequence[Queued]
) -> int:
    """Queue the versions not queued yet as pending; return how many were new."""
    known = states(connection, peer, collection_id, (v.key for v in versions))
    now = now_micros()
    rows, seen = [], set(known)
    for version in versions:
        if version.key in seen:
            continue
        seen.add(version.key)
        rows.append(
            {
                "peer": peer,
                "collection_id": collection_id,
                "object_id": version.object_id,
                "type": version.type,
                "version": version.version,
                "version_text": version.version_text,
                "state": ReleaseState.PENDING.value,
                "queued_at": now,
            }
        )
    if rows:
        connection.execute(release_queue.insert(), rows)
    return len(rows)


def entries(
    connection: Connection,
    *,
    peer: str | None = None,
    collection_id: str | None = None,
    state: ReleaseState | None = ReleaseState.PENDING,
    object_ids: Iterable[str] | None = None,
    pks: Iterable[int] | None = None,
) -> list[Entry]:
    """Queue rows, oldest first, each with the stored body of its version."""
    q, o = release_queue, objects_table
    statement = (
        select(*q.c, o.c.body)
        .select_from(
            q.outerjoin(
                o,
                (o.c.collection_id == q.c.collection_id)
                & (o.c.object_id == q.c.object_id)
                & (o.c.version == q.c.version),
            )
        )
        .order_by(q.c.pk)
    )
    if peer is not None:
        statement = statement.where(q.c.peer == peer)
    if collection_id is not None:
        statement = statement.where(q.c.collection_id == collection_id)
    if state is not None:
        statement = statement.where(q.c.state == state.value)
    if object_ids is not None:
        statement = statement.where(q.c.object_id.in_(sorted(set(object_ids))))
    if pks is not None:
        statement = statement.where(q.c.pk.in_(sorted(set(pks))))
    return [
        Entry(
            pk=row.pk,
            peer=row.peer,
            collection_id=row.collection_id,
            object_id=row.object_id,
            type=row.type,
            version=row.version,
            version_text=row.version_text,
            state=ReleaseState(row.state),
            queued_at=row.queued_at,
            decided_at=row.decided_at,
            decided_by=row.decided_by,
            reason=row.reason,
            body=row.body,
        )
        for row in connection.execute(statement)
    ]


def decide(
    connection: Connection,
    chosen: Sequence[Entry],
    state: ReleaseState,
    *,
    actor: str,
    reason: str | None,
) -> None:
    """Mark ``chosen`` approved or rejected; approved versions are re-dated (see above)."""
    if not chosen:
        return
    now = now_micros()
    connection.execute(
        update(release_queue)
        .where(release_queue.c.pk.in_([entry.pk for entry in chosen]))
        .values(state=state.value, decided_at=now, decided_by=actor, reason=reason)
    )
    if state is ReleaseState.APPROVED:
        by_collection: dict[str, list[tuple[str, int]]] = {}
        for entry in chosen:
            by_collection.setdefault(entry.collection_id, []).append(entry.key)
        for collection_id, keys in by_collection.items():
            redate(connection, collection_id, keys)


def cursor(connection: Connection, peer: str, collection_id: str, rules: str) -> int | None:
    """Where the peer's queue upkeep resumes: the ``date_added`` decided up to under
    ``rules`` (None: never decided under them, so from the start)."""
    c = release_cursors
    row = connection.execute(
        select(c.c.rules, c.c.after).where(c.c.peer == peer, c.c.collection_id == collection_id)
    ).first()
    if row is None or row.rules != rules:
        return None
    after: int = row.after
    return after


def save_cursor(
    connection: Connection, peer: str, collection_id: str, rules: str, after: int
) -> None:
    c = release_cursors
    connection.execute(c.delete().where(c.c.peer == peer, c.c.collection_id == collection_id))
    connection.execute(
        c.insert().values(peer=peer, collection_id=collection_id, rules=rules, after=after)
    )
