"""The audit record every operation appends for the change it made."""

from __future__ import annotations

from sqlalchemy import Connection

from node.store import audit
from node.store.audit import AuditRecord, Direction


def record_change(
    connection: Connection, actor: str, action: str, subject: str, detail: str = ""
) -> None:
    """Record an administrative change of ``subject`` (an account) made by ``actor``."""
    audit.record(
        connection,
        [
            AuditRecord(
                action=action,
                direction=Direction.ADMIN,
                actor=actor,
                object_id=subject,
                detail=detail or None,
            )
        ],
    )
