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
from typing import Unpack

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    select,
    update,
)

from node.timestamps import now_micros

from .heldversions import (
    Criteria,
    HeldRow,
    HeldVersion,
    held_columns,
    hold_new,
    narrowed,
    rows_of_keys,
)
from .objects import redate
from .schema import metadata, objects_table


class ReleaseState(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"


release_queue = Table(
    "release_queue",
    metadata,
    *held_columns("uq_release_version"),
    Column("state", String(16), nullable=False),
    Column("queued_at", BigInteger, nullable=False),
    Column("decided_at", BigInteger),
    Column("decided_by", String(128)),
    Column("reason", Text),
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


# A version that egress let through for a peer, waiting for (or past) its release.
Queued = HeldVersion


@dataclass(frozen=True)
class Entry(HeldRow):
    """One row of the queue, with the stored body of its version (None once deleted)."""

    state: ReleaseState
    queued_at: int
    decided_at: int | None
    decided_by: str | None
    reason: str | None
    body: str | None


def states(
    connection: Connection, peer: str, collection_id: str, keys: Iterable[tuple[str, int]]
) -> dict[tuple[str, int], ReleaseState]:
    """The release state of each (object id, version) queued for the peer."""
    q = release_queue
    statement = select(q.c.object_id, q.c.version, q.c.state)
    rows = rows_of_keys(connection, statement, q, peer, collection_id, keys)
    return {(row.object_id, row.version): ReleaseState(row.state) for row in rows}


def enqueue(
    connection: Connection, peer: str, collection_id: str, versions: Sequence[Queued]
) -> int:
    """Queue the versions not queued yet as pending; return how many were new."""
    pending = {"state": ReleaseState.PENDING.value, "queued_at": now_micros()}
    return hold_new(
        connection, release_queue, peer, collection_id, versions, [pending] * len(versions)
    )


def entries(
    connection: Connection,
    *,
    state: ReleaseState | None = ReleaseState.PENDING,
    **criteria: Unpack[Criteria],
) -> list[Entry]:
    """Queue rows, oldest first, each with the stored body of its version."""
    q, o = release_queue, objects_table
    joined = select(*q.c, o.c.body).select_from(
        q.outerjoin(
            o,
            (o.c.collection_id == q.c.collection_id)
            & (o.c.object_id == q.c.object_id)
            & (o.c.version == q.c.version),
        )
    )
    statement = narrowed(joined, q, **criteria)
    if state is not None:
        statement = statement.where(q.c.state == state.value)
    return [
        Entry(**{**row._mapping, "state": ReleaseState(row.state)})
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


def forget(connection: Connection, collection_id: str, keys: Sequence[tuple[str, int]]) -> None:
    """Drop every peer's queue rows of these stored versions (object id, version), as they
    are deleted (``objects.delete``).

    A decision belongs to the content a releaser saw: other content stored later under
    the same id and version (deleted, then posted again) must wait for a decision of
    its own, or an approval would let it leave unseen (and a releaser could release
    its own content under a version someone else published).  The audit keeps the
    decisions.
    """
    q = release_queue
    for object_id in sorted({object_id for object_id, _ in keys}):
        versions = sorted(version for oid, version in keys if oid == object_id)
        connection.execute(q.delete().where(
            q.c.collection_id == collection_id, q.c.object_id == object_id,
            q.c.version.in_(versions),
        ))  # fmt: skip


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
