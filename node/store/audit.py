"""The audit trail: every sharing decision and every local deletion, in the store."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Connection, select

from node.timestamps import now_micros

from .schema import audit


@dataclass(frozen=True, slots=True)
class AuditRecord:
    action: str  # sent, received, withheld, refused, dead-letter, deleted
    direction: str  # push, pull, serve, local
    object_id: str | None = None
    version: str | None = None
    peer: str | None = None
    collection_id: str | None = None
    rule: str | None = None
    detail: str | None = None


def record(connection: Connection, records: Iterable[AuditRecord], at: int | None = None) -> None:
    """Append records in the caller's transaction, so a decision and its effect commit together."""
    at = now_micros() if at is None else at
    rows = [
        {
            "at": at,
            "action": r.action,
            "direction": r.direction,
            "object_id": r.object_id,
            "version": r.version,
            "peer": r.peer,
            "collection_id": r.collection_id,
            "rule": r.rule,
            "detail": r.detail,
        }
        for r in records
    ]
    if rows:
        connection.execute(audit.insert(), rows)


def entries(
    connection: Connection,
    *,
    peer: str | None = None,
    since: int | None = None,
    limit: int = 1000,
) -> list[dict]:
    """Audit rows, oldest first, as dicts."""
    statement = select(audit).order_by(audit.c.pk).limit(limit)
    if peer is not None:
        statement = statement.where(audit.c.peer == peer)
    if since is not None:
        statement = statement.where(audit.c.at >= since)
    return [dict(row._mapping) for row in connection.execute(statement)]
