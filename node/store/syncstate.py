"""Per peer, mapping and direction: cursors, counters, last success and error.

Cursors are committed in the same transaction as the effect they stand for
(objects stored for a pull; audit records for a push), so a worker killed at
any instant resumes exactly where its last commit left it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from sqlalchemy import Connection, select, update

from node.timestamps import now_micros

from .schema import dead_letters, sync_state


@dataclass
class SyncState:
    peer: str
    mapping: str
    direction: str  # push or pull
    cursor: int = 0  # push: the last local date_added handled
    remote_cursor: str | None = None  # pull: the peer's X-TAXII-Date-Added-Last
    last_success: int | None = None
    last_attempt: int | None = None
    last_error: str | None = None
    sent: int = 0
    received: int = 0
    withheld: int = 0
    dead_lettered: int = 0


def load(connection: Connection, peer: str, mapping: str, direction: str) -> SyncState:
    row = connection.execute(
        select(sync_state).where(
            sync_state.c.peer == peer,
            sync_state.c.mapping == mapping,
            sync_state.c.direction == direction,
        )
    ).first()
    if row is None:
        return SyncState(peer=peer, mapping=mapping, direction=direction)
    return SyncState(**{f.name: getattr(row, f.name) for f in fields(SyncState)})


def save(connection: Connection, state: SyncState) -> None:
    values = {f.name: getattr(state, f.name) for f in fields(SyncState)}
    key = (
        (sync_state.c.peer == state.peer)
        & (sync_state.c.mapping == state.mapping)
        & (sync_state.c.direction == state.direction)
    )
    if connection.execute(update(sync_state).where(key).values(**values)).rowcount == 0:
        connection.execute(sync_state.insert().values(**values))


def all_states(connection: Connection) -> list[SyncState]:
    rows = connection.execute(select(sync_state).order_by(sync_state.c.peer, sync_state.c.mapping))
    return [SyncState(**{f.name: getattr(row, f.name) for f in fields(SyncState)}) for row in rows]


def add_dead_letters(
    connection: Connection, peer: str, mapping: str, direction: str, failures: list[dict[str, Any]]
) -> None:
    """Objects the peer (or this node, on pull) refused, with the reason given."""
    at = now_micros()
    rows = [
        {
            "at": at,
            "peer": peer,
            "mapping": mapping,
            "direction": direction,
            "object_id": str(failure.get("id", ""))[:300],
            "version": str(failure.get("version", ""))[:40] or None,
            "reason": str(failure.get("message", "no reason given")),
        }
        for failure in failures
    ]
    if rows:
        connection.execute(dead_letters.insert(), rows)


def list_dead_letters(
    connection: Connection, peer: str | None = None, mapping: str | None = None
) -> list[dict[str, Any]]:
    statement = select(dead_letters).order_by(dead_letters.c.pk)
    if peer is not None:
        statement = statement.where(dead_letters.c.peer == peer)
    if mapping is not None:
        statement = statement.where(dead_letters.c.mapping == mapping)
    return [dict(row._mapping) for row in connection.execute(statement)]


def dead_letter(connection: Connection, pk: int) -> dict[str, Any] | None:
    row = connection.execute(select(dead_letters).where(dead_letters.c.pk == pk)).first()
    return dict(row._mapping) if row is not None else None


def remove_dead_letter(connection: Connection, pk: int) -> bool:
    return connection.execute(dead_letters.delete().where(dead_letters.c.pk == pk)).rowcount > 0
