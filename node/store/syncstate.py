"""Per peer, mapping and direction: cursors, counters, last success and error.

Cursors are committed in the same transaction as the effect they stand for
(objects stored for a pull; audit records for a push), so a worker killed at
any instant resumes exactly where its last commit left it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import Any

from sqlalchemy import Connection, Row, select, tuple_, update

from node.timestamps import now_micros

from .audit import Direction
from .engine import select_in
from .schema import dead_letters, peer_dependencies, sync_state


@dataclass
class SyncState:
    peer: str
    mapping: str
    direction: Direction  # PUSH or PULL: which way our worker moves objects
    cursor: int = 0  # push: the last local date_added handled
    remote_cursor: str | None = None  # pull: the peer's X-TAXII-Date-Added-Last
    last_success: int | None = None
    last_attempt: int | None = None
    last_error: str | None = None
    sent: int = 0
    received: int = 0
    withheld: int = 0
    dead_lettered: int = 0
    already_present: int = 0  # versions the receiving side held already
    pull_resume: str | None = None  # pull: where a round that stopped early goes on
    cursor_moves: int = 0  # times an operator moved the cursor (sync set-cursor)


def load(connection: Connection, peer: str, mapping: str, direction: Direction) -> SyncState:
    row = connection.execute(
        select(sync_state).where(
            sync_state.c.peer == peer,
            sync_state.c.mapping == mapping,
            sync_state.c.direction == direction,
        )
    ).first()
    if row is None:
        return SyncState(peer=peer, mapping=mapping, direction=direction)
    return _state(row)


def _state(row: Row[Any]) -> SyncState:
    values = {f.name: getattr(row, f.name) for f in fields(SyncState)}
    return SyncState(**{**values, "direction": Direction(row.direction)})


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
    return [_state(row) for row in rows]


def add_dead_letters(
    connection: Connection,
    peer: str,
    mapping: str,
    direction: Direction,
    failures: list[dict[str, Any]],
) -> None:
    """Record versions the peer (or this node, on pull) refused, with the answer given.

    A version already dead-lettered for the same peer, mapping and direction is
    the same letter refused again: its answer, last attempt and attempt count
    are updated.  A failure's ``attempts`` (default 1) says how many tries it took.
    """
    at = now_micros()
    for failure in failures:
        key = {
            "peer": peer,
            "mapping": mapping,
            "direction": direction,
            "object_id": str(failure.get("id", ""))[:300],
            "version": str(failure.get("version") or "")[:40] or None,
        }
        answer = str(failure.get("message", "no reason given"))
        attempts = int(failure.get("attempts", 1))
        existing = _same_letter(connection, key)
        if existing is None:
            row = {**key, "at": at, "last_at": at, "reason": answer, "attempts": attempts}
            connection.execute(dead_letters.insert().values(**row))
        else:
            connection.execute(
                update(dead_letters)
                .where(dead_letters.c.pk == existing)
                .values(last_at=at, reason=answer, attempts=dead_letters.c.attempts + attempts)
            )


def _same_letter(connection: Connection, key: dict[str, Any]) -> int | None:
    version = dead_letters.c.version
    statement = select(dead_letters.c.pk).where(
        dead_letters.c.peer == key["peer"],
        dead_letters.c.mapping == key["mapping"],
        dead_letters.c.direction == key["direction"],
        dead_letters.c.object_id == key["object_id"],
        version.is_(None) if key["version"] is None else version == key["version"],
    )
    return connection.execute(statement.limit(1)).scalar()


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


# -- dependencies sent once per peer ------------------------------------------------


DependencyKey = tuple[str, str]  # (object id, version as sent: modified, created or "")


def acknowledged_dependencies(
    connection: Connection, peer: str, mapping: str, keys: Iterable[DependencyKey]
) -> set[DependencyKey]:
    """Which of ``keys`` the peer has acknowledged for this mapping already."""
    table = peer_dependencies
    statement = select(table.c.object_id, table.c.version).where(
        table.c.peer == peer, table.c.mapping == mapping
    )
    key = tuple_(table.c.object_id, table.c.version)
    return {(row.object_id, row.version) for row in select_in(connection, statement, key, keys)}


def record_dependencies(
    connection: Connection, peer: str, mapping: str, keys: Iterable[DependencyKey]
) -> None:
    """Remember dependencies the peer acknowledged, in the transaction of the push's audit."""
    keys = list(keys)
    new = set(keys) - acknowledged_dependencies(connection, peer, mapping, keys)
    at = now_micros()
    rows = [{"peer": peer, "mapping": mapping, "object_id": object_id, "version": version,
             "at": at} for object_id, version in sorted(new)]  # fmt: skip
    if rows:
        connection.execute(peer_dependencies.insert(), rows)


def forget_dependencies(connection: Connection, peer: str, mapping: str | None = None) -> int:
    """Send every dependency again (the peer lost its data, say); returns how many."""
    statement = peer_dependencies.delete().where(peer_dependencies.c.peer == peer)
    if mapping is not None:
        statement = statement.where(peer_dependencies.c.mapping == mapping)
    return connection.execute(statement).rowcount
